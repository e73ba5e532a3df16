/* diskmodel — a read-only FUSE view of a directory that costs what the paper's disk cost.
 *
 * The paper served a file set 3-9 times its memory from one 7200 RPM IDE disk, where a random
 * read paid ~12 ms of positioning (seek + half a rotation) plus transfer at ~40 MB/s, one
 * request at a time.  This kernel has no dm-delay/null_blk/ublk, so the file set is served
 * through FUSE instead, and every read that reaches the daemon (a page-cache miss: cache hits
 * never leave the kernel) is one request to a modelled disk:
 *
 *   - one at a time, on the model's own clock: start = max(arrival, the modelled disk's
 *     previous completion), end = start + service; the reply goes out at end (dm_disk.c);
 *   - service = positioning (--seek-ms, unless the read continues the previous one: same file,
 *     offset == the previous read's end) + bytes / rate (--mbps, 1 MB = 10^6 bytes);
 *   - queued reads are served in the order Linux 2.4's elevator would (sorted by position on
 *     the modelled disk, adjacent reads merged, a latency bound: elevator.c), so a deep queue
 *     gets cheaper per byte, as on the paper's disk; --elevator fifo serves arrival order;
 *   - readahead is not dropped at depth: the kernel's FUSE background limits are raised to
 *     2.4's request list (--max-background 512; dm_nodes.c, dm_init);
 *   - its timing holds at load: the loop and timing threads run SCHED_FIFO (--rt-priority),
 *     and it reports how late its replies were and how far its busy time overran the model.
 *
 * Only reads queue.  One loop thread takes the kernel's requests in the kernel's order and
 * answers lookups, attributes and directories at once (the kernel caches them for
 * --cache-timeout-s); a read goes to the disk's queue, which one disk thread serves.  Opens
 * never reach the daemon (no-open support: the kernel then keeps every file's page cache
 * across opens), so a warm read costs what any page-cache hit costs.  O_DIRECT opens work and
 * are modelled like any other read.
 *
 *   diskmodel --source DIR --mountpoint DIR [--seek-ms 12] [--mbps 40] [--stats FILE]
 *             [--stats-interval-ms 100] [--model off] [--cache-timeout-s 86400]
 *             [--max-background 512] [--congestion-threshold 512] [--readahead-kb N]
 *             [--elevator linus|fifo] [--rt-priority 60] [--parent-pid PID]
 *
 * Prints "ready" on stdout once the mount is live.  SIGUSR1 switches the latency model off
 * (reads are served at once, for pre-warming a cache), SIGUSR2 back on.  The counters go to
 * the --stats file as one JSON object, rewritten atomically (rename) every interval, on every
 * switch and on exit (dm_stats.c).  SIGTERM/SIGINT: unmount and exit 0.  --parent-pid: the
 * daemon gets SIGTERM when that process (its parent) dies, so a killed runner leaves no
 * daemon.  A setup failure is one stderr line naming the cause and the fix, exit 2 (bad
 * argument) or 1 (refused), nothing mounted.
 */
#include "dm.h"
#include "../servers/common/fdlimit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- options */

static const char USAGE[] =
	"usage: diskmodel --source DIR --mountpoint DIR [--seek-ms MS (0..1000, default 12)] "
	"[--mbps R (0.01..100000, default 40)] [--stats FILE] [--stats-interval-ms 10..10000] "
	"[--model on|off] [--elevator linus|fifo] [--cache-timeout-s S] "
	"[--max-background 1..65535 (default 512)] [--congestion-threshold 1..65535 (default 512)] "
	"[--readahead-kb 0..65536 (0 = kernel default)] [--rt-priority 0..99 (0 = none, default 60)] "
	"[--parent-pid PID (die with it)]";

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
		{ "--congestion-threshold", &opt.congestion_threshold, 1, 65535 },
		{ "--rt-priority", &opt.rt_priority, 0, 99 },
		{ "--parent-pid", &opt.parent_pid, 1, 4194304 },
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
		} else if (!strcmp(a, "--elevator")) { /* on/off: the names before fifo/linus */
			if (!strcmp(v, "linus") || !strcmp(v, "on"))
				opt.elevator = ELV_LINUS;
			else if (!strcmp(v, "fifo") || !strcmp(v, "off"))
				opt.elevator = ELV_FIFO;
			else
				return usage("--elevator takes linus or fifo, not", v);
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

int main(int argc, char **argv)
{
	int rc = parse_args(argc, argv);
	if (rc)
		return rc;
	/* Die with the runner: SIGTERM (a clean unmount) when the parent dies.  [I] The parent is
	 * the thread that forked us, and the signal is armed only now, after exec: a parent that
	 * died in between is caught by comparing getppid() with the pid it passed. */
	if (opt.parent_pid > 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
			return fail("cannot arm the parent-death signal: %s", strerror(errno));
		if (getppid() != (pid_t)opt.parent_pid)
			return fail("parent %d is gone (parent now %d): not mounting",
				    (int)opt.parent_pid, (int)getppid());
	}
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
	fd_limit_raise(0); /* one descriptor per file the kernel knows (18k in the file set) */
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
	pthread_t stats_tid;
	if (pthread_create(&stats_tid, NULL, stats_thread, NULL) != 0 || disk_start() != 0)
		return fail("cannot start the daemon's threads");
	pthread_sigmask(SIG_SETMASK, &usr, NULL);

	/* fsname names this daemon in /proc/self/mountinfo (the mount's source), so a cleanup
	 * can tell its own mount from a later one at the same place (mount ids are reused). */
	char mopts[128];
	snprintf(mopts, sizeof mopts, "ro,allow_other,default_permissions,noatime,"
		 "fsname=diskmodel-%d,subtype=diskmodel", (int)getpid());
	char *fargv[] = { argv[0], "-o", mopts, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_lowlevel_ops ops = {.read = dm_read};
	dm_node_ops(&ops);
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
	/* The loop thread takes the kernel's requests: real-time too, so a read's arrival is
	 * not held up by a busy CPU (dm_disk.c). */
	int rt = sched_timing(pthread_self(), "loop");
	pthread_mutex_lock(&stats_mu);
	ctr.timing_rt[0] = rt || opt.rt_priority <= 0 ? 0 : (int)opt.rt_priority;
	pthread_mutex_unlock(&stats_mu);
	rc = fuse_session_loop(session); /* one thread: requests in the kernel's order */
	disk_finish();
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
