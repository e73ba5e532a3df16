/* dm_disk.c — the modelled disk: reads queue here (in elevator.c's order) and one timing
 * thread serves them, one at a time, each answered at its modelled completion.
 *
 * The model runs on its own clock, never on the daemon's:
 *   start  = max(arrival, the modelled disk's previous completion)
 *   end    = start + service,  service = positioning (--seek-ms, unless the read continues the
 *            previous one: same file, offset = the previous read's end) + bytes / --mbps
 * The backing pread is done when the thread takes the read (from the host page cache: tens
 * of µs), then the thread sleeps to `end` (an absolute CLOCK_MONOTONIC deadline) and replies.
 * A reply later than `end` is late; the model's clock does not move for it, so the next
 * queued read still completes at its own modelled time (the daemon catches up) and a late
 * wake-up costs that one reader, never the disk's capacity.  Reported per read:
 *   late_s     reply − end (the reader waited that much more than the model says);
 *   busy_s     the real disk's busy time, reply − max(arrival, previous reply);
 *   overrun_s  busy time beyond the modelled service: max(0, busy − service).  Over a busy
 *              period it adds up to the lateness not caught up, so it grows only while the
 *              daemon stays behind its model (a CPU it cannot get, a slow backing read).
 *
 * [I] Timing that holds at load: the daemon runs on the client CPU beside loadgen and its
 * softirq work.  At nice -10 under CFS its wake-ups were measured late by a busy CPU (see
 * README, the disk model); the timing thread and the loop thread (which takes the kernel's
 * requests, so arrivals are not delayed) run SCHED_FIFO at --rt-priority, which preempts any
 * CFS task at once on wake-up.  Their work is µs per read (a pread, a reply), so they take
 * almost nothing from the CPU they share; the stats thread stays CFS. */
#include "elevator.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t disk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t disk_cv = PTHREAD_COND_INITIALIZER;
static struct elevator elv;
static pthread_t disk_tid;

int sched_timing(pthread_t thread, const char *who)
{
	if (opt.rt_priority <= 0)
		return 0;
	struct sched_param sp = { .sched_priority = (int)opt.rt_priority };
	int err = pthread_setschedparam(thread, SCHED_FIFO, &sp);
	if (err)
		fprintf(stderr, "diskmodel: warning: cannot run the %s thread SCHED_FIFO %d (%s): "
			"its timing may be delayed by a busy CPU\n", who, sp.sched_priority,
			strerror(err));
	return err;
}

/* Sleep until the absolute monotonic time `until`, in slices, so an exiting daemon stops
 * waiting (the signal reaches one thread only). */
static void sleep_until(int64_t until)
{
	for (;;) {
		int64_t left = until - now_ns();
		if (left <= 0 || stopping())
			return;
		int64_t next = left > 20000000 ? now_ns() + 20000000 : until;
		struct timespec ts = { .tv_sec = next / 1000000000, .tv_nsec = next % 1000000000 };
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

/* A read buffer, grown to the largest read served (one for the loop, one for the disk). */
static char *grow(char **buf, size_t *len, size_t size)
{
	if (size > *len) {
		char *b = realloc(*buf, size);
		if (!b)
			return NULL;
		*buf = b, *len = size;
	}
	return *buf;
}

static char *loop_buf;
static size_t loop_buf_len;

void dm_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct node *n = node_of(ino);
	if (!atomic_load(&model_on)) { /* served at once, in the loop thread */
		char *buf = grow(&loop_buf, &loop_buf_len, size);
		ssize_t got = buf ? pread_node(n, buf, size, off) : -1;
		int err = buf ? errno : ENOMEM;
		pthread_mutex_lock(&stats_mu);
		if (got < 0)
			ctr.read_errors++;
		else
			ctr.unmodelled_reads++, ctr.unmodelled_bytes += (uint64_t)got;
		pthread_mutex_unlock(&stats_mu);
		if (got < 0)
			fuse_reply_err(req, err);
		else
			fuse_reply_buf(req, buf, (size_t)got);
		return;
	}
	struct job *j = malloc(sizeof *j);
	if (!j) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	*j = (struct job){ .req = req, .node = n, .size = size, .off = off, .arrival = now_ns(),
			   .direct = fi && (fi->flags & O_DIRECT) };
	pthread_mutex_lock(&disk_mu);
	struct elv_result r = elv_add(&elv, j);
	pthread_cond_signal(&disk_cv);
	pthread_mutex_unlock(&disk_mu);
	pthread_mutex_lock(&stats_mu);
	queue_depth_add(1);
	ctr.merges += r.how == ELV_BACK_MERGE || r.how == ELV_FRONT_MERGE;
	ctr.sorted_inserts += r.how == ELV_SORTED;
	ctr.latency_barriers += r.barrier;
	pthread_mutex_unlock(&stats_mu);
}

/* The modelled disk: one request at a time, replies sent from here. */
static void *disk_thread(void *arg)
{
	(void)arg;
	char *buf = NULL;
	size_t buf_len = 0;
	int64_t model_free = 0; /* when the modelled disk finished its last read */
	int64_t last_reply = 0; /* when the real one did */
	const struct node *head_node = NULL; /* where the head is: the end of the last read */
	off_t head_end = -1;
	for (;;) {
		pthread_mutex_lock(&disk_mu);
		while (!elv.head && !atomic_load(&disk_stop))
			pthread_cond_wait(&disk_cv, &disk_mu);
		struct job *j = elv_next(&elv);
		size_t depth = elv.n + (j != NULL); /* at the disk when this one is taken */
		pthread_mutex_unlock(&disk_mu);
		if (!j)
			break; /* stopping, queue empty */
		if (stopping()) { /* exiting: fail what is left rather than make it wait */
			fuse_reply_err(j->req, EIO);
			free(j);
			pthread_mutex_lock(&stats_mu);
			queue_depth_add(-1);
			pthread_mutex_unlock(&stats_mu);
			continue;
		}

		int64_t start = j->arrival > model_free ? j->arrival : model_free;
		bool seq = j->node == head_node && j->off == head_end;
		char *b = grow(&buf, &buf_len, j->size);
		ssize_t got = b ? pread_node(j->node, b, j->size, j->off) : -1;
		int err = !b ? ENOMEM : got < 0 ? errno : 0;
		size_t moved = got > 0 ? (size_t)got : 0;
		int64_t service = (seq ? 0 : (int64_t)(opt.seek_ms * 1e6)) +
				  (int64_t)((double)moved / (opt.mbps * 1e6) * 1e9);
		int64_t end = start + service;
		model_free = end;
		sleep_until(end);
		int64_t reply = now_ns();
		int64_t late = reply > end && !stopping() ? reply - end : 0;
		int64_t real_start = j->arrival > last_reply ? j->arrival : last_reply;
		int64_t busy = reply - real_start;
		int64_t over = busy > service ? busy - service : 0;
		last_reply = reply;
		head_node = j->node;
		head_end = j->off + (off_t)moved;

		pthread_mutex_lock(&stats_mu); /* counted before the reply: a snapshot taken after
						 * a reader got its data includes its read */
		queue_depth_add(-1);
		if (got < 0) {
			ctr.read_errors++;
		} else {
			ctr.reads++;
			ctr.bytes += moved;
			ctr.direct_reads += j->direct;
			if (seq)
				ctr.sequential++;
			else
				ctr.seeks++;
			ctr.sizes[size_bucket(moved)]++;
			if (moved > ctr.max_read_bytes)
				ctr.max_read_bytes = moved;
			struct by_depth *d = &ctr.depth[depth_bucket(depth)];
			d->reads++, d->sequential += seq, d->bytes += moved;
			d->service_s += service / 1e9;
		}
		ctr.busy_s += busy / 1e9;
		ctr.service_s += service / 1e9;
		ctr.queue_wait_s += (start - j->arrival) / 1e9;
		if (over > 0)
			ctr.overruns++, ctr.overrun_s += over / 1e9;
		ctr.late_s += late / 1e9;
		ctr.late_wakeups += late > 1000000;
		ctr.late_10ms += late > 10000000;
		if (late / 1e9 > ctr.late_max_s)
			ctr.late_max_s = late / 1e9;
		pthread_mutex_unlock(&stats_mu);
		if (got < 0 || !b)
			fuse_reply_err(j->req, err);
		else
			fuse_reply_buf(j->req, b, moved);
		free(j);
	}
	free(buf);
	return NULL;
}

int disk_start(void)
{
	elv.kind = opt.elevator;
	if (pthread_create(&disk_tid, NULL, disk_thread, NULL))
		return -1;
	int err = sched_timing(disk_tid, "disk"); /* before the mount: no read is served before */
	pthread_mutex_lock(&stats_mu);
	ctr.timing_rt[1] = err || opt.rt_priority <= 0 ? 0 : (int)opt.rt_priority;
	pthread_mutex_unlock(&stats_mu);
	return 0;
}

void disk_finish(void)
{
	atomic_store(&disk_stop, true);
	pthread_mutex_lock(&disk_mu);
	pthread_cond_signal(&disk_cv);
	pthread_mutex_unlock(&disk_mu);
	pthread_join(disk_tid, NULL);
	free(loop_buf);
}
