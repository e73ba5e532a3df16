/* Validation of every reply (§6.3) and the custom-ad prediction (§4.5, §4.6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

static const char SUFFIX[] = "\n</pre>\n</body></html>\n"; /* §4.2, after the file */
#define SUFFIX_LEN (sizeof SUFFIX - 1)

/* A reply can be no larger than the largest file plus a generous wrapper allowance. */
uint64_t max_response_body(void) { return 921600 + 4096; }

/* §4.6 demographics: the interest2 table differs between users (upfgen) and ads (cadgen). */
static uint32_t demographics(int k, const uint32_t interest2[10])
{
    static const uint32_t AGE[4] = {0x08000000, 0x04000000, 0x02000000, 0x01000000};
    static const uint32_t REGION[4] = {0x00800000, 0x00400000, 0x00200000, 0x00100000};
    int c4 = k & 0xF, c3 = (k >> 4) & 0xF, c2 = (k >> 8) & 0xF;
    uint32_t gender = (k % 2) ? 0x20000000 : 0x10000000;
    return gender | AGE[k % 4] | REGION[(c4 + c2) % 4] | (0x80000u >> ((c4 + c3) % 10)) |
           interest2[c4 % 10];
}

static const uint32_t USER_I2[10] = {0x200, 0x100, 0x80, 0x40, 0x20, 0x10, 0x8, 0x4, 0x2, 0x1};
static const uint32_t AD_I2[10] = {0x200, 0x100, 0x80, 0x40, 0x10, 0x20, 0x8, 0x4, 0x2, 0x1};

uint32_t user_demographics(int j)
{
    int k = ((j % 360) * 10000) % 12301;
    return demographics(k ? k : 12300, USER_I2);
}

static int in_expired_range(int ad, int start)
{
    return ((ad - start) % NADS + NADS) % NADS < 24;
}

int ad_tables_init(struct ad_tables *t, const struct config *cfg)
{
    t->nusers = cfg->maxload > cfg->maxthread ? cfg->maxload : cfg->maxthread;
    t->user_dem = calloc((size_t)(t->nusers > 0 ? t->nusers : 1), sizeof *t->user_dem);
    if (!t->user_dem)
        return -1;
    for (int j = 0; j < t->nusers; j++)
        t->user_dem[j] = user_demographics(j);
    int match1 = (cfg->maxthread + 24) % 24;
    for (int j = 0; j < NADS; j++) {
        int k = (j * 10000) % 12301;
        k = k ? k : 12300;
        t->ad_dem[j] = demographics(k, AD_I2);
        uint32_t wt = (uint32_t)(((int64_t)k * k) % 1048576);
        t->ad_wt[j] = wt ? wt : 0x27104;
        t->minmatch[j] = 75;
        if (j % 24 == match1) { /* always-match ads */
            t->minmatch[j] = 1;
            t->ad_wt[j] = 0x3FFFF;
            t->ad_dem[j] |= 0x3FF;
        }
        /* Non-expired ads expire at Reset + 2*pttime: after any run shorter than that. */
        t->expired[j] = (uint8_t)(in_expired_range(j, cfg->exp1) || in_expired_range(j, cfg->exp2));
    }
    return 0;
}

void ad_tables_free(struct ad_tables *t)
{
    free(t->user_dem);
    t->user_dem = NULL;
}

static int ad_weight(uint32_t c, uint32_t wt)
{
    int w = 0;
    if (c & 0x30000000) w += (wt >> 16) & 0xF;
    if (c & 0x0F000000) w += (wt >> 12) & 0xF;
    if (c & 0x00F00000) w += (wt >> 8) & 0xF;
    if (c & 0x000FFC00) w += (wt >> 4) & 0xF;
    if (c & 0x000003FF) w += wt & 0xF;
    return w;
}

/* §4.5 step 4, literally: scan from last_ad+1 round to last_ad for the first ad whose weight
 * reaches its minmatch; none → last_ad with the last weight. */
struct ad predict_ad(const struct ad_tables *t, int user_id, int last_ad)
{
    int u = user_id - 10000;
    if (u < 0 || u >= t->nusers || last_ad < 0 || last_ad >= NADS)
        return (struct ad){-1, 0, 1};
    int ad = last_ad, w = 0;
    do {
        ad = (ad + 1) % NADS;
        w = ad_weight(t->user_dem[u] & t->ad_dem[ad], t->ad_wt[ad]);
        if (w >= t->minmatch[ad])
            break;
    } while (ad != last_ad);
    return (struct ad){ad, w, t->expired[ad]};
}

/* First line of a SPECweb99 file, "%9d %s\n" (§1.4): size and name must be the expected ones. */
static enum err_kind check_size_line(const char *p, size_t n, const struct deck_entry *e)
{
    char name[48];
    int len = snprintf(name, sizeof name, "file_set/dir%05d/class%d_%d", e->dir, e->cls, e->file);
    const char *nl = memchr(p, '\n', n);
    if (!nl)
        return E_CONTENT;
    const char *s = p;
    while (s < nl && *s == ' ')
        s++;
    long size = 0;
    const char *d = s;
    while (s < nl && *s >= '0' && *s <= '9' && s - d < 10)
        size = size * 10 + (*s++ - '0');
    if (s == d || s >= nl || *s != ' ')
        return E_CONTENT;
    s++;
    if (size != file_size(e->cls, e->file))
        return E_SIZE;
    if (nl - s != len || memcmp(s, name, (size_t)len) != 0)
        return E_CONTENT;
    return E_NONE;
}

static enum err_kind check_static(const struct request_info *q, const struct http_resp *r)
{
    if (r->content_length != file_size(q->e.cls, q->e.file))
        return E_SIZE;
    return check_size_line(http_body(r), http_body_kept(r), &q->e);
}

/* The wrapper of §4.2: <html>, the echoed QUERY_STRING, <pre>, the file, the fixed suffix. */
static enum err_kind check_wrapper(const struct request_info *q, const struct http_resp *r)
{
    const char *b = http_body(r);
    size_t n = http_body_kept(r);
    if (!memmem(b, n, "<html>", 6))
        return E_CONTENT;
    const char *pre = memmem(b, n, "<pre>\n", 6);
    if (!pre)
        return E_CONTENT;
    if (q->e.type != T_POST) {
        char want[256];
        int wl = snprintf(want, sizeof want, "<p>QUERY_STRING = %s\n", q->query);
        if (wl >= (int)sizeof want || !memmem(b, (size_t)(pre - b), want, (size_t)wl))
            return E_QUERY;
    }
    size_t off = (size_t)(pre - b) + 6;
    enum err_kind k = check_size_line(pre + 6, n - off, &q->e);
    if (k != E_NONE)
        return k;
    if ((uint64_t)r->content_length != off + (uint64_t)file_size(q->e.cls, q->e.file) + SUFFIX_LEN)
        return E_SIZE;
    return E_NONE;
}

/* Copy the Set-Cookie value into a NUL-terminated string; empty when there was none. */
static void cookie_value(const struct http_resp *r, char *out, size_t cap)
{
    size_t n = r->cookie_len < cap - 1 ? r->cookie_len : cap - 1;
    memcpy(out, r->buf + r->cookie_off, n);
    out[n] = '\0';
}

static enum err_kind check_cad_cookie(const struct config *cfg, const struct ad_tables *t,
                                      const struct request_info *q, const char *cookie,
                                      int *ad_id)
{
    struct ad got;
    int used = 0;
    if (sscanf(cookie, "found_cookie=Ad_id=%d&Ad_weight=%d&Expired=%d%n", &got.id, &got.weight,
               &got.expired, &used) != 3 || cookie[used] != '\0')
        return E_COOKIE;
    if (got.id < 0 || got.id >= NADS || got.weight < 0 || got.weight > MAX_AD_WEIGHT ||
        (got.expired != 0 && got.expired != 1))
        return E_AD;
    *ad_id = got.id;
    if (!cfg->have_reset) /* without the Reset parameters, §6.3's range checks only */
        return E_NONE;
    struct ad want = predict_ad(t, q->user_id, q->last_ad);
    if (got.id != want.id || got.weight != want.weight || got.expired != want.expired)
        return E_AD;
    return E_NONE;
}

enum err_kind validate_response(const struct config *cfg, const struct ad_tables *t,
                                const struct request_info *q, const struct http_resp *r,
                                int *ad_id)
{
    if (q->url_mode)
        return E_NONE; /* status and length were checked by the parser */
    if (q->e.type == T_STATIC)
        return check_static(q, r);
    enum err_kind k = check_wrapper(q, r);
    if (k != E_NONE || (q->e.type != T_CAD_GET && q->e.type != T_POST))
        return k;
    char cookie[128];
    cookie_value(r, cookie, sizeof cookie);
    if (q->e.type == T_POST) {
        int uid = 0, used = 0;
        if (sscanf(cookie, "my_cookie=%d%n", &uid, &used) != 1 || cookie[used] != '\0' ||
            uid != q->user_id)
            return E_COOKIE;
        return E_NONE;
    }
    return check_cad_cookie(cfg, t, q, cookie, ad_id);
}

const char *const err_names[NERRS] = {
    "", "connect", "reset", "timeout", "status", "malformed", "length",
    "too_large", "size", "content", "query", "cookie", "ad", "inflight",
};
