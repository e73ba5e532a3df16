/* dm_state.c — the disk model's shared state: its options (defaults here, set by diskmodel.c's
 * argument parsing), its clock and the flags that stop it.  Every part reads them; none of
 * them calls back into diskmodel.c. */
#include "dm.h"

#include <time.h>

/* ---------------------------------------------------------------- options */

struct options opt = {
	.seek_ms = 12, .mbps = 40, .cache_timeout_s = 86400, .stats_interval_ms = 100,
	.max_background = 512, .congestion_threshold = 512, .readahead_kb = 0, .rt_priority = 60,
	.elevator = ELV_LINUS,
};

/* ---------------------------------------------------------------- time */

int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct fuse_session *session;
int64_t t0;
atomic_bool disk_stop;
atomic_bool model_on = true;

bool stopping(void)
{
	return atomic_load(&disk_stop) || (session && fuse_session_exited(session));
}
