/* send.c — moving a response out: a site response (head + buffer) in one sendmsg; a cache
 * entry as head + the pinned file pages in one sendmsg (bodies from ZC_MIN: the head, then the
 * pages by send_zc, without a copy); a file body by splice or copy (sendfile.c), then a file
 * reply's wrapper tail.  When all is out the loop hands the connection to conn.c
 * (NEXT_RESPONSE_SENT: keep-alive, pipelined input, or linger-and-close).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <string.h>
#include <sys/socket.h>

#include "ktux.h"

#define ZC_MIN 16384 /* [I] below this a copy is cheaper than pinning pages and a notification */

/* iov over head[0..head_len) then body[0..body_len), from byte off; the number of pieces. */
static int fill_iov(struct conn *c, size_t off, const char *body, size_t body_len)
{
	int n = 0;
	size_t head = c->resp.head_len;
	if (off < head)
		c->iov[n++] = (struct iovec){c->resp.head + off, head - off};
	if (body_len > 0 && off < head + body_len) {
		size_t b = off > head ? off - head : 0;
		c->iov[n++] = (struct iovec){(char *)body + b, body_len - b};
	}
	return n;
}

static void submit_sendmsg(struct server *s, struct conn *c, int n, int flags)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	memset(&c->msg, 0, sizeof c->msg);
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = (size_t)n;
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, flags);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, 0, c->fd));
}

static void submit_send(struct server *s, struct conn *c)
{
	if (c->entry) {
		size_t head = c->resp.head_len, body = cache_len(c->entry);
		char *p = cache_data(c->entry);
		if (!s->cfg->no_zerocopy && body >= ZC_MIN && c->sent >= head) {
			struct io_uring_sqe *sqe = ring_sqe(&s->ring);
			size_t b = c->sent - head;
			io_uring_prep_send_zc(sqe, c->fd, p + b, body - b, MSG_WAITALL, 0);
			io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND_ZC, cache_id(c->entry), c->fd));
			cache_get(c->entry); /* held until the kernel's notification */
		} else if (!s->cfg->no_zerocopy && body >= ZC_MIN) {
			c->iov[0] = (struct iovec){c->resp.head + c->sent, head - c->sent};
			submit_sendmsg(s, c, 1, MSG_WAITALL | MSG_MORE); /* the head; the pages follow */
		} else {
			submit_sendmsg(s, c, fill_iov(c, c->sent, p, body), MSG_WAITALL);
		}
	} else {
		/* head and body buffer in one sendmsg; iov advanced past what was sent.  A file body
		 * with a wrapper (a dynamic reply, sw99_finish_sendfile): head + body[0, file_at)
		 * before the file, body[file_at, len) after it (c->tail; the head skipped). */
		const struct response *r = &c->resp;
		if (c->state == ST_SENDING_TAIL) {
			submit_sendmsg(s, c, fill_iov(c, r->head_len + c->sent, r->body.data + r->file_at,
						      r->body.len - r->file_at), MSG_WAITALL);
		} else {
			const char *body = r->kind != BODY_NONE ? r->body.data : NULL;
			size_t len = r->kind == BODY_BUF ? r->body.len : r->kind == BODY_FILE ? r->file_at : 0;
			submit_sendmsg(s, c, fill_iov(c, c->sent, body, len),
				       r->file_at > 0 && r->file_len > 0 ? MSG_WAITALL | MSG_MORE
										: MSG_WAITALL);
		}
	}
	c->inflight++;
}

/* A response built by the site (or an error): head + buffer, or head then the file range. */
void conn_send_response(struct server *s, struct conn *c)
{
	c->state = ST_SENDING;
	c->sent = 0;
	c->total = c->resp.head_len + (c->resp.kind == BODY_BUF    ? c->resp.body.len
				       : c->resp.kind == BODY_FILE ? c->resp.file_at
								   : 0);
	if (!c->resp.keep_alive)
		c->keep_alive = 0;
	submit_send(s, c);
}

void conn_send_entry(struct server *s, struct conn *c, struct cache_entry *e)
{
	cache_get(e); /* the connection's hold while it sends from e */
	c->entry = e;
	c->state = ST_SENDING;
	c->sent = 0;
	c->total = c->resp.head_len + cache_len(e); /* the head was set for this request */
	submit_send(s, c);
}

/* A send completed (the connection is open): more to send, the file body, or all out. */
enum next conn_send_done(struct server *s, struct conn *c, struct io_uring_cqe *cqe)
{
	if (cqe->res <= 0) {
		conn_abort(s, c, SE_RESET); /* EPIPE / ECONNRESET: the client went away */
		return NEXT_NONE;
	}
	s->st->bytes_out += (uint64_t)cqe->res;
	conn_touch(s, c);
	c->sent += (size_t)cqe->res;
	if (c->sent < c->total) {
		submit_send(s, c);
		return NEXT_NONE;
	}
	if (c->resp.kind == BODY_FILE && c->state == ST_SENDING)
		return splice_start(s, c);
	return NEXT_RESPONSE_SENT;
}

/* The file half of a BODY_FILE reply is out: the wrapper's tail, if any, else done. */
enum next conn_file_sent(struct server *s, struct conn *c)
{
	if (c->resp.body.len <= c->resp.file_at)
		return NEXT_RESPONSE_SENT;
	c->state = ST_SENDING_TAIL;
	c->sent = 0;
	c->total = c->resp.body.len - c->resp.file_at;
	submit_send(s, c);
	return NEXT_NONE;
}

/* The kernel no longer uses the pages of a zero-copy send. */
void conn_zc_notif(struct server *s, struct io_uring_cqe *cqe)
{
	struct cache_entry *e = cache_by_id(s->cache, ud_aux(cqe->user_data));
	if (e)
		cache_put(s->cache, e);
}
