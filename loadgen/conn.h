/* One simultaneous connection ("load generator" in SPECweb99's words) and the worker thread
 * that drives a share of them from its own epoll instance. */
#ifndef CONN_H
#define CONN_H

#include <pthread.h>
#include <signal.h>

#include "deck.h"
#include "http_client.h"
#include "log.h"
#include "loadgen.h"
#include "timer.h"
#include "validate.h"

enum conn_state { S_HOLD, S_CONNECTING, S_SENDING, S_READING };

struct conn {
    struct timer_node timer;  /* first member: the heap hands back &conn->timer */
    int fd, idx, server;
    enum conn_state state;
    int ka_left;              /* requests still to send on this TCP connection */
    int on_conn;              /* requests completed on this TCP connection */
    int retried;              /* this request was resent after the server closed an idle keep-alive */
    int busy;                 /* a request started and not yet logged: in flight if the run ends */
    int user_id, last_ad;
    struct deck_entry cur;
    uint64_t t_start;         /* op start: connect() for a connection's first request, else send */
    uint32_t out_len, out_sent;
    char out[512];
    char query[176];
    /* Conformance totals (§5.3) of the ops completed in the measured window. */
    uint64_t m_bytes, m_op_us, m_ops;
    struct http_resp resp;
};

struct counts { uint64_t requests, ok, errors, bytes, lat_us; };

/* Totals of the requests *completed* in the measured window, whatever phase they started in
 * (design.md, Metrics); the warm-up's completions and the requests in flight at the close apart. */
struct worker_stats {
    struct counts total, by_type[NTYPES], by_class[NCLASSES];
    uint64_t errors_by_kind[NERRS];
    uint64_t started_in_warmup;      /* of total.requests: started before the window opened */
    struct counts warmup;            /* completed in the warm-up */
    uint64_t inflight;               /* not complete when the measured window closed */
    uint64_t connects, keepalive_conns, all_requests;
};

struct worker {
    int id;
    pthread_t thread;
    const struct config *cfg;
    const struct ad_tables *ads;
    int epfd;
    struct conn *conns;
    int nconns;
    struct timer_heap heap;
    struct deck deck;
    struct spec_rng rng;      /* keep-alive choice, users, first last_ad; apart from the deck */
    double ka_q;              /* probability that a new connection is keep-alive (§5.1) */
    struct req_log log;
    char log_path[600];
    uint64_t t0, warm_end, run_end; /* CLOCK_MONOTONIC µs */
    char *scratch;
    struct worker_stats st;
    char err[700];            /* set when the worker could not run */
};

extern volatile sig_atomic_t loadgen_stop; /* set by SIGINT/SIGTERM */

void conn_begin(struct worker *w, struct conn *c);
void conn_event(struct worker *w, struct conn *c, uint32_t events);
void conn_timer(struct worker *w, struct conn *c);
void conn_close(struct worker *w, struct conn *c);
void conn_log_inflight(struct worker *w, struct conn *c, uint64_t close);

int worker_init(struct worker *w, int id, const struct config *cfg, const struct ad_tables *ads,
                uint64_t t0);
void *worker_run(void *arg);
void worker_free(struct worker *w);

#endif
