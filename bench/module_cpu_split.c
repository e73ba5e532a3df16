/* module_cpu_split.c — checks ktux's method for the module's CPU share on a process whose
 * split is known (issue 16: "by a method checked on a process with a known split").
 *
 * ktux (servers/ktux/module.c) times one module step in MODULE_CPU_EVERY with the thread CPU
 * clock, stops the clock during each action (a system call), takes off each timed
 * interval what two back-to-back clock reads cost, and scales the timed steps to all steps.  Here every step does module work (user-space arithmetic of a varying length)
 * then an action (system calls), as a module step does; a step's work is 2-20 k iterations,
 * a few µs to tens of µs, as ktux's module steps are (~9 µs of module CPU per step measured).  The split is known by running the
 * same sequence twice more, the work alone and the actions alone: their thread CPU times
 * are the module's part and the actions'.  (The kernel's user/system split is no truth:
 * getrusage's is tick-sampled, 250 Hz here, and charges syscall entry to user time.)
 * Prints: work_alone_s actions_alone_s estimate_s both_total_s.
 *
 *     cc -O2 -o module_cpu_split bench/module_cpu_split.c && ./module_cpu_split [steps]
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#define MODULE_CPU_EVERY 8 /* as servers/ktux/module.c */

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile uint64_t sink;

static void module_work(unsigned n) /* user-space work, n iterations */
{
	uint64_t x = sink;
	for (unsigned i = 0; i < n; i++)
		x = x * 6364136223846793005u + 1442695040888963407u;
	sink = x;
}

static void action(unsigned n) /* kernel crossings: n system calls */
{
	for (unsigned i = 0; i < n; i++)
		syscall(SYS_getppid);
}

/* What one timed interval adds by itself: two back-to-back clock reads (median of 255),
 * as ktux measures it (module.c: clock_bias). */
static uint64_t clock_bias(void)
{
	uint64_t d[255];
	for (int i = 0; i < 255; i++) {
		uint64_t t0 = cpu_ns();
		d[i] = cpu_ns() - t0;
	}
	for (int i = 1; i < 255; i++) /* insertion sort: 255 values */
		for (int j = i; j > 0 && d[j] < d[j - 1]; j--) {
			uint64_t t = d[j];
			d[j] = d[j - 1];
			d[j - 1] = t;
		}
	return d[127];
}

enum { WORK = 1, ACTIONS = 2 };

/* The same steps each time (seeded); returns the method's estimate of the module's part. */
static double run(long steps, int parts, double *total)
{
	uint64_t timed = 0, ntimed = 0, bias = clock_bias(), start = cpu_ns();
	srand(1);
	for (long n = 1; n <= steps; n++) {
		unsigned work = 2000 + (unsigned)(rand() % 18000), calls = 1 + (unsigned)(rand() % 6);
		uint64_t t0 = parts == (WORK | ACTIONS) && n % MODULE_CPU_EVERY == 0 ? cpu_ns() : 0;
		if (parts & WORK)
			module_work(work);
		if (t0) { /* ktux's method: the clock stops before the action */
			uint64_t d = cpu_ns() - t0;
			timed += d > bias ? d - bias : 0;
			ntimed++;
		}
		if (parts & ACTIONS)
			action(calls);
	}
	*total = (double)(cpu_ns() - start) / 1e9;
	return ntimed ? (double)timed / 1e9 * (double)steps / (double)ntimed : 0;
}

int main(int argc, char **argv)
{
	long steps = argc > 1 ? atol(argv[1]) : 100000;
	double work, actions, both;
	run(steps, WORK, &work);
	run(steps, ACTIONS, &actions);
	double estimate = run(steps, WORK | ACTIONS, &both);
	printf("%.6f %.6f %.6f %.6f\n", work, actions, estimate, both);
	return 0;
}
