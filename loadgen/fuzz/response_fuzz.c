/* response_fuzz.c — libFuzzer target: the bytes a server sends back, through loadgen's response
 * parser (http_client.c), checked against an independent reading of the framing rules a client
 * relies on (loadgen/README.md, RFC 9112 §6):
 *   - the header section ends at the first CRLF CRLF and must do so within RESP_KEEP bytes
 *     (more arrived without it: too_large; fewer: wait); lines end in CRLF, with no bare LF
 *     or CR and no NUL in them (RFC 9112 §2.2: a field the client cannot read as sent);
 *   - the status line is "HTTP/1.0" or "HTTP/1.1", a space, three digits, then nothing or a
 *     space and a reason; every header line has a non-empty name before a colon;
 *   - Content-Length is 1-18 digits (spaces and tabs around them), at most the largest reply;
 *     several must agree; Transfer-Encoding (chunking) is refused; a 200 needs Content-Length;
 *   - a well-framed reply other than 200 is `status`; a 200 is accepted exactly when its
 *     Content-Length body bytes have arrived, and uses exactly header + body bytes (what follows
 *     belongs to no request).
 * Verdicts are compared by class: accepted (with the bytes used, status, kept body and first
 * Set-Cookie), waiting, `status`, or refused (malformed, length or too_large alike).
 * The input is also fed one byte at a time and in pieces: TCP may split a reply anywhere, and
 * the verdict must not change.  Input copies are exactly sized, so ASan catches any over-read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../http_client.h"
#include "../loadgen.h"

#define MAX_BODY (921600 + 4096) /* loadgen's bound: the largest file plus a wrapper allowance */

#define REQUIRE(cond)                                                                     \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "response_fuzz: rule broken at %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                                               \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

enum verdict { WAIT, ACCEPT, STATUS, REFUSE };

struct expect {
    enum verdict v;
    size_t used;      /* ACCEPT: header + body; STATUS: header */
    size_t hdr_len;
    int status;
    long long length; /* Content-Length, -1 when none */
    const char *cookie; /* first non-empty Set-Cookie value (trimmed), or NULL */
    size_t cookie_len;
};

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int name_is(const char *line, size_t name_len, const char *name)
{
    return name_len == strlen(name) && strncasecmp(line, name, name_len) == 0;
}

/* One header line (no CRLF); 0 when well formed. */
static int read_header(const char *line, size_t len, struct expect *x)
{
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line)
        return -1;
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (name_is(line, name_len, "Transfer-Encoding"))
        return -1;
    if (name_is(line, name_len, "Content-Length")) {
        if (vlen == 0 || vlen > 18)
            return -1;
        long long n = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (!is_digit(v[i]))
                return -1;
            n = n * 10 + (v[i] - '0');
        }
        if (n > MAX_BODY || (x->length >= 0 && x->length != n))
            return -1;
        x->length = n;
    }
    if (name_is(line, name_len, "Set-Cookie") && !x->cookie && vlen > 0)
        x->cookie = v, x->cookie_len = vlen;
    return 0;
}

static struct expect oracle(const char *d, size_t n)
{
    struct expect x = {.v = WAIT, .length = -1};
    const char *hend = memmem(d, n, "\r\n\r\n", 4);
    if (!hend || (size_t)(hend - d) + 4 > RESP_KEEP) {
        x.v = n >= RESP_KEEP ? REFUSE : WAIT;
        return x;
    }
    x.hdr_len = (size_t)(hend - d) + 4;
    x.v = REFUSE;
    /* lines up to the blank line, each ended by CRLF */
    const char *line = d, *stop = hend + 2;
    for (int first = 1; line < stop; first = 0) {
        const char *crlf = memmem(line, (size_t)(stop - line), "\r\n", 2);
        size_t len = (size_t)(crlf - line);
        if (memchr(line, '\n', len) || memchr(line, '\r', len) || memchr(line, '\0', len))
            return x; /* a bare LF or CR, or a NUL */
        if (first) {
            if (len < 12 || (memcmp(line, "HTTP/1.0 ", 9) && memcmp(line, "HTTP/1.1 ", 9)) ||
                !is_digit(line[9]) || !is_digit(line[10]) || !is_digit(line[11]) ||
                (len > 12 && line[12] != ' '))
                return x;
            x.status = atoi((char[4]){line[9], line[10], line[11], 0});
        } else if (read_header(line, len, &x) < 0) {
            return x;
        }
        line = crlf + 2;
    }
    if (x.status != 200) {
        x.v = STATUS;
        x.used = x.hdr_len;
        return x;
    }
    if (x.length < 0)
        return x;
    x.used = x.hdr_len + (size_t)x.length;
    x.v = n >= x.used ? ACCEPT : WAIT;
    return x;
}

struct outcome {
    int rc;
    size_t used;
    struct http_resp r;
};

/* Feed d[0..n) in pieces of `piece` bytes (each an exactly sized copy), as conn.c does: stop
 * at the first verdict. */
static void feed(const char *d, size_t n, size_t piece, struct outcome *o)
{
    http_resp_reset(&o->r);
    o->rc = 0;
    o->used = 0;
    for (size_t at = 0; at < n && o->rc == 0;) {
        size_t k = n - at < piece ? n - at : piece, used = 0;
        char *copy = malloc(k);
        REQUIRE(copy);
        memcpy(copy, d + at, k);
        o->rc = http_feed(&o->r, copy, k, &used, MAX_BODY);
        free(copy);
        REQUIRE(used <= k);
        REQUIRE(o->rc == 0 ? used == k : 1); /* waiting means every byte was taken */
        o->used += used;
        at += k;
    }
}

static void check(const struct outcome *o, const struct expect *x, const char *d)
{
    const struct http_resp *r = &o->r;
    REQUIRE(o->rc >= -(NERRS - 1) && o->rc <= 1);
    REQUIRE(r->kept <= RESP_KEEP && r->hdr_len <= r->kept);
    switch (x->v) {
    case WAIT:
        REQUIRE(o->rc == 0);
        return;
    case REFUSE:
        REQUIRE(o->rc == -E_MALFORMED || o->rc == -E_LENGTH || o->rc == -E_TOO_LARGE);
        return;
    case STATUS:
        REQUIRE(o->rc == -E_STATUS && o->used == x->used && r->status == x->status);
        return;
    case ACCEPT:
        break;
    }
    REQUIRE(o->rc == 1);
    REQUIRE(o->used == x->used && r->bytes == x->used && r->hdr_len == x->hdr_len);
    REQUIRE(r->status == 200 && r->content_length == x->length &&
            r->body_got == (uint64_t)x->length);
    REQUIRE(memcmp(r->buf, d, r->kept) == 0); /* the header and the start of the body, as sent */
    size_t want_kept = x->hdr_len + (size_t)x->length;
    REQUIRE(r->kept == (want_kept < RESP_KEEP ? want_kept : RESP_KEEP));
    if (x->cookie)
        REQUIRE(r->cookie_len == x->cookie_len && r->cookie_off == (size_t)(x->cookie - d));
    else
        REQUIRE(r->cookie_len == 0);
}

static struct outcome whole, bytewise, pieces;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *d = (const char *)data;
    struct expect x = oracle(d, size);
    feed(d, size, size ? size : 1, &whole);
    check(&whole, &x, d);
    feed(d, size, 1, &bytewise);
    check(&bytewise, &x, d);
    feed(d, size, 2 + size % 61, &pieces);
    check(&pieces, &x, d);
    return 0;
}
