/* summary.json (docs/interfaces.md). "measure" counts the requests that completed in the
 * measured window, whatever phase they started in; the window's bounds are written in the log's
 * time base, so a reader of requests.csv.gz counts the same rows from t_end_us. Written to a
 * temporary name and renamed, so a reader never sees half. */
#include <stdio.h>
#include <string.h>

#include "summary.h"

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void add_counts(struct counts *a, const struct counts *b)
{
    a->requests += b->requests;
    a->ok += b->ok;
    a->errors += b->errors;
    a->bytes += b->bytes;
    a->lat_us += b->lat_us;
}

static void merge(struct worker_stats *m, struct worker *ws, int n)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < n; i++) {
        const struct worker_stats *s = &ws[i].st;
        add_counts(&m->total, &s->total);
        for (int t = 0; t < NTYPES; t++)
            add_counts(&m->by_type[t], &s->by_type[t]);
        for (int c = 0; c < NCLASSES; c++)
            add_counts(&m->by_class[c], &s->by_class[c]);
        for (int e = 0; e < NERRS; e++)
            m->errors_by_kind[e] += s->errors_by_kind[e];
        add_counts(&m->warmup, &s->warmup);
        m->started_in_warmup += s->started_in_warmup;
        m->inflight += s->inflight;
        m->connects += s->connects;
        m->keepalive_conns += s->keepalive_conns;
        m->all_requests += s->all_requests;
    }
}

/* §5.3 [I]: a connection conforms when its measured bytes × 8 over its op time (after pacing
 * compensation) reach the conformance speed; a connection with no measured op does not. */
static int conforming(const struct config *cfg, struct worker *ws, int n)
{
    int count = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < ws[i].nconns; j++) {
            const struct conn *c = &ws[i].conns[j];
            if (c->m_op_us > 0 && (double)c->m_bytes * 8e6 / (double)c->m_op_us >= cfg->conform_speed)
                count++;
        }
    return count;
}

static void counts_obj(FILE *f, const struct counts *c)
{
    fprintf(f, "{\"requests\": %llu, \"ok\": %llu, \"errors\": %llu, \"bytes\": %llu, \"mean_ms\": %.4f}",
            (unsigned long long)c->requests, (unsigned long long)c->ok,
            (unsigned long long)c->errors, (unsigned long long)c->bytes,
            c->requests ? (double)c->lat_us / (double)c->requests / 1000.0 : 0.0);
}

static void write_args(FILE *f, const struct config *cfg)
{
    fprintf(f, "{\"server\": [");
    for (int i = 0; i < cfg->nservers; i++) {
        fprintf(f, i ? ", " : "");
        json_str(f, cfg->servers[i].host);
    }
    fprintf(f, "], \"connections\": %d, \"mix\": ", cfg->connections);
    json_str(f, cfg->mix_name);
    fprintf(f, ", \"mix_shares\": [%g, %g, %g, %g, %g]", cfg->shares[0], cfg->shares[1],
            cfg->shares[2], cfg->shares[3], cfg->shares[4]);
    fprintf(f, ", \"dirs\": %d, \"warmup\": %g, \"duration\": %g, \"line_speed\": %g, "
            "\"conform_speed\": %g, \"keepalive_pct\": %g, \"ka_min\": %d, \"ka_max\": %d, "
            "\"seed\": %u, \"threads\": %d, \"timeout\": %g",
            cfg->dirs, cfg->warmup_s, cfg->duration_s, cfg->line_speed, cfg->conform_speed,
            cfg->keepalive_pct, cfg->ka_min, cfg->ka_max, cfg->seed, cfg->threads, cfg->timeout_s);
    if (cfg->have_reset)
        fprintf(f, ", \"maxload\": %d, \"maxthread\": %d, \"exp\": \"%d,%d\", \"pttime\": %d",
                cfg->maxload, cfg->maxthread, cfg->exp1, cfg->exp2, cfg->pttime);
    fprintf(f, ", \"prefix\": ");
    json_str(f, cfg->prefix);
    fprintf(f, ", \"url\": ");
    json_str(f, cfg->url);
    fprintf(f, "}");
}

static void write_measure(FILE *f, const struct worker_stats *m, double secs)
{
    fprintf(f, "{\"requests\": %llu, \"ok\": %llu, \"errors\": %llu, \"bytes\": %llu, "
            "\"ops_per_s\": %.4f, \"mbit_per_s\": %.4f, \"started_in_warmup\": %llu,\n    \"by_type\": {",
            (unsigned long long)m->total.requests, (unsigned long long)m->total.ok,
            (unsigned long long)m->total.errors, (unsigned long long)m->total.bytes,
            (double)m->total.ok / secs, (double)m->total.bytes * 8 / secs / 1e6,
            (unsigned long long)m->started_in_warmup);
    for (int t = 0; t < NTYPES; t++) {
        fprintf(f, "%s\"%s\": ", t ? ", " : "", type_names[t]);
        counts_obj(f, &m->by_type[t]);
    }
    fprintf(f, "},\n    \"by_class\": {");
    for (int c = 0; c < NCLASSES; c++) {
        fprintf(f, "%s\"%d\": ", c ? ", " : "", c);
        counts_obj(f, &m->by_class[c]);
    }
    fprintf(f, "}}");
}

int summary_write(const char *path, const struct config *cfg, struct worker *ws, int nworkers,
                  struct cpu_time cpu)
{
    struct worker_stats m;
    merge(&m, ws, nworkers);
    double secs = cfg->duration_s;
    int conf = conforming(cfg, ws, nworkers);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    /* The windows in the log's time base (µs since the run started), as worker_init set them. */
    unsigned long long warm_end = (unsigned long long)(cfg->warmup_s * 1e6);
    unsigned long long run_end = warm_end + (unsigned long long)(cfg->duration_s * 1e6);
    fprintf(f, "{\"loadgen_version\": 2,\n \"args\": ");
    write_args(f, cfg);
    fprintf(f, ",\n \"connections\": %d, \"dirs\": %d, \"warmup_s\": %g, \"measure_s\": %g,\n",
            cfg->connections, cfg->dirs, cfg->warmup_s, secs);
    fprintf(f, " \"count_rule\": \"completion\", \"window_us\": {\"warmup\": [0, %llu], "
            "\"measure\": [%llu, %llu]},\n \"measure\": ", warm_end, warm_end, run_end);
    write_measure(f, &m, secs);
    fprintf(f, ",\n \"warmup\": ");
    counts_obj(f, &m.warmup);
    fprintf(f, ",\n \"inflight_at_close\": %llu", (unsigned long long)m.inflight);
    fprintf(f, ",\n \"errors_by_kind\": {");
    for (int e = 1; e < E_INFLIGHT; e++)
        fprintf(f, "%s\"%s\": %llu", e > 1 ? ", " : "", err_names[e],
                (unsigned long long)m.errors_by_kind[e]);
    fprintf(f, "},\n \"conforming_connections\": %d, \"conforming_pct\": %.4f,\n", conf,
            100.0 * conf / cfg->connections);
    fprintf(f, " \"offered_ops_per_s\": %.4f, \"achieved_ops_per_s\": %.4f,\n",
            cfg->connections * cfg->line_speed / 122000.0, (double)m.total.ok / secs);
    fprintf(f, " \"cpu_user_s\": %.6f, \"cpu_sys_s\": %.6f, \"cpu_us_per_request\": %.4f,\n",
            cpu.user_s, cpu.sys_s,
            m.all_requests ? (cpu.user_s + cpu.sys_s) * 1e6 / (double)m.all_requests : 0.0);
    fprintf(f, " \"requests_all_phases\": %llu, \"connects\": %llu, \"keepalive_conns\": %llu}\n",
            (unsigned long long)m.all_requests, (unsigned long long)m.connects,
            (unsigned long long)m.keepalive_conns);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}
