/* postlog.h — the SPECweb99 post log (spec §4.7).
 *
 * File: an 11-byte header "%10d\n" with the record count, then 139-byte records.  Shared by
 * every process of a server: each process opens the file itself (after fork, so that flock
 * locks are per process — a lock on an inherited descriptor would be shared), and every
 * append runs under flock(LOCK_EX): read the count from the file size, pwrite the record,
 * rewrite the header.  The count is taken from the size ((size-11)/139), not the header, so a
 * crash between the record and the header rewrite cannot renumber anything; a torn tail is cut.
 * An append returns only after pwrite, so the record is in the kernel (it survives kill -9 of
 * the server) before the POST is acknowledged.  A failed append (a full file system: ENOSPC)
 * is cut back to the last whole record at once, so the file never holds a record that was not
 * acknowledged, and says so on stderr: one line per kind of failure (append, reset, fetch)
 * and errno, then at most one line per POSTLOG_REPORT_S with the count in between.
 */
#ifndef UKWEB_POSTLOG_H
#define UKWEB_POSTLOG_H

#include <stddef.h>

#include "buf.h"

#define POSTLOG_HEADER 11
#define POSTLOG_RECORD 139

#define POSTLOG_REPORT_S 10

enum postlog_op { POSTLOG_APPEND, POSTLOG_RESET, POSTLOG_FETCH, POSTLOG_OPS };

struct postlog_report {
	int err;             /* errno of the last line printed (0: none yet) */
	long last;           /* its CLOCK_MONOTONIC second */
	unsigned long quiet; /* failures not printed since */
};

struct postlog {
	int fd;
	int sync; /* fdatasync after each append (--post-log-sync) */
	char path[256]; /* for the stderr lines (truncated when longer) */
	struct postlog_report report[POSTLOG_OPS];
};

struct postlog_entry {
	int dir, cls, num;
	long client;
	long user_id;
	const char *filename; /* urlroot + "dirNNNNN/classC_F"; truncated/padded to 60 */
	long pid;
};

/* Open (create when missing, header "         0\n"), repair a stale header or torn tail.
 * 0, or -1 with errno. */
int postlog_open(struct postlog *p, const char *path, int sync);
void postlog_close(struct postlog *p);
/* Append one record; *recno receives its 1-based number.  0, or -1 with errno. */
int postlog_append(struct postlog *p, const struct postlog_entry *e, long *recno);
/* Truncate to the header "         0\n" (Reset). */
int postlog_reset(struct postlog *p);
/* Append the whole log (header rewritten from the size first) to out, under the lock. */
int postlog_fetch(struct postlog *p, struct buf *out);

#endif
