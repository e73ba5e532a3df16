/* site.c — route a parsed request: static file, SPECweb99 module, or /server-status. */
#include "site.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int path_is(const struct http_request *req, const char *lit)
{
	return req->path.len == strlen(lit) && memcmp(req->path.p, lit, req->path.len) == 0;
}

static int set_state_dir(struct site *s, char *err, size_t errlen)
{
	char tmp[SW99_MAX_PATH];
	const char *dir = s->cfg.state_dir;
	if (!dir) { /* default: the post log's directory */
		snprintf(tmp, sizeof(tmp), "%s", s->cfg.post_log);
		dir = dirname(tmp);
	}
	if (snprintf(s->module.state_dir, sizeof(s->module.state_dir), "%s", dir) >=
	    (int)sizeof(s->module.state_dir)) {
		snprintf(err, errlen, "state directory path too long");
		return -1;
	}
	if (access(s->module.state_dir, W_OK) < 0) {
		snprintf(err, errlen, "state directory %s: %s", s->module.state_dir, strerror(errno));
		return -1;
	}
	return 0;
}

int site_open(struct site *s, const struct site_config *cfg, struct stats *stats, int slot,
	      char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	s->docroot.dirfd = s->postlog.fd = -1;
	s->stats = stats;
	s->mine = &stats->procs[slot];
	s->mine->pid = getpid();
	if (docroot_open_root(&s->docroot, cfg->docroot) < 0) {
		snprintf(err, errlen, "docroot %s: %s", cfg->docroot, strerror(errno));
		return -1;
	}
	if (postlog_open(&s->postlog, cfg->post_log, cfg->post_log_sync) < 0) {
		snprintf(err, errlen, "post log %s: %s", cfg->post_log, strerror(errno));
		return -1;
	}
	s->module.docroot = &s->docroot;
	s->module.postlog = &s->postlog;
	s->module.server_name = cfg->server_name;
	s->module.pid = getpid();
	return set_state_dir(s, err, errlen);
}

void site_close(struct site *s)
{
	docroot_close(&s->docroot);
	postlog_close(&s->postlog);
	adtables_free(&s->module.tables);
}

static const int ERROR_STATUS[SE_COUNT] = {
	[SE_BAD_REQUEST] = 400, [SE_URI_TOO_LONG] = 414, [SE_HEADER_TOO_LARGE] = 431,
	[SE_METHOD] = 405, [SE_NOT_FOUND] = 404, [SE_FORBIDDEN] = 403,
	[SE_LENGTH_REQUIRED] = 411, [SE_PAYLOAD_TOO_LARGE] = 413, [SE_TIMEOUT] = 408,
	[SE_RESET] = 400, [SE_INTERNAL] = 500};

static void fail_as(struct site *s, int keep_alive, int minor_version, int e, struct response *r)
{
	s->mine->errors[e]++;
	int keep = keep_alive && (e == SE_NOT_FOUND || e == SE_FORBIDDEN);
	response_error(r, minor_version, ERROR_STATUS[e], s->cfg.server_name);
	r->keep_alive = keep; /* a clean miss may keep the connection; anything else closes */
	if (keep)
		response_set_head(r, minor_version, r->status, "text/html", r->body.len, "",
				  s->cfg.server_name);
}

static void fail(struct site *s, const struct http_request *req, int e, struct response *r)
{
	fail_as(s, req->keep_alive, req->minor_version, e, r);
}

static int respond_status(struct site *s, const struct http_request *req, struct response *r)
{
	r->kind = BODY_BUF;
	r->keep_alive = req->keep_alive;
	if (stats_json(s->stats, s->cfg.kind, s->cfg.config_json, &r->body) < 0 ||
	    response_set_head(r, req->minor_version, 200, "application/json", r->body.len, "",
			      s->cfg.server_name) < 0)
		return SE_INTERNAL;
	return -1;
}

static int respond_static(struct site *s, const struct http_request *req, struct response *r)
{
	struct stat st;
	int fd = docroot_open(&s->docroot, req->path.p, req->path.len, &st);
	if (fd < 0)
		return fd == -404 ? SE_NOT_FOUND : fd == -400 ? SE_BAD_REQUEST : SE_FORBIDDEN;
	r->kind = BODY_FILE;
	r->fd = fd;
	r->file_off = 0;
	r->file_len = (size_t)st.st_size;
	r->keep_alive = req->keep_alive;
	return response_set_head(r, req->minor_version, 200, "text/plain", r->file_len, "",
				 s->cfg.server_name) < 0 ? SE_INTERNAL : -1;
}

enum site_route site_route(const struct http_request *req)
{
	if (path_is(req, SW99_SCRIPT) || path_is(req, SW99_CGI_SCRIPT))
		return ROUTE_MODULE;
	if (req->method != HTTP_GET)
		return ROUTE_METHOD; /* POST to a static path or /server-status: 405 */
	return path_is(req, "/server-status") ? ROUTE_STATUS : ROUTE_STATIC;
}

/* Count the request; the module's answer (or SW99_NEEDS_FILE with p filled), or a static or
 * status response when p is NULL. */
static int respond(struct site *s, const struct http_request *req, const char *remote_addr,
		   struct response *r, struct sw99_pending *p)
{
	enum site_route route = site_route(req);
	enum req_type type = route == ROUTE_MODULE ? sw99_classify(req)
			     : path_is(req, "/server-status") ? RT_STATUS : RT_STATIC;
	response_free(r);
	s->mine->requests[type]++;
	switch (route) {
	case ROUTE_MODULE:
		return p ? sw99_begin(&s->module, req, remote_addr, r, p)
			 : sw99_handle(&s->module, req, remote_addr, r);
	case ROUTE_METHOD: return SE_METHOD;
	case ROUTE_STATUS: return respond_status(s, req, r);
	case ROUTE_STATIC: break;
	}
	return respond_static(s, req, r);
}

void site_respond_fail(struct site *s, int keep_alive, int minor_version, int e, struct response *r)
{
	fail_as(s, keep_alive, minor_version, e, r);
	stats_response(s->mine, r->status);
}

void site_respond(struct site *s, const struct http_request *req, const char *remote_addr,
		  struct response *r)
{
	int e = respond(s, req, remote_addr, r, NULL);
	if (e >= 0)
		fail(s, req, e, r);
	stats_response(s->mine, r->status);
}

int site_respond_begin(struct site *s, const struct http_request *req, const char *remote_addr,
		       struct response *r, struct sw99_pending *p)
{
	int e = respond(s, req, remote_addr, r, p);
	if (e == SW99_NEEDS_FILE)
		return 1;
	if (e >= 0)
		fail(s, req, e, r);
	stats_response(s->mine, r->status);
	return 0;
}

void site_respond_finish(struct site *s, struct sw99_pending *p, struct response *r, int e)
{
	if (e >= 0)
		fail_as(s, p->keep_alive, p->minor_version, e, r);
	stats_response(s->mine, r->status);
}

void site_respond_error(struct site *s, enum http_error e, int minor_version, struct response *r)
{
	s->mine->errors[stats_error_of(e)]++;
	response_error(r, minor_version, http_error_status(e), s->cfg.server_name);
	stats_response(s->mine, r->status);
}
