/* Pacing and timeout timers: an indexed binary min-heap, one node per connection (§5.2). */
#ifndef TIMER_H
#define TIMER_H

#include <stdint.h>

struct timer_node { uint64_t deadline; int pos; /* -1 when not queued */ };

struct timer_heap { struct timer_node **a; int n, cap; };

int timer_heap_init(struct timer_heap *h, int cap);
void timer_heap_free(struct timer_heap *h);
void timer_set(struct timer_heap *h, struct timer_node *t, uint64_t deadline);
void timer_cancel(struct timer_heap *h, struct timer_node *t);
struct timer_node *timer_peek(const struct timer_heap *h);
/* The time base of every deadline: CLOCK_MONOTONIC in microseconds. */
uint64_t now_us(void);

#endif
