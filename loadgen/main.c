/* loadgen: the SPECweb99 load generator (docs/interfaces.md). Parses the flags, raises the
 * descriptor limit, runs the worker threads for warm-up + measurement, then merges their logs
 * into requests.csv.gz and writes summary.json. Exit 0: the run completed (whatever the server
 * did); 2: bad command line; 1: could not run. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "summary.h"

static void on_signal(int sig)
{
    (void)sig;
    loadgen_stop = 1;
}

/* One descriptor per connection plus epoll, logs and slack. Raises the soft limit to what is
 * needed, and the hard limit too when allowed (CAP_SYS_RESOURCE); otherwise says why not. */
static int raise_nofile(const struct config *cfg)
{
    rlim_t need = (rlim_t)cfg->connections + 16u * (rlim_t)cfg->threads + 64u;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max < need) {
        struct rlimit want = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            return 0;
        fprintf(stderr, "loadgen: --connections %d needs %llu file descriptors but the hard limit "
                "is %llu and cannot be raised without root (ulimit -Hn); lower --connections\n",
                cfg->connections, (unsigned long long)need, (unsigned long long)rl.rlim_max);
        return -1;
    }
    rl.rlim_cur = need;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

static int dump_deck(const struct config *cfg)
{
    static struct deck d;
    if (deck_init(&d, cfg->seed, cfg->dirs, cfg->shares))
        return 1;
    printf("class,dir,file,type\n");
    for (int i = 0; i < cfg->dump_deck; i++) {
        struct deck_entry e = deck_next(&d);
        printf("%d,%d,%d,%s\n", e.cls, e.dir, e.file, type_names[e.type]);
    }
    deck_free(&d);
    return 0;
}

static struct cpu_time cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (struct cpu_time){ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
                             ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6};
}

/* Run every worker to the end; returns 0, or 1 with a message printed. */
static int run_workers(const struct config *cfg, const struct ad_tables *ads, struct worker *ws)
{
    /* --start-at: the clients of a multi-host testbed start their runs (t0, the log's time base)
     * at one agreed wall-clock time, set up and waiting, so their windows line up. */
    if (cfg->start_at > 0) {
        struct timespec at = {(time_t)cfg->start_at,
                              (long)((cfg->start_at - (double)(time_t)cfg->start_at) * 1e9)};
        while (!loadgen_stop && clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &at, NULL) == EINTR)
            ;
        if (loadgen_stop) {
            fprintf(stderr, "loadgen: interrupted before --start-at\n");
            return 1;
        }
    }
    uint64_t t0 = now_us();
    int started = 0, rc = 0;
    for (int i = 0; i < cfg->threads; i++) {
        if (worker_init(&ws[i], i, cfg, ads, t0)) {
            fprintf(stderr, "loadgen: %s\n", ws[i].err);
            rc = 1;
            break;
        }
    }
    for (; rc == 0 && started < cfg->threads; started++)
        if (pthread_create(&ws[started].thread, NULL, worker_run, &ws[started]) != 0) {
            fprintf(stderr, "loadgen: cannot start worker thread %d\n", started);
            rc = 1;
            loadgen_stop = 1;
        }
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    return rc;
}

static int write_outputs(const struct config *cfg, struct worker *ws, struct cpu_time cpu)
{
    int rc = 0;
    char *parts[64], path[600];
    for (int i = 0; i < cfg->threads; i++) {
        parts[i] = ws[i].log_path;
        if (ws[i].err[0]) {
            fprintf(stderr, "loadgen: %s\n", ws[i].err);
            rc = 1;
        }
    }
    snprintf(path, sizeof path, "%s/requests.csv.gz", cfg->out);
    if (rc == 0 && log_merge(path, parts, cfg->threads) != 0) {
        fprintf(stderr, "loadgen: writing %s: %s\n", path, strerror(errno));
        rc = 1;
    }
    snprintf(path, sizeof path, "%s/summary.json", cfg->out);
    if (summary_write(path, cfg, ws, cfg->threads, cpu) != 0) {
        fprintf(stderr, "loadgen: writing %s: %s\n", path, strerror(errno));
        rc = 1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    static struct config cfg;
    char err[512];
    if (config_parse(&cfg, argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 2;
    }
    if (cfg.dump_deck)
        return dump_deck(&cfg);
    if (mkdir(cfg.out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "loadgen: cannot create --out %s: %s\n", cfg.out, strerror(errno));
        return 1;
    }
    if (raise_nofile(&cfg) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    static struct ad_tables ads;
    if (ad_tables_init(&ads, &cfg) != 0) {
        fprintf(stderr, "loadgen: out of memory for the ad tables\n");
        return 1;
    }
    struct worker *ws = calloc((size_t)cfg.threads, sizeof *ws);
    if (!ws)
        return 1;
    struct cpu_time c0 = cpu_now();
    int rc = run_workers(&cfg, &ads, ws), ran = rc == 0;
    struct cpu_time c1 = cpu_now();
    if (rc == 0)
        rc = write_outputs(&cfg, ws, (struct cpu_time){c1.user_s - c0.user_s, c1.sys_s - c0.sys_s});
    if (rc == 0 && loadgen_stop) {
        fprintf(stderr, "loadgen: interrupted; the outputs cover the run up to the signal\n");
        rc = 1;
    }
    for (int i = 0; i < cfg.threads; i++) {
        worker_free(&ws[i]);
        if (!ran && ws[i].log_path[0])
            unlink(ws[i].log_path); /* an empty part of a run that could not start; after a
                                       run, parts are kept when the merge failed */
    }
    free(ws);
    ad_tables_free(&ads);
    return rc;
}
