/* frontend.h — what the servers' command lines share (docs/interfaces.md "Servers: command
 * line"): the common flags with their defaults and parsing, the one-line errors (exit 2 for a
 * bad command line, exit 1 for a failed start-up), and the shared keys of /server-status's
 * "config".  Each server's main.c keeps only its own options.
 */
#ifndef UKWEB_FRONTEND_H
#define UKWEB_FRONTEND_H

#include <getopt.h>

#include "buf.h"

struct frontend {
	const char *addr, *docroot, *post_log, *state_dir, *server_name;
	int port, backlog, max_conns, idle_timeout, post_log_sync;
};

/* The common flags, for a server's getopt_long table (their values are these letters). */
#define FRONTEND_OPTIONS                                                                  \
	{"port", required_argument, 0, 'p'}, {"addr", required_argument, 0, 'a'},         \
	{"docroot", required_argument, 0, 'd'}, {"post-log", required_argument, 0, 'l'},  \
	{"state-dir", required_argument, 0, 's'}, {"backlog", required_argument, 0, 'b'}, \
	{"max-conns", required_argument, 0, 'm'},                                         \
	{"idle-timeout", required_argument, 0, 't'},                                      \
	{"server-name", required_argument, 0, 'N'}, {"post-log-sync", no_argument, 0, 'S'}

/* prog names the server in every message; usage is its usage line's own part; backlog is
 * its default (the paper's 128, TUX's 2048). */
void frontend_init(struct frontend *f, const char *prog, const char *usage, int backlog);
/* A common flag: 1 when c was one (its value set), 0 when it is the server's own. */
int frontend_option(struct frontend *f, int c, const char *arg);
/* After getopt: no stray arguments, and --docroot and --post-log given (unless not needed). */
void frontend_check(const struct frontend *f, int argc, char **argv, int need_paths);
/* The common keys of the "config" object, opening it: "{"port": ..., ..." (no closing brace). */
void frontend_config_json(struct buf *b, const struct frontend *f);

/* One line on stderr, "prog: what arg (usage: ...)", exit 2. */
_Noreturn void usage_error(const char *what, const char *arg);
/* One line on stderr, "prog: message", exit 1. */
_Noreturn void startup_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* --name's integer value in [lo, hi], or a usage error. */
long long int_arg(const char *name, const char *s, long long lo, long long hi);

#endif
