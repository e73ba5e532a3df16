/* ktux.h — the kernel-style server (TUX model) on io_uring: shared types.
 *
 * One worker thread, one ring.  Every in-flight operation carries its type and owner in the
 * 64-bit user_data (see ud_pack), so the loop is one switch over completion types.
 */
#ifndef KTUX_H
#define KTUX_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "../common/http.h"
#include "../common/response.h"
#include "../common/site.h"

/* ---- configuration (main.c) ---- */
struct ktux_config {
	const char *addr, *docroot, *post_log, *state_dir, *server_name;
	int port, backlog, max_conns, idle_timeout, post_log_sync;
	size_t cache_bytes;
	int iowq_workers;
	int sqpoll, sqpoll_cpu; /* sqpoll_cpu -1: not pinned */
	size_t cache_entry_max;
	int no_cache, no_multishot_accept, no_zerocopy;
	int no_defer_accept; /* TUX's TCP_DEFER_ACCEPT off (main.c) */
	int ring_iowait; /* waits count as iowait, as the kernel does by default (no NO_IOWAIT) */
	int probe;
	enum { API_TUX, API_DIRECT } module_api; /* --module-api: TUX's user-module API (module.c) */
	enum { SCHED_TUX, SCHED_COMPLETION } sched; /* --sched: TUX's accept-first event loop */
	int io_threads; /* --io-threads: disk reads in flight at most (pool.c); 0: unbounded */
};

/* ---- user_data: op (8 bits) | aux (24 bits, e.g. cache entry) | fd (32 bits) ---- */
enum op {
	OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_SEND_ZC, OP_OPEN, OP_READ, OP_SPLICE_IN, OP_SPLICE_OUT,
	OP_TIMER, OP_CANCEL, OP_FILES_UPDATE, OP_FILL,
	OP_LISTEN_POLL, /* --sched tux: the listening socket became readable (wakes the loop) */
	OP_MODULE_SEND, /* a module's SEND_BUFFER waiting for write space (module.c) */
};

static inline uint64_t ud_pack(enum op op, uint32_t aux, int fd)
{
	return ((uint64_t)op << 56) | ((uint64_t)(aux & 0xffffff) << 32) | (uint32_t)fd;
}
static inline enum op ud_op(uint64_t ud) { return (enum op)(ud >> 56); }
static inline uint32_t ud_aux(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffff; }
static inline int ud_fd(uint64_t ud) { return (int)(uint32_t)ud; }

/* ---- the ring (ring.c) ---- */
#define RECV_BUFS 1024       /* provided receive buffers [I]: enough for 1024 requests in flight */
#define RECV_BUF_SIZE 4096   /* one SPECweb99 request is < 300 bytes; larger ones are assembled */
#define RECV_GROUP 0

struct ring {
	struct io_uring uring;
	struct io_uring_buf_ring *br; /* provided-buffer ring for receives */
	char *recv_mem;               /* RECV_BUFS * RECV_BUF_SIZE */
	size_t br_len;
	int sqpoll;
	int no_iowait; /* waits enter with IORING_ENTER_NO_IOWAIT (the kernel offers it, not --ring-iowait) */
	int reg_ring;  /* the ring fd is registered: enter by its index */
	uint64_t enter_seq; /* io_uring_enter calls so far: dates submissions for punt counting */
	struct stats_counters *stats;
};

/* Set up the ring as configured; 0, or -1 with a one-line cause and fix in err. */
int ring_open(struct ring *r, const struct ktux_config *cfg, char *err, size_t errlen);
void ring_close(struct ring *r);
/* A free SQE; submits to make room when the SQ is full (exits with one line if that fails). */
struct io_uring_sqe *ring_sqe(struct ring *r);
/* Submit; wait for one completion when none is ready.  Counts submissions and enters. */
int ring_submit_wait(struct ring *r);
/* One io_uring_enter that submits what is queued and takes in ready completions, never waits. */
void ring_enter(struct ring *r);
/* The receive buffer bid, and giving it back to the kernel. */
char *ring_recv_buf(struct ring *r, unsigned bid);
void ring_recycle(struct ring *r, unsigned bid);

/* ---- the pinned cache (cache.c): files mapped and mlock'd, the page cache's own pages ---- */
struct cache_entry;
struct cache;

/* bytes: the pinned memory; entry_max: the largest file it holds (at most bytes / 4). */
struct cache *cache_create(size_t bytes, size_t entry_max, struct stats_counters *stats);
void cache_destroy(struct cache *c);
/* key: decoded path.  NULL on a miss (counted). */
struct cache_entry *cache_lookup(struct cache *c, const char *key);
/* Map and lock (on fault) len bytes of the open file fd, evicting LRU entries; NULL when it
 * cannot (too big, busy entries fill the cache, mmap/mlock refused).  The pages are then
 * faulted in by the filler (MADV_POPULATE_READ through the ring). */
struct cache_entry *cache_reserve(struct cache *c, const char *key, int fd, size_t len);
void cache_ready(struct cache *c, struct cache_entry *e);   /* the pages are in */
void cache_discard(struct cache *c, struct cache_entry *e); /* a fill failed */
char *cache_data(struct cache_entry *e);
size_t cache_len(const struct cache_entry *e);
size_t cache_map_len(const struct cache_entry *e);
uint32_t cache_id(const struct cache_entry *e);
struct cache_entry *cache_by_id(struct cache *c, uint32_t id);
void cache_get(struct cache_entry *e); /* pin against eviction while a send uses it */
void cache_put(struct cache *c, struct cache_entry *e);
size_t cache_max_entry(const struct cache *c);

/* ---- connections (conn.c, send.c, deadline.c) ---- */
struct conn;
struct conn_list {
	struct conn *oldest, *newest;
};

enum conn_phase {
	PH_IDLE,    /* waiting for (the rest of) a request */
	PH_FILE,    /* a static miss or a dynamic request's file: open/read in flight */
	PH_SENDING, /* a response is being sent */
	PH_MODULE,  /* --module-api tux: the request is TUX's user module's (module.c) */
};

struct server;
typedef void (*pool_resume_fn)(struct server *s, struct conn *c);
struct modreq;

struct conn {
	int fd;
	int used;
	enum conn_phase phase;
	int inflight;  /* operations whose completion is still to come */
	int recv_armed;
	int recv_paused; /* backlog of pipelined input at its cap: receive cancelled (conn.c) */
	int closing;   /* shut down; freed when inflight reaches 0 */
	int lingering; /* response sent with Connection: close; waiting for the client's FIN */
	int peer_closed; /* the client's FIN arrived: no more receives */
	int keep_alive, minor;
	uint64_t last_progress; /* ms; idle timeout counts from here */
	struct conn *older, *newer; /* on one deadline list (idle or linger), oldest first */
	struct conn_list *on;
	char *in;      /* request bytes waiting to be parsed (NULL when parsing in place) */
	size_t in_len, in_cap;
	/* the response in flight */
	struct response resp;
	struct iovec iov[2];
	struct msghdr msg;
	size_t sent, total;
	int tail;                  /* sending a file reply's wrapper tail, after the file (send.c) */
	struct cache_entry *entry; /* sending from a cache entry (after the head in resp.head) */
	struct cache_entry *fill;  /* filling a cache entry (a miss being faulted in) */
	char *bounce;              /* --no-zerocopy: file bytes copied through user memory */
	size_t chunk_len, chunk_sent;
	int file_fd;               /* static miss: the open file */
	int pipe[2];               /* splice path */
	size_t file_left, pipe_bytes, pipe_cap;
	off_t file_off;
	uint64_t file_seq;         /* enter_seq when the file op was submitted (punt counting) */
	struct sw99_pending *dyn;  /* a dynamic GET/POST's plan (allocated on first use) */
	int dyn_active;            /* its file is being opened or read (PH_FILE) */
	struct modreq *mod;        /* --module-api tux: the request in TUX's module path */
	struct conn *fifo_next;    /* on the work FIFO (module.c) */
	struct conn *pool_next;    /* waiting for a disk-I/O slot (pool.c) */
	pool_resume_fn pool_resume;
	uint64_t pool_since_ms;
	char key[DOCROOT_MAX_PATH + 2];
	struct open_how how;
	char remote[48];
};

/* ---- the server (loop.c) ---- */
struct server {
	const struct ktux_config *cfg;
	struct ring ring;
	struct site site;
	struct stats stats;
	struct stats_counters *st;
	struct cache *cache;
	int listen_fd;
	struct conn *conns; /* indexed by fd */
	int nconns_cap;
	struct conn_list idle, linger; /* deadline lists: --idle-timeout, and LINGER_MS */
	int accept_multishot_armed, accept_single_inflight, accept_paused, listen_poll_armed;
	uint32_t accept_gen;
	unsigned accepted_this_round; /* multishot accepts of this batch (accept.c) */
	int accept_round_seen;
	int draining;
	uint64_t now_ms, drain_deadline_ms;
	struct conn *fifo_head, *fifo_tail; /* TUX's work queue: requests due a module step */
	unsigned pool_busy;                 /* disk reads in flight (pool.c) */
	struct conn *pool_head, *pool_tail; /* ... and those waiting for a slot */
	struct __kernel_timespec tick;
};

uint64_t now_ms(void);
int server_run(struct server *s);

/* accept.c */
void accept_arm(struct server *s);
void accept_done(struct server *s, struct io_uring_cqe *cqe);
void accept_stop(struct server *s);
void accept_round_end(struct server *s);
/* --sched tux: accept until the listen queue is empty (accept4 until EAGAIN), one round. */
void accept_drain(struct server *s);
void accept_polled(struct server *s, struct io_uring_cqe *cqe);

/* pool.c: TUX's disk-I/O threads */
int pool_take(struct server *s, struct conn *c, pool_resume_fn resume);
void pool_give(struct server *s);

/* module.c: TUX's user-module API and work FIFO (--module-api tux) */
void module_request(struct server *s, struct conn *c, const char *raw, const struct http_request *req);
void module_open_done(struct server *s, struct conn *c, int fd);
void module_fill_done(struct server *s, struct conn *c, int res);
void module_send_done(struct server *s, struct io_uring_cqe *cqe);
/* Run the work FIFO: each request at its head gets one module step (ending in an action);
 * with --sched tux every action re-enters the loop: an accept round, then reap. */
void module_run_fifo(struct server *s, void (*reap)(struct server *s));
void module_free(struct conn *c);

/* conn.c */
void conn_open(struct server *s, int fd);
void conn_recv_done(struct server *s, struct io_uring_cqe *cqe);
void conn_send_done(struct server *s, struct io_uring_cqe *cqe);
void conn_zc_notif(struct server *s, struct io_uring_cqe *cqe);
void conn_abort(struct server *s, struct conn *c, int stat_error);
void conn_op_done(struct server *s, struct conn *c);
void conn_touch(struct server *s, struct conn *c);
void conn_expire(struct server *s);
void conn_response_sent(struct server *s, struct conn *c);
void conn_parse_input(struct server *s, struct conn *c);
void conn_resume_recv(struct server *s, struct conn *c);

/* deadline.c */
void deadline_unlink(struct conn *c);
void conn_linger(struct server *s, struct conn *c);
void conn_send_response(struct server *s, struct conn *c);
void conn_send_entry(struct server *s, struct conn *c, struct cache_entry *e);
void conn_file_sent(struct server *s, struct conn *c);

/* static.c: static GETs — cache hit, or a miss read through the ring */
void static_begin(struct server *s, struct conn *c, const struct http_request *req);
void static_open_done(struct server *s, struct io_uring_cqe *cqe);
void static_read_done(struct server *s, struct io_uring_cqe *cqe);
void static_fill_done(struct server *s, struct io_uring_cqe *cqe);
void static_error(struct server *s, struct conn *c, int status);
void static_submit_open(struct server *s, struct conn *c, const char *rel);
void static_count_punt(struct server *s, struct conn *c);
/* Are all pages of the mapping [p, p+len) in the page cache (mincore; large: "no")? */
int page_resident(char *p, size_t len);

/* dynamic.c: dynamic GETs/POSTs — the module plans, the file is read through the ring */
void dyn_begin(struct server *s, struct conn *c, const struct http_request *req, const char *remote);
void dyn_open_done(struct server *s, struct conn *c, int fd);
void dyn_read_done(struct server *s, struct conn *c, int res);

/* sendfile.c: file → pipe → socket with splice */
void splice_start(struct server *s, struct conn *c);
void splice_done(struct server *s, struct io_uring_cqe *cqe);
void copy_read_done(struct server *s, struct conn *c, int res);
void copy_send(struct server *s, struct conn *c);
void copy_sent(struct server *s, struct conn *c, int res);

#endif
