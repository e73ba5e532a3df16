/* fdlimit.c — one descriptor-limit rule for the servers and the disk model (fdlimit.h). */
#include <limits.h>
#include <stdio.h>
#include <sys/resource.h>

#include "fdlimit.h"

static long long nr_open(void)
{
	long long v = 1048576; /* the kernel's default fs.nr_open */
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");
	if (f) {
		if (fscanf(f, "%lld", &v) != 1)
			v = 1048576;
		fclose(f);
	}
	return v;
}

static long long in_force(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX ? INT_MAX : (long long)rl.rlim_cur;
}

long long fd_limit_raise(long long want)
{
	long long most = nr_open();
	if (want <= 0 || want > most)
		want = most;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= (rlim_t)want)
		return in_force();
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)want) {
		struct rlimit up = {(rlim_t)want, (rlim_t)want}; /* allowed as root (CAP_SYS_RESOURCE) */
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return in_force();
	}
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)want ? (rlim_t)want : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	return in_force();
}
