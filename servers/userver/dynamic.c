/* dynamic.c — the µserver's dynamic path (see dynamic.h).
 *
 * The paper (§4.3): "the SPECweb99 modules in both the µserver and TUX use the sendfile system
 * call", and (§4.3) "some system calls responsible for writing dynamically generated content to
 * the network can also block in our implementation of dynamic content support in the
 * µserver".  The µserver 0.4.5 source of that module was not published; we model the write as
 * a blocking one: the reply is first written as the loop writes everything (non-blocking, so a
 * reply that fits the socket buffer costs nothing extra), and when the socket buffer is full
 * the socket is made blocking and the process sleeps in send/sendfile until the client has
 * taken the rest: while it sleeps it serves no one else, as a µserver process did. */
#include "dynamic.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void dyn_respond(struct site *s, enum dyn_send mode, const struct http_request *req,
		 struct conn *c)
{
	struct sw99_pending p;
	struct response *r = &c->resp;
	c->dynamic = 0;
	if (!site_respond_begin(s, req, c->addr, r, &p))
		return; /* static, status, a command, or an error: complete */
	c->dynamic = 1;
	struct stat st;
	int fd = docroot_open(&s->docroot, p.url, p.url_len, &st), e;
	if (fd < 0) {
		e = sw99_open_error(fd);
	} else if (mode == DYN_SENDFILE && sw99_file_unchanged(&p)) {
		e = sw99_finish_sendfile(&s->module, &p, r, fd, (size_t)st.st_size); /* r owns fd */
	} else { /* a custom-ad GET substitutes ads in a copy; --dynamic-send copy: every reply */
		long got = sw99_read_file(fd, r, &p, (size_t)st.st_size);
		close(fd);
		e = sw99_finish(&s->module, &p, r, got);
	}
	site_respond_finish(s, &p, r, e);
}

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
