/* main.c — userver: flags, the listening socket, fork of N processes sharing it. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/listener.h"
#include "../common/site.h"
#include "dynamic.h"
#include "loop.h"
#include "reply.h"

struct options {
	const char *addr, *docroot, *post_log, *state_dir, *events, *server_name;
	const char *dynamic_send, *dynamic_writes;
	long port, accept_count, procs, backlog, max_conns, idle_timeout;
	int post_log_sync;
};

static const struct option LONG_OPTS[] = {
	{"port", required_argument, 0, 'p'},         {"addr", required_argument, 0, 'a'},
	{"docroot", required_argument, 0, 'd'},      {"post-log", required_argument, 0, 'l'},
	{"state-dir", required_argument, 0, 's'},    {"events", required_argument, 0, 'e'},
	{"accept-count", required_argument, 0, 'c'}, {"procs", required_argument, 0, 'n'},
	{"backlog", required_argument, 0, 'b'},      {"max-conns", required_argument, 0, 'm'},
	{"idle-timeout", required_argument, 0, 't'}, {"server-name", required_argument, 0, 'N'},
	{"post-log-sync", no_argument, 0, 'S'},      {"dynamic-send", required_argument, 0, 'D'},
	{"dynamic-writes", required_argument, 0, 'W'}, {0, 0, 0, 0}};

static _Noreturn void usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "userver: %s%s%s (usage: userver --port P --docroot DIR --post-log FILE "
		"[--events select|poll|epoll] [--procs N] [--dynamic-send sendfile|copy] "
		"[--dynamic-writes blocking|nonblocking] ...)\n", what, arg ? " " : "", arg ? arg : "");
	exit(2);
}

static long int_arg(const char *name, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		char msg[160];
		snprintf(msg, sizeof(msg), "--%s needs an integer in [%ld, %ld], got", name, lo, hi);
		usage_error(msg, s);
	}
	return v;
}

static void set_option(struct options *o, int c, const char *arg)
{
	switch (c) {
	case 'p': o->port = int_arg("port", arg, 0, 65535); break;
	case 'a': o->addr = arg; break;
	case 'd': o->docroot = arg; break;
	case 'l': o->post_log = arg; break;
	case 's': o->state_dir = arg; break;
	case 'e': o->events = arg; break;
	case 'c': o->accept_count = int_arg("accept-count", arg, 0, INT_MAX); break;
	case 'n': o->procs = int_arg("procs", arg, 1, STATS_MAX_PROCS); break;
	case 'b': o->backlog = int_arg("backlog", arg, 1, 65535); break;
	case 'm': o->max_conns = int_arg("max-conns", arg, 1, 1000000); break;
	case 't': o->idle_timeout = int_arg("idle-timeout", arg, 1, 86400); break;
	case 'N': o->server_name = arg; break;
	case 'S': o->post_log_sync = 1; break;
	case 'D': o->dynamic_send = arg; break;
	case 'W': o->dynamic_writes = arg; break;
	default: usage_error("unknown or incomplete option", NULL);
	}
}

static void parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){.addr = "127.0.0.1", .events = "select", .server_name = "userver",
			      .procs = 1, .backlog = 128, .max_conns = 15000, .idle_timeout = 60,
			      .dynamic_send = "sendfile", .dynamic_writes = "blocking"};
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", LONG_OPTS, NULL)) != -1)
		set_option(o, c, optarg);
	if (optind < argc)
		usage_error("unexpected argument", argv[optind]);
	if (!o->docroot || !o->post_log)
		usage_error("--docroot and --post-log are required", NULL);
	if (!ev_backend_named(o->events))
		usage_error("--events must be select, poll or epoll, got", o->events);
	if (strcmp(o->dynamic_send, "sendfile") && strcmp(o->dynamic_send, "copy"))
		usage_error("--dynamic-send must be sendfile or copy, got", o->dynamic_send);
	if (strcmp(o->dynamic_writes, "blocking") && strcmp(o->dynamic_writes, "nonblocking"))
		usage_error("--dynamic-writes must be blocking or nonblocking, got", o->dynamic_writes);
}

/* Every flag as JSON, for the "config" object of /server-status. */
static char *config_json(const struct options *o)
{
	struct buf b = {0};
	buf_printf(&b, "{\"port\": %ld", o->port);
	buf_json_key_string(&b, "addr", o->addr);
	buf_json_key_string(&b, "docroot", o->docroot);
	buf_json_key_string(&b, "post_log", o->post_log);
	buf_json_key_string(&b, "state_dir", o->state_dir);
	buf_printf(&b, ", \"events\": \"%s\", \"accept_count\": %ld, \"procs\": %ld, "
		   "\"backlog\": %ld, \"max_conns\": %ld, \"idle_timeout\": %ld, \"post_log_sync\": %s",
		   o->events, o->accept_count, o->procs, o->backlog, o->max_conns, o->idle_timeout,
		   o->post_log_sync ? "true" : "false");
	buf_json_key_string(&b, "server_name", o->server_name);
	buf_json_key_string(&b, "dynamic_send", o->dynamic_send);
	buf_json_key_string(&b, "dynamic_writes", o->dynamic_writes);
	if (buf_puts(&b, "}") < 0) {
		fprintf(stderr, "userver: out of memory\n");
		exit(1);
	}
	return b.data;
}

static _Noreturn void startup_error(const char *what, const char *detail)
{
	fprintf(stderr, "userver: %s: %s\n", what, detail);
	exit(1);
}

/* Room for max_conns descriptors per process (as far as the hard limit allows). */
static void raise_fd_limit(long max_conns)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)max_conns + 64;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void on_signal(int sig)
{
	(void)sig;
	loop_stop = 1;
}

static void install_handlers(void)
{
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: wake the event wait */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int serve_process(const struct options *o, const struct site_config *cfg,
			 struct stats *stats, int slot, int lfd)
{
	struct site site;
	char err[512];
	if (site_open(&site, cfg, stats, slot, err, sizeof(err)) < 0)
		startup_error("start-up", err);
	struct loop_config lc = {ev_backend_named(o->events), lfd, (int)o->accept_count,
				 (int)o->max_conns, (int)o->idle_timeout,
				 strcmp(o->dynamic_send, "copy") ? DYN_SENDFILE : DYN_COPY,
				 strcmp(o->dynamic_writes, "nonblocking") ? DYN_BLOCKING : DYN_NONBLOCKING};
	int rc = loop_run(&lc, &site);
	site_close(&site);
	return rc;
}

/* --procs N > 1: N children serve, this process forwards SIGTERM and reaps them. */
static int supervise(const struct options *o, const struct site_config *cfg, struct stats *stats,
		     int lfd)
{
	pid_t parent = getpid(), kids[STATS_MAX_PROCS];
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM), sigaddset(&block, SIGINT), sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (int i = 0; i < o->procs; i++) {
		if ((kids[i] = fork()) == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL); /* die with the parent, even on kill -9 */
			if (getppid() != parent)
				_exit(1);
			sigprocmask(SIG_SETMASK, &old, NULL);
			exit(serve_process(o, cfg, stats, i, lfd)); /* exit, not _exit: LeakSanitizer checks children too */
		}
		if (kids[i] < 0)
			startup_error("fork", strerror(errno));
	}
	close(lfd);
	int alive = (int)o->procs, failed = 0, sig;
	while (alive > 0 && sigwait(&block, &sig) == 0) {
		if (sig != SIGCHLD) { /* SIGTERM/SIGINT: drain every process */
			for (int i = 0; i < o->procs; i++)
				kill(kids[i], SIGTERM);
			continue;
		}
		int status;
		while (waitpid(-1, &status, WNOHANG) > 0) {
			alive--;
			failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
		}
	}
	return failed;
}

int main(int argc, char **argv)
{
	struct options o;
	parse_args(argc, argv, &o);
	struct stats stats;
	if (stats_create(&stats, (int)o.procs, 0) < 0)
		startup_error("shared counters", strerror(errno));
	char *config = config_json(&o);
	struct site_config cfg = {o.docroot, o.state_dir, o.post_log, o.post_log_sync,
				  o.server_name, "userver", config};
	struct site check; /* fail here, with one line, before anything listens */
	char err[512];
	if (site_open(&check, &cfg, &stats, 0, err, sizeof(err)) < 0)
		startup_error("start-up", err);
	site_close(&check);
	raise_fd_limit(o.max_conns);
	install_handlers();
	/* non-blocking: shared by every process, each accepts from it until EAGAIN */
	int port, lfd = listener_open(o.addr, (int)o.port, (int)o.backlog, LISTENER_NONBLOCK, &port);
	if (lfd == LISTENER_BAD_ADDR)
		usage_error("--addr needs a numeric IP address, got", o.addr);
	if (lfd < 0) {
		char what[96];
		snprintf(what, sizeof(what), "cannot listen on %s:%ld", o.addr, o.port);
		startup_error(what, strerror(errno));
	}
	printf("listening %s:%d\n", o.addr, port);
	fflush(stdout);
	int rc = o.procs == 1 ? serve_process(&o, &cfg, &stats, 0, lfd) : supervise(&o, &cfg, &stats, lfd);
	free(config);
	stats_destroy(&stats);
	return rc;
}
