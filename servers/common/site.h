/* site.h — everything one server process serves: routing of a parsed request to the static
 * file path, the SPECweb99 module, or /server-status.  Both servers call site_respond() and
 * then move the response bytes their own way.
 *
 * URL space (docs/interfaces.md): /file_set/... static; /specweb99 and /cgi-bin/specweb99
 * dynamic; /server-status JSON.  Anything else is looked up as a static file.
 */
#ifndef UKWEB_SITE_H
#define UKWEB_SITE_H

#include "docroot.h"
#include "http.h"
#include "postlog.h"
#include "response.h"
#include "specweb99.h"
#include "stats.h"

struct site_config {
	const char *docroot;
	const char *state_dir;   /* NULL: the post log's directory */
	const char *post_log;
	int post_log_sync;
	const char *server_name; /* "userver" / "ktux" by default */
	const char *kind;        /* "userver" | "ktux": the "server" key of /server-status */
	const char *config_json; /* every flag, as a JSON object, for /server-status */
};

struct site {
	struct site_config cfg;
	struct docroot docroot;
	struct postlog postlog;
	struct sw99 module;
	struct stats *stats;          /* shared region */
	struct stats_counters *mine;  /* this process's slot */
};

/* Open the docroot and the post log, set up the module (call in each process after fork).
 * 0, or -1 with a one-line message in err. */
int site_open(struct site *s, const struct site_config *cfg, struct stats *stats, int slot,
	      char *err, size_t errlen);
void site_close(struct site *s);

/* Where a request goes — the one router of both servers (a server that serves static files
 * itself, ktux, asks it first and hands everything but ROUTE_STATIC to site_respond_begin). */
enum site_route {
	ROUTE_STATIC, /* GET of a path under the docroot (any path not named below) */
	ROUTE_MODULE, /* /specweb99, /cgi-bin/specweb99: the SPECweb99 module */
	ROUTE_STATUS, /* GET /server-status */
	ROUTE_METHOD, /* anything but GET on a static path or /server-status: 405 */
};
enum site_route site_route(const struct http_request *req);

/* An error reply for a request already counted (e: enum stat_error): counted as the site's
 * own errors are; keeps the connection only for a clean 404/403 when keep_alive. */
void site_respond_fail(struct site *s, int keep_alive, int minor_version, int e, struct response *r);

/* Route and handle one complete request; counts it in the stats.  Never fails: errors become
 * 4xx/5xx responses.  remote_addr: the client's IP as text. */
void site_respond(struct site *s, const struct http_request *req, const char *remote_addr,
		  struct response *r);

/* The same for a server that reads a dynamic request's file itself (ktux, through io_uring):
 * 0 when r is complete (counted, as site_respond); 1 when the module needs the file described
 * by p first (specweb99.h: open p->url, read it into sw99_file_dst), after which
 * site_respond_finish completes r.  e: sw99_open_error() of a failed open, or sw99_finish()'s
 * result (-1 when the response is good). */
int site_respond_begin(struct site *s, const struct http_request *req, const char *remote_addr,
		       struct response *r, struct sw99_pending *p);
void site_respond_finish(struct site *s, struct sw99_pending *p, struct response *r, int e);

/* A parse error → its error response, counted. */
void site_respond_error(struct site *s, enum http_error e, int minor_version, struct response *r);

#endif
