/* conn.c — one connection's requests: multishot receive into provided buffers, in-place
 * parsing, routing (the site's router: static files, the SPECweb99 module — TUX's or called
 * directly — /server-status, errors), and what follows a response: the next pipelined
 * request, keep-alive, or linger.  Opening, receive arming and closing are life.c; sending
 * is send.c.
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
	while (c->state == ST_READING && used < len) {
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
		conn_pause_recv(s, c); /* a response is in flight and the client keeps pipelining */
	return 0;
}

/* Requests waiting in c->in (pipelined, or assembled from several receives). */
static void conn_parse_input(struct server *s, struct conn *c)
{
	size_t used = parse_requests(s, c, c->in, c->in_len);
	if (c->state == ST_CLOSING)
		return;
	if (used >= c->in_len) {
		free(c->in);
		c->in = NULL;
		c->in_len = c->in_cap = 0;
	} else if (used > 0) {
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
	}
	if (c->in_len < IN_LOW && c->state != ST_LINGERING)
		conn_resume_recv(s, c);
}

static void received(struct server *s, struct conn *c, const char *data, size_t n)
{
	if (c->state == ST_LINGERING)
		return; /* input after "Connection: close" is read and dropped */
	if (c->in_len == 0 && c->state == ST_READING) {
		conn_touch(s, c); /* a request's first byte: it must arrive whole within the timeout */
		size_t used = parse_requests(s, c, data, n); /* in place: no copy */
		if (c->state != ST_CLOSING && c->state != ST_LINGERING)
			keep_input(s, c, data + used, n - used);
		return;
	}
	if (keep_input(s, c, data, n) == 0 && c->state == ST_READING)
		conn_parse_input(s, c);
}

/* The client sent FIN.  Between requests: close.  Mid-request: the request is cut short, 400
 * (as userver).  While a response is in flight: finish it (the client may still read), then
 * close. */
static void peer_closed(struct server *s, struct conn *c)
{
	c->keep_alive = 0;
	if (c->state == ST_LINGERING || (c->state == ST_READING && c->in_len == 0)) {
		conn_abort(s, c, -1);
	} else if (c->state == ST_READING) {
		site_respond_error(&s->site, HTTPE_BAD_REQUEST, c->minor ? c->minor : 1, &c->resp);
		c->in_len = 0;
		conn_send_response(s, c);
	}
}

/* A receive completion (the dispatcher has taken it off inflight when it was the last). */
void conn_recv_done(struct server *s, struct conn *c, struct io_uring_cqe *cqe)
{
	if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		received(s, c, ring_recv_buf(&s->ring, bid), (size_t)cqe->res);
		ring_recycle(&s->ring, bid);
	} else if (cqe->res == 0) {
		c->peer_closed = 1;
		peer_closed(s, c);
	} else if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
		conn_abort(s, c, c->state == ST_LINGERING ? -1 : SE_RESET);
	}
	if (c->state != ST_CLOSING && !c->recv_armed && !c->peer_closed && !c->recv_paused)
		conn_arm_recv(s, c); /* multishot ended (e.g. ENOBUFS): re-arm */
}

/* The response is out: linger and close, or the next pipelined request. */
void conn_response_sent(struct server *s, struct conn *c)
{
	response_free(&c->resp);
	response_init(&c->resp);
	if (c->entry) {
		cache_put(s->cache, c->entry);
		c->entry = NULL;
	}
	c->state = ST_READING;
	conn_touch(s, c);
	if (!c->keep_alive) {
		conn_linger(s, c);
		return;
	}
	if (c->in_len > 0)
		conn_parse_input(s, c);
}
