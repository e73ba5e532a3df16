/* Indexed binary min-heap of deadlines. Every connection has at most one pending timer (its
 * pacing wake-up or its request timeout), so the heap never holds more nodes than connections
 * and re-arming is an O(log n) move instead of a stale entry left behind. */
#include <stdlib.h>
#include <time.h>

#include "timer.h"

int timer_heap_init(struct timer_heap *h, int cap)
{
    h->a = calloc((size_t)cap, sizeof *h->a);
    h->n = 0;
    h->cap = cap;
    return h->a ? 0 : -1;
}

void timer_heap_free(struct timer_heap *h)
{
    free(h->a);
    h->a = NULL;
}

static void place(struct timer_heap *h, int i, struct timer_node *t)
{
    h->a[i] = t;
    t->pos = i;
}

static void sift_up(struct timer_heap *h, int i)
{
    struct timer_node *t = h->a[i];
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (h->a[parent]->deadline <= t->deadline)
            break;
        place(h, i, h->a[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct timer_heap *h, int i)
{
    struct timer_node *t = h->a[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->a[c + 1]->deadline < h->a[c]->deadline)
            c++;
        if (h->a[c]->deadline >= t->deadline)
            break;
        place(h, i, h->a[c]);
        i = c;
    }
    place(h, i, t);
}

void timer_cancel(struct timer_heap *h, struct timer_node *t)
{
    if (t->pos < 0)
        return;
    int i = t->pos;
    struct timer_node *last = h->a[--h->n];
    t->pos = -1;
    if (last == t)
        return;
    place(h, i, last);
    sift_down(h, i);
    sift_up(h, last->pos);
}

/* Queue t at deadline, or move it there if already queued. Capacity is one node per
 * connection, so a full heap cannot happen. */
void timer_set(struct timer_heap *h, struct timer_node *t, uint64_t deadline)
{
    if (t->pos >= 0) {
        t->deadline = deadline;
        sift_down(h, t->pos);
        sift_up(h, t->pos);
        return;
    }
    if (h->n >= h->cap)
        return;
    t->deadline = deadline;
    place(h, h->n++, t);
    sift_up(h, t->pos);
}

struct timer_node *timer_peek(const struct timer_heap *h)
{
    return h->n ? h->a[0] : NULL;
}

uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
