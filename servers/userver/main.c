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

#include "../common/fdlimit.h"
#include "../common/frontend.h"
#include "../common/listener.h"
#include "../common/site.h"
#include "dynamic.h"
#include "loop.h"
#include "reply.h"

struct options {
	struct frontend fe; /* the flags every server shares */
	const char *events, *dynamic_send, *dynamic_writes;
	int accept_count, procs;
};

static const struct option LONG_OPTS[] = {
	FRONTEND_OPTIONS,
	{"events", required_argument, 0, 'e'},       {"accept-count", required_argument, 0, 'c'},
	{"procs", required_argument, 0, 'n'},        {"dynamic-send", required_argument, 0, 'D'},
	{"dynamic-writes", required_argument, 0, 'W'}, {0, 0, 0, 0}};

static void set_option(struct options *o, int c, const char *arg)
{
	if (frontend_option(&o->fe, c, arg))
		return;
	switch (c) {
	case 'e': o->events = arg; break;
	case 'c': o->accept_count = (int)int_arg("accept-count", arg, 0, INT_MAX); break;
	case 'n': o->procs = (int)int_arg("procs", arg, 1, STATS_MAX_PROCS); break;
	case 'D': o->dynamic_send = arg; break;
	case 'W': o->dynamic_writes = arg; break;
	default: usage_error("unknown or incomplete option", NULL);
	}
}

static void parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){.events = "select", .procs = 1, .dynamic_send = "sendfile",
			      .dynamic_writes = "blocking"};
	frontend_init(&o->fe, "userver", "[--events select|poll|epoll] [--procs N] "
		      "[--dynamic-send sendfile|copy] [--dynamic-writes blocking|nonblocking] ", 128);
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", LONG_OPTS, NULL)) != -1)
		set_option(o, c, optarg);
	frontend_check(&o->fe, argc, argv, 1);
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
	frontend_config_json(&b, &o->fe);
	buf_printf(&b, ", \"events\": \"%s\", \"accept_count\": %d, \"procs\": %d",
		   o->events, o->accept_count, o->procs);
	buf_json_key_string(&b, "dynamic_send", o->dynamic_send);
	buf_json_key_string(&b, "dynamic_writes", o->dynamic_writes);
	if (buf_puts(&b, "}") < 0)
		startup_error("out of memory");
	return b.data;
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
		startup_error("start-up: %s", err);
	struct loop_config lc = {ev_backend_named(o->events), lfd, o->accept_count,
				 o->fe.max_conns, o->fe.idle_timeout,
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
			startup_error("fork: %s", strerror(errno));
	}
	close(lfd);
	int alive = o->procs, failed = 0, sig;
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
	if (stats_create(&stats, o.procs, 0) < 0)
		startup_error("shared counters: %s", strerror(errno));
	char *config = config_json(&o);
	struct site_config cfg = {o.fe.docroot, o.fe.state_dir, o.fe.post_log, o.fe.post_log_sync,
				  o.fe.server_name, "userver", config};
	struct site check; /* fail here, with one line, before anything listens */
	char err[512];
	if (site_open(&check, &cfg, &stats, 0, err, sizeof(err)) < 0)
		startup_error("start-up: %s", err);
	site_close(&check);
	fd_limit_raise((long long)o.fe.max_conns + 64); /* per process */
	install_handlers();
	/* non-blocking: shared by every process, each accepts from it until EAGAIN */
	int port, lfd = listener_open(o.fe.addr, o.fe.port, o.fe.backlog, LISTENER_NONBLOCK, &port);
	if (lfd == LISTENER_BAD_ADDR)
		usage_error("--addr needs a numeric IP address, got", o.fe.addr);
	if (lfd < 0)
		startup_error("cannot listen on %s:%d: %s", o.fe.addr, o.fe.port, strerror(errno));
	printf("listening %s:%d\n", o.fe.addr, port);
	fflush(stdout);
	int rc = o.procs == 1 ? serve_process(&o, &cfg, &stats, 0, lfd) : supervise(&o, &cfg, &stats, lfd);
	free(config);
	stats_destroy(&stats);
	return rc;
}
