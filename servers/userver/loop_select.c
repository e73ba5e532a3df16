/* loop_select.c — select() back-end, usable past FD_SETSIZE (1,024).
 *
 * Linux's select() takes any nfds; only glibc's fd_set type and FD_SET macros stop at 1,024.
 * So the interest sets are plain bit arrays grown to the largest descriptor, copied into work
 * sets of the same size before each call, as the µserver did for its 15,000 connections.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "events.h"

#define WORD_BITS (8 * sizeof(unsigned long))

struct sel {
	unsigned long *rd, *wr, *rd_work, *wr_work;
	size_t words; /* capacity of each set */
	int maxfd;    /* highest fd with interest, -1 if none */
};

static void *sel_create(void)
{
	struct sel *s = calloc(1, sizeof(*s));
	if (s)
		s->maxfd = -1;
	return s;
}

static void sel_destroy(void *state)
{
	struct sel *s = state;
	free(s->rd), free(s->wr), free(s->rd_work), free(s->wr_work);
	free(s);
}

static int grow_one(unsigned long **set, size_t old, size_t words)
{
	unsigned long *p = realloc(*set, words * sizeof(unsigned long));
	if (!p)
		return -1;
	memset(p + old, 0, (words - old) * sizeof(unsigned long));
	*set = p;
	return 0;
}

static int sel_grow(struct sel *s, int fd)
{
	size_t need = (size_t)fd / WORD_BITS + 1;
	if (need <= s->words)
		return 0;
	size_t words = s->words ? s->words : 16;
	while (words < need)
		words *= 2;
	if (grow_one(&s->rd, s->words, words) || grow_one(&s->wr, s->words, words) ||
	    grow_one(&s->rd_work, s->words, words) || grow_one(&s->wr_work, s->words, words))
		return -1;
	s->words = words;
	return 0;
}

static void bit_set(unsigned long *set, int fd, int on)
{
	unsigned long bit = 1UL << ((unsigned)fd % WORD_BITS);
	if (on)
		set[(unsigned)fd / WORD_BITS] |= bit;
	else
		set[(unsigned)fd / WORD_BITS] &= ~bit;
}

static int bit_get(const unsigned long *set, int fd)
{
	return (set[(unsigned)fd / WORD_BITS] >> ((unsigned)fd % WORD_BITS)) & 1;
}

static int sel_set(void *state, int fd, int old_mask, int new_mask)
{
	struct sel *s = state;
	(void)old_mask;
	if (fd < 0 || sel_grow(s, fd) < 0)
		return errno = fd < 0 ? EBADF : ENOMEM, -1;
	bit_set(s->rd, fd, new_mask & EV_READ);
	bit_set(s->wr, fd, new_mask & EV_WRITE);
	if (new_mask && fd > s->maxfd)
		s->maxfd = fd;
	while (s->maxfd >= 0 && !bit_get(s->rd, s->maxfd) && !bit_get(s->wr, s->maxfd))
		s->maxfd--;
	return 0;
}

static int sel_wait(void *state, struct ev_fired *fired, int max, int timeout_ms)
{
	struct sel *s = state;
	size_t words = s->maxfd < 0 ? 0 : (size_t)s->maxfd / WORD_BITS + 1;
	if (words) {
		memcpy(s->rd_work, s->rd, words * sizeof(unsigned long));
		memcpy(s->wr_work, s->wr, words * sizeof(unsigned long));
	}
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	int n = select(s->maxfd + 1, words ? (fd_set *)s->rd_work : NULL,
		       words ? (fd_set *)s->wr_work : NULL, NULL, &tv);
	if (n <= 0)
		return n;
	int k = 0;
	for (int fd = 0; fd <= s->maxfd && k < max; fd++) {
		int mask = (bit_get(s->rd_work, fd) ? EV_READ : 0) | (bit_get(s->wr_work, fd) ? EV_WRITE : 0);
		if (mask)
			fired[k++] = (struct ev_fired){fd, mask};
	}
	return k;
}

const struct ev_backend ev_select = {"select", sel_create, sel_destroy, sel_set, sel_wait};
