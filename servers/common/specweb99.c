/* specweb99.c — the SPECweb99 dynamic module (spec §4): standard and custom-ad GET, POST,
 * Reset and Fetch, producing a wrapped response in a buffer. */
#include "specweb99.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRAP_SUFFIX SW99_WRAP_SUFFIX

static int slice_is(const char *p, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(p, lit, len) == 0;
}

static int starts_with(const char *p, size_t len, const char *lit)
{
	size_t n = strlen(lit);
	return len >= n && memcmp(p, lit, n) == 0;
}

enum req_type sw99_classify(const struct http_request *req)
{
	int cgi = slice_is(req->path.p, req->path.len, SW99_CGI_SCRIPT);
	if (req->method == HTTP_POST)
		return RT_POST;
	if (starts_with(req->query.p, req->query.len, SW99_COMMAND))
		return RT_COMMAND;
	if (cgi)
		return RT_CGI_GET; /* [I] served in-process like dyn_get (docs/interfaces.md) */
	return req->has_cookie ? RT_CAD_GET : RT_DYN_GET;
}

int sw99_wrap(struct buf *out, const char *server_name, const char *remote_addr,
	      const char *script, size_t script_len, const char *query, size_t query_len,
	      const char *body, size_t body_len)
{
	int rc = buf_printf(out,
			    "<html>\n<head><title>SPECweb99 Dynamic GET & POST Test</title></head>\n"
			    "<body>\n<p>SERVER_SOFTWARE = %s\n<p>REMOTE_ADDR = %s\n"
			    "<p>SCRIPT_NAME = %.*s\n<p>QUERY_STRING = %.*s\n<pre>\n",
			    server_name, remote_addr, (int)script_len, script, (int)query_len, query);
	rc |= buf_append(out, body, body_len);
	return rc | buf_puts(out, WRAP_SUFFIX);
}

long sw99_read_file(int fd, struct response *r, struct sw99_pending *p, size_t size)
{
	char *dst = sw99_file_dst(r, p, size);
	if (!dst)
		return -1;
	size_t got = 0;
	while (got < size) { /* a blocking read: a property of the µserver design */
		ssize_t n = pread(fd, dst + got, size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return (long)got;
}

/* Map a docroot_open() failure to a stat_error. */
int sw99_open_error(int rc)
{
	return rc == -404 ? SE_NOT_FOUND : rc == -400 ? SE_BAD_REQUEST : SE_FORBIDDEN;
}

/* §4.5 step 7: rewrite every ad tag in [p, p+len) to point at ad. */
static void substitute_ads(char *p, size_t len, int ad)
{
	char *end = p + len;
	while ((size_t)(end - p) >= SW99_CAD_TAG_LEN) {
		char *tag = memmem(p, (size_t)(end - p), SW99_CAD_PREFIX, SW99_CAD_PREFIX_LEN);
		if (!tag || (size_t)(end - tag) < SW99_CAD_TAG_LEN)
			return;
		char dir[12]; /* ad / 36 <= 9: always 5 digits */
		snprintf(dir, sizeof(dir), "%05d", ad / 36);
		memcpy(tag + SW99_CAD_DIR_AT, dir, 5);
		tag[SW99_CAD_CLASS_AT] = (char)('0' + (ad % 36) / 9);
		tag[SW99_CAD_FILE_AT] = (char)('0' + ad % 9);
		p = tag + SW99_CAD_TAG_LEN;
	}
}

/* "name=value" in an '&'-separated list; the value's slice, or len 0 when absent. */
static struct http_slice field(const char *s, size_t len, const char *name)
{
	size_t nl = strlen(name);
	for (const char *f = s, *end = s + len; f < end;) {
		const char *amp = memchr(f, '&', (size_t)(end - f));
		const char *fe = amp ? amp : end;
		if ((size_t)(fe - f) > nl && memcmp(f, name, nl) == 0 && f[nl] == '=')
			return (struct http_slice){f + nl + 1, (size_t)(fe - f - nl - 1)};
		f = fe + 1;
	}
	return (struct http_slice){s, 0};
}

/* A decimal field in [lo, hi]; -1 when absent or malformed. */
static long field_long(const char *s, size_t len, const char *name, long lo, long hi)
{
	struct http_slice v = field(s, len, name);
	char tmp[16];
	if (v.len == 0 || v.len >= sizeof(tmp))
		return -1;
	memcpy(tmp, v.p, v.len);
	tmp[v.len] = '\0';
	char *end;
	long n = strtol(tmp, &end, 10);
	return *end || tmp[0] == '-' || tmp[0] == '+' || n < lo || n > hi ? -1 : n;
}

/* Cookie "my_cookie=user_id=U&last_ad=L": U, and L (or -1 when need_ad is 0 and absent). */
static int parse_cookie(const struct http_request *req, long *user, long *last_ad)
{
	const char *c = req->cookie.p;
	size_t len = req->cookie.len;
	if (!req->has_cookie || !starts_with(c, len, "my_cookie="))
		return -1;
	c += 10, len -= 10;
	*user = field_long(c, len, "user_id", SW99_USER_BASE, 2147483647L);
	*last_ad = field_long(c, len, "last_ad", 0, SW99_ADS - 1);
	return *user < 0 ? -1 : 0;
}

/* The wrapper up to where the file goes (§4.2), and the file to put there: url (a docroot
 * path), with ads substituted when ad >= 0.  SW99_NEEDS_FILE, or SE_INTERNAL. */
static int wrap_begin(struct sw99 *m, const struct http_request *req, const char *remote_addr,
		      const char *url, size_t url_len, int ad, struct response *r,
		      struct sw99_pending *p)
{
	if (url_len > SW99_MAX_URL)
		return SE_BAD_REQUEST; /* cannot happen: the request line is shorter */
	memcpy(p->url, url, url_len);
	p->url[url_len] = '\0';
	p->url_len = url_len;
	p->ad = ad;
	p->size = 0;
	p->keep_alive = req->keep_alive;
	p->minor_version = req->minor_version;
	struct buf *b = &r->body;
	if (sw99_wrap(b, m->server_name, remote_addr, req->path.p, req->path.len, req->query.p,
		      req->query.len, NULL, 0) < 0)
		return SE_INTERNAL;
	b->len -= strlen(WRAP_SUFFIX); /* drop the suffix: the file goes in its place */
	b->data[b->len] = '\0';
	p->at = b->len;
	return SW99_NEEDS_FILE;
}

char *sw99_file_dst(struct response *r, struct sw99_pending *p, size_t size)
{
	p->size = size;
	if (buf_reserve(&r->body, size + strlen(WRAP_SUFFIX)) < 0)
		return NULL;
	return r->body.data + p->at;
}

static int finish(int keep_alive, int minor_version, struct sw99 *m, struct response *r,
		  const char *cookie_header)
{
	r->kind = BODY_BUF;
	r->keep_alive = keep_alive;
	return response_set_head(r, minor_version, 200, "text/html", r->body.len, cookie_header,
				 m->server_name) < 0 ? SE_INTERNAL : -1;
}

/* POST: the record, once the file is known to exist; -1, or SE_INTERNAL (the log failed). */
static int log_post(struct sw99 *m, const struct sw99_pending *p)
{
	if (!p->post)
		return -1;
	struct postlog_entry e = {(int)p->dir, (int)p->cls, (int)p->num, p->client, p->user,
				  p->name, m->pid};
	long recno;
	return postlog_append(m->postlog, &e, &recno) < 0 ? SE_INTERNAL : -1;
}

int sw99_finish(struct sw99 *m, struct sw99_pending *p, struct response *r, long got)
{
	struct buf *b = &r->body;
	if (got < 0 || (size_t)got != p->size)
		return SE_INTERNAL; /* a read error, or the file changed size under us */
	b->len = p->at + p->size;
	b->data[b->len] = '\0';
	if (p->ad >= 0)
		substitute_ads(b->data + p->at, p->size, p->ad);
	if (buf_puts(b, WRAP_SUFFIX))
		return SE_INTERNAL;
	int e = log_post(m, p);
	return e >= 0 ? e : finish(p->keep_alive, p->minor_version, m, r, p->cookie);
}

int sw99_file_unchanged(const struct sw99_pending *p)
{
	return p->ad < 0;
}

int sw99_finish_sendfile(struct sw99 *m, struct sw99_pending *p, struct response *r, int fd,
			 size_t size)
{
	struct buf *b = &r->body;
	p->size = size;
	r->kind = BODY_FILE;
	r->fd = fd;
	r->file_off = 0;
	r->file_len = size;
	r->file_at = p->at;
	r->keep_alive = p->keep_alive;
	if (p->ad >= 0 || b->len != p->at || buf_puts(b, WRAP_SUFFIX))
		return SE_INTERNAL; /* ads are substituted in a copy: sw99_read_file + sw99_finish */
	int e = log_post(m, p);
	if (e >= 0)
		return e;
	return response_set_head(r, p->minor_version, 200, "text/html", b->len + size, p->cookie,
				 m->server_name) < 0 ? SE_INTERNAL : -1;
}

static int handle_get(struct sw99 *m, const struct http_request *req, const char *remote_addr,
		      struct response *r, struct sw99_pending *p)
{
	p->cookie[0] = '\0';
	return wrap_begin(m, req, remote_addr, req->query.p, req->query.len, -1, r, p);
}

static int handle_cad(struct sw99 *m, const struct http_request *req, const char *remote_addr,
		      struct response *r, struct sw99_pending *p)
{
	long user, last_ad;
	struct ad_choice ad;
	if (parse_cookie(req, &user, &last_ad) < 0 || last_ad < 0)
		return SE_BAD_REQUEST;
	if (adtables_refresh(&m->tables, m->state_dir) < 0)
		return SE_INTERNAL; /* no Reset yet, or the state files are unreadable */
	if (adtables_choose_ad(&m->tables, user, (int)last_ad, time(NULL), &ad) < 0)
		return SE_BAD_REQUEST;
	/* Substitution only in class1/class2 files, decided from the query as S1 does. */
	int subst = memmem(req->query.p, req->query.len, "class1", 6) ||
		    memmem(req->query.p, req->query.len, "class2", 6);
	snprintf(p->cookie, sizeof(p->cookie),
		 "Set-Cookie: found_cookie=Ad_id=%d&Ad_weight=%d&Expired=%d\r\n", ad.ad_id, ad.weight,
		 ad.expired);
	return wrap_begin(m, req, remote_addr, req->query.p, req->query.len, subst ? ad.ad_id : -1,
			  r, p);
}

static int handle_post(struct sw99 *m, const struct http_request *req, const char *remote_addr,
		       struct response *r, struct sw99_pending *p)
{
	const char *b = req->body.p;
	size_t len = req->body.len;
	long user, last_ad;
	struct http_slice root = field(b, len, "urlroot");
	long dir = field_long(b, len, "dir", 0, 99999), cls = field_long(b, len, "class", 0, 3);
	long num = field_long(b, len, "num", 0, 8), client = field_long(b, len, "client", 0, 2147483647L);
	if (parse_cookie(req, &user, &last_ad) < 0 || root.len == 0 || root.len > 200 || dir < 0 ||
	    cls < 0 || num < 0 || client < 0)
		return SE_BAD_REQUEST;
	int n = snprintf(p->name, sizeof(p->name), "%.*sdir%05ld/class%ld_%ld", (int)root.len, root.p,
			 dir, cls, num);
	/* The record is appended once the file is read (sw99_finish): a POST naming a missing
	 * file is rejected and never logged. */
	p->post = 1;
	p->dir = dir, p->cls = cls, p->num = num, p->client = client, p->user = user;
	snprintf(p->cookie, sizeof(p->cookie), "Set-Cookie: my_cookie=%ld\r\n", user);
	return wrap_begin(m, req, remote_addr, p->name, (size_t)n, -1, r, p);
}

/* Reset could not write or reload the state files: one line on stderr, then at most one per
 * POSTLOG_REPORT_S (as the post log's own failures). */
static void report_state_failure(struct sw99 *m, int err)
{
	static struct postlog_report r;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (r.err == err && now.tv_sec - r.last < POSTLOG_REPORT_S) {
		r.quiet++;
		return;
	}
	dprintf(STDERR_FILENO, "state files in %s [pid %ld]: Reset failed to write them, answered "
		"500: %s (%lu more since the last line)\n", m->state_dir, (long)getpid(),
		strerror(err), r.quiet);
	r.err = err, r.last = now.tv_sec, r.quiet = 0;
}

static int handle_command(struct sw99 *m, const struct http_request *req, const char *remote_addr,
			  struct response *r)
{
	const char *q = req->query.p + strlen(SW99_COMMAND);
	size_t len = req->query.len - strlen(SW99_COMMAND);
	struct buf log = {0};
	int rc = -1;
	if (starts_with(q, len, SW99_RESET)) {
		struct sw99_reset p;
		size_t skip = strlen(SW99_RESET);
		if (sw99_reset_parse(q + skip, len - skip, &p) < 0)
			return SE_BAD_REQUEST;
		/* The log first: on a full file system shared with the state files, truncating it
		 * is what frees the room the state files need (the other order failed forever). */
		if (postlog_reset(m->postlog) < 0)
			return SE_INTERNAL;
		if (adtables_write(m->state_dir, &p, time(NULL)) < 0 ||
		    adtables_refresh(&m->tables, m->state_dir) < 0) {
			report_state_failure(m, errno);
			return SE_INTERNAL;
		}
	} else if (slice_is(q, len, SW99_FETCH)) {
		if (postlog_fetch(m->postlog, &log) < 0)
			rc = SE_INTERNAL;
	} else {
		return SE_BAD_REQUEST;
	}
	if (rc < 0 && sw99_wrap(&r->body, m->server_name, remote_addr, req->path.p, req->path.len,
				req->query.p, req->query.len, log.data, log.len) < 0)
		rc = SE_INTERNAL;
	buf_free(&log);
	return rc >= 0 ? rc : finish(req->keep_alive, req->minor_version, m, r, "");
}

int sw99_begin(struct sw99 *m, const struct http_request *req, const char *remote_addr,
	       struct response *r, struct sw99_pending *p)
{
	response_free(r);
	p->post = 0;
	switch (sw99_classify(req)) {
	case RT_POST: return handle_post(m, req, remote_addr, r, p);
	case RT_COMMAND: return handle_command(m, req, remote_addr, r);
	case RT_CAD_GET: return handle_cad(m, req, remote_addr, r, p);
	default: return handle_get(m, req, remote_addr, r, p);
	}
}

int sw99_handle(struct sw99 *m, const struct http_request *req, const char *remote_addr,
		struct response *r)
{
	struct sw99_pending p;
	int rc = sw99_begin(m, req, remote_addr, r, &p);
	if (rc != SW99_NEEDS_FILE)
		return rc;
	struct stat st;
	int fd = docroot_open(m->docroot, p.url, p.url_len, &st);
	if (fd < 0)
		return sw99_open_error(fd);
	long got = sw99_read_file(fd, r, &p, (size_t)st.st_size);
	close(fd);
	return sw99_finish(m, &p, r, got);
}
