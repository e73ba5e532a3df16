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
 * text.  Returns the stat_error to count, or -1 when it succeeded. */
int sw99_handle(struct sw99 *m, const struct http_request *req, const char *remote_addr,
		struct response *r);

/* The wrapper of §4.2 around body (body may be NULL/0 for Reset). */
int sw99_wrap(struct buf *out, const char *server_name, const char *remote_addr,
	      const char *script, size_t script_len, const char *query, size_t query_len,
	      const char *body, size_t body_len);

#endif
