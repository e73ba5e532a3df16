/* deadline.c — the two deadline lists driven by the ring's periodic timeout (life.c expires
 * them): --idle-timeout for every open connection, and LINGER_MS for one closing after
 * "Connection: close".  Each list has a single timeout, so appending keeps it sorted and
 * expiry only looks at the head.
 */
#include "ktux.h"

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
void deadline_push(struct server *s, struct conn_list *l, struct conn *c)
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
	if (c->state != ST_LINGERING && c->state != ST_CLOSING)
		deadline_push(s, &s->idle, c);
}
