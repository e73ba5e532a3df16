/* dm_stats.c — the disk model's counters, written as one JSON object to the --stats file
 * (rewritten atomically by rename every --stats-interval-ms, on every model switch and on
 * exit); ukweb.diskmodel reads it and subtracts two samples for the activity in between. */
#include "dm.h"

#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
struct counters ctr;
struct conn_state conn_info;

int size_bucket(size_t n)
{
	int b = 0;
	size_t lim = 4096;
	while (b < SIZE_BUCKETS - 1 && n > lim)
		b++, lim <<= 1;
	return b;
}

static const char *const DEPTH_NAMES[DEPTH_BUCKETS] = { "1", "2-4", "5-16", "17-64", ">64" };

int depth_bucket(uint64_t depth)
{
	return depth <= 1 ? 0 : depth <= 4 ? 1 : depth <= 16 ? 2 : depth <= 64 ? 3 : 4;
}

void queue_depth_add(int delta)
{
	int64_t now = now_ns();
	if (ctr.depth_since)
		ctr.queue_depth_s += (double)ctr.queue_depth * (double)(now - ctr.depth_since) / 1e9;
	ctr.depth_since = now;
	ctr.queue_depth = (uint64_t)((int64_t)ctr.queue_depth + delta);
	if (ctr.queue_depth > ctr.max_queue_depth)
		ctr.max_queue_depth = ctr.queue_depth;
}

static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER;
static bool final_written;

void write_stats(bool final)
{
	if (!opt.stats)
		return;
	pthread_mutex_lock(&write_mu); /* one writer at a time; nothing after the final one */
	if (final_written) {
		pthread_mutex_unlock(&write_mu);
		return;
	}
	final_written = final;
	struct counters c;
	pthread_mutex_lock(&stats_mu);
	queue_depth_add(0); /* the integral up to now */
	c = ctr;
	int64_t at = now_ns(); /* every read answered before this instant is counted */
	pthread_mutex_unlock(&stats_mu);
	char sizes[SIZE_BUCKETS * 32], *p = sizes;
	for (int b = 0; b < SIZE_BUCKETS; b++) {
		if (b < SIZE_BUCKETS - 1)
			p += sprintf(p, "%s\"%d\": %" PRIu64, b ? ", " : "", 4096 << b, c.sizes[b]);
		else
			p += sprintf(p, ", \"larger\": %" PRIu64, c.sizes[b]);
	}
	char depths[DEPTH_BUCKETS * 128];
	p = depths;
	for (int b = 0; b < DEPTH_BUCKETS; b++)
		p += sprintf(p, "%s\"%s\": {\"reads\": %" PRIu64 ", \"sequential\": %" PRIu64
			     ", \"bytes\": %" PRIu64 ", \"service_s\": %.6f}", b ? ", " : "",
			     DEPTH_NAMES[b], c.depth[b].reads, c.depth[b].sequential, c.depth[b].bytes,
			     c.depth[b].service_s);
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.tmp", opt.stats);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		pthread_mutex_unlock(&write_mu);
		return;
	}
	fprintf(f,
		"{\"pid\": %d, \"t\": %.6f, \"mono\": %.6f, \"final\": %s, \"model_on\": %s"
		", \"model_switches\": %" PRIu64
		", \"reads\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"seeks\": %" PRIu64
		", \"sequential\": %" PRIu64 ", \"merges\": %" PRIu64 ", \"sorted_inserts\": %" PRIu64
		", \"latency_barriers\": %" PRIu64
		", \"busy_s\": %.6f, \"service_s\": %.6f"
		", \"queue_wait_s\": %.6f, \"overruns\": %" PRIu64 ", \"overrun_s\": %.6f"
		", \"late_wakeups\": %" PRIu64 ", \"late_10ms\": %" PRIu64
		", \"late_s\": %.6f, \"late_max_s\": %.6f"
		", \"queue_depth\": %" PRIu64 ", \"max_queue_depth\": %" PRIu64
		", \"queue_depth_s\": %.6f, \"by_depth\": {%s}"
		", \"direct_reads\": %" PRIu64 ", \"read_errors\": %" PRIu64
		", \"unmodelled_reads\": %" PRIu64 ", \"unmodelled_bytes\": %" PRIu64
		", \"max_read_bytes\": %" PRIu64 ", \"read_sizes\": {%s}"
		", \"lookups\": %" PRIu64 ", \"negative_lookups\": %" PRIu64 ", \"forgets\": %" PRIu64
		", \"getattrs\": %" PRIu64 ", \"opens\": %" PRIu64 ", \"readdirs\": %" PRIu64
		", \"inodes\": %" PRIu64
		", \"timing\": {\"rt_priority\": %g, \"loop_fifo\": %d, \"disk_fifo\": %d}"
		", \"params\": {\"seek_ms\": %g, \"mbps\": %g, \"cache_timeout_s\": %g"
		", \"max_background\": %g, \"congestion_threshold\": %g, \"readahead_kb\": %g"
		", \"elevator\": \"%s\"}"
		", \"conn\": {\"proto\": \"%u.%u\", \"no_open\": %s, \"max_read\": %u"
		", \"max_readahead\": %u, \"max_write\": %u, \"max_background\": %u"
		", \"congestion_threshold\": %u}}\n",
		(int)getpid(), (at - t0) / 1e9, at / 1e9, final ? "true" : "false",
		atomic_load(&model_on) ? "true" : "false", c.model_switches, c.reads, c.bytes, c.seeks,
		c.sequential, c.merges, c.sorted_inserts, c.latency_barriers, c.busy_s, c.service_s,
		c.queue_wait_s, c.overruns, c.overrun_s, c.late_wakeups, c.late_10ms, c.late_s, c.late_max_s,
		c.queue_depth, c.max_queue_depth, c.queue_depth_s, depths, c.direct_reads,
		c.read_errors, c.unmodelled_reads, c.unmodelled_bytes, c.max_read_bytes, sizes,
		c.lookups, c.negative_lookups, c.forgets, c.getattrs, c.opens, c.readdirs, c.inodes,
		opt.rt_priority, c.timing_rt[0], c.timing_rt[1], opt.seek_ms, opt.mbps,
		opt.cache_timeout_s, opt.max_background, opt.congestion_threshold, opt.readahead_kb,
		opt.elevator == ELV_LINUS ? "linus" : "fifo", conn_info.proto_major,
		conn_info.proto_minor, conn_info.no_open ? "true" : "false", conn_info.max_read,
		conn_info.max_readahead, conn_info.max_write, conn_info.max_background,
		conn_info.congestion_threshold);
	if (fclose(f) == 0)
		rename(tmp, opt.stats);
	else
		unlink(tmp);
	pthread_mutex_unlock(&write_mu);
}

/* The stats thread: the only one that takes SIGUSR1/SIGUSR2 (synchronously); rewrites the
 * stats file every interval and at once after a switch.  It stays an ordinary (CFS) thread:
 * its file writes must never hold up the disk's timing. */
void *stats_thread(void *arg)
{
	(void)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	int64_t interval = (int64_t)(opt.stats_interval_ms * 1e6);
	struct timespec ts = { .tv_sec = interval / 1000000000, .tv_nsec = interval % 1000000000 };
	for (;;) {
		int sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGUSR1 || sig == SIGUSR2) {
			bool on = sig == SIGUSR2;
			if (atomic_exchange(&model_on, on) != on)
				COUNT(model_switches, 1);
		}
		write_stats(false);
	}
	return NULL;
}
