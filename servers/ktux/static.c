/* static.c — static GETs: a hit is sent from the pinned cache (head + the file's pinned
 * pages); a miss opens the file through the ring and either fills a cache entry (the file
 * mapped and locked, its pages faulted in by MADV_POPULATE_READ through the ring) or, when the
 * file is too large for the cache, splices it from the page cache.  An open, fill or read
 * that would block runs on an io-wq worker (TUX's disk-I/O threads) while the worker thread
 * goes on serving everyone else.
 *
 * Path rules are the shared docroot's (docroot.c): decoded path, no "." / ".." segment, no
 * backslash, opened with RESOLVE_BENEATH under the docroot.  Requests that fail the lexical
 * check are handed to site_respond, which answers them exactly as userver does.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ktux.h"

/* Decode into c->key (after the variant byte); the path relative to the docroot, or NULL. */
static const char *relative_path(struct conn *c, const struct http_request *req)
{
	const char *rel;
	if (docroot_relative(req->path.p, req->path.len, c->key + 1, sizeof c->key - 1, &rel) < 0)
		return NULL;
	return rel;
}

/* 404/403/500 for a static request: the site's own error reply. */
static void static_error(struct server *s, struct conn *c, int status)
{
	enum stat_error e = status == 404 ? SE_NOT_FOUND : status == 403 ? SE_FORBIDDEN : SE_INTERNAL;
	site_respond_fail(&s->site, c->keep_alive, c->minor, e, &c->resp);
	conn_send_response(s, c);
}

/* The head of a 200 for a file of len bytes into c->resp (what varies by request). */
static int set_head(struct server *s, struct conn *c, size_t len)
{
	c->resp.keep_alive = c->keep_alive;
	return response_set_head(&c->resp, c->minor, 200, "text/plain", len, "",
				 s->site.cfg.server_name);
}

void static_begin(struct server *s, struct conn *c, const struct http_request *req)
{
	const char *rel = relative_path(c, req);
	if (!rel) {
		site_respond(&s->site, req, "", &c->resp); /* 400/403, counted by the site */
		conn_send_response(s, c);
		return;
	}
	s->st->requests[RT_STATIC]++;
	c->key[0] = '/'; /* the key: the decoded path (entries are bodies; heads are per request) */
	if (s->cache) {
		struct cache_entry *e = cache_lookup(s->cache, c->key);
		if (e && set_head(s, c, cache_len(e)) == 0) {
			stats_response(s->st, 200);
			conn_send_entry(s, c, e);
			return;
		}
	} else {
		s->st->cache.misses++;
	}
	file_submit_open(s, c, rel, OP_STATIC_OPEN); /* openat2 beneath the docroot */
}

static void fill_complete(struct server *s, struct conn *c);

/* The populate, on a disk-I/O slot (pool.c). */
static void fill_submit(struct server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_madvise(sqe, cache_data(c->fill), (off_t)cache_len(c->fill), MADV_POPULATE_READ);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_STATIC_FILL, 0, c->fd));
	c->file_seq = s->ring.enter_seq;
	c->inflight++;
}

/* Fault the entry's pages in: at once when the page cache has them all (minor faults, no
 * I/O), else with MADV_POPULATE_READ through the ring, which runs on an io-wq worker. */
static void fill_start(struct server *s, struct conn *c)
{
	char *p = cache_data(c->fill);
	size_t len = cache_len(c->fill);
	if (page_resident(p, len) && mlock(p, len) == 0) {
		fill_complete(s, c);
		return;
	}
	c->state = ST_FILLING;
	if (pool_take(s, c, fill_submit))
		fill_submit(s, c);
}

/* The file is open: map and pin it as a cache entry, or (no cache, too big, empty, cache full
 * of busy entries, or the same file being filled by another request) send it uncached. */
static void file_opened(struct server *s, struct conn *c, int fd, const struct stat *st)
{
	size_t size = (size_t)st->st_size;
	if (set_head(s, c, size) < 0) {
		close(fd);
		static_error(s, c, 500);
		return;
	}
	stats_response(s->st, 200);
	struct cache_entry *e = s->cache ? cache_reserve(s->cache, c->key, fd, size) : NULL;
	if (e) {
		c->fill = e;
		c->file_fd = fd; /* kept until the pages are in: the fallback if the fill fails */
		fill_start(s, c);
		return;
	}
	c->resp.kind = BODY_FILE;
	c->resp.fd = fd;
	c->resp.file_off = 0;
	c->resp.file_len = size;
	conn_send_response(s, c);
}

void static_open_done(struct server *s, struct conn *c, int fd)
{
	if (fd < 0) {
		static_error(s, c, fd == -ENOENT || fd == -ENOTDIR ? 404 : 403);
		return;
	}
	struct stat st = {0};
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int dir = S_ISDIR(st.st_mode);
		close(fd);
		static_error(s, c, dir ? 403 : 404); /* as docroot_open: only regular files */
		return;
	}
	file_opened(s, c, fd, &st);
}

/* The entry's pages are in and pinned: send it, and let later requests hit it. */
static void fill_complete(struct server *s, struct conn *c)
{
	close(c->file_fd);
	c->file_fd = -1;
	struct cache_entry *e = c->fill;
	c->fill = NULL;
	conn_send_entry(s, c, e);
	cache_ready(s->cache, e); /* drops the filler's hold; the sender holds its own */
}

void static_fill_done(struct server *s, struct conn *c, int res)
{
	if (res == 0) {
		fill_complete(s, c);
		return;
	}
	/* the populate failed (I/O error, or a kernel refusing it): serve this one uncached from
	 * the open file; the entry goes */
	size_t len = cache_len(c->fill);
	cache_discard(s->cache, c->fill);
	c->fill = NULL;
	c->resp.kind = BODY_FILE;
	c->resp.fd = c->file_fd;
	c->resp.file_off = 0;
	c->resp.file_len = len;
	c->file_fd = -1;
	conn_send_response(s, c);
}
