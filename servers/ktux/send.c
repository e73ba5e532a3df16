/* send.c — moving a response out: a site response (head + buffer) in one sendmsg, a cache
 * entry from its registered buffer (send_zc from ZC_MIN, send below), a file body by splice
 * or copy (sendfile.c); then keep-alive, pipelined input, or linger-and-close.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <string.h>
#include <sys/socket.h>

#include "ktux.h"

#define ZC_MIN 16384 /* [I] below this a copy is cheaper than pinning pages and a notification */

static void submit_send(struct server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	size_t left = c->total - c->sent;
	if (c->entry) {
		char *p = cache_data(c->entry) + c->sent;
		if (!s->cfg->no_zerocopy && left >= ZC_MIN) {
			io_uring_prep_send_zc_fixed(sqe, c->fd, p, left, MSG_WAITALL, 0,
						    (unsigned)cache_buf_index(c->entry));
			io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND_ZC, cache_id(c->entry), c->fd));
			cache_get(c->entry); /* held until the kernel's notification */
		} else {
			io_uring_prep_send(sqe, c->fd, p, left, MSG_WAITALL);
			io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, 0, c->fd));
		}
	} else {
		/* head and body buffer in one sendmsg; iov advanced past what was sent */
		size_t off = c->sent;
		int n = 0;
		size_t head = c->resp.head_len;
		size_t body = c->resp.kind == BODY_BUF ? c->resp.body.len : 0;
		if (off < head)
			c->iov[n++] = (struct iovec){c->resp.head + off, head - off};
		if (body > 0 && off < head + body) {
			size_t b = off > head ? off - head : 0;
			c->iov[n++] = (struct iovec){c->resp.body.data + b, body - b};
		}
		memset(&c->msg, 0, sizeof c->msg);
		c->msg.msg_iov = c->iov;
		c->msg.msg_iovlen = (size_t)n;
		io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_WAITALL);
		io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, 0, c->fd));
	}
	c->inflight++;
}

/* A response built by the site (or an error): head + buffer, or head then the file range. */
void conn_send_response(struct server *s, struct conn *c)
{
	c->phase = PH_SENDING;
	c->sent = 0;
	c->total = c->resp.head_len + (c->resp.kind == BODY_BUF ? c->resp.body.len : 0);
	if (!c->resp.keep_alive)
		c->keep_alive = 0;
	submit_send(s, c);
}

void conn_send_entry(struct server *s, struct conn *c, struct cache_entry *e)
{
	cache_get(e); /* the connection's hold while it sends from e */
	c->entry = e;
	c->phase = PH_SENDING;
	c->sent = 0;
	c->total = cache_len(e);
	submit_send(s, c);
}

void conn_response_sent(struct server *s, struct conn *c)
{
	response_free(&c->resp);
	response_init(&c->resp);
	if (c->entry) {
		cache_put(s->cache, c->entry);
		c->entry = NULL;
	}
	c->phase = PH_IDLE;
	conn_touch(s, c);
	if (!c->keep_alive) {
		conn_linger(s, c);
		return;
	}
	if (c->in_len > 0)
		conn_parse_input(s, c);
}

void conn_send_done(struct server *s, struct io_uring_cqe *cqe)
{
	struct conn *c = &s->conns[ud_fd(cqe->user_data)];
	if (ud_op(cqe->user_data) == OP_SEND_ZC && !(cqe->flags & IORING_CQE_F_MORE))
		cache_put(s->cache, cache_by_id(s->cache, ud_aux(cqe->user_data))); /* no notification follows */
	c->inflight--;
	if (c->closing || cqe->res <= 0) {
		if (!c->closing)
			conn_abort(s, c, SE_RESET); /* EPIPE / ECONNRESET: the client went away */
		conn_op_done(s, c);
		return;
	}
	s->st->bytes_out += (uint64_t)cqe->res;
	conn_touch(s, c);
	if (ud_aux(cqe->user_data) == 1 && ud_op(cqe->user_data) == OP_SEND) {
		copy_sent(s, c, cqe->res); /* a --no-zerocopy body chunk */
		return;
	}
	c->sent += (size_t)cqe->res;
	if (c->sent < c->total)
		submit_send(s, c);
	else if (c->resp.kind == BODY_FILE)
		splice_start(s, c);
	else
		conn_response_sent(s, c);
}

/* The kernel no longer uses the pages of a zero-copy send. */
void conn_zc_notif(struct server *s, struct io_uring_cqe *cqe)
{
	struct cache_entry *e = cache_by_id(s->cache, ud_aux(cqe->user_data));
	if (e)
		cache_put(s->cache, e);
}
