/* pool.c — TUX's disk-I/O threads: at most --io-threads disk reads in flight (TUX 2 ran 32
 * per worker, net/tux/cachemiss.c); a read beyond that waits, in arrival order, for one to
 * finish.  Every read that may go to the disk takes a slot: a cache fill (MADV_POPULATE_READ),
 * a dynamic request's read, a module's GET_OBJECT fill and the file half of a splice (which
 * io_uring runs on its unbounded workers, so io-wq's own bound cannot hold it).  A fill whose
 * pages mincore finds resident takes none: TUX served page-cache hits without its I/O threads.
 *
 * A waiting connection holds one of its inflight references, so it is never freed while
 * queued; a connection closed while waiting is dropped when it reaches the head.
 */
#include "ktux.h"

/* 1: a slot is c's, submit now; 0: c waits and resume(s, c) runs when a slot frees. */
int pool_take(struct server *s, struct conn *c, pool_resume_fn resume)
{
	int limit = s->cfg->io_threads;
	if (limit == 0 || (s->pool_busy < (unsigned)limit && !s->pool_head)) {
		s->pool_busy++;
		if (s->pool_busy > s->st->pool.busy_max)
			s->st->pool.busy_max = s->pool_busy;
		return 1;
	}
	c->pool_resume = resume;
	c->pool_next = NULL;
	c->pool_since_ms = s->now_ms;
	if (s->pool_tail)
		s->pool_tail->pool_next = c;
	else
		s->pool_head = c;
	s->pool_tail = c;
	c->inflight++;
	s->st->pool.waits++;
	return 0;
}

/* A pooled read completed: its slot goes to the oldest live waiter. */
void pool_give(struct server *s)
{
	s->pool_busy--;
	while (s->pool_head) {
		struct conn *c = s->pool_head;
		s->pool_head = c->pool_next;
		if (!s->pool_head)
			s->pool_tail = NULL;
		c->inflight--;
		s->st->pool.wait_ms += s->now_ms - c->pool_since_ms;
		if (c->state == ST_CLOSING) {
			conn_op_done(s, c);
			continue;
		}
		s->pool_busy++;
		c->pool_resume(s, c);
		return;
	}
}
