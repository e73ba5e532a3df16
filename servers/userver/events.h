/* events.h — the event mechanism as a small table of functions (as in redis ae), chosen once
 * at start-up by --events.  All three back-ends are level-triggered, so the loop behaves the
 * same whichever one runs; only the cost of waiting differs, which is what the paper measures.
 */
#ifndef USERVER_EVENTS_H
#define USERVER_EVENTS_H

#define EV_READ 1
#define EV_WRITE 2

struct ev_fired {
	int fd;
	int mask;
};

struct ev_backend {
	const char *name;
	void *(*create)(void);
	void (*destroy)(void *state);
	/* Change fd's interest from old_mask to new_mask (0 removes it).  0, or -1 with errno. */
	int (*set)(void *state, int fd, int old_mask, int new_mask);
	/* Wait up to timeout_ms; fill at most max fired events.  Count, or -1 with errno. */
	int (*wait)(void *state, struct ev_fired *fired, int max, int timeout_ms);
};

extern const struct ev_backend ev_select, ev_poll, ev_epoll;

/* The back-end called name, or NULL. */
const struct ev_backend *ev_backend_named(const char *name);

#endif
