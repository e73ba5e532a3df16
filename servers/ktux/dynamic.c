/* dynamic.c — SPECweb99 dynamic GETs and POSTs whose response wraps a file: the shared module
 * plans the response (servers/common/specweb99.c: sw99_begin), the file is opened and read
 * through the ring into the response buffer — a read that would block runs on an io-wq worker
 * (TUX's disk-I/O threads), never in the worker thread — and the module finishes the wrapper
 * (ad substitution, suffix, post-log record, head).  The bytes are those of userver, which
 * calls the same module with a blocking pread (sw99_handle).
 *
 * The request's bytes may be gone by then (parsed in a provided buffer that is recycled):
 * everything the module still needs is in c->dyn.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ktux.h"

static void dyn_complete(struct server *s, struct conn *c, int e)
{
	if (c->file_fd >= 0)
		close(c->file_fd);
	c->file_fd = -1;
	site_respond_finish(&s->site, c->dyn, &c->resp, e);
	conn_send_response(s, c);
}

/* A non-static request: the site answers it, or (dynamic GET/POST) it needs its file first. */
void dyn_begin(struct server *s, struct conn *c, const struct http_request *req, const char *remote)
{
	if (!c->dyn && !(c->dyn = malloc(sizeof *c->dyn))) {
		conn_abort(s, c, SE_INTERNAL);
		return;
	}
	if (!site_respond_begin(&s->site, req, remote, &c->resp, c->dyn)) {
		conn_send_response(s, c); /* complete: status, command, or an error */
		return;
	}
	c->dyn->keep_alive &= c->keep_alive; /* not while draining (SIGTERM): the head says close */
	/* the same lexical checks and limit as docroot_open; the open itself goes through the ring */
	const char *rel;
	int rc = docroot_relative(c->dyn->url, c->dyn->url_len, c->key + 1, DOCROOT_MAX_PATH, &rel);
	if (rc < 0) {
		dyn_complete(s, c, sw99_open_error(rc));
		return;
	}
	file_submit_open(s, c, rel, OP_DYN_OPEN);
}

static void read_submit(struct server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	char *dst = c->resp.body.data + c->dyn->at + (size_t)c->file_off;
	io_uring_prep_read(sqe, c->file_fd, dst, (unsigned)c->file_left, (__u64)c->file_off);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_DYN_READ, 0, c->fd));
	c->file_seq = s->ring.enter_seq;
	c->inflight++;
}

/* The read, on a disk-I/O slot (pool.c). */
static void submit_read(struct server *s, struct conn *c)
{
	c->state = ST_READING_FILE;
	if (pool_take(s, c, read_submit))
		read_submit(s, c);
}

/* The open completed (fd, or -errno); as docroot_open: only regular files. */
void dyn_open_done(struct server *s, struct conn *c, int fd)
{
	if (fd < 0) {
		dyn_complete(s, c, sw99_open_error(fd == -ENOENT || fd == -ENOTDIR ? -404 : -403));
		return;
	}
	c->file_fd = fd;
	struct stat st = {0};
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		dyn_complete(s, c, sw99_open_error(S_ISDIR(st.st_mode) ? -403 : -404));
		return;
	}
	if (sw99_file_unchanged(c->dyn)) {
		/* Sent from the file (splice, or --no-zerocopy's 64 KiB bounce) after head + wrapper:
		 * a client that does not read holds a pipe's worth of page-cache pages, not a copy of
		 * the reply (TUX's SEND_BUFFER waited on write space with the module's buffer). */
		c->file_fd = -1; /* the response owns fd now */
		int e = sw99_finish_sendfile(&s->site.module, c->dyn, &c->resp, fd, (size_t)st.st_size);
		site_respond_finish(&s->site, c->dyn, &c->resp, e);
		conn_send_response(s, c);
		return;
	}
	if (!sw99_file_dst(&c->resp, c->dyn, (size_t)st.st_size)) {
		dyn_complete(s, c, SE_INTERNAL);
		return;
	}
	c->file_off = 0;
	c->file_left = (size_t)st.st_size;
	if (c->file_left == 0)
		dyn_complete(s, c, sw99_finish(&s->site.module, c->dyn, &c->resp, 0));
	else
		submit_read(s, c);
}

/* A read completed: more to read, or the module finishes the response. */
void dyn_read_done(struct server *s, struct conn *c, int res)
{
	if (res < 0) {
		dyn_complete(s, c, sw99_finish(&s->site.module, c->dyn, &c->resp, -1));
		return;
	}
	c->file_off += res;
	c->file_left -= (size_t)res;
	if (res > 0 && c->file_left > 0) {
		submit_read(s, c);
		return;
	}
	/* all of it, or the file ended early (it shrank: sw99_finish answers 500) */
	dyn_complete(s, c, sw99_finish(&s->site.module, c->dyn, &c->resp, (long)c->file_off));
}
