/* reply.h — a request's reply as userver builds it: routed by ../common/site.c, with the
 * module's reply to a dynamic GET/POST built around its file (sent by sendfile when the file's
 * bytes go out unchanged, paper §4.3).  No socket here: the fuzz harness builds replies the
 * same way (servers/fuzz/site_fuzz.c). */
#ifndef USERVER_REPLY_H
#define USERVER_REPLY_H

#include "../common/site.h"

enum dyn_send { DYN_SENDFILE, DYN_COPY }; /* --dynamic-send */

/* Answer req into r (counted, as site_respond).  1 when r is the module's reply to a dynamic
 * GET/POST (whose write blocks with --dynamic-writes blocking), else 0. */
int reply_build(struct site *s, enum dyn_send mode, const struct http_request *req,
		const char *remote_addr, struct response *r);

#endif
