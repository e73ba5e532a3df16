/* Just enough JSON for --config: one flat object whose keys are loadgen's long option names.
 * Nested objects are refused with a message rather than guessed at. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_flat.h"

#define MAX_CONFIG (1 << 20)

struct parser { const char *base, *p, *end; char *err; size_t n; const char *path; };

static int perr(struct parser *ps, const char *what)
{
    snprintf(ps->err, ps->n, "--config %s: %s at byte %ld", ps->path, what,
             (long)(ps->p - ps->base));
    return -1;
}

static void ws(struct parser *ps)
{
    while (ps->p < ps->end && isspace((unsigned char)*ps->p))
        ps->p++;
}

/* A string into out (cap bytes), with the simple escapes. */
static int string(struct parser *ps, char *out, size_t cap)
{
    size_t k = 0;
    if (*ps->p != '"')
        return perr(ps, "expected a string");
    for (ps->p++; ps->p < ps->end && *ps->p != '"'; ps->p++) {
        char ch = *ps->p;
        if (ch == '\\') {
            ps->p++;
            ch = *ps->p == 'n' ? '\n' : *ps->p == 't' ? '\t' : *ps->p;
            if (!strchr("\"\\/nt", *ps->p))
                return perr(ps, "unsupported escape in string");
        }
        if (k + 1 >= cap)
            return perr(ps, "string too long");
        out[k++] = ch;
    }
    if (ps->p >= ps->end)
        return perr(ps, "unterminated string");
    ps->p++;
    out[k] = '\0';
    return 0;
}

/* A scalar: string, number, true or false (the booleans become "1" and "0"). */
static int scalar(struct parser *ps, char *out, size_t cap)
{
    if (*ps->p == '"')
        return string(ps, out, cap);
    size_t k = 0;
    while (ps->p < ps->end && (isalnum((unsigned char)*ps->p) || strchr("+-.", *ps->p))) {
        if (k + 1 >= cap)
            return perr(ps, "value too long");
        out[k++] = *ps->p++;
    }
    out[k] = '\0';
    if (k == 0)
        return perr(ps, "expected a string, number, boolean or array");
    if (strcmp(out, "true") == 0)
        strcpy(out, "1");
    else if (strcmp(out, "false") == 0)
        strcpy(out, "0");
    return 0;
}

static int value(struct parser *ps, const char *key, json_set_fn set, void *ctx)
{
    char val[1024];
    if (*ps->p != '[') {
        if (scalar(ps, val, sizeof val))
            return -1;
        return set(ctx, key, val, ps->err, ps->n);
    }
    for (ps->p++, ws(ps); ps->p < ps->end && *ps->p != ']';) {
        if (scalar(ps, val, sizeof val) || set(ctx, key, val, ps->err, ps->n))
            return -1;
        ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            ws(ps);
        } else if (*ps->p != ']') {
            return perr(ps, "expected , or ] in array");
        }
    }
    if (ps->p >= ps->end)
        return perr(ps, "unterminated array");
    ps->p++;
    return 0;
}

static int object(struct parser *ps, json_set_fn set, void *ctx)
{
    char key[64];
    ws(ps);
    if (*ps->p != '{')
        return perr(ps, "expected a JSON object");
    ps->p++;
    for (ws(ps); *ps->p != '}';) {
        if (string(ps, key, sizeof key))
            return -1;
        ws(ps);
        if (*ps->p != ':')
            return perr(ps, "expected :");
        ps->p++;
        ws(ps);
        if (value(ps, key, set, ctx))
            return -1;
        ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            ws(ps);
        } else if (*ps->p != '}') {
            return perr(ps, "expected , or }");
        }
    }
    ps->p++;
    ws(ps);
    return ps->p == ps->end ? 0 : perr(ps, "trailing text after the object");
}

int json_flat_load(const char *path, json_set_fn set, void *ctx, char *err, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, n, "--config %s: cannot open", path);
        return -1;
    }
    char *buf = malloc(MAX_CONFIG + 1);
    size_t len = buf ? fread(buf, 1, MAX_CONFIG, f) : 0;
    int too_big = buf && len == MAX_CONFIG;
    fclose(f);
    if (!buf || too_big) {
        free(buf);
        snprintf(err, n, "--config %s: larger than %d bytes", path, MAX_CONFIG);
        return -1;
    }
    buf[len] = '\0';
    struct parser ps = {buf, buf, buf + len, err, n, path};
    int rc = object(&ps, set, ctx);
    free(buf);
    return rc;
}
