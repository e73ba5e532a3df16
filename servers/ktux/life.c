/* life.c — a connection's opening, its receive arming, and its closing.
 *
 * Connections live in an array indexed by fd.  A closing connection is shut down (which
 * completes every socket operation it has in flight), its file work is cancelled, and it is
 * freed only when the last of its completions has arrived, so an fd is never reused while the
 * kernel still holds work for it.  Freeing leaves room to accept: the loop resumes accepting
 * (s->room_freed), so this file never calls up into accept.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ktux.h"
#include "modreq.h"

#define LINGER_MS 2000 /* [I] how long a closing connection may keep sending us data */

void conn_arm_recv(struct server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RECV_GROUP;
	io_uring_sqe_set_data64(sqe, ud_pack(OP_RECV, 0, c->fd));
	c->recv_armed = 1;
	c->inflight++;
}

/* Stop reading c (its backlog of pipelined requests is at its cap): cancel the receive. */
void conn_pause_recv(struct server *s, struct conn *c)
{
	if (c->recv_paused || !c->recv_armed)
		return;
	c->recv_paused = 1;
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_cancel64(sqe, ud_pack(OP_RECV, 0, c->fd), 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, -1));
}

/* Read c again (backlog drained, or lingering needs the client's FIN). */
void conn_resume_recv(struct server *s, struct conn *c)
{
	if (!c->recv_paused)
		return;
	c->recv_paused = 0;
	if (!c->recv_armed && c->state != ST_CLOSING && !c->peer_closed)
		conn_arm_recv(s, c); /* else the cancelled receive's last completion re-arms it */
}

void conn_open(struct server *s, int fd)
{
	struct conn *c = &s->conns[fd];
	memset(c, 0, sizeof *c);
	c->fd = fd;
	c->used = 1;
	c->state = ST_READING;
	c->file_fd = c->pipe[0] = c->pipe[1] = -1;
	response_init(&c->resp);
	stats_conn_opened(s->st);
	conn_touch(s, c);
	conn_arm_recv(s, c);
}

/* The module is done with c's request: its file and mapping go, the request (and its send
 * window) is kept for the next one — a module reuses its buffers, and a fresh 64 KiB window
 * per request would page-fault its way in each time. */
void module_free(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	if (!m)
		return;
	if (m->obj_fd >= 0)
		close(m->obj_fd);
	if (m->map)
		munmap(m->map, m->obj_size);
	free(m->raw);
	m->raw = NULL;
	m->next_free = s->modreq_free;
	s->modreq_free = m;
	c->mod = NULL;
}

static void cancel_file_ops(struct server *s, struct conn *c)
{
	static const enum op ops[] = {OP_STATIC_OPEN, OP_STATIC_FILL, OP_DYN_OPEN, OP_DYN_READ,
				      OP_SPLICE_IN, OP_COPY_READ, OP_MODULE_OPEN, OP_MODULE_FILL};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		struct io_uring_sqe *sqe = ring_sqe(&s->ring);
		io_uring_prep_cancel64(sqe, ud_pack(ops[i], 0, c->fd), IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, -1));
	}
}

static void conn_free(struct server *s, struct conn *c)
{
	close(c->fd);
	if (c->file_fd >= 0)
		close(c->file_fd);
	for (int i = 0; i < 2; i++)
		if (c->pipe[i] >= 0)
			close(c->pipe[i]);
	if (c->entry)
		cache_put(s->cache, c->entry);
	if (c->fill)
		cache_discard(s->cache, c->fill);
	response_free(&c->resp);
	free(c->in);
	free(c->bounce);
	free(c->dyn);
	module_free(s, c);
	c->in = c->bounce = NULL;
	c->dyn = NULL;
	c->entry = c->fill = NULL;
	c->used = 0; /* the slot's fd may be handed out again by the very next accept */
	stats_conn_closed(s->st);
	s->room_freed = 1; /* the loop resumes accepting if the limit had paused it */
}

/* Close now: shut the socket down so every socket operation in flight completes, cancel file
 * work, and free the slot when the last completion is in.  stat_error < 0: not an error. */
void conn_abort(struct server *s, struct conn *c, int stat_error)
{
	if (c->state == ST_CLOSING)
		return;
	if (stat_error >= 0)
		s->st->errors[stat_error]++;
	int file_work = c->state == ST_OPENING || c->state == ST_FILLING ||
			c->state == ST_READING_FILE || c->state == ST_SPLICING || c->file_fd >= 0;
	c->state = ST_CLOSING;
	deadline_unlink(c);
	shutdown(c->fd, SHUT_RDWR);
	if (file_work)
		cancel_file_ops(s, c);
	conn_op_done(s, c);
}

/* One of c's operations completed: free a closing connection once nothing is in flight. */
void conn_op_done(struct server *s, struct conn *c)
{
	if (c->used && c->state == ST_CLOSING && c->inflight == 0)
		conn_free(s, c);
}

/* After "Connection: close": send FIN, let the client read everything, and close when it
 * closes (or LINGER_MS passes); closing at once could turn unread input into a RST that
 * destroys the response in the client's receive queue. */
void conn_linger(struct server *s, struct conn *c)
{
	c->state = ST_LINGERING;
	c->in_len = 0;
	shutdown(c->fd, SHUT_WR);
	deadline_push(s, &s->linger, c); /* closed for good after LINGER_MS, whatever the client does */
	conn_resume_recv(s, c);          /* a paused receive must read on to the client's FIN */
	if (!c->recv_armed && !c->recv_paused)
		conn_abort(s, c, -1);
}

/* Close connections idle past --idle-timeout (counted as errors only mid-request), and
 * lingering ones past LINGER_MS. */
void conn_expire(struct server *s)
{
	uint64_t limit = (uint64_t)s->cfg->fe.idle_timeout * 1000;
	while (s->idle.oldest && s->now_ms - s->idle.oldest->last_progress >= limit) {
		struct conn *c = s->idle.oldest;
		conn_abort(s, c, c->in_len > 0 || c->state != ST_READING ? SE_TIMEOUT : -1);
	}
	while (s->linger.oldest && s->now_ms - s->linger.oldest->last_progress >= LINGER_MS)
		conn_abort(s, s->linger.oldest, -1);
}
