/* ring.c — io_uring set-up, the provided-buffer ring for receives, and counted submission.
 *
 * When io_uring cannot be used we say exactly why and how to fix it; there is no fallback to
 * epoll (that would be a different server).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ktux.h"

/* Linux 6.15 (include/uapi/linux/io_uring.h); liburing 2.3 predates them.  A wait entered with
 * NO_IOWAIT does not set current->in_iowait, so the worker waiting for completions is idle,
 * not "blocked on I/O" (iowait, delay accounting's blkio ticks) — io_uring otherwise marks
 * every wait with requests in flight, and ktux always has some (multishot accept/receive). */
#ifndef IORING_ENTER_NO_IOWAIT
#define IORING_ENTER_NO_IOWAIT (1U << 7)
#endif
#ifndef IORING_FEAT_NO_IOWAIT
#define IORING_FEAT_NO_IOWAIT (1U << 17)
#endif

#define RING_ENTRIES 4096 /* [I] SQ size; the CQ is twice that, and overflow is handled by the kernel */
#define SQPOLL_IDLE_MS 1000

static int read_sysctl(const char *path)
{
	FILE *f = fopen(path, "r");
	int v = -1;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* One line: what stopped io_uring_queue_init and what to do about it. */
static void explain_setup_error(int err, char *out, size_t len)
{
	int disabled = read_sysctl("/proc/sys/kernel/io_uring_disabled");
	if (err == ENOSYS)
		snprintf(out, len, "io_uring unavailable: io_uring_setup is not implemented or blocked by "
			 "seccomp (Docker's default profile); fix: run with --security-opt "
			 "seccomp=unconfined or a kernel built with CONFIG_IO_URING");
	else if (err == EPERM && disabled > 0)
		snprintf(out, len, "io_uring unavailable: kernel.io_uring_disabled=%d; fix: sysctl -w "
			 "kernel.io_uring_disabled=0", disabled);
	else if (err == EPERM)
		snprintf(out, len, "io_uring unavailable: io_uring_setup denied (seccomp, e.g. Docker's "
			 "default profile, or an LSM policy); fix: docker run --security-opt "
			 "seccomp=unconfined, or allow io_uring_setup/io_uring_enter/io_uring_register");
	else if (err == ENOMEM)
		snprintf(out, len, "io_uring unavailable: locked-memory limit too low for the ring; fix: "
			 "ulimit -l unlimited (or raise RLIMIT_MEMLOCK)");
	else
		snprintf(out, len, "io_uring unavailable: io_uring_setup failed: %s", strerror(err));
}

static int setup_uring(struct ring *r, const struct ktux_config *cfg, char *err, size_t errlen)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = 2 * RING_ENTRIES;
	if (cfg->sqpoll) {
		/* TUX-like: submission runs in a kernel thread, the worker only writes the SQ. */
		p.flags |= IORING_SETUP_SQPOLL;
		p.sq_thread_idle = SQPOLL_IDLE_MS;
		if (cfg->sqpoll_cpu >= 0) {
			p.flags |= IORING_SETUP_SQ_AFF;
			p.sq_thread_cpu = (unsigned)cfg->sqpoll_cpu;
		}
	} else {
		/* One issuer, and completion work run only when the worker asks for events: the
		 * kernel does not interrupt the worker to post completions (Linux >= 6.1). */
		p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	}
	int ret = io_uring_queue_init_params(RING_ENTRIES, &r->uring, &p);
	if (ret == -EINVAL && (p.flags & IORING_SETUP_DEFER_TASKRUN)) { /* older kernel */
		p.flags &= ~(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
		ret = io_uring_queue_init_params(RING_ENTRIES, &r->uring, &p);
	}
	if (ret < 0) {
		explain_setup_error(-ret, err, errlen);
		return -1;
	}
	if (!(p.features & IORING_FEAT_FAST_POLL)) {
		snprintf(err, errlen, "io_uring unavailable: kernel lacks IORING_FEAT_FAST_POLL; fix: "
			 "use Linux 5.19 or newer");
		return -1;
	}
	r->sqpoll = cfg->sqpoll;
	r->no_iowait = (p.features & IORING_FEAT_NO_IOWAIT) && !cfg->ring_iowait;
	/* best effort: saves a file lookup per enter */
	r->reg_ring = io_uring_register_ring_fd(&r->uring) == 1;
	return 0;
}

/* The multishot and provided-buffer operations ktux needs (Linux >= 5.19 / 6.0). */
static int check_ops(struct ring *r, char *err, size_t errlen)
{
	static const int need[] = {IORING_OP_ACCEPT, IORING_OP_RECV, IORING_OP_SEND,
				   IORING_OP_SEND_ZC, IORING_OP_OPENAT2, IORING_OP_READ,
				   IORING_OP_MADVISE, IORING_OP_SPLICE, IORING_OP_TIMEOUT,
				   IORING_OP_ASYNC_CANCEL, IORING_OP_SENDMSG};
	struct io_uring_probe *probe = io_uring_get_probe_ring(&r->uring);
	if (!probe) {
		snprintf(err, errlen, "io_uring unavailable: IORING_REGISTER_PROBE failed; fix: use Linux 6.0 or newer");
		return -1;
	}
	int ok = 1;
	for (size_t i = 0; i < sizeof need / sizeof need[0] && ok; i++)
		ok = io_uring_opcode_supported(probe, need[i]);
	io_uring_free_probe(probe);
	if (!ok) {
		snprintf(err, errlen, "io_uring unavailable: the kernel lacks an operation ktux needs "
			 "(send_zc/openat2/splice); fix: use Linux 6.0 or newer");
		return -1;
	}
	return 0;
}

/* The provided-buffer ring (liburing 2.3 has no io_uring_setup_buf_ring: mmap and register). */
static int setup_buf_ring(struct ring *r, char *err, size_t errlen)
{
	r->br_len = RECV_BUFS * sizeof(struct io_uring_buf);
	r->br = mmap(NULL, r->br_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	r->recv_mem = mmap(NULL, (size_t)RECV_BUFS * RECV_BUF_SIZE, PROT_READ | PROT_WRITE,
			   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (r->br == MAP_FAILED || r->recv_mem == MAP_FAILED) {
		snprintf(err, errlen, "cannot map receive buffers: %s", strerror(errno));
		return -1;
	}
	struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)r->br,
				       .ring_entries = RECV_BUFS, .bgid = RECV_GROUP};
	int ret = io_uring_register_buf_ring(&r->uring, &reg, 0);
	if (ret < 0) {
		snprintf(err, errlen, "io_uring unavailable: provided-buffer rings not supported (%s); "
			 "fix: use Linux 5.19 or newer", strerror(-ret));
		return -1;
	}
	io_uring_buf_ring_init(r->br);
	int mask = io_uring_buf_ring_mask(RECV_BUFS);
	for (unsigned i = 0; i < RECV_BUFS; i++)
		io_uring_buf_ring_add(r->br, r->recv_mem + (size_t)i * RECV_BUF_SIZE, RECV_BUF_SIZE,
				      (unsigned short)i, mask, (int)i);
	io_uring_buf_ring_advance(r->br, RECV_BUFS);
	return 0;
}

/* TUX's pool of disk-I/O threads: io-wq's bounded workers run the reads that would block.
 * Unbounded workers (socket work such as splice into a socket) keep the kernel's default. */
static int setup_iowq(struct ring *r, int workers, char *err, size_t errlen)
{
	if (workers <= 0)
		return 0;
	unsigned vals[2] = {(unsigned)workers, 0};
	int ret = io_uring_register_iowq_max_workers(&r->uring, vals);
	if (ret < 0) {
		snprintf(err, errlen, "io_uring: cannot set io-wq workers: %s", strerror(-ret));
		return -1;
	}
	return 0;
}

int ring_open(struct ring *r, const struct ktux_config *cfg, char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	r->br = MAP_FAILED;
	r->recv_mem = MAP_FAILED;
	if (setup_uring(r, cfg, err, errlen) < 0)
		return -1;
	if (check_ops(r, err, errlen) < 0 || setup_buf_ring(r, err, errlen) < 0 ||
	    setup_iowq(r, cfg->iowq_workers, err, errlen) < 0) {
		ring_close(r);
		return -1;
	}
	return 0;
}

void ring_close(struct ring *r)
{
	if (r->uring.ring_fd > 0)
		io_uring_queue_exit(&r->uring);
	if (r->br != MAP_FAILED && r->br)
		munmap(r->br, r->br_len);
	if (r->recv_mem != MAP_FAILED && r->recv_mem)
		munmap(r->recv_mem, (size_t)RECV_BUFS * RECV_BUF_SIZE);
	r->uring.ring_fd = -1;
	r->br = MAP_FAILED;
	r->recv_mem = MAP_FAILED;
}

/* With SQPOLL, a submit enters the kernel only when the poller thread went to sleep. */
static int submit_enters(struct ring *r, unsigned pending)
{
	if (r->sqpoll)
		return (IO_URING_READ_ONCE(*r->uring.sq.kflags) & IORING_SQ_NEED_WAKEUP) != 0;
	return pending > 0;
}

static void count_submit(struct ring *r, int ret, int entered)
{
	if (ret > 0 && r->stats)
		r->stats->ring.submissions += (uint64_t)ret;
	if (entered) {
		r->enter_seq++;
		if (r->stats) {
			r->stats->ring.enters++;
			r->stats->event_waits++;
		}
	}
}

struct io_uring_sqe *ring_sqe(struct ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
	if (!sqe) {
		unsigned pending = io_uring_sq_ready(&r->uring);
		int entered = submit_enters(r, pending);
		count_submit(r, io_uring_submit(&r->uring), entered);
		sqe = io_uring_get_sqe(&r->uring);
	}
	if (!sqe) { /* the kernel refused a full SQ (CQ overflow backpressure): cannot go on */
		fprintf(stderr, "ktux: io_uring submission queue stuck; fix: a larger ring or fewer connections\n");
		exit(1);
	}
	return sqe;
}

/* What liburing's submit does before entering (its flush is internal): publish the queued
 * SQEs in the SQ ring; the number the kernel has not consumed yet. */
static unsigned flush_sq(struct ring *r)
{
	struct io_uring_sq *sq = &r->uring.sq;
	unsigned tail = sq->sqe_tail;
	if (sq->sqe_head != tail) {
		for (unsigned i = sq->sqe_head; i != tail; i++) /* identity, as liburing sets it up */
			sq->array[i & sq->ring_mask] = i & sq->ring_mask;
		sq->sqe_head = tail;
		io_uring_smp_store_release(sq->ktail, tail);
	}
	return tail - IO_URING_READ_ONCE(*sq->khead);
}

/* Submit and wait for one completion in one io_uring_enter, with IORING_ENTER_NO_IOWAIT
 * (liburing 2.3 cannot pass the flag). */
static int submit_and_wait_no_iowait(struct ring *r)
{
	unsigned submit = flush_sq(r);
	unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_NO_IOWAIT;
	int fd = r->uring.ring_fd;
	if (r->sqpoll && (IO_URING_READ_ONCE(*r->uring.sq.kflags) & IORING_SQ_NEED_WAKEUP))
		flags |= IORING_ENTER_SQ_WAKEUP;
	if (r->reg_ring) {
		flags |= IORING_ENTER_REGISTERED_RING;
		fd = r->uring.enter_ring_fd;
	}
	long ret = syscall(__NR_io_uring_enter, fd, submit, 1, flags, NULL, 0);
	return ret < 0 ? -errno : (int)ret;
}

int ring_submit_wait(struct ring *r)
{
	unsigned pending = io_uring_sq_ready(&r->uring);
	int ret;
	if (io_uring_cq_ready(&r->uring) > 0) {
		/* Completions are waiting: hand over new work without blocking. */
		int entered = submit_enters(r, pending);
		ret = io_uring_submit(&r->uring);
		count_submit(r, ret, entered);
	} else {
		/* always one io_uring_enter */
		ret = r->no_iowait ? submit_and_wait_no_iowait(r) : io_uring_submit_and_wait(&r->uring, 1);
		count_submit(r, ret, 1);
	}
	return ret < 0 ? ret : 0;
}

/* A user-module action's kernel crossing: submit what is queued and take in the completions
 * that are ready (GETEVENTS runs the deferred completion work), without waiting. */
void ring_enter(struct ring *r)
{
	unsigned submit = flush_sq(r);
	unsigned flags = IORING_ENTER_GETEVENTS;
	int fd = r->uring.ring_fd;
	if (r->sqpoll && (IO_URING_READ_ONCE(*r->uring.sq.kflags) & IORING_SQ_NEED_WAKEUP))
		flags |= IORING_ENTER_SQ_WAKEUP;
	if (r->sqpoll)
		submit = 0; /* the poller submits */
	if (r->reg_ring) {
		flags |= IORING_ENTER_REGISTERED_RING;
		fd = r->uring.enter_ring_fd;
	}
	long ret = syscall(__NR_io_uring_enter, fd, submit, 0, flags, NULL, 0);
	count_submit(r, ret > 0 ? (int)ret : 0, 1);
}

char *ring_recv_buf(struct ring *r, unsigned bid)
{
	return r->recv_mem + (size_t)bid * RECV_BUF_SIZE;
}

void ring_recycle(struct ring *r, unsigned bid)
{
	io_uring_buf_ring_add(r->br, ring_recv_buf(r, bid), RECV_BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(RECV_BUFS), 0);
	io_uring_buf_ring_advance(r->br, 1);
}
