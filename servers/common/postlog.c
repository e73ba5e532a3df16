/* postlog.c — the SPECweb99 post log, shared across processes (see postlog.h). */
#include "postlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One line on stderr per failure: the first of its kind and errno at once, then at most one
 * every POSTLOG_REPORT_S seconds carrying the count of those not reported (a full disk under
 * load fails every POST; a line each would flood the log the operator reads). */
static void report(struct postlog *p, enum postlog_op op, int err)
{
	static const char *const what[POSTLOG_OPS] = {
		"append failed, POST answered 500, no record kept",
		"reset failed, Reset answered 500",
		"fetch failed, Fetch answered 500"};
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	struct postlog_report *r = &p->report[op];
	if (r->err == err && now.tv_sec - r->last < POSTLOG_REPORT_S) {
		r->quiet++;
		return;
	}
	char more[64] = "";
	if (r->quiet)
		snprintf(more, sizeof(more), " (and %lu more since the last line)", r->quiet);
	dprintf(STDERR_FILENO, "post log %s [pid %ld]: %s: %s%s\n", p->path, (long)getpid(),
		what[op], strerror(err), more); /* one write: lines of several processes stay whole */
	r->err = err, r->last = now.tv_sec, r->quiet = 0;
}

static int lock(struct postlog *p)
{
	while (flock(p->fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

static void unlock(struct postlog *p)
{
	int saved = errno;
	flock(p->fd, LOCK_UN);
	errno = saved;
}

static int write_all_at(int fd, const char *s, size_t n, off_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, s, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w, n -= (size_t)w, off += w;
	}
	return 0;
}

static int write_header(struct postlog *p, long count)
{
	char h[POSTLOG_HEADER + 1];
	snprintf(h, sizeof(h), "%10ld\n", count);
	return write_all_at(p->fd, h, POSTLOG_HEADER, 0);
}

/* Under the lock: the record count from the file size — the truth after a crash — with a
 * torn tail cut off and the header rewritten to match. */
static long recount(struct postlog *p)
{
	struct stat st;
	if (fstat(p->fd, &st) < 0)
		return -1;
	if (st.st_size < POSTLOG_HEADER)
		return write_header(p, 0) < 0 || ftruncate(p->fd, POSTLOG_HEADER) < 0 ? -1 : 0;
	long n = (long)((st.st_size - POSTLOG_HEADER) / POSTLOG_RECORD);
	off_t want = POSTLOG_HEADER + (off_t)n * POSTLOG_RECORD;
	if (st.st_size != want && ftruncate(p->fd, want) < 0)
		return -1;
	return n;
}

int postlog_open(struct postlog *p, const char *path, int sync)
{
	p->sync = sync;
	snprintf(p->path, sizeof(p->path), "%s", path);
	memset(p->report, 0, sizeof(p->report));
	p->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (p->fd < 0)
		return -1;
	if (lock(p) < 0)
		return -1;
	long n = recount(p);
	int rc = n < 0 ? -1 : write_header(p, n);
	unlock(p);
	return rc;
}

void postlog_close(struct postlog *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

static int format_record(char *out, size_t cap, long recno, const struct postlog_entry *e)
{
	int n = snprintf(out, cap, "%10ld %10ld %10ld %5d %2d %2d %10ld %-60.60s %10ld %10ld\n", recno,
			 (long)time(NULL), e->pid, e->dir, e->cls, e->num, e->client, e->filename,
			 e->pid, e->user_id);
	if (n == POSTLOG_RECORD)
		return 0;
	errno = EOVERFLOW; /* a field too wide would break the fixed layout; not a stale errno */
	return -1;
}

int postlog_append(struct postlog *p, const struct postlog_entry *e, long *recno)
{
	char rec[POSTLOG_RECORD + 64];
	if (lock(p) < 0)
		return -1;
	long n = recount(p);
	off_t end = POSTLOG_HEADER + (off_t)n * POSTLOG_RECORD;
	int rc = -1;
	if (n >= 0 && format_record(rec, sizeof(rec), n + 1, e) == 0 &&
	    write_all_at(p->fd, rec, POSTLOG_RECORD, end) == 0 && write_header(p, n + 1) == 0)
		rc = 0;
	/* --post-log-sync [I]: off by default.  SPEC required only that the record be visible to
	 * later requests (in the kernel, which also survives kill -9 of the server); a disk flush
	 * per POST would make the benchmark measure the disk, not the server. */
	if (rc == 0 && p->sync && fdatasync(p->fd) < 0)
		rc = -1;
	if (rc < 0 && n >= 0) {
		/* Not acknowledged, so not kept: cut a partial (or unsynced) record now rather than
		 * at the next append, and put the header back.  Both only free or overwrite space. */
		int err = errno;
		if (ftruncate(p->fd, end) == 0)
			write_header(p, n);
		report(p, POSTLOG_APPEND, err);
		errno = err;
	}
	unlock(p);
	if (rc == 0)
		*recno = n + 1;
	return rc;
}

int postlog_reset(struct postlog *p)
{
	if (lock(p) < 0)
		return -1;
	int rc = ftruncate(p->fd, 0) < 0 || write_header(p, 0) < 0 ? -1 : 0;
	if (rc == 0 && p->sync)
		rc = fdatasync(p->fd);
	if (rc < 0)
		report(p, POSTLOG_RESET, errno);
	unlock(p);
	return rc;
}

int postlog_fetch(struct postlog *p, struct buf *out)
{
	if (lock(p) < 0)
		return -1;
	long n = recount(p);
	size_t len = POSTLOG_HEADER + (size_t)(n < 0 ? 0 : n) * POSTLOG_RECORD;
	int rc = n < 0 || write_header(p, n) < 0 || buf_reserve(out, len) < 0 ? -1 : 0;
	for (size_t got = 0; rc == 0 && got < len;) {
		ssize_t r = pread(p->fd, out->data + out->len + got, len - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			rc = -1;
		else
			got += (size_t)r;
	}
	if (rc == 0) {
		out->len += len;
		out->data[out->len] = '\0';
	} else {
		report(p, POSTLOG_FETCH, errno);
	}
	unlock(p);
	return rc;
}
