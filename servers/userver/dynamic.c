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

static int nonblocking(int fd, int on)
{
	return ioctl(fd, FIONBIO, &on);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

enum conn_io dyn_write_blocking(struct conn *c, int idle_timeout, struct stats_counters *st)
{
	/* Bound the sleep: a client that takes nothing for idle_timeout (the loop's own rule for a
	 * response that makes no progress) gets EAGAIN and is closed, so one dead client costs the
	 * process at most idle_timeout per stall, not forever. */
	if (!c->sndtimeo_set) {
		struct timeval tv = {.tv_sec = idle_timeout};
		if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
			return IO_ERROR;
		c->sndtimeo_set = 1;
	}
	if (nonblocking(c->fd, 0) < 0)
		return IO_ERROR;
	uint64_t t0 = mono_ns();
	enum conn_io io = IO_AGAIN;
	for (;;) {
		time_t now = (time_t)(mono_ns() / 1000000000u);
		size_t before = c->sent;
		io = conn_send(c, now, &st->bytes_out);
		if (io != IO_AGAIN || c->sent == before)
			break; /* done, failed, or the timeout passed with no progress at all */
	}
	st->dynw.blocked++;
	st->dynw.block_ns += mono_ns() - t0;
	if (nonblocking(c->fd, 1) < 0 && io == IO_DONE)
		io = IO_ERROR;
	return io;
}
