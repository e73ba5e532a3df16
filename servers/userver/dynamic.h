/* dynamic.h — the µserver's dynamic path: the module's reply to a dynamic GET/POST built
 * around the file (sent with sendfile when its bytes go out unchanged), and its write, which
 * blocks the process as the µserver's did (paper §4.3). */
#ifndef USERVER_DYNAMIC_H
#define USERVER_DYNAMIC_H

#include "../common/site.h"
#include "conn.h"

enum dyn_send { DYN_SENDFILE, DYN_COPY };        /* --dynamic-send */
enum dyn_writes { DYN_BLOCKING, DYN_NONBLOCKING }; /* --dynamic-writes */

/* Answer the request in c's buffer into c->resp (counted, as site_respond), marking
 * c->dynamic when it is the module's reply to a dynamic GET/POST. */
void dyn_respond(struct site *s, enum dyn_send mode, const struct http_request *req,
		 struct conn *c);

/* The rest of a dynamic reply whose non-blocking write returned IO_AGAIN, written with the
 * socket in blocking mode until it is all sent: IO_DONE, IO_ERROR, or IO_AGAIN when the client
 * took nothing for idle_timeout seconds (SO_SNDTIMEO).  Counts the time in st->dynw. */
enum conn_io dyn_write_blocking(struct conn *c, int idle_timeout, struct stats_counters *st);

#endif
