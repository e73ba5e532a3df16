/* loop.c — the userver event loop: accept (Accept-Inf or N per round), read, parse, respond,
 * send; idle timeouts; drain on SIGTERM.  The loop only dispatches; connection I/O is in
 * conn.c, waiting in the back-ends, request handling in ../common/site.c. */
#include "loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "dynamic.h"
#include "reply.h"

#define LINGER_SECONDS 2

struct loop {
	const struct loop_config *cfg;
	struct site *site;
	struct stats_counters *st;
	void *ev;
	struct conn **conns; /* indexed by fd */
	int conns_cap, nconns;
	int listen_mask;
	struct ev_fired *fired;
	int fired_cap;
	time_t now, last_sweep, drain_deadline;
	int draining;
};

static time_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void set_mask(struct loop *l, int fd, int *cur, int mask)
{
	if (*cur == mask)
		return; /* tell the kernel only what changed */
	if (l->cfg->events->set(l->ev, fd, *cur, mask) < 0)
		l->st->errors[SE_INTERNAL]++;
	*cur = mask;
}

static void accepting(struct loop *l, int on)
{
	if (on && l->listen_mask == 0 && !l->draining)
		set_mask(l, l->cfg->listen_fd, &l->listen_mask, EV_READ);
	else if (!on && l->listen_mask) {
		set_mask(l, l->cfg->listen_fd, &l->listen_mask, 0);
		l->st->paused_accepting++;
	}
}

static void close_conn(struct loop *l, struct conn *c)
{
	set_mask(l, c->fd, &c->mask, 0);
	l->conns[c->fd] = NULL;
	conn_free(c);
	l->nconns--;
	stats_conn_closed(l->st);
	if (l->nconns < l->cfg->max_conns)
		accepting(l, 1);
}

/* After an error response, half-close and discard what the client still sends, so that
 * our close does not turn into a RST that destroys the response before it is read. */
static void linger(struct loop *l, struct conn *c)
{
	shutdown(c->fd, SHUT_WR);
	c->responding = -1;
	c->in_len = 0;
	c->req_start = l->now; /* lingering ends LINGER_SECONDS from here, whatever is sent */
	set_mask(l, c->fd, &c->mask, EV_READ);
}

static int add_conn(struct loop *l, int fd, const struct sockaddr_storage *peer)
{
	if (fd >= l->conns_cap) {
		int cap = l->conns_cap ? l->conns_cap : 1024;
		while (cap <= fd)
			cap *= 2;
		struct conn **p = realloc(l->conns, (size_t)cap * sizeof(*p));
		if (!p)
			return -1;
		memset(p + l->conns_cap, 0, (size_t)(cap - l->conns_cap) * sizeof(*p));
		l->conns = p, l->conns_cap = cap;
	}
	struct conn *c = conn_new(fd, peer, l->now);
	if (!c)
		return -1;
	/* Responses end in a partial segment; without NODELAY Nagle would hold it for an ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	l->conns[fd] = c;
	l->nconns++;
	stats_conn_opened(l->st);
	set_mask(l, fd, &c->mask, EV_READ);
	return 0;
}

/* One accept round: until EAGAIN (Accept-Inf) or accept_count, or the connection limit. */
static void on_accept(struct loop *l)
{
	unsigned n = 0, limit = (unsigned)l->cfg->accept_count;
	while (limit == 0 || n < limit) {
		if (l->nconns >= l->cfg->max_conns) {
			accepting(l, 0); /* the listen backlog holds the rest */
			break;
		}
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(l->cfg->listen_fd, (struct sockaddr *)&peer, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				accepting(l, 0); /* out of descriptors: resumes on a close or the next sweep */
			break;
		}
		if (add_conn(l, fd, &peer) < 0) {
			close(fd);
			l->st->errors[SE_INTERNAL]++;
			break;
		}
		n++;
	}
	stats_accept_round(l->st, n);
}

/* Parse the buffered request; 1 when a response is ready, 0 when more bytes are needed. */
static int begin_response(struct loop *l, struct conn *c)
{
	struct http_request req;
	enum http_error err;
	switch (http_parse(c->in, c->in_len, &req, &err)) {
	case HTTP_INCOMPLETE:
		return 0;
	case HTTP_OK:
		c->dynamic = reply_build(l->site, l->cfg->dyn_send, &req, c->addr, &c->resp);
		c->req_len = req.total_len;
		break;
	case HTTP_ERROR:
		site_respond_error(l->site, err, req.minor_version, &c->resp);
		c->req_len = c->in_len;
		break;
	}
	c->responding = 1;
	return 1;
}

/* Answer buffered requests (pipelined ones in order) until the socket or the buffer runs dry. */
static void serve(struct loop *l, struct conn *c)
{
	for (;;) {
		if (!c->responding && !begin_response(l, c)) {
			set_mask(l, c->fd, &c->mask, EV_READ);
			return;
		}
		enum conn_io io = conn_send(c, l->now, &l->st->bytes_out);
		if (io == IO_AGAIN && c->dynamic) {
			if (l->cfg->dyn_writes == DYN_BLOCKING) { /* the µserver's write: dynamic.c */
				io = dyn_write_blocking(c, l->cfg->idle_timeout, l->st);
				l->now = mono_now();
				if (io == IO_AGAIN) { /* no progress for idle_timeout */
					l->st->errors[SE_TIMEOUT]++;
					close_conn(l, c);
					return;
				}
			} else { /* would have blocked: counted once per reply */
				l->st->dynw.blocked += c->dynamic == 1;
				c->dynamic = 2;
			}
		}
		if (io == IO_AGAIN) {
			set_mask(l, c->fd, &c->mask, EV_WRITE);
			return;
		}
		if (io == IO_ERROR) {
			l->st->errors[SE_RESET]++;
			close_conn(l, c);
			return;
		}
		if (c->dynamic) {
			l->st->dynw.replies++;
			if (c->resp.kind == BODY_FILE)
				l->st->dynw.sendfile_bytes += c->resp.file_len;
		}
		int keep = c->resp.keep_alive && !l->draining, failed = c->resp.status >= 400;
		conn_next(c);
		if (!keep) {
			if (failed)
				linger(l, c);
			else
				close_conn(l, c);
			return;
		}
	}
}

static void on_readable(struct loop *l, struct conn *c)
{
	enum conn_io io = conn_read(c, l->now);
	if (c->responding < 0) { /* lingering: discard until EOF */
		if (io == IO_EOF || io == IO_ERROR)
			close_conn(l, c);
		else
			c->in_len = 0;
		return;
	}
	if (io == IO_EOF && c->in_len > 0) { /* the client gave up mid-request: body too short */
		site_respond_error(l->site, HTTPE_BAD_REQUEST, 1, &c->resp);
		c->req_len = c->in_len;
		c->responding = 1;
		serve(l, c);
	} else if (io == IO_EOF || io == IO_ERROR) {
		if (io == IO_ERROR)
			l->st->errors[SE_RESET]++;
		close_conn(l, c);
	} else if (io == IO_DONE) {
		serve(l, c);
	}
}

static void on_event(struct loop *l, const struct ev_fired *f)
{
	if (f->fd == l->cfg->listen_fd) {
		if (l->listen_mask)
			on_accept(l);
		return;
	}
	struct conn *c = f->fd < l->conns_cap ? l->conns[f->fd] : NULL;
	if (!c)
		return; /* closed earlier in this round */
	if (c->responding > 0)
		serve(l, c);
	else if (f->mask & EV_READ)
		on_readable(l, c);
}

/* Once a second: close connections past their deadline.  [I] A request must arrive whole
 * within idle_timeout of its first byte (a trickle of one byte a minute does not keep it
 * alive); a response must make progress every idle_timeout; an idle keep-alive connection
 * lives idle_timeout; lingering after an error response lasts LINGER_SECONDS. */
static void sweep(struct loop *l)
{
	int idle = l->cfg->idle_timeout;
	for (int fd = 0; fd < l->conns_cap; fd++) {
		struct conn *c = l->conns[fd];
		if (!c)
			continue;
		int lingered = c->responding < 0 && l->now - c->req_start >= LINGER_SECONDS;
		int stalled = (c->responding > 0 && l->now - c->last_active >= idle) ||
			      (c->responding == 0 && c->in_len && l->now - c->req_start >= idle);
		int idle_ka = c->responding == 0 && !c->in_len &&
			      (l->draining || l->now - c->last_active >= idle);
		if (stalled)
			l->st->errors[SE_TIMEOUT]++;
		if (lingered || stalled || idle_ka || (l->draining && c->responding <= 0))
			close_conn(l, c);
	}
	if (l->nconns < l->cfg->max_conns)
		accepting(l, 1);
	l->last_sweep = l->now;
}

static void begin_drain(struct loop *l)
{
	set_mask(l, l->cfg->listen_fd, &l->listen_mask, 0);
	l->draining = 1;
	l->drain_deadline = l->now + LOOP_DRAIN_SECONDS;
	sweep(l); /* closes every connection that is not mid-response */
}

static int loop_init(struct loop *l, const struct loop_config *cfg, struct site *site)
{
	memset(l, 0, sizeof(*l));
	l->cfg = cfg;
	l->site = site;
	l->st = site->mine;
	l->now = l->last_sweep = mono_now();
	l->fired_cap = cfg->max_conns + 16;
	l->fired = calloc((size_t)l->fired_cap, sizeof(*l->fired));
	l->ev = cfg->events->create();
	if (!l->fired || !l->ev)
		return -1;
	accepting(l, 1);
	return 0;
}

static void loop_free(struct loop *l)
{
	for (int fd = 0; fd < l->conns_cap; fd++)
		if (l->conns[fd])
			close_conn(l, l->conns[fd]);
	if (l->ev)
		l->cfg->events->destroy(l->ev);
	free(l->conns);
	free(l->fired);
}

int loop_run(const struct loop_config *cfg, struct site *site)
{
	struct loop l;
	int rc = loop_init(&l, cfg, site) < 0 ? 1 : 0;
	while (rc == 0) {
		if (loop_stop && !l.draining)
			begin_drain(&l);
		if (l.draining && (l.nconns == 0 || l.now >= l.drain_deadline))
			break;
		int n = cfg->events->wait(l.ev, l.fired, l.fired_cap, 1000);
		l.st->event_waits++;
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "userver: %s: %s\n", cfg->events->name, strerror(errno));
			rc = 1;
		}
		l.now = mono_now();
		for (int i = 0; i < n; i++)
			on_event(&l, &l.fired[i]);
		if (l.now != l.last_sweep)
			sweep(&l);
	}
	loop_free(&l);
	return rc;
}
