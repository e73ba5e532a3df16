/* loop.h — one userver process: an event loop over the shared listening socket. */
#ifndef USERVER_LOOP_H
#define USERVER_LOOP_H

#include <signal.h>

#include "../common/site.h"
#include "events.h"

struct loop_config {
	const struct ev_backend *events;
	int listen_fd;
	int accept_count; /* connections per accept round; 0 = Accept-Inf (until EAGAIN) */
	int max_conns;    /* per process [I]; at the limit stop accepting, the backlog holds the rest */
	int idle_timeout; /* seconds */
	int dyn_send;     /* enum dyn_send: dynamic replies' file by sendfile or copied */
	int dyn_writes;   /* enum dyn_writes: dynamic replies' writes block (the µserver) or not */
};

#define LOOP_DRAIN_SECONDS 2

/* Serve until loop_stop; 0 on a clean drain, 1 when the event mechanism failed. */
int loop_run(const struct loop_config *cfg, struct site *site);

#endif
