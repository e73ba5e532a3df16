/* loop.c — the one worker loop, TUX's event_loop (net/tux/main.c): submit what the handlers
 * queued and wait → one pass: accept until the listen queue is empty (--sched tux), handle
 * every completion (the dispatcher: one handler per op), then give each request at the head
 * of the work FIFO its module step (--module-api tux) — and after every step, as TUX's
 * actions jump back into its loop, accept and handle completions again — → repeat.
 * A periodic timeout on the ring drives the deadlines; SIGTERM drains (no new connections,
 * in-flight responses get at most 2 s) and returns.
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

/* What a handler left to do: the file body is out (the wrapper's tail next), the response
 * is out (keep-alive or linger). */
static void follow(struct server *s, struct conn *c, enum next next)
{
	if (next == NEXT_FILE_SENT)
		next = conn_file_sent(s, c);
	if (next == NEXT_RESPONSE_SENT)
		conn_response_sent(s, c);
}

static int pooled(enum op op)
{
	return op == OP_STATIC_FILL || op == OP_DYN_READ || op == OP_SPLICE_IN ||
	       op == OP_COPY_READ || op == OP_MODULE_FILL;
}

static int file_op(enum op op)
{
	return pooled(op) || op == OP_STATIC_OPEN || op == OP_DYN_OPEN || op == OP_MODULE_OPEN;
}

/* A closing connection's completion: give back what it carried. */
static void release(struct server *s, enum op op, struct io_uring_cqe *cqe)
{
	if ((op == OP_STATIC_OPEN || op == OP_DYN_OPEN || op == OP_MODULE_OPEN) && cqe->res >= 0)
		close(cqe->res);
	if (op == OP_RECV && cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER))
		ring_recycle(&s->ring, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
}

static void dispatch(struct server *s, struct io_uring_cqe *cqe)
{
	enum op op = ud_op(cqe->user_data);
	switch (op) { /* completions that are not a connection's */
	case OP_ACCEPT: accept_done(s, cqe); return;
	case OP_LISTEN_POLL: accept_polled(s, cqe); return;
	case OP_TIMER:
		conn_expire(s);
		arm_timer(s);
		return;
	case OP_SEND_ZC:
		if (cqe->flags & IORING_CQE_F_NOTIF) {
			conn_zc_notif(s, cqe); /* the kernel is done with the entry's pages */
			return;
		}
		if (!(cqe->flags & IORING_CQE_F_MORE))
			conn_zc_notif(s, cqe); /* no notification follows: done with them now */
		break;
	case OP_CANCEL:
	case OP_COUNT: return;
	default: break;
	}
	/* The prologue: one operation fewer in flight (a multishot receive only on its last
	 * completion), the disk-I/O slot back, punts counted, and nothing more for a
	 * connection that is closing. */
	struct conn *c = &s->conns[ud_fd(cqe->user_data)];
	if (op != OP_RECV || !(cqe->flags & IORING_CQE_F_MORE)) {
		c->inflight--;
		if (op == OP_RECV)
			c->recv_armed = 0;
	}
	if (pooled(op))
		pool_give(s);
	if (file_op(op))
		file_count_punt(s, c);
	if (c->state == ST_CLOSING) {
		release(s, op, cqe);
		conn_op_done(s, c);
		return;
	}
	enum next next = NEXT_NONE;
	switch (op) {
	case OP_RECV: conn_recv_done(s, c, cqe); break;
	case OP_SEND:
	case OP_SEND_ZC: next = conn_send_done(s, c, cqe); break;
	case OP_STATIC_OPEN: static_open_done(s, c, cqe->res); break;
	case OP_STATIC_FILL: static_fill_done(s, c, cqe->res); break;
	case OP_DYN_OPEN: dyn_open_done(s, c, cqe->res); break;
	case OP_DYN_READ: dyn_read_done(s, c, cqe->res); break;
	case OP_SPLICE_IN:
	case OP_SPLICE_OUT: next = splice_done(s, c, cqe); break;
	case OP_COPY_READ: next = copy_read_done(s, c, cqe->res); break;
	case OP_COPY_SEND: next = copy_sent(s, c, cqe->res); break;
	case OP_MODULE_OPEN: module_open_done(s, c, cqe->res); break;
	case OP_MODULE_FILL: module_fill_done(s, c, cqe->res); break;
	case OP_MODULE_SEND: next = module_send_done(s, c, cqe->res); break;
	default: break;
	}
	follow(s, c, next);
	conn_op_done(s, c); /* the handler may have closed it */
}

/* Every completion that is ready; one multishot accept round per batch that contained some;
 * accepting resumed when a connection was freed at the limit. */
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
	if (s->room_freed) {
		s->room_freed = 0;
		accept_arm(s);
	}
}

/* The work FIFO (--module-api tux): each request at its head gets one module step.  With
 * --sched tux the step's last action re-enters the loop: accept until the queue is empty,
 * then the completions that came in (TUX: "goto eventloop" after GET_OBJECT, SEND_BUFFER,
 * FINISH_REQ). */
static void run_module(struct server *s)
{
	struct conn *c;
	while ((c = module_next(s))) {
		follow(s, c, module_step(s, c));
		conn_op_done(s, c);
		if (s->cfg->sched == SCHED_TUX) {
			s->st->module.reentries++;
			s->st->module.accept_rounds++;
			accept_drain(s);
			reap(s);
		}
	}
}

/* One pass of the loop. */
static void pass(struct server *s)
{
	if (s->cfg->sched == SCHED_TUX)
		accept_drain(s); /* accept until the queue is empty, then the work */
	reap(s);
	run_module(s);
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
		if (!c->used || c->state == ST_CLOSING)
			continue;
		if ((c->state == ST_READING && c->in_len == 0) || c->state == ST_LINGERING)
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
		pass(s);
	}
}
