/* Flags and the --config JSON file. Every flag goes through config_set, so a JSON key and its
 * command-line twin are checked by the same code. Bad input is one message, never a guess. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "json_flat.h"
#include "mix.h"

static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(x) || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > hi)
        return -1;
    *out = (int)x;
    return 0;
}

static int parse_server(struct config *cfg, const char *v, char *err, size_t n)
{
    if (cfg->nservers >= MAX_SERVERS)
        return fail(err, n, "at most %d --server addresses", MAX_SERVERS);
    const char *colon = strrchr(v, ':');
    char host[64];
    int port;
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof host ||
        parse_int(colon + 1, 1, 65535, &port))
        return fail(err, n, "--server %s: expected HOST:PORT", v);
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return fail(err, n, "--server %s: unknown IPv4 host %s", v, host);
    struct server_addr *s = &cfg->servers[cfg->nservers++];
    memcpy(&s->sa, res->ai_addr, sizeof s->sa);
    s->sa.sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    snprintf(s->host, sizeof s->host, "%s", v);
    return 0;
}

static int parse_path(const char *flag, const char *v, char *out, size_t cap, int allow_empty,
                      char *err, size_t n)
{
    size_t len = strlen(v);
    if ((len == 0 && !allow_empty) || (len && v[0] != '/') || len >= cap || strpbrk(v, " \t\r\n"))
        return fail(err, n, "--%s %s: expected an absolute URL path without spaces, under %zu bytes",
                    flag, v, cap);
    memcpy(out, v, len + 1);
    return 0;
}

static int parse_exp(struct config *cfg, const char *v, char *err, size_t n)
{
    char a[16], b[16];
    const char *comma = strchr(v, ',');
    if (!comma || (size_t)(comma - v) >= sizeof a || strlen(comma + 1) >= sizeof b)
        return fail(err, n, "--exp %s: expected E1,E2", v);
    memcpy(a, v, (size_t)(comma - v));
    a[comma - v] = '\0';
    strcpy(b, comma + 1);
    if (parse_int(a, 0, 359, &cfg->exp1) || parse_int(b, 0, 359, &cfg->exp2))
        return fail(err, n, "--exp %s: E1 and E2 must be ad ids 0..359", v);
    return 0;
}

static int load_json(struct config *cfg, const char *path, char *err, size_t n);

/* One flag (without its dashes) and its value. */
static int config_set(struct config *cfg, const char *key, const char *v, char *err, size_t n)
{
    double x;
#define NUM(name, lo, hi, dst)                                                                  \
    if (strcmp(key, name) == 0) {                                                              \
        if (parse_num(v, lo, hi, &x))                                                          \
            return fail(err, n, "--%s %s: expected a number in [%g, %g]", name, v, (double)lo, \
                        (double)hi);                                                           \
        dst = x;                                                                               \
        return 0;                                                                              \
    }
#define INT(name, lo, hi, dst)                                                                     \
    if (strcmp(key, name) == 0)                                                                   \
        return parse_int(v, lo, hi, &dst)                                                         \
                   ? fail(err, n, "--%s %s: expected an integer in [%ld, %ld]", name, v, (long)lo, \
                          (long)hi)                                                               \
                   : 0;
    if (strcmp(key, "server") == 0)
        return parse_server(cfg, v, err, n);
    if (strcmp(key, "out") == 0) {
        if (!*v || strlen(v) >= sizeof cfg->out - 64)
            return fail(err, n, "--out: expected a directory path under %zu bytes", sizeof cfg->out - 64);
        strcpy(cfg->out, v);
        return 0;
    }
    if (strcmp(key, "mix") == 0) {
        if (cfg->mix_name[0])
            return fail(err, n, "give one of --mix and --mix-shares");
        if (mix_by_name(v, cfg->shares))
            return fail(err, n, "--mix %s: unknown; known: static dynamic mix30 mix50 mix80 specweb99", v);
        snprintf(cfg->mix_name, sizeof cfg->mix_name, "%s", v);
        return 0;
    }
    if (strcmp(key, "mix-shares") == 0) {
        if (cfg->mix_name[0])
            return fail(err, n, "give one of --mix and --mix-shares");
        if (mix_parse_shares(v, cfg->shares))
            return fail(err, n, "--mix-shares %s: expected five shares S,D,C,P,G summing to 1", v);
        strcpy(cfg->mix_name, "custom");
        return 0;
    }
    if (strcmp(key, "config") == 0)
        return load_json(cfg, v, err, n);
    if (strcmp(key, "exp") == 0)
        return parse_exp(cfg, v, err, n);
    if (strcmp(key, "prefix") == 0)
        return parse_path("prefix", v, cfg->prefix, 100, 1, err, n);
    if (strcmp(key, "url") == 0)
        return parse_path("url", v, cfg->url, 200, 0, err, n);
    INT("connections", 1, 1000000, cfg->connections)
    INT("dirs", 1, 100000, cfg->dirs)
    NUM("warmup", 0, 1e6, cfg->warmup_s)
    NUM("duration", 0.001, 1e6, cfg->duration_s)
    NUM("line-speed", 0, 1e12, cfg->line_speed)
    NUM("conform-speed", 0, 1e12, cfg->conform_speed)
    NUM("keepalive-pct", 0, 1, cfg->keepalive_pct)
    INT("ka-min", 1, 100000, cfg->ka_min)
    INT("ka-max", 1, 100000, cfg->ka_max)
    NUM("seed", 0, 4294967295.0, cfg->seed)
    INT("threads", 1, 64, cfg->threads)
    NUM("timeout", 0.001, 3600, cfg->timeout_s)
    NUM("start-at", 0, 1e11, cfg->start_at)
    INT("maxload", 1, 10000000, cfg->maxload)
    INT("maxthread", 0, 10000000, cfg->maxthread)
    INT("pttime", 0, 100000000, cfg->pttime)
    INT("dump-deck", 1, 10000000, cfg->dump_deck)
    return fail(err, n, "unknown option --%s", key);
#undef NUM
#undef INT
}

static int set_cb(void *ctx, const char *key, const char *val, char *err, size_t n)
{
    if (strcmp(key, "config") == 0)
        return fail(err, n, "--config: a config file cannot include another");
    return config_set(ctx, key, val, err, n);
}

static int load_json(struct config *cfg, const char *path, char *err, size_t n)
{
    return json_flat_load(path, set_cb, cfg, err, n);
}

static void defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->warmup_s = 5;
    cfg->duration_s = 10;
    cfg->line_speed = 400000;
    cfg->conform_speed = 320000;
    cfg->keepalive_pct = 0.7;
    cfg->ka_min = 5;
    cfg->ka_max = 15;
    cfg->seed = 1;
    cfg->threads = 1;
    cfg->timeout_s = 10;
    cfg->maxload = cfg->maxthread = cfg->pttime = -1;
    cfg->exp1 = cfg->exp2 = -1;
}

/* Cross-flag checks once everything is read. */
static int finish(struct config *cfg, char *err, size_t n)
{
    if (!cfg->mix_name[0]) {
        mix_by_name("static", cfg->shares);
        strcpy(cfg->mix_name, "static");
    }
    int given = (cfg->maxload >= 0) + (cfg->maxthread >= 0) + (cfg->exp1 >= 0) + (cfg->pttime >= 0);
    if (given != 0 && given != 4)
        return fail(err, n, "the Reset parameters go together: give all of --maxload --maxthread --exp --pttime, or none");
    cfg->have_reset = given == 4;
    if (!cfg->have_reset)
        cfg->maxload = cfg->maxthread = cfg->pttime = cfg->exp1 = cfg->exp2 = 0;
    if (cfg->ka_min > cfg->ka_max)
        return fail(err, n, "--ka-min %d is above --ka-max %d", cfg->ka_min, cfg->ka_max);
    if (cfg->dump_deck) {
        if (!cfg->connections && !cfg->dirs)
            return fail(err, n, "--dump-deck needs --dirs or --connections");
        if (!cfg->dirs)
            cfg->dirs = ndirs_for(cfg->connections);
        return 0;
    }
    if (!cfg->nservers)
        return fail(err, n, "missing --server HOST:PORT");
    if (!cfg->connections)
        return fail(err, n, "missing --connections N");
    if (!cfg->out[0])
        return fail(err, n, "missing --out DIR");
    if (cfg->threads > cfg->connections)
        return fail(err, n, "--threads %d is more than --connections %d", cfg->threads, cfg->connections);
    if (!cfg->dirs)
        cfg->dirs = ndirs_for(cfg->connections);
    return 0;
}

int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t n)
{
    static const struct option opts[] = {
        {"server", 1, 0, 0}, {"connections", 1, 0, 0}, {"out", 1, 0, 0}, {"mix", 1, 0, 0},
        {"mix-shares", 1, 0, 0}, {"config", 1, 0, 0}, {"dirs", 1, 0, 0}, {"warmup", 1, 0, 0},
        {"duration", 1, 0, 0}, {"line-speed", 1, 0, 0}, {"conform-speed", 1, 0, 0},
        {"keepalive-pct", 1, 0, 0}, {"ka-min", 1, 0, 0}, {"ka-max", 1, 0, 0}, {"seed", 1, 0, 0},
        {"threads", 1, 0, 0}, {"timeout", 1, 0, 0}, {"maxload", 1, 0, 0}, {"maxthread", 1, 0, 0},
        {"exp", 1, 0, 0}, {"pttime", 1, 0, 0}, {"prefix", 1, 0, 0}, {"url", 1, 0, 0},
        {"dump-deck", 1, 0, 0}, {"start-at", 1, 0, 0}, {0, 0, 0, 0},
    };
    defaults(cfg);
    opterr = 0;
    optind = 1;
    int idx, ch;
    while ((ch = getopt_long(argc, argv, ":", opts, &idx)) != -1) {
        if (ch == '?')
            return fail(err, n, "unknown option %s", argv[optind - 1]);
        if (ch == ':')
            return fail(err, n, "option %s needs a value", argv[optind - 1]);
        if (config_set(cfg, opts[idx].name, optarg, err, n))
            return -1;
    }
    if (optind < argc)
        return fail(err, n, "unexpected argument %s", argv[optind]);
    return finish(cfg, err, n);
}
