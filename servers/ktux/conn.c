/* conn.c — one connection: multishot receive into provided buffers, in-place parsing,
 * dispatch to the static path or the shared site (SPECweb99 module, /server-status), and
 * close.  Sending is send.c, deadlines are deadline.c.
 *
 * Connections live in an array indexed by fd.  A closing connection is shut down (which
 * completes every socket operation it has in flight) and freed only when the last of its
 * completions has arrived, so an fd is never reused while the kernel still holds work for it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ktux.h"

/* Pipelined input waiting while a response is in flight.  At IN_HIGH bytes the multishot
 * receive is cancelled (back-pressure: read less, the client's sends then block on a full
 * window) and re-armed once parsing brings the backlog under IN_LOW; requests already buffered
 * are all answered.  What lands between the cancel and its completion is kept (a few provided
 * buffers), up to IN_HARD, beyond which the client is not one we can serve. */
#define IN_HIGH (HTTP_MAX_REQUEST + RECV_BUF_SIZE)
#define IN_LOW (IN_HIGH / 2)
#define IN_HARD (64 * RECV_BUF_SIZE + IN_HIGH)

static void arm_recv(struct server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RECV_GROUP;
	io_uring_sqe_set_data64(sqe, ud_pack(OP_RECV, 0, c->fd));
	c->recv_armed = 1;
	c->inflight++;
}

/* Stop reading c (its backlog of pipelined requests is IN_HIGH): cancel the multishot receive. */
static void pause_recv(struct server *s, struct conn *c)
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
	if (!c->recv_armed && !c->closing && !c->peer_closed)
		arm_recv(s, c); /* else the cancelled receive's last completion re-arms it */
}

void conn_open(struct server *s, int fd)
{
	struct conn *c = &s->conns[fd];
	memset(c, 0, sizeof *c);
	c->fd = fd;
	c->used = 1;
	c->file_fd = c->pipe[0] = c->pipe[1] = -1;
	response_init(&c->resp);
	stats_conn_opened(s->st);
	conn_touch(s, c);
	arm_recv(s, c);
}

static void cancel_file_ops(struct server *s, struct conn *c)
{
	static const enum op ops[] = {OP_OPEN, OP_READ, OP_FILL, OP_SPLICE_IN};
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
	module_free(c);
	c->in = c->bounce = NULL;
	c->dyn = NULL;
	c->entry = c->fill = NULL;
	c->used = 0; /* the slot's fd may be handed out again by the very next accept */
	stats_conn_closed(s->st);
	accept_arm(s); /* room again: resume accepting if the limit had paused it */
}

/* Close now: shut the socket down so every socket operation in flight completes, cancel file
 * work, and free the slot when the last completion is in.  stat_error < 0: not an error. */
void conn_abort(struct server *s, struct conn *c, int stat_error)
{
	if (c->closing)
		return;
	if (stat_error >= 0)
		s->st->errors[stat_error]++;
	c->closing = 1;
	deadline_unlink(c);
	shutdown(c->fd, SHUT_RDWR);
	if (c->phase == PH_FILE || c->file_fd >= 0)
		cancel_file_ops(s, c);
	conn_op_done(s, c);
}

/* One of c's operations completed: free a closing connection once nothing is in flight. */
void conn_op_done(struct server *s, struct conn *c)
{
	if (c->used && c->closing && c->inflight == 0)
		conn_free(s, c);
}

static const char *remote_addr(struct conn *c)
{
	if (c->remote[0])
		return c->remote;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	snprintf(c->remote, sizeof c->remote, "0.0.0.0");
	if (getpeername(c->fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->remote, sizeof c->remote);
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->remote, sizeof c->remote);
	}
	return c->remote;
}

/* The worker thread's CPU time, for /server-status beside the module's. */
static void note_worker_cpu(struct server *s)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	s->st->module.worker_cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* raw: where the request's bytes start (it is req->total_len long). */
static void handle_request(struct server *s, struct conn *c, const char *raw,
			   const struct http_request *req)
{
	c->keep_alive = req->keep_alive && !s->draining;
	c->minor = req->minor_version;
	conn_touch(s, c);
	switch (site_route(req)) {
	case ROUTE_STATIC: static_begin(s, c, req); return;
	case ROUTE_MODULE:
		if (s->cfg->module_api == API_TUX) {
			remote_addr(c); /* into c->remote, for the module */
			module_request(s, c, raw, req);
			return;
		}
		break;
	case ROUTE_STATUS: note_worker_cpu(s); break;
	case ROUTE_METHOD: break;
	}
	dyn_begin(s, c, req, remote_addr(c)); /* the direct module, /server-status, or an error */
}

/* Parse and handle requests at buf[0..len) while no response is in flight; returns the bytes
 * consumed.  buf is a provided buffer (zero-copy parsing) or c->in. */
static size_t parse_requests(struct server *s, struct conn *c, const char *buf, size_t len)
{
	size_t used = 0;
	while (c->phase == PH_IDLE && !c->closing && !c->lingering && used < len) {
		struct http_request req;
		memset(&req, 0, sizeof req);
		req.minor_version = 1; /* what an error reply speaks when the request line is unreadable */
		enum http_error err = HTTPE_NONE;
		enum http_result r = http_parse(buf + used, len - used, &req, &err);
		if (r == HTTP_INCOMPLETE)
			break;
		if (r == HTTP_ERROR) {
			site_respond_error(&s->site, err, req.minor_version, &c->resp);
			c->keep_alive = 0;
			conn_send_response(s, c);
			return len; /* the rest of the stream cannot be trusted */
		}
		handle_request(s, c, buf + used, &req);
		used += req.total_len;
	}
	return used;
}

static int keep_input(struct server *s, struct conn *c, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (c->in_len + n > c->in_cap) {
		size_t cap = c->in_cap ? c->in_cap * 2 : IN_HIGH;
		while (cap < c->in_len + n)
			cap *= 2;
		char *p2 = c->in_len + n <= IN_HARD ? realloc(c->in, cap) : NULL;
		if (!p2) {
			conn_abort(s, c, c->in_len + n > IN_HARD ? SE_HEADER_TOO_LARGE : SE_INTERNAL);
			return -1;
		}
		c->in = p2;
		c->in_cap = cap;
	}
	memmove(c->in + c->in_len, p, n);
	c->in_len += n;
	if (c->in_len >= IN_HIGH)
		pause_recv(s, c); /* a response is in flight and the client keeps pipelining */
	return 0;
}

/* Requests waiting in c->in (pipelined, or assembled from several receives). */
void conn_parse_input(struct server *s, struct conn *c)
{
	size_t used = parse_requests(s, c, c->in, c->in_len);
	if (c->closing)
		return;
	if (used >= c->in_len) {
		free(c->in);
		c->in = NULL;
		c->in_len = c->in_cap = 0;
	} else if (used > 0) {
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
	}
	if (c->in_len < IN_LOW && !c->lingering)
		conn_resume_recv(s, c);
}

static void received(struct server *s, struct conn *c, const char *data, size_t n)
{
	if (c->lingering)
		return; /* input after "Connection: close" is read and dropped */
	if (c->in_len == 0 && c->phase == PH_IDLE) {
		conn_touch(s, c); /* a request's first byte: it must arrive whole within the timeout */
		size_t used = parse_requests(s, c, data, n); /* in place: no copy */
		if (!c->closing && !c->lingering)
			keep_input(s, c, data + used, n - used);
		return;
	}
	if (keep_input(s, c, data, n) == 0 && c->phase == PH_IDLE)
		conn_parse_input(s, c);
}

/* The client sent FIN.  Between requests: close.  Mid-request: the request is cut short, 400
 * (as userver).  While a response is in flight: finish it (the client may still read), then
 * close. */
static void peer_closed(struct server *s, struct conn *c)
{
	c->keep_alive = 0;
	if (c->lingering || (c->phase == PH_IDLE && c->in_len == 0)) {
		conn_abort(s, c, -1);
	} else if (c->phase == PH_IDLE) {
		site_respond_error(&s->site, HTTPE_BAD_REQUEST, c->minor ? c->minor : 1, &c->resp);
		c->in_len = 0;
		conn_send_response(s, c);
	}
}

void conn_recv_done(struct server *s, struct io_uring_cqe *cqe)
{
	struct conn *c = &s->conns[ud_fd(cqe->user_data)];
	int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
	if (!more) {
		c->recv_armed = 0;
		c->inflight--;
	}
	if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (!c->closing)
			received(s, c, ring_recv_buf(&s->ring, bid), (size_t)cqe->res);
		ring_recycle(&s->ring, bid);
	} else if (cqe->res == 0 && !c->closing) {
		c->peer_closed = 1;
		peer_closed(s, c);
	} else if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED && !c->closing) {
		conn_abort(s, c, c->lingering ? -1 : SE_RESET);
	}
	if (!c->closing && !c->recv_armed && !c->peer_closed && !c->recv_paused)
		arm_recv(s, c); /* multishot ended (e.g. ENOBUFS): re-arm */
	conn_op_done(s, c);
}
