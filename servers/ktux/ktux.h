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

#include "../common/frontend.h"
#include "../common/http.h"
#include "../common/response.h"
#include "../common/site.h"

/* ---- configuration (main.c) ---- */
struct ktux_config {
	struct frontend fe; /* the flags every server shares (servers/common/frontend.h) */
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

/* ---- user_data: op (8 bits) | aux (24 bits) | fd (32 bits) ----
 * One op per continuation: the dispatcher (loop.c) knows from the op alone which handler
 * takes the completion and whether it held a disk-I/O slot. */
enum op {
	OP_ACCEPT = 1,   /* multishot or single-shot accept (--sched completion); aux: generation */
	OP_LISTEN_POLL,  /* --sched tux: the listening socket became readable */
	OP_RECV,         /* multishot receive into provided buffers */
	OP_SEND,         /* a response's head and buffer (or a file reply's wrapper) */
	OP_SEND_ZC,      /* a cached body by send_zc; aux: the cache entry (and its notification) */
	OP_STATIC_OPEN,  /* a static miss's open */
	OP_STATIC_FILL,  /* a cache entry's pages faulted in (pooled) */
	OP_DYN_OPEN,     /* a dynamic request's file, opened (--module-api direct) */
	OP_DYN_READ,     /* ... read into the reply (pooled) */
	OP_SPLICE_IN,    /* file → pipe (pooled) */
	OP_SPLICE_OUT,   /* pipe → socket */
	OP_COPY_READ,    /* --no-zerocopy: file → bounce buffer (pooled) */
	OP_COPY_SEND,    /* ... bounce buffer → socket */
	OP_MODULE_OPEN,  /* a module's GET_OBJECT: the lookup */
	OP_MODULE_FILL,  /* ... the object's pages faulted in (pooled) */
	OP_MODULE_SEND,  /* a module's SEND_BUFFER, parked on write space */
	OP_TIMER,        /* the periodic tick: deadlines */
	OP_CANCEL,       /* a cancellation's own completion: nothing to do */
	OP_COUNT
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

/* ---- connections ---- */
struct conn;
struct conn_list {
	struct conn *oldest, *newest;
};

/* A connection's life: one state at a time (the receive side — recv_armed, recv_paused,
 * peer_closed — runs beside it, since a client may send while a response goes out).
 *
 *  accept ─► READING ─ request ─┬─ static, cached ──────────────────────────────► SENDING
 *     ▲                         ├─ static, miss ─► OPENING ─┬─ fill ─► FILLING ──► SENDING
 *     │                         │                           └─ too big ─────────► SENDING
 *     │                         ├─ module, direct ─► OPENING ─► READING_FILE ────► SENDING
 *     │                         └─ module, tux ─► MODULE ◄─► OPENING/FILLING (GET_OBJECT)
 *     │                                            ▲  └────► SENDING (SEND_BUFFER)
 *     │                                            └─ FINISH_REQ ─┐
 *     │  SENDING ─ head ─► [SPLICING ─► SENDING_TAIL] ─ all out ─┴┬─ keep-alive ─┘(READING)
 *     └────────────────────────────────────────────────────────────┤
 *                                                                   └─ close ─► LINGERING
 *  any state ─ error, reset, timeout, linger over ─► CLOSING ─ last completion ─► free
 */
enum conn_state {
	ST_READING,      /* waiting for (the rest of) a request */
	ST_OPENING,      /* a file's open in flight (static miss, dynamic, GET_OBJECT) */
	ST_FILLING,      /* its pages being faulted in (cache fill, GET_OBJECT) */
	ST_READING_FILE, /* a dynamic request's file read into the reply (direct) */
	ST_MODULE,       /* TUX's module has the request: in the work FIFO or a step */
	ST_SENDING,      /* the head and buffer (or a file reply's wrapper) going out */
	ST_SPLICING,     /* a file body going out (splice, or the --no-zerocopy copy) */
	ST_SENDING_TAIL, /* a file reply's wrapper tail, after the file */
	ST_LINGERING,    /* sent with Connection: close; waiting for the client's FIN */
	ST_CLOSING,      /* shut down; freed when inflight reaches 0 */
};

struct server;
typedef void (*pool_resume_fn)(struct server *s, struct conn *c);
struct modreq;

struct conn {
	int fd;
	int used;
	enum conn_state state;
	int inflight;    /* operations whose completion is still to come */
	int recv_armed;
	int recv_paused; /* backlog of pipelined input at its cap: receive cancelled */
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
	struct cache_entry *entry; /* sending from a cache entry (after the head in resp.head) */
	struct cache_entry *fill;  /* filling a cache entry (a miss being faulted in) */
	char *bounce;              /* --no-zerocopy: file bytes copied through user memory */
	size_t chunk_len, chunk_sent;
	int file_fd;               /* static miss, dynamic (direct): the open file */
	int pipe[2];               /* splice path */
	size_t file_left, pipe_bytes, pipe_cap;
	off_t file_off;
	uint64_t file_seq;         /* enter_seq when the file op was submitted (punt counting) */
	struct sw99_pending *dyn;  /* a dynamic GET/POST's plan (allocated on first use) */
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
	int room_freed; /* a connection was freed: the loop resumes accepting (accept_arm) */
	int draining;
	uint64_t now_ms, drain_deadline_ms;
	struct conn *fifo_head, *fifo_tail; /* TUX's work queue: requests due a module step */
	struct modreq *modreq_free;         /* module requests to reuse (life.c) */
	int listen_ready; /* --sched tux: connections may be pending (a poll fired since EAGAIN) */
	unsigned pool_busy;                 /* disk reads in flight (pool.c) */
	struct conn *pool_head, *pool_tail; /* ... and those waiting for a slot */
	struct __kernel_timespec tick;
};

/* What a handler leaves for the loop to do next (so that lower files never call up). */
enum next { NEXT_NONE, NEXT_FILE_SENT, NEXT_RESPONSE_SENT };

/* Files, each calling only those listed below it:
 *   loop.c     the worker loop: dispatch, accept-first scheduling, the module's FIFO
 *   accept.c   accepting                          conn.c     receive, parse, route, keep-alive
 *   static.c   static GETs                        dynamic.c  dynamic requests (--module-api direct)
 *   module.c   TUX's user-module API              send.c     sending a response
 *   sendfile.c a file body (splice / copy)        file.c     opening files, page residency
 *   pool.c     the disk-I/O slots                 life.c     opening and closing connections
 *   deadline.c idle and linger lists              ring.c, cache.c
 */
uint64_t now_ms(void);
int server_run(struct server *s);

/* accept.c */
void accept_arm(struct server *s);
void accept_done(struct server *s, struct io_uring_cqe *cqe);
void accept_polled(struct server *s, struct io_uring_cqe *cqe);
void accept_stop(struct server *s);
void accept_round_end(struct server *s);
void accept_drain(struct server *s); /* --sched tux: accept4 until EAGAIN, one round */

/* conn.c */
void conn_recv_done(struct server *s, struct conn *c, struct io_uring_cqe *cqe);
void conn_response_sent(struct server *s, struct conn *c); /* keep-alive, or linger */

/* static.c: static GETs — cache hit, or a miss read through the ring */
void static_begin(struct server *s, struct conn *c, const struct http_request *req);
void static_open_done(struct server *s, struct conn *c, int res);
void static_fill_done(struct server *s, struct conn *c, int res);

/* dynamic.c: the module called from completion handlers (--module-api direct) */
void dyn_begin(struct server *s, struct conn *c, const struct http_request *req, const char *remote);
void dyn_open_done(struct server *s, struct conn *c, int res);
void dyn_read_done(struct server *s, struct conn *c, int res);

/* module.c: TUX's user-module API and work FIFO (--module-api tux) */
void module_request(struct server *s, struct conn *c, const char *raw, const struct http_request *req);
void module_open_done(struct server *s, struct conn *c, int res);
void module_fill_done(struct server *s, struct conn *c, int res);
enum next module_send_done(struct server *s, struct conn *c, int res);
/* The connection at the head of the work FIFO (NULL: empty); its one step, ending in an
 * action: NEXT_RESPONSE_SENT after FINISH_REQ. */
struct conn *module_next(struct server *s);
enum next module_step(struct server *s, struct conn *c);

/* send.c */
void conn_send_response(struct server *s, struct conn *c);
void conn_send_entry(struct server *s, struct conn *c, struct cache_entry *e);
enum next conn_send_done(struct server *s, struct conn *c, struct io_uring_cqe *cqe);
enum next conn_file_sent(struct server *s, struct conn *c);
void conn_zc_notif(struct server *s, struct io_uring_cqe *cqe);

/* sendfile.c: file → pipe → socket with splice, or through a bounce buffer */
enum next splice_start(struct server *s, struct conn *c);
enum next splice_done(struct server *s, struct conn *c, struct io_uring_cqe *cqe);
enum next copy_read_done(struct server *s, struct conn *c, int res);
enum next copy_sent(struct server *s, struct conn *c, int res);

/* file.c: files through the ring */
void file_submit_open(struct server *s, struct conn *c, const char *rel, enum op op);
void file_count_punt(struct server *s, struct conn *c);
/* Are all pages of the mapping [p, p+len) in the page cache (mincore; large: "no")? */
int page_resident(char *p, size_t len);

/* pool.c: TUX's disk-I/O threads */
int pool_take(struct server *s, struct conn *c, pool_resume_fn resume);
void pool_give(struct server *s);

/* life.c: a connection's opening, receive arming, and closing */
void conn_open(struct server *s, int fd);
void conn_arm_recv(struct server *s, struct conn *c);
void conn_pause_recv(struct server *s, struct conn *c);
void conn_resume_recv(struct server *s, struct conn *c);
void conn_linger(struct server *s, struct conn *c);
void conn_abort(struct server *s, struct conn *c, int stat_error);
void conn_op_done(struct server *s, struct conn *c);
void conn_expire(struct server *s);
void module_free(struct server *s, struct conn *c);

/* deadline.c */
void conn_touch(struct server *s, struct conn *c);
void deadline_push(struct server *s, struct conn_list *l, struct conn *c);
void deadline_unlink(struct conn *c);

#endif
