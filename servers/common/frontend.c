/* frontend.c — the servers' shared command line (frontend.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "frontend.h"

static const char *g_prog = "server", *g_usage = "";

void frontend_init(struct frontend *f, const char *prog, const char *usage, int backlog)
{
	g_prog = prog;
	g_usage = usage;
	*f = (struct frontend){.addr = "127.0.0.1", .server_name = prog, .backlog = backlog,
			       .max_conns = 15000, .idle_timeout = 60};
}

_Noreturn void usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "%s: %s%s%s (usage: %s --port P --docroot DIR --post-log FILE %s...)\n", g_prog,
		what, arg ? " " : "", arg ? arg : "", g_prog, g_usage);
	exit(2);
}

_Noreturn void startup_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", g_prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

long long int_arg(const char *name, const char *s, long long lo, long long hi)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		char msg[160];
		snprintf(msg, sizeof msg, "--%s needs an integer in [%lld, %lld], got", name, lo, hi);
		usage_error(msg, s);
	}
	return v;
}

int frontend_option(struct frontend *f, int c, const char *arg)
{
	switch (c) {
	case 'p': f->port = (int)int_arg("port", arg, 0, 65535); return 1;
	case 'a': f->addr = arg; return 1;
	case 'd': f->docroot = arg; return 1;
	case 'l': f->post_log = arg; return 1;
	case 's': f->state_dir = arg; return 1;
	case 'b': f->backlog = (int)int_arg("backlog", arg, 1, 65535); return 1;
	case 'm': f->max_conns = (int)int_arg("max-conns", arg, 1, 1000000); return 1;
	case 't': f->idle_timeout = (int)int_arg("idle-timeout", arg, 1, 86400); return 1;
	case 'N': f->server_name = arg; return 1;
	case 'S': f->post_log_sync = 1; return 1;
	default: return 0;
	}
}

void frontend_check(const struct frontend *f, int argc, char **argv, int need_paths)
{
	if (optind < argc)
		usage_error("unexpected argument", argv[optind]);
	if (need_paths && (!f->docroot || !f->post_log))
		usage_error("--docroot and --post-log are required", NULL);
}

void frontend_config_json(struct buf *b, const struct frontend *f)
{
	buf_printf(b, "{\"port\": %d", f->port);
	buf_json_key_string(b, "addr", f->addr);
	buf_json_key_string(b, "docroot", f->docroot);
	buf_json_key_string(b, "post_log", f->post_log);
	buf_json_key_string(b, "state_dir", f->state_dir);
	buf_json_key_string(b, "server_name", f->server_name);
	buf_printf(b, ", \"backlog\": %d, \"max_conns\": %d, \"idle_timeout\": %d, \"post_log_sync\": %s",
		   f->backlog, f->max_conns, f->idle_timeout, f->post_log_sync ? "true" : "false");
}
