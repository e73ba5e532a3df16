/* main.c — ktux: flags, start-up checks, the listening socket, then the worker loop.
 *
 * Every TUX feature is a switch so that a notebook can ablate it (docs/interfaces.md).
 * Defaults follow TUX: accept backlog 2048 (the paper's runs use 128), cache on, multishot
 * accept on, zero-copy on, SQPOLL off.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/fdlimit.h"
#include "../common/frontend.h"
#include "../common/listener.h"
#include "ktux.h"

/* [I] TUX's pinned cache, sized for the paper's 512 MB: the entries are the page cache's own
 * pages (mapped and mlock'd, so nothing is cached twice), holding the small, hot files —
 * SPECweb99 classes 0-1 and class2_0, 85 % of static requests, ~108 KB of pages a directory,
 * so 64 MiB holds them for ~600 directories (the paper's file set at ~900 connections) —
 * while larger files are spliced from the page cache.  Measured: servers/ktux/README.md. */
#define DEFAULT_CACHE_BYTES (64L << 20)      /* 1/8 of the paper's 512 MB */
#define DEFAULT_CACHE_ENTRY_MAX (16L << 10)  /* files up to class2_0 (10 KB) */
#define DEFAULT_IO_THREADS 32 /* TUX 2's disk-I/O threads per worker (net/tux/cachemiss.c) */
#define IOWQ_WORKERS_UNPOOLED 4 /* [I] io-wq's bounded workers with --io-threads 0 */

enum { OPT_CACHE = 256, OPT_IOWQ, OPT_SQPOLL, OPT_NO_CACHE, OPT_NO_MULTI, OPT_NO_ZC, OPT_PROBE,
       OPT_ENTRY_MAX, OPT_RING_IOWAIT, OPT_NO_DEFER, OPT_MODULE_API, OPT_SCHED, OPT_IO_THREADS };

static const struct option LONG_OPTS[] = {
	FRONTEND_OPTIONS,
	{"cache-bytes", required_argument, 0, OPT_CACHE}, {"iowq-workers", required_argument, 0, OPT_IOWQ},
	{"sqpoll", optional_argument, 0, OPT_SQPOLL},  {"no-cache", no_argument, 0, OPT_NO_CACHE},
	{"no-multishot-accept", no_argument, 0, OPT_NO_MULTI}, {"no-zerocopy", no_argument, 0, OPT_NO_ZC},
	{"cache-entry-max", required_argument, 0, OPT_ENTRY_MAX},
	{"ring-iowait", no_argument, 0, OPT_RING_IOWAIT},
	{"no-defer-accept", no_argument, 0, OPT_NO_DEFER},
	{"module-api", required_argument, 0, OPT_MODULE_API}, {"sched", required_argument, 0, OPT_SCHED},
	{"io-threads", required_argument, 0, OPT_IO_THREADS},
	{"probe", no_argument, 0, OPT_PROBE},          {0, 0, 0, 0}};

static void set_option(struct ktux_config *o, int c, const char *arg)
{
	if (frontend_option(&o->fe, c, arg))
		return;
	switch (c) {
	case OPT_CACHE: o->cache_bytes = (size_t)int_arg("cache-bytes", arg, 4096, 1LL << 40); break;
	case OPT_ENTRY_MAX:
		o->cache_entry_max = (size_t)int_arg("cache-entry-max", arg, 1, 1LL << 40);
		break;
	case OPT_RING_IOWAIT: o->ring_iowait = 1; break;
	case OPT_IOWQ: o->iowq_workers = (int)int_arg("iowq-workers", arg, 1, 4096); break;
	case OPT_SQPOLL:
		o->sqpoll = 1;
		o->sqpoll_cpu = arg ? (int)int_arg("sqpoll", arg, 0, 4095) : -1;
		break;
	case OPT_NO_CACHE: o->no_cache = 1; break;
	case OPT_NO_MULTI: o->no_multishot_accept = 1; break;
	case OPT_NO_ZC: o->no_zerocopy = 1; break;
	case OPT_NO_DEFER: o->no_defer_accept = 1; break;
	case OPT_MODULE_API:
		if (strcmp(arg, "tux") && strcmp(arg, "direct"))
			usage_error("--module-api needs tux or direct, got", arg);
		o->module_api = strcmp(arg, "tux") ? API_DIRECT : API_TUX;
		break;
	case OPT_SCHED:
		if (strcmp(arg, "tux") && strcmp(arg, "completion"))
			usage_error("--sched needs tux or completion, got", arg);
		o->sched = strcmp(arg, "tux") ? SCHED_COMPLETION : SCHED_TUX;
		break;
	case OPT_IO_THREADS: o->io_threads = (int)int_arg("io-threads", arg, 0, 4096); break;
	case OPT_PROBE: o->probe = 1; break;
	default: usage_error("unknown or incomplete option", NULL);
	}
}

static void parse_args(int argc, char **argv, struct ktux_config *o)
{
	*o = (struct ktux_config){.cache_bytes = DEFAULT_CACHE_BYTES,
				  .cache_entry_max = DEFAULT_CACHE_ENTRY_MAX,
				  .io_threads = DEFAULT_IO_THREADS, .sqpoll_cpu = -1};
	frontend_init(&o->fe, "ktux", "[--cache-bytes N] [--cache-entry-max N] [--iowq-workers N] "
		      "[--sqpoll[=CPU]] [--no-cache] [--no-multishot-accept] [--no-zerocopy] "
		      "[--ring-iowait] [--no-defer-accept] [--module-api tux|direct] "
		      "[--sched tux|completion] [--io-threads N] ", 2048); /* TUX's backlog */
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", LONG_OPTS, NULL)) != -1)
		set_option(o, c, optarg);
	frontend_check(&o->fe, argc, argv, !o->probe);
	if (o->no_multishot_accept && o->sched == SCHED_TUX)
		usage_error("--no-multishot-accept applies to --sched completion (--sched tux accepts "
			    "with accept4 until the queue is empty)", NULL);
	/* io-wq's bounded workers run the pooled reads: as many as the pool has slots */
	if (o->iowq_workers == 0)
		o->iowq_workers = o->io_threads ? o->io_threads : IOWQ_WORKERS_UNPOOLED;
}

/* Every flag as JSON, for the "config" object of /server-status. */
static char *config_json(const struct ktux_config *o)
{
	struct buf b = {0};
	frontend_config_json(&b, &o->fe);
	buf_printf(&b, ", \"cache_bytes\": %zu, \"cache_entry_max\": %zu, "
		   "\"iowq_workers\": %d, \"sqpoll\": %s, \"sqpoll_cpu\": %d, \"no_cache\": %s, "
		   "\"no_multishot_accept\": %s, \"no_zerocopy\": %s, \"ring_iowait\": %s, "
		   "\"no_defer_accept\": %s, \"module_api\": \"%s\", \"sched\": \"%s\", "
		   "\"io_threads\": %d}",
		   o->cache_bytes, o->cache_entry_max, o->iowq_workers, o->sqpoll ? "true" : "false",
		   o->sqpoll_cpu, o->no_cache ? "true" : "false",
		   o->no_multishot_accept ? "true" : "false", o->no_zerocopy ? "true" : "false",
		   o->ring_iowait ? "true" : "false", o->no_defer_accept ? "true" : "false",
		   o->module_api == API_TUX ? "tux" : "direct", o->sched == SCHED_TUX ? "tux" : "completion",
		   o->io_threads);
	if (!b.data)
		startup_error("out of memory");
	return b.data;
}

/* The cache is pinned: RLIMIT_MEMLOCK must cover it (root with CAP_IPC_LOCK is exempt). */
static void check_memlock(const struct ktux_config *o)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)o->cache_bytes + (16 << 20);
	if (o->no_cache || getrlimit(RLIMIT_MEMLOCK, &rl) < 0 || rl.rlim_cur >= want || geteuid() == 0)
		return;
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want) {
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_MEMLOCK, &rl) == 0)
			return;
	}
	startup_error("locked-memory limit %llu bytes is below --cache-bytes %zu; fix: "
		      "ulimit -l unlimited, a smaller --cache-bytes, or --no-cache",
		      (unsigned long long)rl.rlim_cur, o->cache_bytes);
}

static void open_server(struct server *s, const struct ktux_config *o, char *err, size_t errlen)
{
	if (stats_create(&s->stats, 1, 1) < 0)
		startup_error("cannot map the status counters");
	s->st = &s->stats.procs[0];
	struct site_config sc = {o->fe.docroot, o->fe.state_dir, o->fe.post_log, o->fe.post_log_sync,
				 o->fe.server_name, "ktux", config_json(o)};
	if (site_open(&s->site, &sc, &s->stats, 0, err, errlen) < 0)
		startup_error("%s", err);
	if (ring_open(&s->ring, o, err, errlen) < 0)
		startup_error("%s", err);
	s->ring.stats = s->st;
	s->st->ring.sqpoll = o->sqpoll;
	s->st->ring.no_iowait = s->ring.no_iowait;
	if (!o->no_cache && !(s->cache = cache_create(o->cache_bytes, o->cache_entry_max, s->st)))
		startup_error("out of memory for the cache's tables");
	/* per connection a socket, and at most a file and a pipe pair */
	long long fds = fd_limit_raise((long long)o->fe.max_conns * 4 + 256);
	s->nconns_cap = fds > INT_MAX ? INT_MAX : (int)fds;
	if (!(s->conns = calloc((size_t)s->nconns_cap, sizeof *s->conns)))
		startup_error("out of memory for the connection table");
}

int main(int argc, char **argv)
{
	struct ktux_config o;
	char err[512];
	parse_args(argc, argv, &o);
	if (o.probe) { /* only: can this process set up the ring ktux needs? */
		struct ring r;
		if (ring_open(&r, &o, err, sizeof err) < 0)
			startup_error("%s", err);
		ring_close(&r);
		printf("io_uring ok\n");
		return 0;
	}
	check_memlock(&o);
	static struct server s;
	s.cfg = &o;
	open_server(&s, &o, err, sizeof err);
	int port;
	/* accepted sockets inherit TCP_NODELAY: a response's last partial segment is never held
	 * back by Nagle, without a setsockopt per connection [I] */
	s.listen_fd = listener_open(o.fe.addr, o.fe.port, o.fe.backlog, LISTENER_NODELAY, &port);
	if (s.listen_fd == LISTENER_BAD_ADDR)
		usage_error("--addr needs a numeric IP address, got", o.fe.addr);
	if (s.listen_fd < 0) {
		snprintf(err, sizeof err, "cannot listen on %s:%d: %s", o.fe.addr, o.fe.port, strerror(errno));
		startup_error("%s", err);
	}
	/* TUX 2.x default (its defer_accept sysctl = 1, issue 16): a connection is handed to the
	 * worker only once its request's first bytes are in, so an accept round never takes a
	 * connection that has nothing to read yet.  --no-defer-accept: accept at the handshake. */
	int defer_s = 1;
	if (!o.no_defer_accept &&
	    setsockopt(s.listen_fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof defer_s) < 0) {
		snprintf(err, sizeof err, "TCP_DEFER_ACCEPT: %s (run with --no-defer-accept)", strerror(errno));
		startup_error("%s", err);
	}
	/* --sched tux accepts with accept4 until EAGAIN: the listening socket must not block */
	if (o.sched == SCHED_TUX && fcntl(s.listen_fd, F_SETFL, fcntl(s.listen_fd, F_GETFL) | O_NONBLOCK) < 0)
		startup_error("cannot make the listening socket non-blocking");
	printf("listening %s:%d\n", o.fe.addr, port);
	fflush(stdout);
	int rc = server_run(&s);
	cache_destroy(s.cache);
	ring_close(&s.ring);
	site_close(&s.site);
	return rc;
}
