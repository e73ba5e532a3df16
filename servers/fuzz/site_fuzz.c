/* site_fuzz.c — libFuzzer target: what one client sends on one connection, through the request
 * path both servers share (servers/common: parser, router, SPECweb99 module, docroot).
 *
 * Each input is handled as userver's loop and ktux's dynamic path handle a receive buffer:
 * parse at its front, answer, move to the next pipelined request; stop at INCOMPLETE, after a
 * parse error, or after a response that closes the connection.  Every request is answered
 * twice, as userver does (reply_build: the module's file sent by sendfile, between the
 * wrapper's head and tail, or read when ads are substituted) and as ktux does
 * (site_respond_begin, the lexical check, openat2 RESOLVE_BENEATH, read, site_respond_finish);
 * the two answers must agree byte for byte on the wire.  Any broken rule aborts, which libFuzzer reports with the input.
 *
 * The rules are the servers' promises to a client (docs/interfaces.md), not the code restated:
 *   - INCOMPLETE only while the request can still fit (a server waits for more bytes only then);
 *   - a complete request is the same when parsed from its own bytes, and every shorter prefix of
 *     it is INCOMPLETE, never an error (TCP may split a request anywhere);
 *   - a parse error is a 4xx that closes; every response has a well-formed head whose
 *     Content-Length is the body's length; a file body is a regular file inside the docroot;
 *   - no descriptor outlives its response.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../common/http.h"
#include "../common/site.h"
#include "../common/stats.h"
#include "../userver/reply.h"

#define REQUIRE(cond)                                                                   \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "site_fuzz: rule broken at %s:%d: %s\n", __FILE__, \
				__LINE__, #cond);                                       \
			abort();                                                        \
		}                                                                       \
	} while (0)

static char base[PATH_MAX]; /* $TMPDIR/ukweb-fuzz-XXXXXX: left behind when a rule breaks */
static char docroot[PATH_MAX];
static size_t docroot_len;
static struct stats stats;
static struct site site;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(path);
}

static void remove_base(void)
{
	site_close(&site);
	nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *rel, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", docroot, rel);
	FILE *f = fopen(path, "w");
	REQUIRE(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* A small docroot: a SPECweb99 directory (class1 with an ad tag), a directory, and links that
 * lead out of it, which no request may follow. */
static void make_docroot(void)
{
	char path[PATH_MAX];
	snprintf(docroot, sizeof(docroot), "%s/docroot", base);
	docroot_len = strlen(docroot);
	REQUIRE(mkdir(docroot, 0755) == 0);
	snprintf(path, sizeof(path), "%s/file_set", docroot);
	REQUIRE(mkdir(path, 0755) == 0);
	snprintf(path, sizeof(path), "%s/file_set/dir00000", docroot);
	REQUIRE(mkdir(path, 0755) == 0);
	for (int cls = 0; cls < 4; cls++)
		for (int num = 0; num < 9; num++) {
			char rel[64];
			snprintf(rel, sizeof(rel), "file_set/dir00000/class%d_%d", cls, num);
			write_file(rel, cls == 1 ? "ad: <!WEB99CAD><IMG SRC=\"/file_set/dir00000/"
						   "class0_0\"><!/WEB99CAD> end\n"
						 : "0123456789abcdef\n");
		}
	write_file("index.txt", "not a SPECweb99 file\n");
	snprintf(path, sizeof(path), "%s/outside", base);
	FILE *f = fopen(path, "w");
	REQUIRE(f && fclose(f) == 0);
	snprintf(path, sizeof(path), "%s/up", docroot);
	REQUIRE(symlink("..", path) == 0);
	snprintf(path, sizeof(path), "%s/out", docroot);
	REQUIRE(symlink("../outside", path) == 0);
	snprintf(path, sizeof(path), "%s/passwd", docroot);
	REQUIRE(symlink("/etc/passwd", path) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	const char *tmp = getenv("TMPDIR");
	snprintf(base, sizeof(base), "%s/ukweb-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	REQUIRE(mkdtemp(base));
	make_docroot();
	char post_log[PATH_MAX], err[256];
	snprintf(post_log, sizeof(post_log), "%s/post.log", base);
	struct site_config cfg = {.docroot = docroot, .post_log = post_log, .server_name = "fuzz",
				  .kind = "userver", .config_json = "{}"};
	REQUIRE(stats_create(&stats, 1, 0) == 0);
	if (site_open(&site, &cfg, &stats, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "site_fuzz: %s\n", err);
		abort();
	}
	atexit(remove_base);
	return 0;
}

static int lowest_free_fd(void)
{
	int fd = fcntl(0, F_DUPFD, 0);
	REQUIRE(fd >= 0);
	close(fd);
	return fd;
}

static int slice_inside(struct http_slice s, const char *p, size_t len)
{
	return s.len == 0 || (s.p >= p && s.p + s.len <= p + len);
}

/* The parser's rules on buf[0..len); the result of parsing all of it. */
static enum http_result parse_checked(const char *buf, size_t len, struct http_request *req,
				      enum http_error *err)
{
	enum http_result r = http_parse(buf, len, req, err);
	if (r == HTTP_INCOMPLETE)
		REQUIRE(len < HTTP_MAX_REQUEST);
	if (r == HTTP_ERROR) {
		int status = http_error_status(*err);
		REQUIRE(*err != HTTPE_NONE && status >= 400 && status < 500);
	}
	if (r != HTTP_OK)
		return r;
	REQUIRE(req->header_len <= req->total_len && req->total_len <= len);
	REQUIRE(req->header_len <= HTTP_MAX_HEADER_BYTES);
	REQUIRE(req->method == HTTP_GET || req->method == HTTP_POST);
	REQUIRE(slice_inside(req->target, buf, req->header_len));
	REQUIRE(slice_inside(req->path, req->target.p, req->target.len));
	REQUIRE(slice_inside(req->query, req->target.p, req->target.len));
	REQUIRE(slice_inside(req->host, buf, req->header_len));
	REQUIRE(slice_inside(req->cookie, buf, req->header_len));
	REQUIRE(req->body.len == (req->content_length > 0 ? (size_t)req->content_length : 0));
	REQUIRE(req->body.len == 0 || req->body.p == buf + req->header_len);
	/* its own bytes alone give the same request ... */
	struct http_request again;
	enum http_error e2;
	REQUIRE(http_parse(buf, req->total_len, &again, &e2) == HTTP_OK);
	REQUIRE(again.total_len == req->total_len && again.target.len == req->target.len &&
		again.keep_alive == req->keep_alive && again.has_cookie == req->has_cookie);
	/* ... and a server that has only part of them waits for the rest (where TCP splits most
	 * interestingly: inside the request line's CRLF, before the blank line, in the body) */
	const char *eol = memmem(buf, req->total_len, "\r\n", 2);
	size_t cuts[] = {req->total_len - 1, req->header_len - 1, req->header_len - 2,
			 (size_t)(eol - buf) + 1, (size_t)(eol - buf), 1};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		if (cuts[i] >= req->total_len)
			continue;
		REQUIRE(http_parse(buf, cuts[i], &again, &e2) == HTTP_INCOMPLETE);
	}
	return r;
}

/* Content-Length of a response head, or -1. */
static long head_length(const struct response *r)
{
	const char *h = memmem(r->head, r->head_len, "\r\nContent-Length: ", 18);
	return h ? strtol(h + 18, NULL, 10) : -1;
}

static void check_response(const struct response *r, int parse_error)
{
	char line[32];
	REQUIRE(r->status >= 200 && r->status <= 599);
	REQUIRE(r->head_len >= 4 && r->head_len <= RESPONSE_HEAD_MAX);
	REQUIRE(memcmp(r->head + r->head_len - 4, "\r\n\r\n", 4) == 0);
	int n = snprintf(line, sizeof(line), " %d ", r->status);
	REQUIRE(memcmp(r->head, "HTTP/1.", 7) == 0 && memcmp(r->head + 8, line, (size_t)n) == 0);
	size_t body = r->kind == BODY_BUF ? r->body.len
		      : r->kind == BODY_FILE ? r->body.len + r->file_len : 0;
	REQUIRE(head_length(r) == (long)body);
	if (parse_error)
		REQUIRE(r->status >= 400 && r->status < 500 && !r->keep_alive);
	if (r->kind != BODY_FILE)
		return;
	char link[64], target[PATH_MAX];
	struct stat st;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", r->fd);
	ssize_t tl = readlink(link, target, sizeof(target) - 1);
	REQUIRE(tl > 0);
	target[tl] = '\0';
	REQUIRE(strncmp(target, docroot, docroot_len) == 0 && target[docroot_len] == '/');
	REQUIRE(fstat(r->fd, &st) == 0 && S_ISREG(st.st_mode));
	REQUIRE(r->file_off + (off_t)r->file_len <= st.st_size);
	REQUIRE(r->file_at <= r->body.len); /* a wrapper around the file: the file goes inside */
}

/* ktux's way: the module plans, the file is opened beneath the docroot and read here. */
static void respond_as_ktux(const struct http_request *req, struct response *r)
{
	struct sw99_pending p;
	if (!site_respond_begin(&site, req, "127.0.0.1", r, &p))
		return;
	char path[DOCROOT_MAX_PATH];
	const char *rel;
	int rc = docroot_relative(p.url, p.url_len, path, sizeof(path), &rel);
	if (rc < 0) {
		site_respond_finish(&site, &p, r, sw99_open_error(rc));
		return;
	}
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
	int fd = (int)syscall(SYS_openat2, site.docroot.dirfd, rel, &how, sizeof(how));
	struct stat st = {0};
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int e = fd < 0 ? (errno == ENOENT || errno == ENOTDIR ? -404 : -403)
			       : S_ISDIR(st.st_mode) ? -403 : -404;
		if (fd >= 0)
			close(fd);
		site_respond_finish(&site, &p, r, sw99_open_error(e));
		return;
	}
	char *dst = sw99_file_dst(r, &p, (size_t)st.st_size);
	long got = dst ? (long)pread(fd, dst, (size_t)st.st_size, 0) : -1;
	close(fd);
	site_respond_finish(&site, &p, r, sw99_finish(&site.module, &p, r, got));
}

static int path_is(const struct http_request *req, const char *lit)
{
	return req->path.len == strlen(lit) && memcmp(req->path.p, lit, req->path.len) == 0;
}

/* A response's body as it goes on the wire (a file body read), into out. */
static void wire_body(const struct response *r, struct buf *out)
{
	if (r->kind == BODY_BUF) {
		REQUIRE(buf_append(out, r->body.data, r->body.len) == 0);
	} else if (r->kind == BODY_FILE) {
		REQUIRE(r->body.len > 0); /* only a wrapped file differs in kind from a copy */
		REQUIRE(buf_append(out, r->body.data, r->file_at) == 0);
		REQUIRE(buf_reserve(out, r->file_len) == 0);
		REQUIRE(pread(r->fd, out->data + out->len, r->file_len, r->file_off) ==
			(ssize_t)r->file_len);
		out->len += r->file_len;
		REQUIRE(buf_append(out, r->body.data + r->file_at, r->body.len - r->file_at) == 0);
	}
}

static int same_bytes(const struct response *a, const struct response *b)
{
	if (a->kind != b->kind) { /* userver's sendfile reply against ktux's copy */
		struct buf wa = {0}, wb = {0};
		wire_body(a, &wa);
		wire_body(b, &wb);
		int same = a->status == b->status && a->head_len == b->head_len &&
			   memcmp(a->head, b->head, a->head_len) == 0 && wa.len == wb.len &&
			   memcmp(wa.data, wb.data, wa.len) == 0;
		buf_free(&wa);
		buf_free(&wb);
		return same;
	}
	return a->status == b->status && a->kind == b->kind && a->head_len == b->head_len &&
	       memcmp(a->head, b->head, a->head_len) == 0 && a->file_len == b->file_len &&
	       (a->kind != BODY_BUF ||
		(a->body.len == b->body.len && memcmp(a->body.data, b->body.data, a->body.len) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd_before = lowest_free_fd();
	/* a copy, so a read past the input is caught by ASan, as in a server's buffer */
	char *buf = malloc(size ? size : 1);
	REQUIRE(buf);
	memcpy(buf, data, size);
	for (size_t used = 0; used < size;) {
		struct http_request req;
		enum http_error err;
		enum http_result pr = parse_checked(buf + used, size - used, &req, &err);
		if (pr == HTTP_INCOMPLETE)
			break;
		struct response a, b;
		response_init(&a);
		response_init(&b);
		if (pr == HTTP_ERROR) {
			site_respond_error(&site, err, req.minor_version, &a);
			check_response(&a, 1);
			response_free(&a);
			break;
		}
		reply_build(&site, DYN_SENDFILE, &req, "127.0.0.1", &a);
		check_response(&a, 0);
		/* one router for both servers (site_route): only a static route is a plain file,
		 * so ktux, which serves ROUTE_STATIC itself, never serves another URL as a file */
		if (a.kind == BODY_FILE && a.body.len == 0)
			REQUIRE(site_route(&req) == ROUTE_STATIC);
		respond_as_ktux(&req, &b);
		check_response(&b, 0);
		/* Status only where the answer may change between the two calls: a custom-ad GET's
		 * choice depends on the clock (expired ads), /server-status counts the first call. */
		int varies = (path_is(&req, "/specweb99") && sw99_classify(&req) == RT_CAD_GET) ||
			     path_is(&req, "/server-status");
		REQUIRE(varies ? a.status == b.status : same_bytes(&a, &b));
		int keep = a.keep_alive;
		response_free(&a);
		response_free(&b);
		used += req.total_len;
		if (!keep)
			break;
	}
	free(buf);
	REQUIRE(lowest_free_fd() == fd_before);
	/* POSTs append to the post log; keep it small between inputs */
	struct stat st;
	if (fstat(site.postlog.fd, &st) == 0 && st.st_size > (1 << 20))
		postlog_reset(&site.postlog);
	return 0;
}
