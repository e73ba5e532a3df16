/* listener.h — the listening TCP socket both servers start from. */
#ifndef UKWEB_LISTENER_H
#define UKWEB_LISTENER_H

/* Flags for listener_open: what differs between the servers' listening sockets. */
enum {
	LISTENER_NONBLOCK = 1, /* userver: its event loop accepts until EAGAIN */
	LISTENER_NODELAY = 2,  /* ktux: accepted sockets inherit TCP_NODELAY */
};

#define LISTENER_BAD_ADDR (-2)

/* Bind addr (a numeric IPv4 or IPv6 address) and port (0: any free port) with SO_REUSEADDR,
 * then listen with backlog.  Returns the fd with *bound_port the port actually bound, or
 * LISTENER_BAD_ADDR when addr is not a numeric address, or -1 with errno (nothing left open).
 * Prints nothing: the caller writes its own one-line start-up error. */
int listener_open(const char *addr, int port, int backlog, int flags, int *bound_port);

#endif
