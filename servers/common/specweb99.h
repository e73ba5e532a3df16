/* specweb99.h — the SPECweb99 dynamic module (spec §4), shared by userver and ktux.
 *
 * Like the µserver's statically linked module and TUX's user-space module, it is called
 * in-process with a parsed request and fills in a response; it never touches the socket.
 */
#ifndef UKWEB_SPECWEB99_H
#define UKWEB_SPECWEB99_H

#include <stddef.h>

#include "adtables.h"
#include "docroot.h"
#include "http.h"
#include "postlog.h"
#include "response.h"
#include "stats.h"

#define SW99_MAX_PATH 4096

struct sw99 {
	const struct docroot *docroot;
	char state_dir[SW99_MAX_PATH];
	struct postlog *postlog;
	struct adtables tables;
	const char *server_name; /* SERVER_SOFTWARE in the wrapper */
	long pid;                /* written into post-log records */
};

/* Which dynamic request this is: RT_DYN_GET, RT_CAD_GET, RT_CGI_GET, RT_POST or RT_COMMAND. */
enum req_type sw99_classify(const struct http_request *req);

/* Handle a dynamic request (any of the types above) into r.  remote_addr: the client's IP as
 * text.  Returns the stat_error to count, or -1 when it succeeded.  The file a GET or POST
 * wraps is read here with a blocking pread (userver: blocking is a property of the µserver
 * design); it is sw99_begin + docroot_open + sw99_read_file + sw99_finish. */
int sw99_handle(struct sw99 *m, const struct http_request *req, const char *remote_addr,
		struct response *r);

/* The same in three steps, for a server that reads the file itself (ktux, through io_uring):
 *
 *   rc = sw99_begin(m, req, remote_addr, r, &p);    // SW99_NEEDS_FILE, or done as sw99_handle
 *   ... open p.url (percent-encoded docroot path, as docroot_open takes it); a failure is
 *       sw99_open_error(docroot_open's code); read st_size bytes into
 *       sw99_file_dst(r, &p, st_size), which reserves the room ...
 *   rc = sw99_finish(m, &p, r, got);                // got: bytes read, -1 on a read error
 *
 * Between the steps nothing refers to the request: p holds copies of all that is needed, so
 * the request's buffer may be reused while the file is read.  The bytes are the same as
 * sw99_handle's. */
#define SW99_NEEDS_FILE (-2)
#define SW99_MAX_URL 2048 /* HTTP_MAX_REQUEST_LINE: a query is never longer */

struct sw99_pending {
	char url[SW99_MAX_URL + 1]; /* the file to wrap: a docroot URL path, percent-encoded */
	size_t url_len;
	size_t at;                  /* where its bytes go in r->body */
	size_t size;                /* how many (the file's size, set by the caller) */
	int ad;                     /* custom-ad GET: the ad to substitute, -1 none */
	int keep_alive, minor_version;
	char cookie[96];            /* extra header line(s) of the response, or "" */
	int post;                   /* POST: append the record once the file is read */
	long dir, cls, num, client, user;
	char name[256];             /* POST: the record's file name */
};

int sw99_begin(struct sw99 *m, const struct http_request *req, const char *remote_addr,
	       struct response *r, struct sw99_pending *p);
/* Reserve room for size file bytes at p->at in r->body; the destination, or NULL (no memory). */
char *sw99_file_dst(struct response *r, struct sw99_pending *p, size_t size);
int sw99_finish(struct sw99 *m, struct sw99_pending *p, struct response *r, long got);
/* Read size bytes of fd into sw99_file_dst with a blocking pread: the bytes read, or -1. */
long sw99_read_file(int fd, struct response *r, struct sw99_pending *p, size_t size);

/* A server that sends files itself (userver: "both modules use the sendfile system call",
 * paper §4.3) finishes a reply whose file goes out unchanged (sw99_file_unchanged: every GET
 * and POST but a custom-ad GET that substitutes ads) without reading it: r becomes
 * BODY_FILE, head | body[0, p->at) (the wrapper up to the file) | the file fd (owned by r
 * from here, size bytes) | body[p->at, ...) (the wrapper's tail), the same bytes as
 * sw99_finish's reply.  A POST's record is appended here.  Returns as sw99_finish. */
int sw99_file_unchanged(const struct sw99_pending *p);
int sw99_finish_sendfile(struct sw99 *m, struct sw99_pending *p, struct response *r, int fd,
			 size_t size);
/* docroot_open's -400/-403/-404 as the stat_error to count. */
int sw99_open_error(int rc);

/* The wrapper of §4.2 around body (body may be NULL/0 for Reset). */
int sw99_wrap(struct buf *out, const char *server_name, const char *remote_addr,
	      const char *script, size_t script_len, const char *query, size_t query_len,
	      const char *body, size_t body_len);

#endif
