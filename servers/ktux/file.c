/* file.c — files through the ring: the open every file path starts with (openat2 beneath the
 * docroot), whether a mapping's pages are resident, and counting the opens, reads and fills
 * that went to io-wq.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ktux.h"

/* rel points into c->key, which outlives the SQE; op says whose continuation it is. */
void file_submit_open(struct server *s, struct conn *c, const char *rel, enum op op)
{
	c->how = (struct open_how){.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
				   .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_openat2(sqe, s->site.docroot.dirfd, rel, &c->how);
	io_uring_sqe_set_data64(sqe, ud_pack(op, 0, c->fd));
	c->state = ST_OPENING;
	c->file_seq = s->ring.enter_seq;
	c->inflight++;
}

void file_count_punt(struct server *s, struct conn *c)
{
	/* Submitted by enter file_seq+1; an inline completion is reaped before the next enter.
	 * Reaped later means it waited: on an io-wq worker (or a poll) [I]. */
	if (s->ring.enter_seq > c->file_seq + 1)
		s->st->ring.iowq_punts++;
}

/* mincore on a file mapping; a caller that may not see the page cache of a file it does not
 * own is told "no", which only costs the asynchronous fill. */
int page_resident(char *p, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = (len + page - 1) / page;
	unsigned char vec[64];
	if (pages > sizeof vec)
		return 0; /* large: fill asynchronously (one populate) */
	if (mincore(p, len, vec) < 0)
		return 0;
	for (size_t i = 0; i < pages; i++)
		if (!(vec[i] & 1))
			return 0;
	return 1;
}
