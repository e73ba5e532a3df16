/* validate_fuzz.c — libFuzzer target: loadgen's reply validator (validate.c, §6.3), on replies
 * its response parser has accepted.
 *
 * An input is a request (type, class, file, directory, user, last ad, the Reset parameters)
 * and either a reply in raw bytes or edits (replace, insert, delete a byte) to the reply a
 * correct server sends for that request (§4.2 wrapper, §1.4 first line, the §4.5/§4.7 cookie).
 * The rules a client relies on:
 *   - the validator reads only the bytes the parser kept: the rest of the reply buffer is
 *     poisoned, so ASan reports any read past them;
 *   - the correct reply to a well-formed request (user and last ad in range) is accepted,
 *     and a custom-ad reply's Ad_id is the one the prediction gives;
 *   - a reply is accepted only when it is valid by an independent reading of the spec: the
 *     exact length for the file (static: the file size; dynamic: the wrapper prefix up to the
 *     first "<pre>\n", the file, the 24-byte suffix), the first line "SIZE file_set/dirD/classC_F"
 *     (spaces and leading zeros before SIZE allowed, as "%9d" pads), "<html>" and, except for a
 *     POST, "<p>QUERY_STRING = <query as sent>" before "<pre>\n", and the cookie: a POST's
 *     "my_cookie=<user_id>", a custom-ad GET's "found_cookie=Ad_id=A&Ad_weight=W&Expired=E"
 *     with A an ad, W within 0..63, E 0 or 1 (and the predicted ad when the Reset parameters
 *     are known) and nothing after it.  A cookie's numbers are decimal digits as %d prints
 *     them (leading zeros allowed, no blank, no sign) and must fit an int: a number that
 *     wraps is not the one sent.
 */
#include <sanitizer/asan_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../http_client.h"
#include "../validate.h"

#define REQUIRE(cond)                                                                     \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "validate_fuzz: rule broken at %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                                               \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* Input: PARAMS bytes describing the request, then the reply (raw) or 4-byte edits. */
enum { P_TYPE, P_CLS, P_FILE, P_DIR0, P_DIR1, P_USER, P_MAXLOAD, P_MAXTHREAD, P_EXP1, P_EXP2,
       P_AD0, P_AD1, PARAMS };
#define RAW 0x10        /* P_TYPE bit: the reply is the raw bytes after the parameters */
#define RESET 0x20      /* P_TYPE bit: the Reset parameters are known (the exact ad is checked) */
#define MAX_EDITS 8
#define EDIT_SPAN 2400  /* edits land in the reply's first bytes: all the parser keeps */

static const char SUFFIX[] = "\n</pre>\n</body></html>\n";
#define SUFFIX_LEN (sizeof SUFFIX - 1)

/* §1.3: file N of class C is (N + 1) tenths of 1 KiB, 10 KiB, 100 KiB or 1000 KiB, truncated. */
static long spec_file_size(int cls, int num)
{
    static const long KIB[4] = {1, 10, 100, 1000};
    return KIB[cls] * 1024 * (num + 1) / 10;
}

static const char *find(const char *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle));
}

/* "   0005120 file_set/dir00042/class1_4\n" at s: the §1.4 first line of the expected file. */
static int first_line_ok(const char *s, size_t n, const struct deck_entry *e)
{
    char want[64];
    int wl = snprintf(want, sizeof want, "%ld file_set/dir%05d/class%d_%d\n",
                      spec_file_size(e->cls, e->file), e->dir, e->cls, e->file);
    size_t i = 0;
    while (i < n && s[i] == ' ')
        i++;
    while (i < n && s[i] == '0')
        i++;
    return n - i >= (size_t)wl && memcmp(s + i, want, (size_t)wl) == 0;
}

/* Decimal digits at *s (advanced past them) as an int; 0 when absent or out of int range. */
static int read_int(const char **s, const char *end, long long *out)
{
    const char *p = *s;
    long long v = 0;
    const char *d = p;
    while (p < end && *p >= '0' && *p <= '9' && v <= 1LL << 32)
        v = v * 10 + (*p++ - '0');
    if (p == d || (p < end && *p >= '0' && *p <= '9'))
        return 0;
    if (v > 2147483647LL)
        return 0;
    *out = v;
    *s = p;
    return 1;
}

static int lit(const char **s, const char *end, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(end - *s) < n || memcmp(*s, word, n) != 0)
        return 0;
    *s += n;
    return 1;
}

/* The independent check: is this reply (head = its first bytes, at least what the parser kept)
 * valid for the request? */
static int valid_reply(const struct request_info *q, const struct ad_tables *t, int have_reset,
                       const struct http_resp *r, const char *head, size_t head_len)
{
    const char *body = head + r->hdr_len;
    size_t n = head_len - r->hdr_len; /* the body's first bytes, and no byte after it */
    if ((uint64_t)r->content_length < n)
        n = (size_t)r->content_length;
    long size = spec_file_size(q->e.cls, q->e.file);
    if (q->e.type == T_STATIC)
        return r->content_length == size && first_line_ok(body, n, &q->e);
    const char *pre = find(body, n, "<pre>\n");
    if (!pre || !find(body, n, "<html>"))
        return 0;
    size_t at = (size_t)(pre - body) + 6;
    if ((uint64_t)r->content_length != at + (uint64_t)size + SUFFIX_LEN ||
        !first_line_ok(pre + 6, n - at, &q->e))
        return 0;
    char echo[300];
    snprintf(echo, sizeof echo, "<p>QUERY_STRING = %s\n", q->query);
    if (q->e.type != T_POST && !find(body, (size_t)(pre - body), echo))
        return 0;
    const char *c = r->buf + r->cookie_off, *end = c + r->cookie_len;
    long long id, weight, expired, uid;
    if (q->e.type == T_POST)
        return lit(&c, end, "my_cookie=") && read_int(&c, end, &uid) && c == end &&
               uid == q->user_id;
    if (q->e.type != T_CAD_GET)
        return 1;
    if (!(lit(&c, end, "found_cookie=Ad_id=") && read_int(&c, end, &id) &&
          lit(&c, end, "&Ad_weight=") && read_int(&c, end, &weight) &&
          lit(&c, end, "&Expired=") && read_int(&c, end, &expired) && c == end))
        return 0;
    if (id < 0 || id >= NADS || weight < 0 || weight > 63 || (expired != 0 && expired != 1))
        return 0;
    struct ad want = predict_ad(t, q->user_id, q->last_ad);
    return !have_reset || (id == want.id && weight == want.weight && expired == want.expired);
}

static char *reply;        /* the correct reply, then edited in its first EDIT_SPAN bytes */
static size_t reply_cap;
static struct http_resp resp; /* static: buf sits at an 8-byte boundary, its end too */

/* What a correct server sends (servers/common: response head, sw99_wrap, the cookie). */
static size_t correct_reply(const struct request_info *q, const struct ad_tables *t)
{
    long size = spec_file_size(q->e.cls, q->e.file);
    char prefix[512] = "", cookie[128] = "", head[512];
    if (q->e.type != T_STATIC)
        snprintf(prefix, sizeof prefix,
                 "<html>\n<head><title>SPECweb99 Dynamic GET & POST Test</title></head>\n"
                 "<body>\n<p>SERVER_SOFTWARE = fuzz\n<p>REMOTE_ADDR = 127.0.0.1\n"
                 "<p>SCRIPT_NAME = %s\n<p>QUERY_STRING = %s\n<pre>\n",
                 q->e.type == T_CGI_GET ? "/cgi-bin/specweb99" : "/specweb99", q->query);
    if (q->e.type == T_POST)
        snprintf(cookie, sizeof cookie, "Set-Cookie: my_cookie=%d\r\n", q->user_id);
    if (q->e.type == T_CAD_GET) {
        struct ad a = predict_ad(t, q->user_id, q->last_ad);
        snprintf(cookie, sizeof cookie,
                 "Set-Cookie: found_cookie=Ad_id=%d&Ad_weight=%d&Expired=%d\r\n", a.id, a.weight,
                 a.expired);
    }
    size_t plen = strlen(prefix), slen = q->e.type == T_STATIC ? 0 : SUFFIX_LEN;
    size_t body = plen + (size_t)size + slen;
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nServer: fuzz\r\nContent-Type: text/html\r\n"
                      "Content-Length: %zu\r\n%sConnection: keep-alive\r\n\r\n",
                      body, cookie);
    size_t len = (size_t)hl + body;
    REQUIRE(len + MAX_EDITS <= reply_cap);
    char *p = reply;
    memcpy(p, head, (size_t)hl), p += hl;
    memcpy(p, prefix, plen), p += plen;
    int fl = snprintf(p, 64, "%9ld file_set/dir%05d/class%d_%d\n", size, q->e.dir, q->e.cls,
                      q->e.file);
    memset(p + fl, 'x', (size_t)size - (size_t)fl), p += size;
    memcpy(p, SUFFIX, slen);
    return len;
}

/* Edits of 4 bytes each: position (2), operation, byte. */
static size_t edit(char *s, size_t len, const uint8_t *ops, size_t n)
{
    for (size_t i = 0; i + 4 <= n && i < 4 * MAX_EDITS; i += 4) {
        size_t span = len < EDIT_SPAN ? len : EDIT_SPAN;
        size_t at = (ops[i] | (size_t)ops[i + 1] << 8) % (span + 1);
        switch (ops[i + 2] % 3) {
        case 0:
            if (at < len)
                s[at] = (char)ops[i + 3];
            break;
        case 1:
            memmove(s + at + 1, s + at, len - at);
            s[at] = (char)ops[i + 3];
            len++;
            break;
        default:
            if (at < len) {
                memmove(s + at, s + at + 1, len - at - 1);
                len--;
            }
        }
    }
    return len;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    reply_cap = 1024 + 1024 + 921600 + SUFFIX_LEN + MAX_EDITS + 64;
    reply = malloc(reply_cap);
    REQUIRE(reply);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t p[PARAMS] = {0};
    memcpy(p, data, size < PARAMS ? size : PARAMS);
    const uint8_t *rest = data + (size < PARAMS ? size : PARAMS);
    size_t rest_len = size < PARAMS ? 0 : size - PARAMS;

    struct config cfg = {0};
    cfg.maxload = 1 + p[P_MAXLOAD] % 100;
    cfg.maxthread = 1 + p[P_MAXTHREAD] % 100;
    cfg.exp1 = p[P_EXP1] * 3 % NADS;
    cfg.exp2 = p[P_EXP2] * 3 % NADS;
    cfg.pttime = 3600;
    cfg.have_reset = (p[P_TYPE] & RESET) != 0;
    struct ad_tables t;
    REQUIRE(ad_tables_init(&t, &cfg) == 0);

    char query[64];
    struct request_info q = {.e = {.type = (int8_t)(p[P_TYPE] % 16 % NTYPES),
                                   .cls = (int8_t)(p[P_CLS] % NCLASSES),
                                   .file = (int8_t)(p[P_FILE] % NFILES),
                                   .dir = p[P_DIR0] | p[P_DIR1] << 8},
                             .user_id = 10000 + p[P_USER] - 4,
                             .last_ad = (p[P_AD0] | p[P_AD1] << 8) % 400,
                             .query = query};
    snprintf(query, sizeof query, "/file_set/dir%05d/class%d_%d", q.e.dir, q.e.cls, q.e.file);
    int in_range = q.user_id >= 10000 && q.user_id - 10000 < t.nusers && q.last_ad < NADS;

    /* The reply: raw bytes, or the correct one edited (only its first bytes: a copy of them
     * goes first, the untouched rest after). */
    const char *head, *tail = "";
    size_t head_len, tail_len = 0;
    static char edited[EDIT_SPAN + MAX_EDITS];
    int unchanged = 0;
    if (p[P_TYPE] & RAW) {
        head = (const char *)rest, head_len = rest_len;
    } else {
        size_t len = correct_reply(&q, &t);
        size_t cut = len < EDIT_SPAN ? len : EDIT_SPAN;
        memcpy(edited, reply, cut);
        head_len = edit(edited, cut, rest, rest_len);
        unchanged = head_len == cut && memcmp(edited, reply, cut) == 0;
        head = edited, tail = reply + cut, tail_len = len - cut;
    }

    http_resp_reset(&resp);
    size_t used = 0, used2 = 0;
    int rc = http_feed(&resp, head, head_len, &used, max_response_body());
    if (rc == 0 && tail_len)
        rc = http_feed(&resp, tail, tail_len, &used2, max_response_body());
    if (unchanged && in_range)
        REQUIRE(rc == 1 && used + used2 == head_len + tail_len);
    if (rc == 1) {
        REQUIRE(resp.kept <= head_len); /* all the validator sees lies in the copied head */
        int ad_id = -1;
        ASAN_POISON_MEMORY_REGION(resp.buf + resp.kept, RESP_KEEP - resp.kept);
        enum err_kind err = validate_response(&cfg, &t, &q, &resp, &ad_id);
        ASAN_UNPOISON_MEMORY_REGION(resp.buf + resp.kept, RESP_KEEP - resp.kept);
        REQUIRE(err == E_NONE || (err >= E_SIZE && err <= E_AD));
        REQUIRE(ad_id >= -1 && ad_id < NADS && (q.e.type == T_CAD_GET || ad_id == -1));
        if (unchanged && in_range) {
            REQUIRE(err == E_NONE);
            if (q.e.type == T_CAD_GET)
                REQUIRE(ad_id == predict_ad(&t, q.user_id, q.last_ad).id);
        }
        if (err == E_NONE)
            REQUIRE(valid_reply(&q, &t, cfg.have_reset, &resp, head, head_len));
    }
    ad_tables_free(&t);
    return 0;
}
