/* conn.c — per-connection I/O: read into the request buffer, send the response. */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

volatile sig_atomic_t loop_stop; /* conn.h */

struct conn *conn_new(int fd, const struct sockaddr_storage *peer, time_t now)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c || !(c->in = malloc(HTTP_MAX_REQUEST))) {
		free(c);
		return NULL;
	}
	c->fd = fd;
	c->last_active = now;
	response_init(&c->resp);
	if (peer->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, c->addr, sizeof(c->addr));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, c->addr, sizeof(c->addr));
	return c;
}

void conn_free(struct conn *c)
{
	response_free(&c->resp);
	close(c->fd);
	free(c->in);
	free(c);
}

enum conn_io conn_read(struct conn *c, time_t now)
{
	size_t room = HTTP_MAX_REQUEST - c->in_len;
	if (room == 0)
		return IO_DONE; /* the parser has already decided about a full buffer */
	ssize_t n = read(c->fd, c->in + c->in_len, room);
	if (n > 0) {
		if (c->in_len == 0 && c->responding == 0)
			c->req_start = now; /* lingering (-1) keeps its own start */
		c->in_len += (size_t)n;
		c->last_active = now;
		return IO_DONE;
	}
	if (n == 0)
		return IO_EOF;
	return errno == EAGAIN || errno == EINTR ? IO_AGAIN : IO_ERROR;
}

/* A response on the wire: head | body[0, pre) | file range | body[pre, body.len).  A buffer
 * body is all "pre"; a static file has no body; a dynamic reply sent with sendfile has the
 * wrapper's head before the file and its tail after (response.h, file_at). */
struct layout {
	size_t head, pre, file, post;
};

static struct layout layout_of(const struct response *r)
{
	struct layout l = {r->head_len, 0, 0, 0};
	if (r->kind == BODY_BUF) {
		l.pre = r->body.len;
	} else if (r->kind == BODY_FILE) {
		l.pre = r->body.len ? r->file_at : 0;
		l.file = r->file_len;
		l.post = r->body.len - l.pre;
	}
	return l;
}

/* What is left of the head and the body before the file, with one writev. */
static ssize_t send_head_and_pre(struct conn *c, const struct layout *l)
{
	struct response *r = &c->resp;
	struct iovec iov[2];
	int n = 0;
	if (c->sent < l->head)
		iov[n++] = (struct iovec){r->head + c->sent, l->head - c->sent};
	size_t off = c->sent > l->head ? c->sent - l->head : 0;
	if (l->pre > off)
		iov[n++] = (struct iovec){r->body.data + off, l->pre - off};
	/* more follows (the file): let TCP coalesce it with what comes next */
	int more = l->file || l->post ? MSG_MORE : 0;
	if (n == 1)
		return send(c->fd, iov[0].iov_base, iov[0].iov_len, more | MSG_NOSIGNAL);
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
	return sendmsg(c->fd, &msg, more | MSG_NOSIGNAL);
}

enum conn_io conn_send(struct conn *c, time_t now, uint64_t *bytes)
{
	struct response *r = &c->resp;
	struct layout l = layout_of(r);
	size_t total = l.head + l.pre + l.file + l.post, file_end = l.head + l.pre + l.file;
	while (c->sent < total) {
		ssize_t n;
		if (c->sent < l.head + l.pre) {
			n = send_head_and_pre(c, &l);
		} else if (c->sent < file_end) { /* the file's pages go to the socket uncopied */
			off_t off = r->file_off + (off_t)(c->sent - l.head - l.pre);
			n = sendfile(c->fd, r->fd, &off, file_end - c->sent);
		} else { /* the wrapper's tail after the file */
			size_t off = l.pre + (c->sent - file_end);
			n = send(c->fd, r->body.data + off, total - c->sent, MSG_NOSIGNAL);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? IO_AGAIN : IO_ERROR;
		if (n == 0)
			return IO_ERROR; /* the file shrank under us */
		c->sent += (size_t)n;
		*bytes += (uint64_t)n;
		c->last_active = now;
	}
	return IO_DONE;
}

void conn_next(struct conn *c)
{
	response_free(&c->resp);
	c->responding = 0;
	c->sent = 0;
	c->dynamic = 0;
	memmove(c->in, c->in + c->req_len, c->in_len - c->req_len);
	c->in_len -= c->req_len;
	c->req_len = 0;
	c->req_start = c->in_len ? c->last_active : 0;
}
