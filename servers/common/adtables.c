/* adtables.c — a server's User.Personality and Custom.Ads files: written at Reset, loaded when
 * they changed; the tables' rules themselves are sw99core's (spec §4.5, §4.6). */
#include "adtables.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UP_FILE "User.Personality"
#define CA_FILE "Custom.Ads"

int adtables_user_personality(struct buf *out, long maxload, long maxthread)
{
	long n = sw99_user_count(maxload, maxthread);
	if (n < 0 || n > SW99_MAX_USERS || buf_reserve(out, (size_t)n * SW99_USER_RECORD) < 0)
		return -1;
	for (long j = 0; j < n; j++)
		if (buf_printf(out, SW99_USER_FMT, j, sw99_user_demographics(j)) < 0)
			return -1;
	return 0;
}

int adtables_custom_ads(struct buf *out, long pttime, long maxthread, int exp1, int exp2, time_t now)
{
	struct sw99_ad ads[SW99_ADS];
	sw99_ads_generate(ads, pttime, maxthread, exp1, exp2, (long)now);
	for (int j = 0; j < SW99_ADS; j++)
		if (buf_printf(out, SW99_AD_FMT, j, ads[j].demographics, ads[j].weightings,
			       ads[j].minmatch, ads[j].expires) < 0)
			return -1;
	return 0;
}

/* Write dir/name atomically: a temp file renamed over the old one. */
static int write_atomic(const char *dir, const char *name, const struct buf *b)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
	    snprintf(tmp, sizeof(tmp), "%s/.%s.%ld", dir, name, (long)getpid()) >= (int)sizeof(tmp))
		return errno = ENAMETOOLONG, -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off < b->len) {
		ssize_t w = write(fd, b->data + off, b->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	int rc = close(fd) == 0 && off == b->len ? rename(tmp, path) : -1;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int adtables_write(const char *state_dir, const struct sw99_reset *p, time_t now)
{
	struct buf up = {0}, ca = {0};
	int rc = adtables_user_personality(&up, p->maxload, p->maxthread) < 0 ||
			 adtables_custom_ads(&ca, p->pttime, p->maxthread, p->exp1, p->exp2, now) < 0 ||
			 write_atomic(state_dir, UP_FILE, &up) < 0 || write_atomic(state_dir, CA_FILE, &ca) < 0
		 ? -1 : 0;
	buf_free(&up);
	buf_free(&ca);
	return rc;
}

/* Read a whole small file into b. */
static int slurp(const char *dir, const char *name, struct buf *b, struct stat *st)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fstat(fd, st);
	size_t want = rc == 0 ? (size_t)st->st_size : 0;
	if (rc == 0 && buf_reserve(b, want) < 0)
		rc = -1;
	while (rc == 0 && b->len < want) {
		ssize_t r = read(fd, b->data + b->len, want - b->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		b->len += (size_t)r;
	}
	close(fd);
	if (rc == 0)
		b->data[b->len] = '\0';
	return rc == 0 && b->len == want ? 0 : -1;
}

static int parse_users(struct adtables *t, const struct buf *b)
{
	size_t n = b->len / SW99_USER_RECORD;
	uint32_t *u = n ? calloc(n, sizeof(*u)) : NULL;
	if (n && !u)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *rec = b->data + i * SW99_USER_RECORD;
		u[i] = (uint32_t)strtoul(rec + 6, NULL, 16);
	}
	free(t->users);
	t->users = u;
	t->nusers = n;
	return 0;
}

int adtables_refresh(struct adtables *t, const char *state_dir)
{
	char path[PATH_MAX];
	struct stat st;
	if (snprintf(path, sizeof(path), "%s/%s", state_dir, UP_FILE) >= (int)sizeof(path) ||
	    stat(path, &st) < 0)
		return -1;
	if (t->loaded && st.st_ino == t->up_ino && st.st_size == t->up_size &&
	    st.st_mtim.tv_sec == t->up_mtime.tv_sec && st.st_mtim.tv_nsec == t->up_mtime.tv_nsec)
		return 0;
	struct buf up = {0}, ca = {0};
	struct stat ust, cst;
	int rc = slurp(state_dir, UP_FILE, &up, &ust) < 0 || slurp(state_dir, CA_FILE, &ca, &cst) < 0 ||
			 sw99_ads_parse(ca.data, ca.len, t->ads) < 0 || parse_users(t, &up) < 0
		 ? -1 : 0;
	if (rc == 0) {
		t->loaded = 1;
		t->up_ino = ust.st_ino;
		t->up_size = ust.st_size;
		t->up_mtime = ust.st_mtim;
	}
	buf_free(&up);
	buf_free(&ca);
	return rc;
}

void adtables_free(struct adtables *t)
{
	free(t->users);
	t->users = NULL;
	t->nusers = 0;
	t->loaded = 0;
}

int adtables_choose_ad(const struct adtables *t, long user_id, int last_ad, time_t now,
		       struct ad_choice *out)
{
	long idx = user_id - SW99_USER_BASE;
	if (!t->loaded || idx < 0 || (size_t)idx >= t->nusers || last_ad < 0 || last_ad >= SW99_ADS)
		return -1;
	struct sw99_choice c = sw99_find_ad(t->users[idx], last_ad, t->ads);
	out->ad_id = c.ad;
	out->weight = c.weight;
	out->expired = sw99_expired(&t->ads[c.ad], (long)now);
	return 0;
}
