/* conn.c — per-connection I/O: read into the request buffer, send the response. */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

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

/* The head (and a buffer body) with one writev. */
static ssize_t send_head_and_buf(struct conn *c)
{
	struct response *r = &c->resp;
	struct iovec iov[2];
	int n = 0;
	if (c->sent < r->head_len)
		iov[n++] = (struct iovec){r->head + c->sent, r->head_len - c->sent};
	if (r->kind == BODY_BUF) {
		size_t off = c->sent > r->head_len ? c->sent - r->head_len : 0;
		iov[n++] = (struct iovec){r->body.data + off, r->body.len - off};
	}
	if (n == 1 && r->kind == BODY_FILE) /* head only, the file follows: let TCP coalesce */
		return send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_MORE | MSG_NOSIGNAL);
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
	return sendmsg(c->fd, &msg, MSG_NOSIGNAL);
}

enum conn_io conn_send(struct conn *c, time_t now, uint64_t *bytes)
{
	struct response *r = &c->resp;
	size_t total = response_length(r);
	while (c->sent < total) {
		ssize_t n;
		if (c->sent < r->head_len || r->kind == BODY_BUF) {
			n = send_head_and_buf(c);
		} else { /* sendfile: the file's pages go to the socket without a user-space copy */
			off_t off = r->file_off + (off_t)(c->sent - r->head_len);
			n = sendfile(c->fd, r->fd, &off, total - c->sent);
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
	memmove(c->in, c->in + c->req_len, c->in_len - c->req_len);
	c->in_len -= c->req_len;
	c->req_len = 0;
	c->req_start = c->in_len ? c->last_active : 0;
}
