/* The per-connection state machine of §6.2: take a deck entry → (connect) → send → read the
 * whole reply → validate → log → hold the connection idle until the reply's bytes would have
 * crossed the emulated line (§5.2) → next request, on the same connection while keep-alive
 * requests remain. Every fault is logged under its own error kind and the connection replaced;
 * nothing here stops the run. */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"

#define SCRATCH_SIZE (64 * 1024)
#define CONNECT_BACKOFF_US 10000 /* [I] pause after a failed connect, so a dead server is not a spin */

/* A request counts in the window it *completes* in, whatever phase it started in (design.md,
 * Metrics): [t0, warm_end) is the warm-up, [warm_end, run_end) the measured window. Nothing
 * completes at or after run_end: a reply or fault seen then leaves the request busy, and the
 * worker logs it as in flight at the close (conn_log_inflight). The log's `phase` column keeps
 * the phase a request started in. */
static int started_in_measure(const struct worker *w, const struct conn *c)
{
    return c->t_start >= w->warm_end;
}

static int window_closed(const struct worker *w, uint64_t now)
{
    return now >= w->run_end;
}

/* Keep-alive per §5.1 [I]: a new connection is keep-alive with probability q and then carries a
 * uniform ka_min..ka_max requests; otherwise one. */
static int choose_requests(struct worker *w)
{
    const struct config *cfg = w->cfg;
    if (spec_random(&w->rng) >= w->ka_q)
        return 1;
    w->st.keepalive_conns++;
    return cfg->ka_min + (int)(spec_nrandom(&w->rng) % (cfg->ka_max - cfg->ka_min + 1));
}

static const char *script_for(int type)
{
    return type == T_CGI_GET ? SW99_CGI_SCRIPT : SW99_SCRIPT;
}

/* Build the request for c->cur into c->out (§4.1, §4.5, §4.7). */
static void build_request(struct worker *w, struct conn *c)
{
    const struct config *cfg = w->cfg;
    const struct deck_entry *e = &c->cur;
    const char *host = cfg->servers[c->server].host;
    const char *conn_hdr = c->ka_left > 1 ? "keep-alive" : "close";
    int n;
    if (cfg->url[0]) {
        n = snprintf(c->out, sizeof c->out, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n"
                     "Connection: %s\r\n\r\n", cfg->url, host, conn_hdr);
    } else if (e->type == T_POST) {
        char body[160];
        int bl = snprintf(body, sizeof body, "urlroot=%s/file_set/&dir=%05d&class=%d&num=%d&client=%d",
                          cfg->prefix, e->dir, e->cls, e->file, c->idx);
        n = snprintf(c->out, sizeof c->out, "POST " SW99_SCRIPT " HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n"
                     "Cookie: my_cookie=user_id=%d&last_ad=%d\r\n"
                     "Content-type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n"
                     "Connection: %s\r\n\r\n%s", host, c->user_id, c->last_ad, bl, conn_hdr, body);
    } else {
        snprintf(c->query, sizeof c->query, "%s/file_set/dir%05d/class%d_%d", cfg->prefix, e->dir,
                 e->cls, e->file);
        char cookie[80] = "";
        if (e->type == T_CAD_GET)
            snprintf(cookie, sizeof cookie, "Cookie: my_cookie=user_id=%d&last_ad=%d\r\n",
                     c->user_id, c->last_ad);
        if (e->type == T_STATIC)
            n = snprintf(c->out, sizeof c->out, "GET %s HTTP/1.1\r\n", c->query);
        else
            n = snprintf(c->out, sizeof c->out, "GET %s?%s HTTP/1.1\r\n", script_for(e->type), c->query);
        int m = snprintf(c->out + n, sizeof c->out - (size_t)n, "Host: %s\r\nAccept: */*\r\n%s"
                         "Connection: %s\r\n\r\n", host, cookie, conn_hdr);
        n += m;
    }
    /* Every part is bounded by its flag's length check in main.c; clamp anyway. */
    c->out_len = n < (int)sizeof c->out ? (uint32_t)n : (uint32_t)sizeof c->out - 1;
    c->out_sent = 0;
}

void conn_close(struct worker *w, struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->ka_left = 0;
    c->on_conn = 0;
}

static void log_request(struct worker *w, struct conn *c, int status, enum err_kind err, uint64_t end)
{
    struct log_row row = {
        .t_start_us = c->t_start - w->t0, .t_end_us = end - w->t0, .bytes = c->resp.bytes,
        .conn = c->idx, .type = c->cur.type, .cls = c->cur.cls, .dir = c->cur.dir,
        .file = c->cur.file, .status = status, .ok = err == E_NONE, .error = err,
        .measure = started_in_measure(w, c),
    };
    if (w->cfg->url[0])
        row.cls = row.dir = row.file = -1;
    log_row(&w->log, &row);
    c->busy = 0;
    w->st.all_requests++;
}

static void add_request(struct counts *k, int ok, uint64_t bytes, uint64_t lat_us)
{
    k->requests++;
    k->ok += ok;
    k->errors += !ok;
    k->bytes += bytes;
    k->lat_us += lat_us;
}

/* Log a request completed at `end` (< run_end) and count it in the window `end` lies in. */
static void account(struct worker *w, struct conn *c, int status, enum err_kind err, uint64_t end)
{
    int ok = err == E_NONE;
    uint64_t bytes = c->resp.bytes;
    log_request(w, c, status, err, end);
    if (end < w->warm_end) {
        add_request(&w->st.warmup, ok, bytes, end - c->t_start);
        return;
    }
    w->st.started_in_warmup += !started_in_measure(w, c);
    struct counts *sets[3] = {&w->st.total, &w->st.by_type[c->cur.type], &w->st.by_class[c->cur.cls]};
    for (int i = 0; i < (w->cfg->url[0] ? 2 : 3); i++)
        add_request(sets[i], ok, bytes, end - c->t_start);
    if (!ok)
        w->st.errors_by_kind[err]++;
}

/* A request still busy when the measured window closed at `close`: logged with error inflight,
 * ok 0, t_end_us = the close, the status and bytes received so far; counted in no window. */
void conn_log_inflight(struct worker *w, struct conn *c, uint64_t close)
{
    if (!c->busy)
        return;
    log_request(w, c, c->resp.status, E_INFLIGHT, close);
    w->st.inflight++;
}


/* A failed request: log it, drop the connection, and go on with the next deck entry. */
static void conn_fail(struct worker *w, struct conn *c, enum err_kind err)
{
    uint64_t now = now_us();
    if (window_closed(w, now))
        return; /* in flight at the close */
    account(w, c, c->resp.status, err, now);
    conn_close(w, c);
    if (now >= w->warm_end) {
        c->m_ops++;
        c->m_op_us += now - c->t_start;
    }
    c->state = S_HOLD;
    if (err == E_CONNECT)
        timer_set(&w->heap, &c->timer, now + CONNECT_BACKOFF_US);
    else
        timer_set(&w->heap, &c->timer, now);
}

static void arm_timeout(struct worker *w, struct conn *c)
{
    timer_set(&w->heap, &c->timer, c->t_start + (uint64_t)(w->cfg->timeout_s * 1e6));
}

static void conn_send(struct worker *w, struct conn *c)
{
    while (c->out_sent < c->out_len) {
        ssize_t k = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (k < 0 && errno == EAGAIN) {
            c->state = S_SENDING; /* EPOLLOUT (edge-triggered) resumes us */
            return;
        }
        if (k < 0) {
            conn_fail(w, c, errno == ECONNREFUSED ? E_CONNECT : E_RESET);
            return;
        }
        c->out_sent += (uint32_t)k;
    }
    c->state = S_READING;
}

/* Open a new TCP connection (non-blocking) for the request in c->cur. */
static void conn_open(struct worker *w, struct conn *c)
{
    const struct server_addr *s = &w->cfg->servers[c->server];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(w, c, E_CONNECT);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as the real client (§5.1) */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    w->st.connects++;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        conn_fail(w, c, E_CONNECT);
        return;
    }
    arm_timeout(w, c);
    if (connect(c->fd, (const struct sockaddr *)&s->sa, sizeof s->sa) == 0) {
        conn_send(w, c);
    } else if (errno == EINPROGRESS) {
        c->state = S_CONNECTING;
    } else {
        conn_fail(w, c, E_CONNECT);
    }
}

/* Start the connection's next request: a new deck entry, a new connection when needed. */
void conn_begin(struct worker *w, struct conn *c)
{
    const struct config *cfg = w->cfg;
    uint64_t now = now_us();
    if (window_closed(w, now)) {
        c->state = S_HOLD; /* the run is over: start nothing the log would call in flight */
        return;
    }
    c->cur = cfg->url[0] ? (struct deck_entry){0, 0, T_STATIC, 0} : deck_next(&w->deck);
    if (c->cur.type == T_CAD_GET || c->cur.type == T_POST) {
        /* [I] a fresh user per request, uniform over the users the Reset created. */
        int users = cfg->have_reset ? cfg->maxload : cfg->connections;
        c->user_id = 10000 + (int)(spec_nrandom(&w->rng) % (users > 0 ? users : 1));
    }
    c->t_start = now;
    c->busy = 1;
    c->retried = 0;
    http_resp_reset(&c->resp);
    if (c->fd < 0)
        c->ka_left = choose_requests(w);
    build_request(w, c);
    if (c->fd < 0) {
        conn_open(w, c);
        return;
    }
    arm_timeout(w, c);
    conn_send(w, c);
}

/* The reply is complete: validate, log, then pace (§5.2) or go straight on. */
static void conn_done(struct worker *w, struct conn *c, size_t leftover)
{
    uint64_t now = now_us();
    if (window_closed(w, now))
        return; /* completed after the close: logged as in flight */
    int ad_id = -1;
    struct request_info q = {.e = c->cur, .user_id = c->user_id, .last_ad = c->last_ad,
                             .query = c->query, .url_mode = w->cfg->url[0] != 0};
    enum err_kind err = validate_response(w->cfg, w->ads, &q, &c->resp, &ad_id);
    if (err == E_NONE && leftover)
        err = E_LENGTH; /* more bytes than Content-Length said */
    if (ad_id >= 0)
        c->last_ad = ad_id; /* [I] the next custom-ad request continues from the returned ad */
    if (err != E_NONE) {
        conn_fail(w, c, err);
        return;
    }
    account(w, c, c->resp.status, E_NONE, now);
    uint64_t rated = w->cfg->line_speed > 0
                         ? (uint64_t)((double)c->resp.bytes * 8e6 / w->cfg->line_speed) : 0;
    uint64_t hold_until = c->t_start + rated;
    if (now >= w->warm_end) { /* conformance reads the ops the window counts */
        c->m_ops++;
        c->m_bytes += c->resp.bytes;
        c->m_op_us += hold_until > now ? rated : now - c->t_start; /* time after compensation */
    }
    c->on_conn++;
    if (--c->ka_left <= 0 || c->resp.close)
        conn_close(w, c);
    if (hold_until > now) {
        c->state = S_HOLD;
        timer_set(&w->heap, &c->timer, hold_until);
    } else {
        timer_cancel(&w->heap, &c->timer);
        conn_begin(w, c);
    }
}

/* The server closed an idle keep-alive connection before answering: §5.1 says open a new one
 * and send the request again; only once, so a server that always does it is an error. */
static int retry_on_new_connection(struct worker *w, struct conn *c)
{
    if (c->on_conn == 0 || c->retried || c->resp.bytes > 0)
        return 0;
    int ka_left = c->ka_left;
    conn_close(w, c);
    c->ka_left = ka_left;
    c->retried = 1;
    c->out_sent = 0;
    conn_open(w, c);
    return 1;
}

static void conn_read(struct worker *w, struct conn *c)
{
    for (;;) {
        ssize_t k = recv(c->fd, w->scratch, SCRATCH_SIZE, 0);
        if (k < 0 && errno == EAGAIN)
            return;
        if (k <= 0) {
            if (retry_on_new_connection(w, c))
                return;
            enum err_kind err = k < 0 ? E_RESET : c->resp.hdr_len ? E_LENGTH : E_RESET;
            conn_fail(w, c, err);
            return;
        }
        size_t used = 0;
        int rc = http_feed(&c->resp, w->scratch, (size_t)k, &used, max_response_body());
        if (rc < 0) {
            conn_fail(w, c, (enum err_kind)-rc);
            return;
        }
        if (rc == 1) {
            conn_done(w, c, (size_t)k - used);
            return;
        }
    }
}

/* Readable while idle: the server closed the connection (or sent bytes nobody asked for). */
static void conn_idle_event(struct worker *w, struct conn *c)
{
    ssize_t k = recv(c->fd, w->scratch, SCRATCH_SIZE, 0);
    if (k < 0 && errno == EAGAIN)
        return;
    conn_close(w, c); /* the next request opens a new connection */
}

static void conn_connected(struct worker *w, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        conn_fail(w, c, E_CONNECT);
        return;
    }
    conn_send(w, c);
}

void conn_event(struct worker *w, struct conn *c, uint32_t events)
{
    switch (c->state) {
    case S_CONNECTING:
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            conn_connected(w, c);
        if (c->state == S_READING && (events & (EPOLLIN | EPOLLRDHUP)))
            conn_read(w, c);
        break;
    case S_SENDING:
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            conn_send(w, c);
        if (c->state == S_READING && (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)))
            conn_read(w, c);
        break;
    case S_READING:
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
            conn_read(w, c);
        break;
    case S_HOLD:
        if (c->fd >= 0 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)))
            conn_idle_event(w, c);
        break;
    }
}

void conn_timer(struct worker *w, struct conn *c)
{
    switch (c->state) {
    case S_HOLD:
        conn_begin(w, c);
        break;
    case S_CONNECTING:
        conn_fail(w, c, E_CONNECT);
        break;
    case S_SENDING:
    case S_READING:
        conn_fail(w, c, E_TIMEOUT);
        break;
    }
}
