/* elevator.h — the order in which the modelled disk serves its queued reads. */
#ifndef ELEVATOR_H
#define ELEVATOR_H

#include "dm.h"

/* One read at the modelled disk. */
struct job {
	fuse_req_t req;
	const struct node *node;
	size_t size;
	off_t off;
	int64_t arrival;
	bool direct;
	int sequence;            /* elevator_linus's latency budget (elevator.c) */
	struct job *prev, *next; /* the queue, in service order */
};

struct elevator {
	enum elevator_kind kind;
	struct job *head, *tail; /* head: served next */
	size_t n;
};

/* What an insertion did, for the counters. */
enum elv_insert { ELV_TAIL, ELV_SORTED, ELV_BACK_MERGE, ELV_FRONT_MERGE };

struct elv_result {
	enum elv_insert how;
	bool barrier; /* a request's latency budget kept this one from going before it */
};

struct elv_result elv_add(struct elevator *e, struct job *j);
struct job *elv_next(struct elevator *e);

#endif
