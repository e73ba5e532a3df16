/* conn.h — one client connection: its receive buffer, the request being served, and the
 * response being sent (head and buffers by send/writev, file range by sendfile). */
#ifndef USERVER_CONN_H
#define USERVER_CONN_H

#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "../common/http.h"
#include "../common/response.h"

/* Set by the SIGTERM handler: the loop stops accepting, finishes in-flight responses (≤ 2 s)
 * and returns; a blocked dynamic write gives up.  Here, below both, so neither calls the other
 * for it. */
extern volatile sig_atomic_t loop_stop;

struct conn {
	int fd;
	int mask; /* current event interest */
	char *in; /* HTTP_MAX_REQUEST bytes */
	size_t in_len;
	size_t req_len; /* bytes of in used by the request being answered */
	int responding; /* 0 reading, 1 sending a response, -1 lingering after an error */
	struct response resp;
	size_t sent; /* bytes of the response on the wire so far */
	int dynamic; /* the response is the module's reply to a dynamic GET/POST (dynamic.h) */
	int sndtimeo_set; /* SO_SNDTIMEO set for blocking dynamic writes */
	time_t req_start;   /* first byte of the pending request, or the start of lingering */
	time_t last_active; /* last byte received or sent */
	char addr[INET6_ADDRSTRLEN];
};

enum conn_io { IO_DONE, IO_AGAIN, IO_EOF, IO_ERROR };

struct conn *conn_new(int fd, const struct sockaddr_storage *peer, time_t now);
void conn_free(struct conn *c); /* closes the socket and any response fd */

/* Read what the socket has into the buffer (up to its capacity). */
enum conn_io conn_read(struct conn *c, time_t now);
/* Send as much of the response as the socket takes; *bytes += what was sent. */
enum conn_io conn_send(struct conn *c, time_t now, uint64_t *bytes);
/* The response is done: free it and drop the answered request from the buffer. */
void conn_next(struct conn *c);

#endif
