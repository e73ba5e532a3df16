/* Validation of every reply (§6.3) and the custom-ad prediction (§4.5, §4.6). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "validate.h"

#define SUFFIX SW99_WRAP_SUFFIX /* §4.2, after the file */
#define SUFFIX_LEN (sizeof SUFFIX - 1)

/* A reply can be no larger than the largest file plus a generous wrapper allowance. */
uint64_t max_response_body(void) { return 921600 + 4096; }

int ad_tables_init(struct ad_tables *t, const struct config *cfg)
{
    t->nusers = (int)sw99_user_count(cfg->maxload, cfg->maxthread);
    t->user_dem = calloc((size_t)(t->nusers > 0 ? t->nusers : 1), sizeof *t->user_dem);
    if (!t->user_dem)
        return -1;
    for (int j = 0; j < t->nusers; j++)
        t->user_dem[j] = sw99_user_demographics(j);
    /* [I] the Reset's time is not known here: the tables are dated now. The sweep sends Reset
     * just before it starts loadgen, with pttime the run's length, so on either clock only the
     * two expired ranges are expired while the run lasts (the others expire at 2·pttime). */
    sw99_ads_generate(t->ads, cfg->pttime, cfg->maxthread, cfg->exp1, cfg->exp2, (long)time(NULL));
    return 0;
}

void ad_tables_free(struct ad_tables *t)
{
    free(t->user_dem);
    t->user_dem = NULL;
}

struct ad predict_ad(const struct ad_tables *t, int user_id, int last_ad)
{
    int u = user_id - SW99_USER_BASE;
    if (u < 0 || u >= t->nusers || last_ad < 0 || last_ad >= NADS)
        return (struct ad){-1, 0, 1};
    struct sw99_choice c = sw99_find_ad(t->user_dem[u], last_ad, t->ads);
    return (struct ad){c.ad, c.weight, sw99_expired(&t->ads[c.ad], (long)time(NULL))};
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

/* Copy the Set-Cookie value into a NUL-terminated string (empty when there was none);
 * false when it does not fit: a cut value could otherwise pass the checks below. */
static bool cookie_value(const struct http_resp *r, char *out, size_t cap)
{
    if (r->cookie_len >= cap)
        return false;
    memcpy(out, r->buf + r->cookie_off, r->cookie_len);
    out[r->cookie_len] = '\0';
    return true;
}

/* The literal prefix, then 1-9 decimal digits, as the servers print them with %d: no sign,
 * no space, no overflow (sscanf's %d took 4294977297 for 10001). Advances *s past them. */
static bool take_field(const char **s, const char *prefix, int *out)
{
    size_t n = strlen(prefix);
    if (strncmp(*s, prefix, n) != 0)
        return false;
    const char *p = *s + n;
    int v = 0, digits = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (++digits > 9)
            return false;
        v = v * 10 + (*p - '0');
    }
    if (digits == 0)
        return false;
    *out = v;
    *s = p;
    return true;
}

static enum err_kind check_cad_cookie(const struct config *cfg, const struct ad_tables *t,
                                      const struct request_info *q, const char *cookie,
                                      int *ad_id)
{
    struct ad got;
    const char *s = cookie;
    if (!take_field(&s, "found_cookie=Ad_id=", &got.id) ||
        !take_field(&s, "&Ad_weight=", &got.weight) || !take_field(&s, "&Expired=", &got.expired) ||
        *s != '\0')
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
    if (!cookie_value(r, cookie, sizeof cookie))
        return E_COOKIE;
    if (q->e.type == T_POST) {
        const char *s = cookie;
        int uid = 0;
        if (!take_field(&s, "my_cookie=", &uid) || *s != '\0' || uid != q->user_id)
            return E_COOKIE;
        return E_NONE;
    }
    return check_cad_cookie(cfg, t, q, cookie, ad_id);
}

const char *const err_names[NERRS] = {
    "", "connect", "reset", "timeout", "status", "malformed", "length",
    "too_large", "size", "content", "query", "cookie", "ad", "inflight",
};
