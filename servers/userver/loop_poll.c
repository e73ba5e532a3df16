/* loop_poll.c — poll() back-end: one pollfd array, an fd → slot index for O(1) updates. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"

struct pl {
	struct pollfd *fds;
	int n, cap;
	int *slot; /* slot[fd] = index in fds, or -1 */
	int slot_cap;
};

static void *pl_create(void)
{
	return calloc(1, sizeof(struct pl));
}

static void pl_destroy(void *state)
{
	struct pl *p = state;
	free(p->fds), free(p->slot), free(p);
}

static int pl_grow(struct pl *p, int fd)
{
	if (fd >= p->slot_cap) {
		int cap = p->slot_cap ? p->slot_cap : 64;
		while (cap <= fd)
			cap *= 2;
		int *s = realloc(p->slot, (size_t)cap * sizeof(int));
		if (!s)
			return -1;
		for (int i = p->slot_cap; i < cap; i++)
			s[i] = -1;
		p->slot = s, p->slot_cap = cap;
	}
	if (p->n == p->cap) {
		int cap = p->cap ? p->cap * 2 : 64;
		struct pollfd *f = realloc(p->fds, (size_t)cap * sizeof(*f));
		if (!f)
			return -1;
		p->fds = f, p->cap = cap;
	}
	return 0;
}

static short to_events(int mask)
{
	return (short)(((mask & EV_READ) ? POLLIN : 0) | ((mask & EV_WRITE) ? POLLOUT : 0));
}

static int pl_set(void *state, int fd, int old_mask, int new_mask)
{
	struct pl *p = state;
	(void)old_mask;
	if (fd < 0 || pl_grow(p, fd) < 0)
		return errno = fd < 0 ? EBADF : ENOMEM, -1;
	int i = p->slot[fd];
	if (new_mask && i < 0) {
		i = p->slot[fd] = p->n++;
		p->fds[i] = (struct pollfd){.fd = fd};
	}
	if (new_mask) {
		p->fds[i].events = to_events(new_mask);
	} else if (i >= 0) { /* remove: move the last entry into the hole */
		p->fds[i] = p->fds[--p->n];
		p->slot[p->fds[i].fd] = i;
		p->slot[fd] = -1;
	}
	return 0;
}

static int pl_wait(void *state, struct ev_fired *fired, int max, int timeout_ms)
{
	struct pl *p = state;
	int n = poll(p->fds, (nfds_t)p->n, timeout_ms);
	if (n <= 0)
		return n;
	int k = 0;
	for (int i = 0; i < p->n && k < max; i++) {
		short r = p->fds[i].revents;
		int mask = ((r & (POLLIN | POLLHUP | POLLERR)) ? EV_READ : 0) | ((r & POLLOUT) ? EV_WRITE : 0);
		if ((r & (POLLHUP | POLLERR)) && (p->fds[i].events & POLLOUT))
			mask |= EV_WRITE;
		if (mask)
			fired[k++] = (struct ev_fired){p->fds[i].fd, mask};
	}
	return k;
}

const struct ev_backend ev_poll = {"poll", pl_create, pl_destroy, pl_set, pl_wait};
