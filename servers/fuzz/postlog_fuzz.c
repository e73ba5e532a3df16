/* postlog_fuzz.c — libFuzzer target: the post log (servers/common/postlog.c) through appends,
 * Resets, Fetches and crashes at any byte of a write, then recovery.
 *
 * An input is a list of operations on one log: append a record (fields chosen by the input,
 * some too wide for the fixed layout, which must fail), Reset, Fetch, reopen (a server
 * restarting), or a crash: a process killed while appending or resetting leaves the file as it
 * was plus the first L bytes of its write (L chosen by the input; bytes it had not finished
 * may be anything, and so may the header it was rewriting).  A write tears only what it had
 * not finished: a complete record left behind by a process killed before its header rewrite
 * is that record, and it may stay.
 * The rules (postlog.h, docs/interfaces.md):
 *   - every acknowledged record (its append returned 0) survives every crash, byte for byte;
 *   - after recovery (open, or the next append or Fetch) the file is the header "%10d\n" with
 *     the count, then whole records numbered 1, 2, ... in order: strictly increasing, no gap;
 *   - an append's number is one more than the last record's; a failed append leaves no record;
 *   - Fetch returns exactly that file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/buf.h"
#include "../common/postlog.h"

#define REQUIRE(cond)                                                                      \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "postlog_fuzz: rule broken at %s:%d: %s\n", __FILE__, \
				__LINE__, #cond);                                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

#define MAX_RECORDS 64

static char dir[PATH_MAX], path[PATH_MAX];
static struct postlog log_;
static char acked[MAX_RECORDS][POSTLOG_RECORD]; /* what must survive, in order */
static long count;

static void remove_dir(void)
{
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	/* $TMPDIR, else tmpfs when there is one: the log is rewritten thousands of times a
	 * second, and an fdatasync (--post-log-sync) on a disk would take milliseconds */
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/ukweb-postlog-fuzz-XXXXXX", tmp);
	REQUIRE(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/post.log", dir);
	atexit(remove_dir);
	return 0;
}

/* The input, read as it is consumed; zeros once it runs out. */
struct input {
	const uint8_t *p;
	size_t n;
};

static unsigned byte(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static off_t file_size(void)
{
	struct stat st;
	REQUIRE(stat(path, &st) == 0);
	return st.st_size;
}

static void read_at(char *out, size_t n, off_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0 && pread(fd, out, n, off) == (ssize_t)n);
	close(fd);
}

/* The recovered file: header with the count, the acknowledged records, numbered 1..count. */
static void check_file(void)
{
	static char whole[POSTLOG_HEADER + MAX_RECORDS * POSTLOG_RECORD];
	size_t len = POSTLOG_HEADER + (size_t)count * POSTLOG_RECORD;
	REQUIRE(file_size() == (off_t)len);
	read_at(whole, len, 0);
	char want[POSTLOG_HEADER + 1];
	snprintf(want, sizeof(want), "%10ld\n", count);
	REQUIRE(memcmp(whole, want, POSTLOG_HEADER) == 0);
	for (long i = 0; i < count; i++) {
		const char *rec = whole + POSTLOG_HEADER + i * POSTLOG_RECORD;
		REQUIRE(memcmp(rec, acked[i], POSTLOG_RECORD) == 0);
		char num[11];
		memcpy(num, rec, 10);
		num[10] = '\0';
		REQUIRE(strtol(num, NULL, 10) == i + 1 && rec[POSTLOG_RECORD - 1] == '\n');
	}
}

static void append(struct input *in)
{
	static const char *const names[] = {
		"/file_set/dir00042/class1_4",
		"/a-root-name-much-longer-than-sixty-bytes/file_set/dir00042/class3_8",
		""};
	unsigned wide = byte(in);
	struct postlog_entry e = {.filename = names[byte(in) % 3]};
	e.dir = (int)byte(in);
	e.dir |= (int)byte(in) << 8;
	e.cls = (int)(byte(in) % 4);
	e.num = (int)(byte(in) % 9);
	e.client = (long)byte(in);
	e.user_id = 10000 + (long)byte(in);
	e.pid = 1000 + (long)byte(in);
	if (wide == 0xff) /* 1 in 128: a field wider than its column, which must fail */
		e.client = 12345678901L;
	if (wide == 0xfe)
		e.dir = 123456;
	long recno = 0;
	int rc = postlog_append(&log_, &e, &recno);
	if (wide >= 0xfe) {
		REQUIRE(rc < 0);
		check_file(); /* no record kept, a torn tail cut all the same */
		return;
	}
	REQUIRE(rc == 0 && recno == count + 1);
	if (count == MAX_RECORDS) { /* the harness's table is full: start over */
		REQUIRE(postlog_reset(&log_) == 0);
		count = 0;
		check_file();
		return;
	}
	read_at(acked[count], POSTLOG_RECORD, POSTLOG_HEADER + (off_t)count * POSTLOG_RECORD);
	count++;
	check_file();
}

/* A process killed in the middle of an append: it had counted the whole records (cutting a
 * torn tail, as recount does), then written the first `len` bytes of record count+1, maybe a
 * torn header too. */
static void crash_in_append(struct input *in)
{
	char rec[POSTLOG_RECORD + 1];
	snprintf(rec, sizeof(rec), "%10ld %10ld %10ld %5d %2d %2d %10ld %-60.60s %10ld %10ld\n",
		 count + 1, 1700000000L, 4242L, 42, 1, 4, 7L, "/file_set/dir00042/class1_4", 4242L,
		 10007L);
	size_t len = byte(in) % (POSTLOG_RECORD + 1), junk = byte(in) % 16;
	if (len < POSTLOG_RECORD) /* the unfinished part of a torn write: any bytes */
		for (size_t i = junk < len ? len - junk : 0; i < len; i++)
			rec[i] = (char)byte(in);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	off_t end = POSTLOG_HEADER + (off_t)count * POSTLOG_RECORD;
	REQUIRE(fd >= 0 && ftruncate(fd, end) == 0);
	REQUIRE(pwrite(fd, rec, len, end) == (ssize_t)len);
	unsigned header = byte(in);
	if (header & 1) { /* a torn header rewrite: some bytes of it anything */
		char h[POSTLOG_HEADER];
		for (size_t i = 0; i < sizeof(h); i++)
			h[i] = (char)byte(in);
		size_t hl = header / 2 % (POSTLOG_HEADER + 1);
		REQUIRE(pwrite(fd, h, hl, 0) == (ssize_t)hl);
	}
	close(fd);
	if (len == POSTLOG_RECORD && count == MAX_RECORDS) { /* no room in the table: drop it */
		REQUIRE(truncate(path, end) == 0);
	} else if (len == POSTLOG_RECORD) { /* whole: it may stay, as itself */
		memcpy(acked[count], rec, POSTLOG_RECORD);
		count++;
	}
}

/* A process killed in the middle of a Reset: truncated, then part of the header written. */
static void crash_in_reset(struct input *in)
{
	size_t hl = byte(in) % POSTLOG_HEADER;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	REQUIRE(fd >= 0 && ftruncate(fd, 0) == 0);
	REQUIRE(pwrite(fd, "         0\n", hl, 0) == (ssize_t)hl);
	close(fd);
	count = 0;
}

static void fetch(void)
{
	struct buf out = {0};
	REQUIRE(postlog_fetch(&log_, &out) == 0);
	check_file(); /* the file repaired, and the reply is it */
	REQUIRE(out.len == POSTLOG_HEADER + (size_t)count * POSTLOG_RECORD);
	char whole[POSTLOG_HEADER + MAX_RECORDS * POSTLOG_RECORD];
	read_at(whole, out.len, 0);
	REQUIRE(memcmp(out.data, whole, out.len) == 0);
	buf_free(&out);
}

static void reopen(int sync)
{
	struct postlog_report quiet[POSTLOG_OPS];
	memcpy(quiet, log_.report, sizeof(quiet)); /* one long-lived server's rate limit */
	postlog_close(&log_);
	REQUIRE(postlog_open(&log_, path, sync) == 0);
	memcpy(log_.report, quiet, sizeof(quiet));
	check_file();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	unlink(path);
	int sync = (int)(byte(&in) & 1);
	log_.fd = -1;
	count = 0;
	reopen(sync);
	for (int ops = 0; in.n && ops < 256; ops++) {
		switch (byte(&in) % 8) {
		case 0:
		case 1:
		case 2:
			append(&in);
			break;
		case 3:
			crash_in_append(&in);
			/* recovery: a restart, or the next append or Fetch of a live process */
			switch (byte(&in) % 3) {
			case 0:
				reopen(sync);
				break;
			case 1:
				append(&in);
				break;
			default:
				fetch();
			}
			break;
		case 4:
			crash_in_reset(&in);
			reopen(sync);
			break;
		case 5:
			REQUIRE(postlog_reset(&log_) == 0);
			count = 0;
			check_file();
			break;
		case 6:
			fetch();
			break;
		default:
			reopen(sync);
		}
	}
	postlog_close(&log_);
	return 0;
}
