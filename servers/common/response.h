/* response.h — what a handler hands back to the event loop.
 *
 * A response is a header block plus a body that is either a buffer or a file range.  The
 * loop decides how to move the bytes: userver writes the head and sendfile()s the range;
 * ktux turns the same description into io_uring send / read / splice submissions.
 */
#ifndef UKWEB_RESPONSE_H
#define UKWEB_RESPONSE_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

#define RESPONSE_HEAD_MAX 512

enum body_kind { BODY_NONE, BODY_BUF, BODY_FILE };

struct response {
	int status;
	int keep_alive; /* 0: close the connection once the response is sent */
	char head[RESPONSE_HEAD_MAX];
	size_t head_len;
	enum body_kind kind;
	struct buf body; /* BODY_BUF: owned */
	int fd;          /* BODY_FILE: owned, closed by response_free */
	off_t file_off;
	size_t file_len;
	/* BODY_FILE with a body (userver's dynamic replies sent with sendfile): the file goes
	 * after body[0, file_at) and before the rest of the body.  Empty body: plain file. */
	size_t file_at;
};

void response_init(struct response *r);
void response_free(struct response *r); /* frees the buffer, closes the fd; safe twice */
/* Total bytes on the wire (head + body + file). */
size_t response_length(const struct response *r);

/* Fill r->head.  extra_headers: "" or complete "Name: value\r\n" lines.  -1 if it overflows. */
int response_set_head(struct response *r, int minor_version, int status, const char *content_type,
		      size_t content_length, const char *extra_headers, const char *server_name);

/* A complete error response (small HTML body, Connection: close). */
void response_error(struct response *r, int minor_version, int status, const char *server_name);

#endif
