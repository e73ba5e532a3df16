/* stats.h — the /server-status counters (docs/interfaces.md "Servers: /server-status").
 *
 * One slot of counters per process in a MAP_SHARED anonymous region created before fork, so
 * that whichever process receives GET /server-status can answer for all of them.  Each process
 * writes only its own slot; readers may see a counter one update old, which is fine for
 * monitoring.
 */
#ifndef UKWEB_STATS_H
#define UKWEB_STATS_H

#include <stdint.h>

#include "buf.h"
#include "http.h"
#include "sw99core.h"

/* Request types, in the order of the JSON keys: sw99core's list (RT_STATIC ... RT_STATUS). */
#define RT_ITEM(id, name) RT_##id,
enum req_type { SW99_SERVER_REQUEST_TYPES(RT_ITEM) RT_COUNT };
#undef RT_ITEM

enum stat_error {
	SE_BAD_REQUEST, SE_URI_TOO_LONG, SE_HEADER_TOO_LARGE, SE_METHOD, SE_NOT_FOUND,
	SE_FORBIDDEN, SE_LENGTH_REQUIRED, SE_PAYLOAD_TOO_LARGE, SE_TIMEOUT, SE_RESET,
	SE_INTERNAL, SE_COUNT
};

#define STATS_BATCH_BUCKETS 16 /* accept-batch histogram: 0, 1, 2-3, 4-7, ..., >= 2^14 */
#define STATS_MAX_PROCS 256

struct stats_counters {
	int64_t pid;
	uint64_t requests[RT_COUNT];
	uint64_t responses[3]; /* 2xx, 4xx, 5xx */
	uint64_t errors[SE_COUNT];
	uint64_t bytes_out;
	uint64_t conns_open;
	uint64_t conns_max_seen;
	uint64_t accepts;
	uint64_t accept_calls;
	uint64_t accept_batches[STATS_BATCH_BUCKETS];
	uint64_t event_waits; /* select/poll/epoll_wait calls (userver), io_uring_enter calls (ktux) */
	uint64_t paused_accepting;
	/* userver only (emitted when stats.ktux is 0): dynamic replies' writes (--dynamic-send,
	 * --dynamic-writes).  blocked: replies whose write did not complete at once and, with
	 * blocking writes, blocked the process; block_ns: the time spent blocked in them. */
	struct { uint64_t replies, blocked, block_ns, sendfile_bytes; } dynw;
	/* ktux only (emitted when stats.ktux is set) */
	struct { uint64_t hits, misses, evictions, bytes, entries, limit, entry_max; } cache;
	struct { uint64_t submissions, enters, iowq_punts; int sqpoll, no_iowait; } ring;
	/* the disk-I/O pool (ktux pool.c): reads that waited for a slot, their wait, most busy */
	struct { uint64_t waits, wait_ms, busy_max; } pool;
	/* TUX's user-module API (ktux module.c), by request type: requests handed to the module
	 * and the actions (kernel crossings) they made; hand-backs (user_req_t copies); loop
	 * re-entries from actions and the accept rounds they ran; the module's thread CPU time
	 * (every MODULE_CPU_EVERY-th step timed, scaled: cpu_ns), the worker's (set when the
	 * status is served); requests' waits in the work FIFO. */
	struct {
		uint64_t requests[RT_COUNT], actions[RT_COUNT];
		uint64_t handbacks, reentries, accept_rounds, steps, steps_timed, cpu_timed_ns;
		uint64_t worker_cpu_ns, fifo_waits, fifo_wait_ns;
	} module;
};

struct stats {
	int nprocs;
	int ktux; /* emit the cache/ring objects */
	struct stats_counters *procs; /* nprocs slots, MAP_SHARED */
};

/* Map the shared region (before fork).  0, or -1 with errno. */
int stats_create(struct stats *s, int nprocs, int ktux);
void stats_destroy(struct stats *s);
/* Record one accept round that accepted n connections (n may be 0). */
void stats_accept_round(struct stats_counters *c, unsigned n);
/* Count a response: by class of status and bytes. */
void stats_response(struct stats_counters *c, int status);
void stats_conn_opened(struct stats_counters *c);
void stats_conn_closed(struct stats_counters *c);
/* The error counter for a parse error. */
enum stat_error stats_error_of(enum http_error e);
/* The whole /server-status JSON object; config_json is an already-encoded JSON object. */
int stats_json(const struct stats *s, const char *server, const char *config_json, struct buf *out);

#endif
