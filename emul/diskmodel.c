/* diskmodel — a read-only FUSE view of a directory that costs what the paper's disk cost.
 *
 * The paper served a file set 3-9 times its memory from one 7200 RPM IDE disk, where a random
 * read paid ~12 ms of positioning (seek + half a rotation) plus transfer at ~40 MB/s, one
 * request at a time.  This kernel has no dm-delay/null_blk/ublk, so the file set is served
 * through FUSE instead, and every read that reaches the daemon (a page-cache miss: cache hits
 * never leave the kernel) is one request to a modelled disk:
 *
 *   - one at a time: start = max(arrival, when the disk became free); the next request is the
 *     one continuing the last read when it is queued (an elevator), else the oldest (FIFO);
 *   - service = positioning (--seek-ms, unless the read continues the previous one: same file,
 *     offset == the previous read's end) + bytes / rate (--mbps, 1 MB = 10^6 bytes);
 *   - the backing pread is done at start, then the reply waits until start + service; a backing
 *     read slower than that is an overrun (counted; the disk is then busy until it ends).
 *
 * Only reads queue.  One loop thread takes the kernel's requests in the kernel's order and
 * answers lookups, attributes and directories at once (the kernel caches them for
 * --cache-timeout-s); a read is appended to the disk's queue, which one disk thread serves, so
 * the FIFO is the kernel's order (daemon threads racing for the disk would reorder a file's
 * adjacent readahead requests and turn sequential reads into seeks).  Opens never reach the
 * daemon (no-open support: the kernel then keeps every file's page cache across opens), so a
 * warm read costs what any page-cache hit costs.  O_DIRECT opens work and are modelled like
 * any other read.
 *
 *   diskmodel --source DIR --mountpoint DIR [--seek-ms 12] [--mbps 40] [--stats FILE]
 *             [--stats-interval-ms 100] [--model off] [--cache-timeout-s 86400]
 *             [--max-background 64] [--readahead-kb N] [--elevator on|off]
 *
 * Prints "ready" on stdout once the mount is live.  SIGUSR1 switches the latency model off
 * (reads are served at once, for pre-warming a cache), SIGUSR2 back on.  The counters go to
 * the --stats file as one JSON object, rewritten atomically (rename) every interval, on every
 * switch and on exit.  SIGTERM/SIGINT: unmount and exit 0.  A setup failure is one stderr
 * line naming the cause and the fix, exit 2 (bad argument) or 1 (refused), nothing mounted.
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- options */

static struct {
	const char *source, *mountpoint, *stats;
	double seek_ms, mbps, cache_timeout_s, stats_interval_ms;
	double max_background, readahead_kb;
	bool start_off, elevator;
} opt = {
	.seek_ms = 12, .mbps = 40, .cache_timeout_s = 86400, .stats_interval_ms = 100,
	.max_background = 64, .readahead_kb = 0, .elevator = true,
};

static const char USAGE[] =
	"usage: diskmodel --source DIR --mountpoint DIR [--seek-ms MS (0..1000, default 12)] "
	"[--mbps R (0.01..100000, default 40)] [--stats FILE] [--stats-interval-ms 10..10000] "
	"[--model on|off] [--elevator on|off] [--cache-timeout-s S] [--max-background 1..65535] "
	"[--readahead-kb 0..65536 (0 = kernel default)]";

static int usage(const char *why, const char *arg)
{
	fprintf(stderr, "diskmodel: %s%s%s; %s\n", why, arg ? ": " : "", arg ? arg : "", USAGE);
	return 2;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

/* 0 on success, else the exit code after printing one line. */
static int parse_args(int argc, char **argv)
{
	static const struct {
		const char *name;
		double *slot, lo, hi;
	} nums[] = {
		{ "--seek-ms", &opt.seek_ms, 0, 1000 },
		{ "--mbps", &opt.mbps, 0.01, 100000 },
		{ "--cache-timeout-s", &opt.cache_timeout_s, 0, 1e9 },
		{ "--stats-interval-ms", &opt.stats_interval_ms, 10, 10000 },
		{ "--max-background", &opt.max_background, 1, 65535 },
		{ "--readahead-kb", &opt.readahead_kb, 0, 65536 },
	};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			printf("%s\n", USAGE);
			exit(0);
		}
		if (i + 1 >= argc)
			return usage("missing value for", a);
		const char *v = argv[++i];
		if (!strcmp(a, "--source")) {
			opt.source = v;
		} else if (!strcmp(a, "--mountpoint")) {
			opt.mountpoint = v;
		} else if (!strcmp(a, "--stats")) {
			opt.stats = v;
		} else if (!strcmp(a, "--model")) {
			if (strcmp(v, "on") && strcmp(v, "off"))
				return usage("--model takes on or off, not", v);
			opt.start_off = !strcmp(v, "off");
		} else if (!strcmp(a, "--elevator")) {
			if (strcmp(v, "on") && strcmp(v, "off"))
				return usage("--elevator takes on or off, not", v);
			opt.elevator = !strcmp(v, "on");
		} else {
			size_t k = 0, n = sizeof nums / sizeof nums[0];
			while (k < n && strcmp(a, nums[k].name))
				k++;
			if (k == n)
				return usage("unknown argument", a);
			if (parse_num(v, nums[k].lo, nums[k].hi, nums[k].slot) < 0) {
				char what[96];
				snprintf(what, sizeof what, "bad value for %s (range %g..%g)", a,
					 nums[k].lo, nums[k].hi);
				return usage(what, v);
			}
		}
	}
	if (!opt.source || !opt.mountpoint)
		return usage("--source and --mountpoint are required", NULL);
	return 0;
}

/* ---------------------------------------------------------------- time */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct fuse_session *session;
static int64_t t0;
static atomic_bool disk_stop; /* set when the loop has ended: the disk stops waiting */

/* Sleep until the absolute monotonic time `until`, in slices, so an exiting daemon stops
 * waiting (the signal reaches one thread only). */
static void sleep_until(int64_t until)
{
	for (;;) {
		int64_t left = until - now_ns();
		if (left <= 0 || atomic_load(&disk_stop) || (session && fuse_session_exited(session)))
			return;
		int64_t next = left > 20000000 ? now_ns() + 20000000 : until;
		struct timespec ts = { .tv_sec = next / 1000000000, .tv_nsec = next % 1000000000 };
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

/* ---------------------------------------------------------------- counters */

#define SIZE_BUCKETS 10 /* <=4K, <=8K, ... <=1M, larger */

static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static struct counters {
	uint64_t reads, bytes, seeks, sequential, overruns, direct_reads, read_errors, elevator_picks;
	uint64_t unmodelled_reads, unmodelled_bytes, model_switches;
	uint64_t lookups, negative_lookups, forgets, getattrs, opens, readdirs, inodes;
	uint64_t queue_depth, max_queue_depth, max_read_bytes, late_wakeups;
	uint64_t sizes[SIZE_BUCKETS];
	double busy_s, queue_wait_s, overrun_s, service_s, late_s;
} ctr;
static atomic_bool model_on = true;

static struct {
	unsigned max_read, max_readahead, max_write, max_background, congestion_threshold;
	unsigned proto_major, proto_minor;
	bool no_open;
} conn_info;

static int size_bucket(size_t n)
{
	int b = 0;
	size_t lim = 4096;
	while (b < SIZE_BUCKETS - 1 && n > lim)
		b++, lim <<= 1;
	return b;
}

#define COUNT(field, n)                          \
	do {                                     \
		pthread_mutex_lock(&stats_mu);   \
		ctr.field += (n);                \
		pthread_mutex_unlock(&stats_mu); \
	} while (0)

/* The whole state as one JSON object, written to path.tmp and renamed over path. */
static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER;
static bool final_written;

static void write_stats(bool final)
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
		", \"sequential\": %" PRIu64 ", \"elevator_picks\": %" PRIu64
		", \"busy_s\": %.6f, \"service_s\": %.6f"
		", \"queue_wait_s\": %.6f, \"overruns\": %" PRIu64 ", \"overrun_s\": %.6f"
		", \"late_wakeups\": %" PRIu64 ", \"late_s\": %.6f"
		", \"queue_depth\": %" PRIu64 ", \"max_queue_depth\": %" PRIu64
		", \"direct_reads\": %" PRIu64 ", \"read_errors\": %" PRIu64
		", \"unmodelled_reads\": %" PRIu64 ", \"unmodelled_bytes\": %" PRIu64
		", \"max_read_bytes\": %" PRIu64 ", \"read_sizes\": {%s}"
		", \"lookups\": %" PRIu64 ", \"negative_lookups\": %" PRIu64 ", \"forgets\": %" PRIu64
		", \"getattrs\": %" PRIu64 ", \"opens\": %" PRIu64 ", \"readdirs\": %" PRIu64
		", \"inodes\": %" PRIu64
		", \"params\": {\"seek_ms\": %g, \"mbps\": %g, \"cache_timeout_s\": %g"
		", \"max_background\": %g, \"readahead_kb\": %g}"
		", \"conn\": {\"proto\": \"%u.%u\", \"no_open\": %s, \"max_read\": %u"
		", \"max_readahead\": %u, \"max_write\": %u, \"max_background\": %u"
		", \"congestion_threshold\": %u}}\n",
		(int)getpid(), (at - t0) / 1e9, at / 1e9, final ? "true" : "false",
		atomic_load(&model_on) ? "true" : "false", c.model_switches, c.reads, c.bytes, c.seeks,
		c.sequential, c.elevator_picks, c.busy_s, c.service_s, c.queue_wait_s, c.overruns, c.overrun_s,
		c.late_wakeups, c.late_s,
		c.queue_depth, c.max_queue_depth, c.direct_reads, c.read_errors, c.unmodelled_reads,
		c.unmodelled_bytes, c.max_read_bytes, sizes, c.lookups, c.negative_lookups, c.forgets,
		c.getattrs, c.opens, c.readdirs, c.inodes, opt.seek_ms, opt.mbps, opt.cache_timeout_s,
		opt.max_background, opt.readahead_kb, conn_info.proto_major,
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
 * stats file every interval and at once after a switch. */
static void *stats_thread(void *arg)
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

/* ---------------------------------------------------------------- inodes */

/* [I] A regular file holds no descriptor (the file set has more files than this sandbox's
 * hard RLIMIT_NOFILE of 20,000 allows open): it is opened by its path for each read, which
 * costs microseconds against a 12 ms positioning.  Directories and the rest keep one. */
struct node {
	int fd;     /* O_RDONLY for directories, O_PATH for the rest, -1 for regular files */
	char *path; /* relative to the source ("" for the root) */
	dev_t dev;
	ino_t ino;
	mode_t mode;
	uint64_t nlookup;
	struct node *next; /* hash chain */
};

#define NBUCKETS 65536
static struct node root_node;
static struct node *table[NBUCKETS];
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

static struct node *node_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &root_node : (struct node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct node *n)
{
	return n == &root_node ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static unsigned bucket(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;
	return (unsigned)(h >> 48) % NBUCKETS;
}

/* Find the node of (dev, ino) and count one lookup; NULL when it is not known. */
static struct node *find_locked(dev_t dev, ino_t ino)
{
	if (root_node.dev == dev && root_node.ino == ino)
		return &root_node;
	for (struct node *n = table[bucket(dev, ino)]; n; n = n->next)
		if (n->dev == dev && n->ino == ino)
			return n;
	return NULL;
}

static void forget_one(fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n = node_of(ino);
	if (n == &root_node)
		return;
	pthread_mutex_lock(&table_mu);
	n->nlookup = nlookup >= n->nlookup ? 0 : n->nlookup - nlookup;
	bool gone = n->nlookup == 0;
	if (gone) {
		struct node **pp = &table[bucket(n->dev, n->ino)];
		while (*pp != n)
			pp = &(*pp)->next;
		*pp = n->next;
	}
	pthread_mutex_unlock(&table_mu);
	if (gone) {
		if (n->fd >= 0)
			close(n->fd);
		free(n->path);
		free(n);
		pthread_mutex_lock(&stats_mu);
		ctr.inodes--;
		pthread_mutex_unlock(&stats_mu);
	}
}

/* ---------------------------------------------------------------- metadata ops */

static void dm_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Opens never reach the daemon: the kernel then keeps the page cache (FOPEN_KEEP_CACHE
	 * is no-open's default).  Without it, dm_open replies keep_cache. */
	conn_info.no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
	/* Reads are replied from a buffer: no page moved in from the daemon's own cache, so the
	 * reader's cgroup is charged for the pages it caches. */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	/* The files never change: no invalidation on attribute refresh, no readdirplus. */
	conn->want &= ~(unsigned)(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_READDIRPLUS |
				  FUSE_CAP_READDIRPLUS_AUTO);
	conn->want |= FUSE_CAP_ASYNC_READ & conn->capable;
	conn->max_background = (unsigned)opt.max_background;
	conn->congestion_threshold = (unsigned)opt.max_background * 3 / 4;
	if (opt.readahead_kb > 0 && opt.readahead_kb * 1024 < conn->max_readahead)
		conn->max_readahead = (unsigned)opt.readahead_kb * 1024;
	conn_info.max_read = conn->max_read;
	conn_info.max_readahead = conn->max_readahead;
	conn_info.max_write = conn->max_write;
	conn_info.max_background = conn->max_background;
	conn_info.congestion_threshold = conn->congestion_threshold;
	conn_info.proto_major = conn->proto_major;
	conn_info.proto_minor = conn->proto_minor;
	write_stats(false);
	printf("ready\n");
	fflush(stdout);
}

static void dm_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *p = node_of(parent);
	struct fuse_entry_param e = { .attr_timeout = opt.cache_timeout_s,
				      .entry_timeout = opt.cache_timeout_s };
	COUNT(lookups, 1);
	if (fstatat(p->fd, name, &e.attr, AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;
		if (err == ENOENT) { /* a negative entry, cached like the others */
			COUNT(negative_lookups, 1);
			fuse_reply_entry(req, &e);
		} else {
			fuse_reply_err(req, err);
		}
		return;
	}
	pthread_mutex_lock(&table_mu);
	struct node *n = find_locked(e.attr.st_dev, e.attr.st_ino);
	if (n)
		n->nlookup++;
	pthread_mutex_unlock(&table_mu);
	if (!n) {
		int flags = S_ISDIR(e.attr.st_mode) ? O_RDONLY | O_DIRECTORY | O_NOFOLLOW
						    : O_PATH | O_NOFOLLOW;
		int fd = S_ISREG(e.attr.st_mode) ? -1 : openat(p->fd, name, flags | O_CLOEXEC);
		if (fd < 0 && !S_ISREG(e.attr.st_mode)) {
			fuse_reply_err(req, errno);
			return;
		}
		struct node *fresh = calloc(1, sizeof *fresh);
		char *path = NULL;
		if (!fresh || asprintf(&path, "%s%s%s", p->path, *p->path ? "/" : "", name) < 0) {
			if (fd >= 0)
				close(fd);
			free(fresh);
			fuse_reply_err(req, ENOMEM);
			return;
		}
		*fresh = (struct node){ .fd = fd, .path = path, .dev = e.attr.st_dev,
					.ino = e.attr.st_ino, .mode = e.attr.st_mode, .nlookup = 1 };
		pthread_mutex_lock(&table_mu);
		n = find_locked(e.attr.st_dev, e.attr.st_ino); /* a racing lookup may have won */
		if (n) {
			n->nlookup++;
		} else {
			unsigned b = bucket(fresh->dev, fresh->ino);
			fresh->next = table[b];
			table[b] = n = fresh;
		}
		pthread_mutex_unlock(&table_mu);
		if (n != fresh) {
			if (fd >= 0)
				close(fd);
			free(fresh->path);
			free(fresh);
		} else {
			COUNT(inodes, 1);
		}
	}
	e.ino = ino_of(n);
	fuse_reply_entry(req, &e);
}

static void dm_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	COUNT(forgets, 1);
	forget_one(ino, nlookup);
	fuse_reply_none(req);
}

static void dm_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	COUNT(forgets, count);
	for (size_t i = 0; i < count; i++)
		forget_one(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void dm_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	COUNT(getattrs, 1);
	const struct node *n = node_of(ino);
	int rc = n->fd >= 0 ? fstatat(n->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)
			    : fstatat(root_node.fd, n->path, &st, AT_SYMLINK_NOFOLLOW);
	if (rc < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, opt.cache_timeout_s);
}

static void dm_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(node_of(ino)->fd, "", buf, sizeof buf - 1);
	if (n < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	buf[n] = 0;
	fuse_reply_readlink(req, buf);
}

static void dm_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	COUNT(opens, 1);
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (conn_info.no_open) { /* the first open tells the kernel to send no more */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void dm_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs sv;
	if (fstatvfs(root_node.fd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

struct dirh {
	DIR *dp;
	struct dirent *entry;
	off_t offset;
};

static void dm_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int fd = openat(node_of(ino)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirh *d = fd < 0 ? NULL : calloc(1, sizeof *d);
	if (d)
		d->dp = fdopendir(fd);
	if (!d || !d->dp) {
		int err = fd < 0 ? errno : ENOMEM;
		if (fd >= 0)
			close(fd);
		free(d);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void dm_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	COUNT(readdirs, 1);
	if (off != d->offset) {
		seekdir(d->dp, off);
		d->entry = NULL;
		d->offset = off;
	}
	size_t used = 0;
	int err = 0;
	for (;;) {
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		struct stat st = { .st_ino = d->entry->d_ino, .st_mode = (mode_t)d->entry->d_type << 12 };
		size_t len = fuse_add_direntry(req, buf + used, size - used, d->entry->d_name, &st,
					       d->entry->d_off);
		if (len > size - used)
			break;
		used += len;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
	if (err && used == 0)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void dm_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

/* ---------------------------------------------------------------- the disk */

/* The disk's queue: reads in the order the loop thread received them (the kernel's order),
 * served one at a time by the disk thread. */
struct job {
	fuse_req_t req;
	struct node *node;
	size_t size;
	off_t off;
	int64_t arrival;
	bool direct;
	struct job *next;
};
static pthread_mutex_t disk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t disk_cv = PTHREAD_COND_INITIALIZER;
static struct job *q_head, *q_tail;

static bool stopping(void)
{
	return atomic_load(&disk_stop) || (session && fuse_session_exited(session));
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

/* pread from a node: a regular file is opened by its path for the read (see struct node). */
static ssize_t pread_node(const struct node *n, char *buf, size_t size, off_t off)
{
	if (n->fd >= 0)
		return pread(n->fd, buf, size, off);
	int fd = openat(root_node.fd, n->path, O_RDONLY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC);
	if (fd < 0 && errno == EPERM)
		fd = openat(root_node.fd, n->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t got = pread(fd, buf, size, off);
	int err = errno;
	close(fd);
	errno = err;
	return got;
}

static char *loop_buf;
static size_t loop_buf_len;

static void dm_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
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
	pthread_mutex_lock(&stats_mu);
	ctr.queue_depth++;
	if (ctr.queue_depth > ctr.max_queue_depth)
		ctr.max_queue_depth = ctr.queue_depth;
	pthread_mutex_unlock(&stats_mu);
	pthread_mutex_lock(&disk_mu);
	if (q_tail)
		q_tail->next = j;
	else
		q_head = j;
	q_tail = j;
	pthread_cond_signal(&disk_cv);
	pthread_mutex_unlock(&disk_mu);
}

/* The next job, under disk_mu: one that continues the last read if it is queued (an elevator
 * puts the request adjacent to the head next, and the 2.4 kernel's merged adjacent requests
 * the same way; without it, readahead streams of several readers interleave and every 128 KB
 * would pay a positioning a real disk does not pay), else the oldest.  --no-elevator: FIFO. */
static struct job *take_next(const struct node *last_node, off_t last_end)
{
	struct job **link = &q_head, *prev = NULL;
	if (opt.elevator)
		for (struct job **l = &q_head, *p = NULL; *l; p = *l, l = &(*l)->next)
			if ((*l)->node == last_node && (*l)->off == last_end) {
				link = l, prev = p;
				break;
			}
	struct job *j = *link;
	if (!j)
		return NULL;
	if (j != q_head) {
		pthread_mutex_lock(&stats_mu);
		ctr.elevator_picks++;
		pthread_mutex_unlock(&stats_mu);
	}
	*link = j->next;
	if (q_tail == j)
		q_tail = prev;
	return j;
}

/* The modelled disk: one request at a time, replies sent from here. */
static void *disk_thread(void *arg)
{
	(void)arg;
	char *buf = NULL;
	size_t buf_len = 0;
	int64_t disk_free = 0;             /* when the modelled disk finished its last request */
	const struct node *last_node = NULL; /* where the head is: the end of the last read */
	off_t last_end = -1;
	for (;;) {
		pthread_mutex_lock(&disk_mu);
		while (!q_head && !atomic_load(&disk_stop))
			pthread_cond_wait(&disk_cv, &disk_mu);
		struct job *j = take_next(last_node, last_end);
		pthread_mutex_unlock(&disk_mu);
		if (!j)
			break; /* stopping, queue empty */
		if (stopping()) { /* exiting: fail what is left rather than make it wait */
			fuse_reply_err(j->req, EIO);
			free(j);
			pthread_mutex_lock(&stats_mu);
			ctr.queue_depth--;
			pthread_mutex_unlock(&stats_mu);
			continue;
		}

		int64_t start = j->arrival > disk_free ? j->arrival : disk_free;
		bool seq = j->node == last_node && j->off == last_end;
		char *b = grow(&buf, &buf_len, j->size);
		ssize_t got = b ? pread_node(j->node, b, j->size, j->off) : -1;
		int err = !b ? ENOMEM : got < 0 ? errno : 0;
		size_t moved = got > 0 ? (size_t)got : 0;
		int64_t service = (seq ? 0 : (int64_t)(opt.seek_ms * 1e6)) +
				  (int64_t)((double)moved / (opt.mbps * 1e6) * 1e9);
		int64_t end = start + service, done = now_ns(), late = 0;
		bool overrun = done > end;
		if (overrun) {
			end = done;
		} else {
			sleep_until(end);
			late = now_ns() - end; /* woken late (a busy CPU): the reader waits more */
			if (late < 0)
				late = 0; /* cut short: the daemon is exiting */
		}
		disk_free = end;
		last_node = j->node;
		last_end = j->off + (off_t)moved;

		pthread_mutex_lock(&stats_mu);
		ctr.queue_depth--;
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
		}
		ctr.busy_s += (end - start) / 1e9;
		ctr.service_s += service / 1e9;
		ctr.queue_wait_s += (start - j->arrival) / 1e9;
		if (overrun)
			ctr.overruns++, ctr.overrun_s += (done - (start + service)) / 1e9;
		ctr.late_s += late / 1e9;
		ctr.late_wakeups += late > 1000000;
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

static const struct fuse_lowlevel_ops ops = {
	.init = dm_init,
	.lookup = dm_lookup,
	.forget = dm_forget,
	.forget_multi = dm_forget_multi,
	.getattr = dm_getattr,
	.readlink = dm_readlink,
	.open = dm_open,
	.read = dm_read,
	.statfs = dm_statfs,
	.opendir = dm_opendir,
	.readdir = dm_readdir,
	.releasedir = dm_releasedir,
};

/* ---------------------------------------------------------------- setup */

static char libfuse_msg[512];

/* libfuse's own messages are kept, so a failure is reported as one line of ours. */
static void log_func(enum fuse_log_level level, const char *fmt, va_list ap)
{
	if (level > FUSE_LOG_ERR)
		return;
	vsnprintf(libfuse_msg, sizeof libfuse_msg, fmt, ap);
	size_t len = strlen(libfuse_msg);
	while (len && (libfuse_msg[len - 1] == '\n' || libfuse_msg[len - 1] == ' '))
		libfuse_msg[--len] = 0;
}

static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("diskmodel: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

static bool is_mountpoint(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return false;
	char line[4096], mnt[4096];
	bool found = false;
	while (!found && fgets(line, sizeof line, f))
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1) {
			unescape(mnt);
			found = !strcmp(mnt, path);
		}
	fclose(f);
	return found;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	long nr_open = 1048576;
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");
	if (f) {
		if (fscanf(f, "%ld", &nr_open) != 1)
			nr_open = 1048576;
		fclose(f);
	}
	rl.rlim_cur = rl.rlim_max = (rlim_t)nr_open;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	int rc = parse_args(argc, argv);
	if (rc)
		return rc;
	t0 = now_ns();
	atomic_store(&model_on, !opt.start_off);
	fuse_set_log_func(log_func);

	if (geteuid() != 0)
		return fail("must run as root (it mounts with allow_other and serves every reader); "
			    "run it with sudo, or as the root runner");
	int devfd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (devfd < 0)
		return fail("cannot open /dev/fuse (%s): load the module (modprobe fuse) or give the "
			    "container the device (docker run --device /dev/fuse --cap-add SYS_ADMIN)",
			    strerror(errno));
	close(devfd);
	char src[PATH_MAX], mnt[PATH_MAX];
	struct stat st;
	errno = 0;
	if (!realpath(opt.source, src) || stat(src, &st) < 0 || !S_ISDIR(st.st_mode))
		return fail("source %s is not a directory (%s): generate the file set first "
			    "(ukweb fileset) or pass the right --source", opt.source,
			    errno ? strerror(errno) : "not a directory");
	struct statvfs sv; /* statfs always reaches a FUSE daemon: a dead one answers ENOTCONN */
	if (statvfs(opt.mountpoint, &sv) < 0 && errno == ENOTCONN)
		return fail("mount point %s is a stale FUSE mount (its daemon died): "
			    "fusermount3 -u -z %s", opt.mountpoint, opt.mountpoint);
	errno = 0;
	if (!realpath(opt.mountpoint, mnt) || stat(mnt, &st) < 0 || !S_ISDIR(st.st_mode))
		return fail("mount point %s is not a directory (%s): mkdir -p it first",
			    opt.mountpoint, errno ? strerror(errno) : "not a directory");
	if (is_mountpoint(mnt))
		return fail("mount point %s is busy (something is mounted there): umount it "
			    "(fusermount3 -u -z %s) or choose another", mnt, mnt);
	size_t sl = strlen(src);
	if (!strncmp(mnt, src, sl) && (mnt[sl] == '/' || mnt[sl] == 0 || sl == 1))
		return fail("mount point %s is inside the source %s: choose one outside it", mnt, src);
	root_node.path = "";
	root_node.fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_node.fd < 0 || fstat(root_node.fd, &st) < 0)
		return fail("cannot open source %s: %s", src, strerror(errno));
	root_node.dev = st.st_dev;
	root_node.ino = st.st_ino;
	root_node.mode = st.st_mode;
	raise_fd_limit(); /* one descriptor per file the kernel knows (18k in the file set) */
	prctl(PR_SET_TIMERSLACK, 1UL); /* wake-ups within ~µs of the modelled completion */

	/* SIGUSR1/2 go to the stats thread only; SIGTERM/INT/HUP to the loop thread (libfuse's
	 * handlers: its read of /dev/fuse is interrupted and the loop ends). */
	sigset_t usr, all;
	sigemptyset(&usr);
	sigaddset(&usr, SIGUSR1);
	sigaddset(&usr, SIGUSR2);
	all = usr;
	sigaddset(&all, SIGTERM);
	sigaddset(&all, SIGINT);
	sigaddset(&all, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_t stats_tid, disk_tid;
	if (pthread_create(&stats_tid, NULL, stats_thread, NULL) != 0 ||
	    pthread_create(&disk_tid, NULL, disk_thread, NULL) != 0)
		return fail("cannot start the daemon's threads");
	pthread_sigmask(SIG_SETMASK, &usr, NULL);

	/* fsname names this daemon in /proc/self/mountinfo (the mount's source), so a cleanup
	 * can tell its own mount from a later one at the same place (mount ids are reused). */
	char mopts[128];
	snprintf(mopts, sizeof mopts, "ro,allow_other,default_permissions,noatime,"
		 "fsname=diskmodel-%d,subtype=diskmodel", (int)getpid());
	char *fargv[] = { argv[0], "-o", mopts, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	session = fuse_session_new(&args, &ops, sizeof ops, NULL);
	fuse_opt_free_args(&args);
	if (!session)
		return fail("cannot create the FUSE session: %s", libfuse_msg);
	if (fuse_set_signal_handlers(session) != 0)
		return fail("cannot install signal handlers");
	if (fuse_session_mount(session, mnt) != 0) {
		fail("cannot mount on %s: %s (check that it is not busy and that mounts are "
		     "allowed: CAP_SYS_ADMIN)", mnt, libfuse_msg[0] ? libfuse_msg : "mount failed");
		fuse_session_destroy(session);
		return 1;
	}
	rc = fuse_session_loop(session); /* one thread: requests in the kernel's order */
	atomic_store(&disk_stop, true);
	pthread_mutex_lock(&disk_mu);
	pthread_cond_signal(&disk_cv);
	pthread_mutex_unlock(&disk_mu);
	pthread_join(disk_tid, NULL);
	free(loop_buf);
	write_stats(true);
	fuse_session_unmount(session);
	fuse_remove_signal_handlers(session);
	fuse_session_destroy(session);
	/* rc is the signal that stopped the loop (SIGTERM...), 0, or -errno of a broken channel. */
	if (rc < 0 && rc != -ENODEV) {
		fprintf(stderr, "diskmodel: the FUSE loop failed: %s\n", strerror(-rc));
		return 1;
	}
	return 0;
}
