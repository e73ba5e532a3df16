/* dynamic.h — the µserver's dynamic writes: the module's reply to a dynamic GET/POST (built
 * by reply.c) is written with the socket switched to blocking once its buffer is full, so the
 * process sleeps in the write as the µserver's did (paper §4.3). */
#ifndef USERVER_DYNAMIC_H
#define USERVER_DYNAMIC_H

#include "../common/stats.h"
#include "conn.h"

enum dyn_writes { DYN_BLOCKING, DYN_NONBLOCKING }; /* --dynamic-writes */

/* The rest of a dynamic reply whose non-blocking write returned IO_AGAIN, written with the
 * socket in blocking mode until it is all sent: IO_DONE, IO_ERROR, or IO_AGAIN when the client
 * took nothing for idle_timeout seconds or SIGTERM came LOOP_DRAIN_SECONDS ago.  Counts the
 * reply and the time blocked in st->dynw. */
enum conn_io dyn_write_blocking(struct conn *c, int idle_timeout, struct stats_counters *st);

#endif
