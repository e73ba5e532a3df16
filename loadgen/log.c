/* The per-request log. Each worker thread writes its own gzip member (no locking on the hot
 * path); at the end the members are concatenated into requests.csv.gz, which is itself a valid
 * gzip file (RFC 1952 allows several members). Rows are in completion order within a thread.
 * Rows are formatted by hand into a 256 KiB buffer and compressed at level 1, so that logging
 * costs well under a microsecond per request and never limits throughput. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loadgen.h"
#include "log.h"

#define LOG_BUF (256 * 1024)
#define ROW_MAX 160

static int flush(struct req_log *l)
{
    if (l->len && !l->failed && gzwrite(l->gz, l->buf, (unsigned)l->len) != (int)l->len)
        l->failed = 1;
    l->len = 0;
    return l->failed ? -1 : 0;
}

int log_open(struct req_log *l, const char *path, int with_header)
{
    memset(l, 0, sizeof *l);
    snprintf(l->path, sizeof l->path, "%s", path);
    l->buf = malloc(LOG_BUF);
    l->gz = gzopen(path, "wb1");
    if (!l->buf || !l->gz)
        return -1;
    gzbuffer(l->gz, 1 << 20);
    if (with_header) {
        memcpy(l->buf, LOG_HEADER, sizeof LOG_HEADER - 1);
        l->len = sizeof LOG_HEADER - 1;
    }
    return 0;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_int(char *p, int v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)(-(int64_t)v));
    }
    return put_u64(p, (uint64_t)v);
}

static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

void log_row(struct req_log *l, const struct log_row *r)
{
    if (l->len + ROW_MAX > LOG_BUF)
        flush(l);
    char *p = l->buf + l->len;
    p = put_u64(p, r->t_start_us); *p++ = ',';
    p = put_u64(p, r->t_end_us); *p++ = ',';
    p = put_int(p, r->conn); *p++ = ',';
    p = put_str(p, type_names[r->type]); *p++ = ',';
    p = put_int(p, r->cls); *p++ = ',';
    p = put_int(p, r->dir); *p++ = ',';
    p = put_int(p, r->file); *p++ = ',';
    p = put_int(p, r->status); *p++ = ',';
    p = put_u64(p, r->bytes); *p++ = ',';
    *p++ = r->ok ? '1' : '0'; *p++ = ',';
    if (r->error != E_NONE)
        p = put_str(p, err_names[r->error]);
    *p++ = ',';
    p = put_str(p, r->measure ? "measure\n" : "warmup\n");
    l->len = (size_t)(p - l->buf);
}

int log_close(struct req_log *l)
{
    int rc = flush(l);
    if (l->gz && gzclose(l->gz) != Z_OK)
        rc = -1;
    l->gz = NULL;
    free(l->buf);
    l->buf = NULL;
    return rc || l->failed ? -1 : 0;
}

/* Concatenate the members into out (via a temporary name, renamed at the end), then remove
 * the parts. Returns 0, or -1 with errno set. */
int log_merge(const char *out, char *const parts[], int n)
{
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *o = fopen(tmp, "wb");
    if (!o)
        return -1;
    static char chunk[1 << 16];
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        FILE *f = fopen(parts[i], "rb");
        if (!f) {
            rc = -1;
            break;
        }
        size_t k;
        while (rc == 0 && (k = fread(chunk, 1, sizeof chunk, f)) > 0)
            if (fwrite(chunk, 1, k, o) != k)
                rc = -1;
        if (ferror(f))
            rc = -1;
        fclose(f);
    }
    if (fclose(o) != 0)
        rc = -1;
    if (rc == 0 && rename(tmp, out) != 0)
        rc = -1;
    if (rc == 0)
        for (int i = 0; i < n; i++)
            unlink(parts[i]);
    return rc;
}
