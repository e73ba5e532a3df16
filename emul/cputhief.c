/* cputhief — turn one CPU of this machine into a slower uniprocessor, where blocked time is lost.
 *
 * A SCHED_FIFO thread pinned to the CPU spins for (1 - share) of every period and sleeps for
 * the rest, so everything else on that CPU (the server, its kernel threads, softirq work that
 * ksoftirqd does) gets `share` of it, evenly, at a 1 ms grain.  Unlike a CFS quota (which the
 * kernel refuses under 1 ms, so a read that blocks inside the throttled part of a 10 ms period
 * costs nothing), a server that blocks here leaves the CPU idle in its own slices: blocking
 * costs what it cost on the paper's 400 MHz uniprocessor.  bench/cpu_emulation.py checks it.
 *
 *   cputhief --cpu N --share S [--period-us P] [--priority R]
 *
 * One thief per CPU: a second one (another sweep on the same machine) would take the first's
 * share too, so each holds a lock, LOCK_DIR/cpu<N>.lock, and a second exits 1 naming the first.
 *
 * Prints "ready" on stdout once it runs as SCHED_FIFO on its CPU; on SIGTERM/SIGINT it prints
 * one JSON line of what it did (periods, seconds spun, late wake-ups) and exits 0.  Any setup
 * failure is one line on stderr naming the cause, exit 2 (bad argument) or 1 (refused).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_DIR "/run/ukweb"

static volatile sig_atomic_t stop;

/* Hold LOCK_DIR/cpu<cpu>.lock for the life of the process; -1 (after one line) if held. */
static int lock_cpu(int cpu)
{
	char path[64];
	mkdir(LOCK_DIR, 0755);
	snprintf(path, sizeof path, LOCK_DIR "/cpu%d.lock", cpu);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "cputhief: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char owner[32] = "";
		ssize_t n = pread(fd, owner, sizeof owner - 1, 0);
		owner[n > 0 ? n : 0] = 0;
		owner[strcspn(owner, "\n")] = 0;
		fprintf(stderr, "cputhief: CPU %d is already slowed by another cputhief (pid %s): "
			"one sweep at a time per machine; wait for it or use other server CPUs\n",
			cpu, *owner ? owner : "?");
		return -1;
	}
	char me[32];
	int len = snprintf(me, sizeof me, "%d\n", (int)getpid());
	if (ftruncate(fd, 0) == 0) /* the pid is only for the message above */
		(void)!pwrite(fd, me, (size_t)len, 0);
	return fd;
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec to_ts(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
	return ts;
}

static int usage(const char *why)
{
	fprintf(stderr, "cputhief: %s\nusage: cputhief --cpu N --share S (0 < S < 1) "
		"[--period-us P (100..100000, default 1000)] [--priority R (1..99, default 50)]\n", why);
	return 2;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	double cpu = -1, share = -1, period_us = 1000, prio = 50;
	for (int i = 1; i < argc; i++) {
		double *slot = NULL, lo = 0, hi = 0;
		if (!strcmp(argv[i], "--cpu"))
			slot = &cpu, lo = 0, hi = CPU_SETSIZE - 1;
		else if (!strcmp(argv[i], "--share"))
			slot = &share, lo = 1e-3, hi = 0.999;
		else if (!strcmp(argv[i], "--period-us"))
			slot = &period_us, lo = 100, hi = 100000;
		else if (!strcmp(argv[i], "--priority"))
			slot = &prio, lo = 1, hi = 99;
		else
			return usage("unknown argument");
		if (i + 1 >= argc || parse_num(argv[++i], lo, hi, slot) < 0)
			return usage("bad or missing value");
	}
	if (cpu < 0 || share < 0)
		return usage("--cpu and --share are required");

	if (lock_cpu((int)cpu) < 0)
		return 1;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET((int)cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set) < 0) {
		fprintf(stderr, "cputhief: cannot pin to CPU %d: %s\n", (int)cpu, strerror(errno));
		return 1;
	}
	struct sched_param sp = { .sched_priority = (int)prio };
	if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0) {
		fprintf(stderr, "cputhief: SCHED_FIFO refused (%s): run as root (CAP_SYS_NICE) with "
			"kernel.sched_rt_runtime_us above %.0f%% of the period, or use cpu_method: quota\n",
			strerror(errno), (1 - share) * 100);
		return 1;
	}
	mlockall(MCL_CURRENT | MCL_FUTURE); /* a page fault mid-spin would steal from the share */
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);

	const int64_t period = (int64_t)(period_us * 1000), spin = (int64_t)((1 - share) * period);
	int64_t start = now_ns(), t = start, spun = 0;
	uint64_t periods = 0, late = 0;
	while (!stop) {
		int64_t until = t + spin, s0 = now_ns();
		while (now_ns() < until)
			;
		spun += now_ns() - s0;
		t += period;
		struct timespec ts = to_ts(t);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop)
			;
		periods++;
		/* Woken more than a period late (a stop, a long interrupt): start afresh rather
		 * than spinning back to back to catch up, which would take more than the share. */
		if (now_ns() - t > period) {
			late++;
			t = now_ns();
		}
	}
	double wall = (now_ns() - start) / 1e9;
	printf("{\"periods\": %" PRIu64 ", \"spun_s\": %.6f, \"wall_s\": %.6f, \"late_wakeups\": %"
	       PRIu64 ", \"share\": %.6f, \"period_us\": %.0f, \"cpu\": %d}\n",
	       periods, spun / 1e9, wall, late, share, period_us, (int)cpu);
	return 0;
}
