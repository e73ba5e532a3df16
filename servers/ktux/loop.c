/* loop.c — the one worker loop: submit what the handlers queued and wait → for each
 * completion, switch on the operation packed in user_data → repeat.  A periodic timeout on the
 * ring drives the idle-connection scan; SIGTERM drains (no new connections, in-flight
 * responses get at most 2 s) and returns.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ktux.h"

#define TICK_NS 250000000L /* idle-timeout granularity */
#define DRAIN_MS 2000
/* Completions handled per batch: each queues at most a few submissions, so a batch never
 * fills the 4096-entry SQ and the SQ is flushed by the loop, not in the middle of a batch. */
#define REAP_MAX 1024

static volatile sig_atomic_t g_terminate;

static void on_terminate(int sig)
{
	(void)sig;
	g_terminate = 1;
}

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void arm_timer(struct server *s)
{
	s->tick.tv_sec = 0;
	s->tick.tv_nsec = TICK_NS;
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_timeout(sqe, &s->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_TIMER, 0, -1));
}

static void dispatch(struct server *s, struct io_uring_cqe *cqe)
{
	switch (ud_op(cqe->user_data)) {
	case OP_ACCEPT: accept_done(s, cqe); break;
	case OP_RECV: conn_recv_done(s, cqe); break;
	case OP_SEND: conn_send_done(s, cqe); break;
	case OP_SEND_ZC:
		if (cqe->flags & IORING_CQE_F_NOTIF)
			conn_zc_notif(s, cqe);
		else
			conn_send_done(s, cqe);
		break;
	case OP_OPEN: static_open_done(s, cqe); break;
	case OP_READ: static_read_done(s, cqe); break;
	case OP_FILL: static_fill_done(s, cqe); break;
	case OP_SPLICE_IN:
	case OP_SPLICE_OUT: splice_done(s, cqe); break;
	case OP_LISTEN_POLL: accept_polled(s, cqe); break;
	case OP_MODULE_SEND: module_send_done(s, cqe); break;
	case OP_TIMER:
		conn_expire(s);
		arm_timer(s);
		break;
	default: break; /* OP_CANCEL: nothing to do */
	}
}

/* Every completion that is ready; one multishot accept round per batch that contained some. */
static void reap(struct server *s)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&s->ring.uring, head, cqe) {
		dispatch(s, cqe);
		if (++n == REAP_MAX)
			break;
	}
	io_uring_cq_advance(&s->ring.uring, n);
	accept_round_end(s);
}

/* SIGTERM: stop accepting, close idle connections, let busy ones finish without keep-alive. */
static void start_drain(struct server *s)
{
	accept_stop(s);
	s->draining = 1;
	s->drain_deadline_ms = s->now_ms + DRAIN_MS;
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_cancel_fd(sqe, s->listen_fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, -1));
	close(s->listen_fd); /* the ring keeps its own reference until the cancel lands */
	s->listen_fd = -1;
	for (int fd = 0; fd < s->nconns_cap; fd++) {
		struct conn *c = &s->conns[fd];
		if (!c->used || c->closing)
			continue;
		if ((c->phase == PH_IDLE && c->in_len == 0) || c->lingering)
			conn_abort(s, c, -1);
		else
			c->keep_alive = 0;
	}
}

int server_run(struct server *s)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_terminate; /* no SA_RESTART: the wait returns -EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	s->now_ms = now_ms();
	accept_arm(s);
	arm_timer(s);
	for (;;) {
		if (g_terminate && !s->draining)
			start_drain(s);
		if (s->draining && (s->st->conns_open == 0 || s->now_ms >= s->drain_deadline_ms))
			return 0;
		int ret = ring_submit_wait(&s->ring);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			fprintf(stderr, "ktux: io_uring_enter: %s\n", strerror(-ret));
			return 1;
		}
		s->now_ms = now_ms();
		if (s->cfg->sched == SCHED_TUX)
			accept_drain(s); /* TUX's event_loop: accept until the queue is empty, then work */
		reap(s);
		module_run_fifo(s, reap); /* requests due a module step (--module-api tux) */
	}
}
