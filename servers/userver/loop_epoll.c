/* loop_epoll.c — epoll back-end, level-triggered like the other two. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "events.h"

#define EP_BATCH 1024

struct ep {
	int fd;
	struct epoll_event events[EP_BATCH];
};

static void *ep_create(void)
{
	struct ep *e = calloc(1, sizeof(*e));
	if (e && (e->fd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		free(e);
		return NULL;
	}
	return e;
}

static void ep_destroy(void *state)
{
	struct ep *e = state;
	close(e->fd);
	free(e);
}

static int ep_set(void *state, int fd, int old_mask, int new_mask)
{
	struct ep *e = state;
	struct epoll_event ev = {.data.fd = fd};
	ev.events = ((new_mask & EV_READ) ? EPOLLIN : 0) | ((new_mask & EV_WRITE) ? EPOLLOUT : 0);
	int op = !new_mask ? EPOLL_CTL_DEL : !old_mask ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	if (!new_mask && !old_mask)
		return 0;
	return epoll_ctl(e->fd, op, fd, &ev);
}

static int ep_wait(void *state, struct ev_fired *fired, int max, int timeout_ms)
{
	struct ep *e = state;
	int n = epoll_wait(e->fd, e->events, max < EP_BATCH ? max : EP_BATCH, timeout_ms);
	for (int i = 0; i < n; i++) {
		uint32_t r = e->events[i].events;
		int mask = ((r & (EPOLLIN | EPOLLHUP | EPOLLERR)) ? EV_READ : 0) |
			   ((r & (EPOLLOUT | EPOLLERR)) ? EV_WRITE : 0);
		fired[i] = (struct ev_fired){e->events[i].data.fd, mask};
	}
	return n;
}

const struct ev_backend ev_epoll = {"epoll", ep_create, ep_destroy, ep_set, ep_wait};
