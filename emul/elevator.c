/* elevator.c — the disk queue's order: Linux 2.4's default I/O scheduler, elevator_linus
 * (drivers/block/elevator.c and __make_request in ll_rw_blk.c, Red Hat 2.4.21), which the
 * paper's servers ran on.  Read for its behaviour, re-expressed here for whole reads:
 *
 *   - one queue in service order; a new read is placed by scanning it from the tail toward
 *     the head: it goes right after the first queued request it falls "in between" (in
 *     ascending position with the next one, or at the wrap where one sweep ends and the next
 *     begins: bh_rq_in_between), else at the tail.  The queue is thus one ascending sweep
 *     then the next (C-LOOK), and a deep queue is served in position order;
 *   - a read adjacent to a queued one (the same file, its end = the other's start, or the
 *     reverse) is merged: back merge right after it, front merge right before it, found
 *     anywhere in the queue, so the pair is served as one positioning + both transfers;
 *   - starvation bound: each request enters with a budget of 2048 passovers (ELEVATOR_LINUS's
 *     read_latency); every scan past it costs 1, every read placed ahead of it 16
 *     (ELV_LINUS_SEEK_COST), a merge ahead of it 1; once spent, nothing but a merge goes
 *     ahead of it (the scan turns "merge_only").
 *
 * Position on the modelled disk: (backing inode number, offset).  The file set is written in
 * order, so inode order follows directory and file order, as allocation on a fresh 2.4 ext2
 * file system did; two files are never adjacent (no merge across files).  A real head also
 * seeks shorter within a sorted sweep; the model's positioning cost is flat (seek_ms per
 * positioning), so sorting saves positionings only through the merges it brings together.
 *
 * Not modelled: 2.4's request size cap (max_sectors: a long merge is split into several
 * requests, but those stay adjacent, so they cost no positioning here either), plugging, and
 * the one-entry last-merge cache (an optimisation with the same outcome).  ELV_FIFO: arrival
 * order, for comparison. */
#include "elevator.h"

enum { READ_LATENCY = 2048, SEEK_COST = 16 };

/* Position order: a before b on the modelled disk. */
static bool before(const struct job *a, const struct job *b)
{
	if (a->node->ino != b->node->ino)
		return a->node->ino < b->node->ino;
	return a->off < b->off;
}

/* b starts where a ends (same file). */
static bool adjacent(const struct job *a, const struct job *b)
{
	return a->node == b->node && a->off + (off_t)a->size == b->off;
}

/* bh_rq_in_between: does j belong right after rq (2.4.21 elevator.c)? */
static bool in_between(const struct job *j, const struct job *rq)
{
	const struct job *next = rq->next;
	if (!next)
		return false;
	if (before(rq, j) && before(j, next))
		return true; /* the sweet spot */
	if (before(rq, next))
		return false; /* ordered, and j is not between them */
	return before(rq, j) || before(j, next); /* rq ends a sweep, next begins the next one */
}

static void link_after(struct elevator *e, struct job *at, struct job *j)
{
	j->prev = at;
	j->next = at ? at->next : e->head;
	if (j->next)
		j->next->prev = j;
	else
		e->tail = j;
	if (at)
		at->next = j;
	else
		e->head = j;
	e->n++;
}

struct elv_result elv_add(struct elevator *e, struct job *j)
{
	struct elv_result r = { .how = ELV_TAIL };
	j->sequence = READ_LATENCY;
	if (e->kind == ELV_FIFO || !e->head) {
		link_after(e, e->tail, j);
		return r;
	}
	struct job *spot = NULL; /* insert after this one (NULL with a front merge: at the head) */
	bool found = false, merge_only = false;
	for (struct job *rq = e->tail; rq; rq = rq->prev) {
		if (rq->sequence-- <= 0) /* someone's latency limit: only merges from here on */
			merge_only = r.barrier = true;
		if (!found && !merge_only && in_between(j, rq))
			spot = rq, found = true, r.how = ELV_SORTED;
		if (adjacent(rq, j)) {
			spot = rq, found = true, r.how = ELV_BACK_MERGE;
			break;
		}
		if (adjacent(j, rq)) {
			rq->sequence--;
			spot = rq->prev, found = true, r.how = ELV_FRONT_MERGE;
			break;
		}
	}
	if (!found) {
		r.how = ELV_TAIL;
		spot = e->tail;
	}
	link_after(e, spot, j);
	int cost = r.how == ELV_BACK_MERGE || r.how == ELV_FRONT_MERGE ? 1 : SEEK_COST;
	if (r.how != ELV_TAIL)
		for (struct job *q = j->next; q; q = q->next)
			q->sequence -= cost; /* passed by j */
	return r;
}

struct job *elv_next(struct elevator *e)
{
	struct job *j = e->head;
	if (!j)
		return NULL;
	e->head = j->next;
	if (e->head)
		e->head->prev = NULL;
	else
		e->tail = NULL;
	j->next = j->prev = NULL;
	e->n--;
	return j;
}
