/* Response parsing for loadgen. Strict where the real client was (§6.3: the status line must
 * parse, the length must be right) and bounded everywhere: a header section that does not fit
 * RESP_KEEP is E_TOO_LARGE, never an overflow. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_client.h"
#include "loadgen.h"

void http_resp_reset(struct http_resp *r)
{
    r->kept = r->hdr_len = 0;
    r->status = 0;
    r->content_length = -1;
    r->bytes = r->body_got = 0;
    r->cookie_off = r->cookie_len = 0;
    r->close = 0;
}

/* "HTTP/1.x DDD ..." — anything else is malformed. */
static int parse_status_line(struct http_resp *r, const char *s, size_t len)
{
    if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        return -E_MALFORMED;
    for (int i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return -E_MALFORMED;
    if (len > 12 && s[12] != ' ')
        return -E_MALFORMED;
    r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    r->close = s[7] == '0'; /* HTTP/1.0 closes unless it says keep-alive */
    return 0;
}

static int parse_length(const char *v, size_t len, uint64_t max_body, int64_t *out)
{
    if (len == 0 || len > 18)
        return len > 18 ? -E_TOO_LARGE : -E_MALFORMED;
    int64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -E_MALFORMED;
        x = x * 10 + (v[i] - '0');
    }
    if ((uint64_t)x > max_body)
        return -E_TOO_LARGE;
    *out = x;
    return 0;
}

static int parse_header(struct http_resp *r, const char *s, size_t len, uint64_t max_body)
{
    const char *colon = memchr(s, ':', len);
    if (!colon || colon == s)
        return -E_MALFORMED;
    size_t nlen = (size_t)(colon - s);
    const char *v = colon + 1, *end = s + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (nlen == 14 && strncasecmp(s, "Content-Length", 14) == 0) {
        int64_t n = -1;
        int rc = parse_length(v, vlen, max_body, &n);
        if (rc == 0 && r->content_length >= 0 && n != r->content_length)
            return -E_LENGTH; /* two lengths that disagree: where the body ends is unknown */
        if (rc == 0)
            r->content_length = n;
        return rc;
    }
    if (nlen == 10 && strncasecmp(s, "Set-Cookie", 10) == 0 && r->cookie_len == 0) {
        r->cookie_off = (uint16_t)(v - r->buf);
        r->cookie_len = (uint16_t)vlen;
    } else if (nlen == 10 && strncasecmp(s, "Connection", 10) == 0) {
        if (vlen == 5 && strncasecmp(v, "close", 5) == 0)
            r->close = 1;
        else if (vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0)
            r->close = 0;
    } else if (nlen == 17 && strncasecmp(s, "Transfer-Encoding", 17) == 0) {
        return -E_LENGTH; /* [I] SPECweb99 replies carry Content-Length; chunking is not one */
    }
    return 0;
}

/* Parse the complete header section buf[0..hdr_len). */
static int parse_headers(struct http_resp *r, uint64_t max_body)
{
    const char *p = r->buf, *end = r->buf + r->hdr_len - 2; /* before the blank line */
    /* A NUL, or a CR that ends no line, is in no valid field (RFC 9112 §2.2, §5): refused, so
     * no check reads a value other than the one sent (a cookie cut short at a NUL). */
    for (const char *c = p; c < end; c++)
        if (*c == '\0' || (*c == '\r' && c[1] != '\n'))
            return -E_MALFORMED;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol || eol == p || eol[-1] != '\r')
        return -E_MALFORMED;
    int rc = parse_status_line(r, p, (size_t)(eol - 1 - p));
    for (p = eol + 1; rc == 0 && p < end; p = eol + 1) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol || eol == p || eol[-1] != '\r')
            return -E_MALFORMED;
        rc = parse_header(r, p, (size_t)(eol - 1 - p), max_body);
    }
    if (rc == 0 && r->status == 200 && r->content_length < 0)
        return -E_LENGTH; /* [I] a 200 without Content-Length cannot be checked or delimited */
    return rc;
}

static int find_header_end(struct http_resp *r, uint32_t from)
{
    uint32_t start = from >= 3 ? from - 3 : 0;
    for (uint32_t i = start; i + 3 < r->kept; i++)
        if (r->buf[i] == '\r' && memcmp(r->buf + i, "\r\n\r\n", 4) == 0)
            return (int)(i + 4);
    return 0;
}

static int feed_headers(struct http_resp *r, const char *data, size_t n, size_t *used,
                        uint64_t max_body)
{
    size_t room = RESP_KEEP - r->kept, take = n < room ? n : room;
    uint32_t from = r->kept;
    memcpy(r->buf + r->kept, data, take);
    r->kept += (uint32_t)take;
    int end = find_header_end(r, from);
    if (!end) {
        *used = take;
        r->bytes += take;
        return r->kept >= RESP_KEEP ? -E_TOO_LARGE : 0;
    }
    /* Bytes after the header end were copied too: they are the first body bytes. */
    r->hdr_len = (uint32_t)end;
    size_t over = r->kept - (uint32_t)end;
    r->kept = (uint32_t)end;
    *used = take - over;
    r->bytes += *used;
    return parse_headers(r, max_body);
}

static int feed_body(struct http_resp *r, const char *data, size_t n, size_t *used)
{
    uint64_t want = (uint64_t)r->content_length - r->body_got;
    size_t take = n < want ? n : (size_t)want;
    size_t room = RESP_KEEP - r->kept, keep = take < room ? take : room;
    memcpy(r->buf + r->kept, data, keep);
    r->kept += (uint32_t)keep;
    r->body_got += take;
    r->bytes += take;
    *used = take;
    return r->body_got == (uint64_t)r->content_length;
}

int http_feed(struct http_resp *r, const char *data, size_t n, size_t *used, uint64_t max_body)
{
    size_t total = 0, u = 0;
    if (!r->hdr_len) {
        int rc = feed_headers(r, data, n, &u, max_body);
        total = u;
        if (rc != 0 || !r->hdr_len) {
            *used = total;
            return rc;
        }
        if (r->status != 200) {
            *used = total;
            return -E_STATUS; /* the body of an error reply is not needed (§6.3) */
        }
    }
    int rc = feed_body(r, data + total, n - total, &u);
    *used = total + u;
    return rc;
}
