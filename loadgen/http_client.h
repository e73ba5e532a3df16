/* Incremental HTTP/1.x response parser: status line, headers, Content-Length body. */
#ifndef HTTP_CLIENT_H
#define HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* Headers plus the start of the body are kept: enough for the size line of a static file and
 * the whole dynamic wrapper prefix (§4.2, §6.3); later body bytes are only counted. */
#define RESP_KEEP 2048

struct http_resp {
    char buf[RESP_KEEP];
    uint32_t kept;        /* bytes held in buf */
    uint32_t hdr_len;     /* 0 until the header section is complete (includes the blank line) */
    int status;           /* 0 until a status line parsed */
    int64_t content_length;
    uint64_t bytes;       /* every response byte received, headers included */
    uint64_t body_got;
    uint16_t cookie_off, cookie_len; /* first Set-Cookie value, inside buf */
    uint8_t close;        /* the server will close: Connection: close, or HTTP/1.0 */
};

void http_resp_reset(struct http_resp *r);
/* Feed n bytes; *used gets how many belong to this response. Returns 1 when the response is
 * complete, 0 when more is needed, or -kind (an enum err_kind) on a protocol error.
 * max_body bounds Content-Length (a response larger than any file is E_TOO_LARGE). */
int http_feed(struct http_resp *r, const char *data, size_t n, size_t *used, uint64_t max_body);
static inline const char *http_body(const struct http_resp *r) { return r->buf + r->hdr_len; }
static inline size_t http_body_kept(const struct http_resp *r) { return r->kept - r->hdr_len; }

#endif
