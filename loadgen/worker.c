/* A worker thread: its own epoll instance, timer heap, deck and log part, driving every
 * connection whose index ≡ id (mod threads). Workers share nothing while running. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "conn.h"

/* Set by main's SIGINT/SIGTERM handler; every worker stops at its next wake-up. */
volatile sig_atomic_t loadgen_stop;

#define MAX_EVENTS 1024

/* q = p / (m - p(m-1)) turns the share of keep-alive *requests* p into the probability that a
 * connection is keep-alive, for m requests per keep-alive connection on average (§5.1). */
static double keepalive_probability(const struct config *cfg)
{
    double p = cfg->keepalive_pct, m = (cfg->ka_min + cfg->ka_max) / 2.0;
    if (p <= 0)
        return 0;
    return p / (m - p * (m - 1));
}

int worker_init(struct worker *w, int id, const struct config *cfg, const struct ad_tables *ads,
                uint64_t t0)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->cfg = cfg;
    w->ads = ads;
    w->t0 = t0;
    w->warm_end = t0 + (uint64_t)(cfg->warmup_s * 1e6);
    w->run_end = w->warm_end + (uint64_t)(cfg->duration_s * 1e6);
    w->ka_q = keepalive_probability(cfg);
    /* [I] the side generator gets its own seed so the deck sequence depends on --seed alone. */
    w->rng.val = (int32_t)((cfg->seed * 7919u + 104729u + 256u * (uint32_t)id) % 2147483647u) | 1;
    w->nconns = (cfg->connections - id + cfg->threads - 1) / cfg->threads;
    w->conns = calloc((size_t)(w->nconns ? w->nconns : 1), sizeof *w->conns);
    w->scratch = malloc(64 * 1024);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    snprintf(w->log_path, sizeof w->log_path, "%s/requests.part%d.csv.gz", cfg->out, id);
    if (!w->conns || !w->scratch || w->epfd < 0 || timer_heap_init(&w->heap, w->nconns + 1) ||
        /* [I] per-thread deck seeds follow the manager's SRANDOM 2331 + 256*client (§2). */
        deck_init(&w->deck, cfg->seed + 256u * (uint32_t)id, cfg->dirs, cfg->shares) ||
        log_open(&w->log, w->log_path, id == 0)) {
        snprintf(w->err, sizeof w->err, "worker %d: out of memory or cannot open %s", id, w->log_path);
        return -1;
    }
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        c->fd = -1;
        c->timer.pos = -1;
        c->idx = id + i * cfg->threads;
        c->server = c->idx % cfg->nservers;
        c->last_ad = (int)(spec_nrandom(&w->rng) % NADS); /* [I] random first last_ad (§6.2) */
    }
    return 0;
}

static void fire_timers(struct worker *w, uint64_t now)
{
    struct timer_node *t;
    while ((t = timer_peek(&w->heap)) && t->deadline <= now) {
        timer_cancel(&w->heap, t);
        conn_timer(w, (struct conn *)t); /* timer is the first member of struct conn */
    }
}

static int wait_ms(const struct worker *w, uint64_t now)
{
    const struct timer_node *t = timer_peek(&w->heap);
    uint64_t until = t && t->deadline < w->run_end ? t->deadline : w->run_end;
    if (until <= now)
        return 0;
    uint64_t ms = (until - now + 999) / 1000;
    return ms > 100 ? 100 : (int)ms; /* wake at least every 100 ms to notice a signal */
}

void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct epoll_event ev[MAX_EVENTS];
    for (int i = 0; i < w->nconns; i++)
        conn_begin(w, &w->conns[i]);
    for (;;) {
        uint64_t now = now_us();
        if (now >= w->run_end || loadgen_stop)
            break;
        fire_timers(w, now);
        int n = epoll_wait(w->epfd, ev, MAX_EVENTS, wait_ms(w, now_us()));
        for (int i = 0; i < n; i++)
            conn_event(w, ev[i].data.ptr, ev[i].events);
    }
    /* The measured window closes at run_end (earlier on a signal): every request still busy
     * is logged as in flight, none dropped (design.md, Metrics). */
    uint64_t close = now_us();
    if (close > w->run_end)
        close = w->run_end;
    for (int i = 0; i < w->nconns; i++) {
        conn_log_inflight(w, &w->conns[i], close);
        conn_close(w, &w->conns[i]);
    }
    if (log_close(&w->log) != 0)
        snprintf(w->err, sizeof w->err, "writing %s failed", w->log_path);
    return NULL;
}

void worker_free(struct worker *w)
{
    if (w->log.gz) /* a worker that never ran */
        log_close(&w->log);
    if (w->epfd > 0)
        close(w->epfd);
    timer_heap_free(&w->heap);
    deck_free(&w->deck);
    free(w->conns);
    free(w->scratch);
}
