/* dynamic.c — the µserver's blocking dynamic writes (see dynamic.h; the reply: reply.c).
 *
 * The paper (§4.3): "the SPECweb99 modules in both the µserver and TUX use the sendfile system
 * call", and (§4.3) "some system calls responsible for writing dynamically generated content to
 * the network can also block in our implementation of dynamic content support in the
 * µserver".  We found no copy of the µserver 0.4.5 module's source to follow, so the write is
 * modelled from those words as a blocking one: the reply is first written as the loop writes
 * everything (non-blocking, so a reply that fits the socket buffer costs nothing extra), and
 * when the socket buffer is full the socket is made blocking and the process sleeps in
 * send/sendfile until the client has taken the rest: while it sleeps it serves no one else,
 * as a µserver process did. */
#include "dynamic.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loop.h" /* LOOP_DRAIN_SECONDS */


#define NS 1000000000u
#define SLICE_S 1 /* SO_SNDTIMEO: how often a blocked write looks at the clock and at SIGTERM */

static int nonblocking(int fd, int on)
{
	return ioctl(fd, FIONBIO, &on);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

enum conn_io dyn_write_blocking(struct conn *c, int idle_timeout, struct stats_counters *st)
{
	/* Bound the sleep: each blocking call gives up after SLICE_S without progress, so the
	 * process looks at the clock: a client that took nothing for idle_timeout (the loop's own
	 * rule for a response that makes no progress) is given up; after SIGTERM a reply is given
	 * up at the first slice without progress, or LOOP_DRAIN_SECONDS after it was seen.  One dead client costs the process at most
	 * idle_timeout per stall, not forever. */
	if (!c->sndtimeo_set) {
		struct timeval tv = {.tv_sec = SLICE_S};
		if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
			return IO_ERROR;
		c->sndtimeo_set = 1;
	}
	if (nonblocking(c->fd, 0) < 0)
		return IO_ERROR;
	uint64_t t0 = mono_ns(), progress = t0, stopped = 0;
	enum conn_io io;
	for (;;) {
		size_t before = c->sent;
		io = conn_send(c, (time_t)(mono_ns() / NS), &st->bytes_out);
		if (io != IO_AGAIN)
			break; /* done or failed */
		uint64_t now = mono_ns();
		int moved = c->sent != before;
		if (moved)
			progress = now;
		else if (now - progress >= (uint64_t)idle_timeout * NS)
			break; /* IO_AGAIN: the client took nothing for idle_timeout */
		if (loop_stop && !stopped)
			stopped = now;
		if (stopped && (!moved || now - stopped >= (uint64_t)LOOP_DRAIN_SECONDS * NS))
			break; /* draining: a client still reading gets the loop's drain time */
	}
	st->dynw.blocked++;
	st->dynw.block_ns += mono_ns() - t0;
	if (nonblocking(c->fd, 1) < 0 && io == IO_DONE)
		io = IO_ERROR;
	return io;
}
