/* deadline.c — the two deadline lists driven by the ring's periodic timeout: --idle-timeout
 * for every open connection, and LINGER_MS for one closing after "Connection: close".  Each
 * list has a single timeout, so appending keeps it sorted and expiry only looks at the head.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/socket.h>

#include "ktux.h"

#define LINGER_MS 2000 /* [I] how long a closing connection may keep sending us data */

void deadline_unlink(struct conn *c)
{
	struct conn_list *l = c->on;
	if (!l)
		return;
	if (c->older)
		c->older->newer = c->newer;
	else
		l->oldest = c->newer;
	if (c->newer)
		c->newer->older = c->older;
	else
		l->newest = c->older;
	c->older = c->newer = NULL;
	c->on = NULL;
}

/* Append c with deadline clock "now": every list has one timeout, so it stays sorted. */
static void list_push(struct server *s, struct conn_list *l, struct conn *c)
{
	deadline_unlink(c);
	c->last_progress = s->now_ms;
	c->older = l->newest;
	if (l->newest)
		l->newest->newer = c;
	else
		l->oldest = c;
	l->newest = c;
	c->on = l;
}

/* Progress (accept, a request's first byte, a complete request, bytes sent) restarts the idle
 * clock; the rest of a trickling request does not, so one byte a minute cannot hold a
 * connection forever (docs/interfaces.md: a request arrives whole within --idle-timeout). */
void conn_touch(struct server *s, struct conn *c)
{
	if (!c->lingering)
		list_push(s, &s->idle, c);
}

/* After "Connection: close": send FIN, let the client read everything, and close when it
 * closes (or the idle timeout fires); closing at once could turn unread input into a RST
 * that destroys the response in the client's receive queue. */
void conn_linger(struct server *s, struct conn *c)
{
	c->lingering = 1;
	c->in_len = 0;
	shutdown(c->fd, SHUT_WR);
	list_push(s, &s->linger, c); /* closed for good after LINGER_MS, whatever the client does */
	conn_resume_recv(s, c);        /* a paused receive must read on to the client's FIN */
	if (!c->recv_armed && !c->recv_paused)
		conn_abort(s, c, -1);
}

/* Close connections idle past --idle-timeout (counted as errors only mid-request), and
 * lingering ones past LINGER_MS. */
void conn_expire(struct server *s)
{
	uint64_t limit = (uint64_t)s->cfg->idle_timeout * 1000;
	while (s->idle.oldest && s->now_ms - s->idle.oldest->last_progress >= limit) {
		struct conn *c = s->idle.oldest;
		conn_abort(s, c, c->in_len > 0 || c->phase != PH_IDLE ? SE_TIMEOUT : -1);
	}
	while (s->linger.oldest && s->now_ms - s->linger.oldest->last_progress >= LINGER_MS)
		conn_abort(s, s->linger.oldest, -1);
}
