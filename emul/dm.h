/* dm.h — what the disk model's parts share (see diskmodel.c for the model and its use).
 *
 *   diskmodel.c  arguments, setup, the FUSE session
 *   dm_state.c   the shared state: options, clock, stop flags
 *   dm_nodes.c   the inode table and the FUSE operations other than read
 *   dm_disk.c    reads: the modelled disk's queue and its timing thread
 *   elevator.c   the queue's order: Linux 2.4's elevator_linus (sort, merge, latency bound)
 *   dm_stats.c   counters and the stats file
 */
#ifndef DM_H
#define DM_H

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* ---------------------------------------------------------------- options */

enum elevator_kind { ELV_FIFO, ELV_LINUS };

struct options {
	const char *source, *mountpoint, *stats;
	double seek_ms, mbps, cache_timeout_s, stats_interval_ms;
	double max_background, congestion_threshold, readahead_kb, rt_priority, parent_pid;
	bool start_off;
	enum elevator_kind elevator;
};
extern struct options opt;

/* ---------------------------------------------------------------- time */

int64_t now_ns(void);
extern int64_t t0;                   /* when the daemon started */
extern struct fuse_session *session;
extern atomic_bool disk_stop;        /* set when the loop has ended: the disk stops waiting */
extern atomic_bool model_on;
bool stopping(void);

/* ---------------------------------------------------------------- inodes */

/* A regular file holds no descriptor (the file set has more files than this sandbox's hard
 * RLIMIT_NOFILE of 20,000 allows open): it is opened by its path for each read, which costs
 * microseconds against a 12 ms positioning.  Directories and the rest keep one. */
struct node {
	int fd;     /* O_RDONLY for directories, O_PATH for the rest, -1 for regular files */
	char *path; /* relative to the source ("" for the root) */
	dev_t dev;
	ino_t ino;  /* the backing file's inode: its place on the modelled disk (elevator.c) */
	mode_t mode;
	uint64_t nlookup;
	struct node *next; /* hash chain */
};
extern struct node root_node;
struct node *node_of(fuse_ino_t ino);
ssize_t pread_node(const struct node *n, char *buf, size_t size, off_t off);
void dm_node_ops(struct fuse_lowlevel_ops *ops); /* all but read */

/* ---------------------------------------------------------------- the disk (dm_disk.c) */

void dm_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
int disk_start(void);  /* start the disk thread; 0 or -1 */
void disk_finish(void); /* stop it (queued reads fail with EIO) and join it */
int sched_timing(pthread_t thread, const char *who); /* to SCHED_FIFO --rt-priority; 0 or errno */

/* ---------------------------------------------------------------- counters (dm_stats.c) */

#define SIZE_BUCKETS 10  /* <=4K, <=8K, ... <=1M, larger */
#define DEPTH_BUCKETS 5  /* reads at the disk when one is taken: 1, 2-4, 5-16, 17-64, >64 */

struct by_depth {
	uint64_t reads, sequential, bytes;
	double service_s;
};

extern pthread_mutex_t stats_mu;
extern struct counters {
	uint64_t reads, bytes, seeks, sequential, overruns, direct_reads, read_errors;
	uint64_t merges, sorted_inserts, latency_barriers;
	uint64_t unmodelled_reads, unmodelled_bytes, model_switches;
	uint64_t lookups, negative_lookups, forgets, getattrs, opens, readdirs, inodes;
	uint64_t queue_depth, max_queue_depth, max_read_bytes, late_wakeups, late_10ms;
	uint64_t sizes[SIZE_BUCKETS];
	struct by_depth depth[DEPTH_BUCKETS];
	double busy_s, queue_wait_s, overrun_s, service_s, late_s, late_max_s;
	double queue_depth_s; /* integral of queue_depth over time: its mean per interval */
	int64_t depth_since;  /* when queue_depth last changed (ns) */
	int timing_rt[2];     /* SCHED_FIFO priority held by the loop and the disk thread (0: none) */
} ctr;

extern struct conn_state {
	unsigned max_read, max_readahead, max_write, max_background, congestion_threshold;
	unsigned proto_major, proto_minor;
	bool no_open;
} conn_info;

#define COUNT(field, n)                          \
	do {                                     \
		pthread_mutex_lock(&stats_mu);   \
		ctr.field += (n);                \
		pthread_mutex_unlock(&stats_mu); \
	} while (0)

int size_bucket(size_t n);
int depth_bucket(uint64_t depth);
void queue_depth_add(int delta); /* under stats_mu: the gauge and its integral */
void write_stats(bool final);
void *stats_thread(void *arg);

#endif
