/* accept.c — TUX's aggressive accepting.
 *
 * --sched tux (the default): as TUX 2's event_loop (net/tux/main.c: "if (accept_pending(ti))
 * accept_requests(ti)" before process_requests, on every pass and on every re-entry from a
 * user-module action), the worker accepts until the listen queue is empty — accept4 until
 * EAGAIN — each time round its loop when connections are pending (accept_drain).  TUX looked
 * at the queue in the kernel for free; here a multishot poll on the listening socket says
 * when it may be non-empty, so the look costs no system call either.
 *
 * --sched completion: one multishot accept lets the kernel accept every pending connection as
 * it arrives, without a system call per connection; accepts are completions like any other.
 *
 * --max-conns is honoured by pausing: at the limit no accept is armed and the backlog holds
 * new clients until a connection closes, then accepting resumes.  Connections the kernel
 * accepted past the limit anyway (a multishot accept whose cancel was still on its way) are
 * closed at once (counted as errors.internal) [I]: the limit is a hard bound on open
 * connections.
 *
 * Counting: with multishot, one accept round (accept_calls += 1, accept_batches) is one batch of
 * completions reaped together that contained accepts — what the kernel accepted for us between
 * two looks at the ring.  --no-multishot-accept: ACCEPT_DEPTH single-shot accepts in flight [I],
 * each completion a round of one, so accept_calls == accepts as with one accept(2) per call.
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ktux.h"

#define ACCEPT_DEPTH 16

static int conns_free(const struct server *s)
{
	return s->cfg->fe.max_conns - (int)s->st->conns_open;
}

static void arm_multishot(struct server *s)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_multishot_accept(sqe, s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	/* aux: a generation (never 0), so a late final completion of a cancelled arm is told
	 * apart from the arm that replaced it */
	s->accept_gen = (s->accept_gen % 0xfffffe) + 1;
	io_uring_sqe_set_data64(sqe, ud_pack(OP_ACCEPT, s->accept_gen, s->listen_fd));
	s->accept_multishot_armed = 1;
}

static void arm_single(struct server *s)
{
	int want = conns_free(s) - s->accept_single_inflight;
	if (want > ACCEPT_DEPTH - s->accept_single_inflight)
		want = ACCEPT_DEPTH - s->accept_single_inflight;
	for (int i = 0; i < want; i++) {
		struct io_uring_sqe *sqe = ring_sqe(&s->ring);
		io_uring_prep_accept(sqe, s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, ud_pack(OP_ACCEPT, 0, s->listen_fd));
		s->accept_single_inflight++;
	}
}

static void cancel_multishot(struct server *s)
{
	if (!s->accept_multishot_armed)
		return;
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_cancel64(sqe, ud_pack(OP_ACCEPT, s->accept_gen, s->listen_fd), 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, -1));
	s->accept_multishot_armed = 0; /* its final completion may still come */
}

static void arm_listen_poll(struct server *s)
{
	if (s->listen_poll_armed)
		return;
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_poll_multishot(sqe, s->listen_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_LISTEN_POLL, 0, s->listen_fd));
	s->listen_poll_armed = 1;
}

/* The listening socket became readable: connections are pending (accept_drain takes them). */
void accept_polled(struct server *s, struct io_uring_cqe *cqe)
{
	s->listen_ready = 1;
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		s->listen_poll_armed = 0;
		if (!s->accept_paused)
			accept_arm(s);
	}
}

/* TUX's accept_pending() (net/tux/main.c: it reads the listening socket's accept_queue
 * pointer, no lock, no system call) — here, a poll completion since the last EAGAIN, reaped
 * or still in the completion queue.  Measured: an accept4 at every re-entry instead (it
 * locks the listening socket) took ktux from 1,691 to 1,134 replies/s on 100 % dynamic at
 * 500 connections in the emulated regime, a cost TUX did not pay. */
static int accept_pending(struct server *s)
{
	if (s->listen_ready)
		return 1;
	struct io_uring_cqe *cqe;
	unsigned head;
	io_uring_for_each_cqe(&s->ring.uring, head, cqe) {
		if (ud_op(cqe->user_data) == OP_LISTEN_POLL)
			return s->listen_ready = 1;
	}
	return 0;
}

/* --sched tux: when connections are pending, accept until the queue is empty (or
 * --max-conns is reached): one round. */
void accept_drain(struct server *s)
{
	if (s->listen_fd < 0 || s->draining || s->accept_paused || !accept_pending(s))
		return;
	unsigned n = 0;
	for (;;) {
		if (conns_free(s) <= 0) {
			accept_stop(s); /* resumed by the loop once a connection is freed */
			break;
		}
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				s->listen_ready = 0; /* empty: the next connection polls again */
			else
				s->st->errors[SE_INTERNAL]++; /* e.g. EMFILE: try again next round */
			break;
		}
		if (fd >= s->nconns_cap) {
			close(fd);
			s->st->errors[SE_INTERNAL]++;
			continue;
		}
		conn_open(s, fd);
		n++;
	}
	stats_accept_round(s->st, n);
}

/* Start (or resume) accepting when there is room; called after every close too.
 * One multishot wake-up accepts everything queued (up to the backlog), so near the limit
 * [I: fewer free slots than backlog + ACCEPT_DEPTH] ktux switches to single-shot accepts,
 * which never take more than there is room for. */
void accept_arm(struct server *s)
{
	if (s->draining || s->listen_fd < 0)
		return;
	int room = conns_free(s);
	if (room <= 0) {
		accept_stop(s);
		return;
	}
	s->accept_paused = 0;
	if (s->cfg->sched == SCHED_TUX) {
		arm_listen_poll(s);
		return;
	}
	if (!s->cfg->no_multishot_accept && room > s->cfg->fe.backlog + ACCEPT_DEPTH) {
		if (!s->accept_multishot_armed)
			arm_multishot(s);
	} else {
		cancel_multishot(s);
		arm_single(s);
	}
}

/* Pause: cancel the multishot accept (single-shot ones are simply not re-armed). */
void accept_stop(struct server *s)
{
	if (!s->accept_paused && !s->draining)
		s->st->paused_accepting++;
	s->accept_paused = 1;
	cancel_multishot(s);
}

/* 1 when the connection was taken, 0 when it had to be closed at once. */
static int accepted(struct server *s, int fd)
{
	if (conns_free(s) <= 0 || s->draining || fd >= s->nconns_cap) {
		close(fd); /* past the limit while the cancel was on its way */
		s->st->errors[SE_INTERNAL]++;
		return 0;
	}
	conn_open(s, fd);
	if (conns_free(s) <= s->cfg->fe.backlog + ACCEPT_DEPTH)
		accept_arm(s); /* at the limit: pause; near it: single-shot from now on */
	return 1;
}

void accept_done(struct server *s, struct io_uring_cqe *cqe)
{
	uint32_t gen = ud_aux(cqe->user_data);
	int multishot = gen != 0;
	if (!multishot)
		s->accept_single_inflight--;
	if (cqe->res >= 0) {
		int taken = accepted(s, cqe->res);
		if (multishot) {
			/* counted once, with its round, when the batch ends (accept_round_end) */
			s->accepted_this_round += (unsigned)taken;
			s->accept_round_seen = 1;
		} else { /* one operation, one connection: a round of one, like accept(2) */
			stats_accept_round(s->st, (unsigned)taken);
		}
	}
	else if (cqe->res != -ECANCELED && cqe->res != -EINTR)
		s->st->errors[SE_INTERNAL]++;
	else if (multishot)
		s->accept_round_seen = 1; /* a round that took nothing is still a round */
	if (multishot && !(cqe->flags & IORING_CQE_F_MORE) && gen == s->accept_gen)
		s->accept_multishot_armed = 0;
	if (!s->accept_paused)
		accept_arm(s);
}

/* A batch of completions has been handled: with multishot, the accepts it held are one round
 * (what the kernel accepted for us between two looks at the ring). */
void accept_round_end(struct server *s)
{
	if (s->accept_round_seen)
		stats_accept_round(s->st, s->accepted_this_round);
	s->accept_round_seen = 0;
	s->accepted_this_round = 0;
}
