/* adtables.c — User.Personality and Custom.Ads: generation (upfgen99/cadgen99, spec §4.6),
 * loading, and the custom-ad search (§4.5). */
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
#define MAX_USERS 1000000L     /* bound on maxload/maxthread [I]: 15 MB of User.Personality */
#define LEAP_YEAR_S 31622400L  /* expired ads: one leap year in the past */
#define MAX_CAD_WEIGHT 75

static const uint32_t AGE[4] = {0x08000000, 0x04000000, 0x02000000, 0x01000000};
static const uint32_t REGION[4] = {0x00800000, 0x00400000, 0x00200000, 0x00100000};
static const uint32_t USER_INT2[10] = {0x200, 0x100, 0x80, 0x40, 0x20, 0x10, 0x8, 0x4, 0x2, 0x1};
/* cadgen99 swaps indices 4 and 5 relative to upfgen99; the literal ports keep the quirk. */
static const uint32_t AD_INT2[10] = {0x200, 0x100, 0x80, 0x40, 0x10, 0x20, 0x8, 0x4, 0x2, 0x1};

/* The demographics bit set both generators derive from k. */
static uint32_t demographics(long k, const uint32_t *int2)
{
	long c4 = k & 0xF, c3 = (k >> 4) & 0xF, c2 = (k >> 8) & 0xF;
	uint32_t d = (k % 2) ? 0x20000000u : 0x10000000u;
	d |= AGE[k % 4];
	d |= REGION[(c4 + c2) % 4];
	d |= 0x80000u >> ((c4 + c3) % 10);
	d |= int2[c4 % 10];
	return d;
}

static long nonzero_k(long k)
{
	return k == 0 ? 12300 : k;
}

int adtables_user_personality(struct buf *out, long maxload, long maxthread)
{
	long n = maxload > maxthread ? maxload : maxthread;
	if (n < 0 || n > MAX_USERS || buf_reserve(out, (size_t)n * UP_RECORD) < 0)
		return -1;
	for (long j = 0; j < n; j++) {
		long k = nonzero_k(((j % 360) * 10000) % 12301);
		if (buf_printf(out, "%5ld %8X\n", j, demographics(k, USER_INT2)) < 0)
			return -1;
	}
	return 0;
}

/* The 360 ads in memory, before formatting (also what a load would produce). */
static void generate_ads(struct ad *ads, long pttime, long maxthread, int exp1, int exp2, time_t now)
{
	long ts = (long)now + 2 * (pttime ? pttime : 1800);
	for (long j = 0; j < ADS_COUNT; j++) {
		long k = nonzero_k((j * 10000) % 12301);
		long w = (k * k) % 1048576;
		ads[j] = (struct ad){demographics(k, AD_INT2), (uint32_t)(w ? w : 0x27104),
				     MAX_CAD_WEIGHT, ts};
	}
	for (long j = (maxthread + 24) % 24; j < ADS_COUNT; j += 24) { /* the always-match ads */
		ads[j].minmatch = 1;
		ads[j].weightings = 0x3FFFF;
		ads[j].demographics |= 0x3FF;
	}
	const int exps[2] = {exp1, exp2};
	for (int e = 0; e < 2; e++)
		for (int i = 0; i < 24; i++)
			ads[(exps[e] + i) % ADS_COUNT].expires = ts - LEAP_YEAR_S;
}

int adtables_custom_ads(struct buf *out, long pttime, long maxthread, int exp1, int exp2, time_t now)
{
	struct ad ads[ADS_COUNT];
	generate_ads(ads, pttime, maxthread, exp1, exp2, now);
	for (int j = 0; j < ADS_COUNT; j++)
		if (buf_printf(out, "%5d %8X %8X %3d %10ld\n", j, ads[j].demographics,
			       ads[j].weightings, ads[j].minmatch, ads[j].expires) < 0)
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

int adtables_write(const char *state_dir, const struct reset_params *p, time_t now)
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
	size_t n = b->len / UP_RECORD;
	uint32_t *u = n ? calloc(n, sizeof(*u)) : NULL;
	if (n && !u)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *rec = b->data + i * UP_RECORD;
		u[i] = (uint32_t)strtoul(rec + 6, NULL, 16);
	}
	free(t->users);
	t->users = u;
	t->nusers = n;
	return 0;
}

static int parse_ads(struct adtables *t, const struct buf *b)
{
	if (b->len != (size_t)ADS_COUNT * CA_RECORD)
		return -1;
	for (int j = 0; j < ADS_COUNT; j++) {
		const char *rec = b->data + (size_t)j * CA_RECORD;
		struct ad *a = &t->ads[j];
		a->demographics = (uint32_t)strtoul(rec + 6, NULL, 16);
		a->weightings = (uint32_t)strtoul(rec + 15, NULL, 16);
		a->minmatch = (int)strtol(rec + 24, NULL, 10);
		a->expires = strtol(rec + 28, NULL, 10);
	}
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
			 parse_ads(t, &ca) < 0 || parse_users(t, &up) < 0
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

static int ad_weight(uint32_t user, const struct ad *a)
{
	uint32_t c = user & a->demographics, w = a->weightings;
	int sum = 0;
	if (c & 0x30000000u) sum += (w >> 16) & 0xF; /* gender */
	if (c & 0x0F000000u) sum += (w >> 12) & 0xF; /* age group */
	if (c & 0x00F00000u) sum += (w >> 8) & 0xF;  /* region */
	if (c & 0x000FFC00u) sum += (w >> 4) & 0xF;  /* interest 1 */
	if (c & 0x000003FFu) sum += w & 0xF;         /* interest 2 */
	return sum;
}

int adtables_find_ad(const struct adtables *t, long user_id, int last_ad, time_t now,
		     struct ad_choice *out)
{
	long idx = user_id - 10000;
	if (!t->loaded || idx < 0 || (size_t)idx >= t->nusers || last_ad < 0 || last_ad >= ADS_COUNT)
		return -1;
	uint32_t user = t->users[idx];
	int ad = last_ad, w = 0;
	for (int i = 1; i <= ADS_COUNT; i++) { /* L+1, L+2, ... wrapping, L itself last */
		ad = (last_ad + i) % ADS_COUNT;
		w = ad_weight(user, &t->ads[ad]);
		if (w >= t->ads[ad].minmatch)
			break;
	}
	out->ad_id = ad;
	out->weight = w;
	out->expired = (long)now > t->ads[ad].expires ? 1 : 0;
	return 0;
}

/* One "name=value" field of the Reset query. */
static int reset_field(struct reset_params *p, const char *name, size_t nlen, const char *v,
		       size_t vlen, unsigned *seen)
{
	char val[128];
	if (vlen >= sizeof(val))
		return -1;
	memcpy(val, v, vlen);
	val[vlen] = '\0';
	char *end;
	if (nlen == 7 && memcmp(name, "urlroot", 7) == 0) {
		memcpy(p->urlroot, val, vlen + 1);
		return 0;
	}
	if (nlen == 3 && memcmp(name, "exp", 3) == 0) {
		long e1 = strtol(val, &end, 10), e2 = *end == ',' ? strtol(end + 1, &end, 10) : -1;
		if (*end || e1 < 0 || e2 < 0 || e1 >= ADS_COUNT || e2 >= ADS_COUNT)
			return -1;
		p->exp1 = (int)e1, p->exp2 = (int)e2, *seen |= 8;
		return 0;
	}
	long n = strtol(val, &end, 10);
	if (!vlen || *end || n < 0 || n > MAX_USERS)
		return -1;
	if (nlen == 7 && memcmp(name, "maxload", 7) == 0) p->maxload = n, *seen |= 1;
	else if (nlen == 6 && memcmp(name, "pttime", 6) == 0) p->pttime = n, *seen |= 2;
	else if (nlen == 9 && memcmp(name, "maxthread", 9) == 0) p->maxthread = n, *seen |= 4;
	return 0; /* unknown fields are ignored */
}

int reset_params_parse(const char *s, size_t len, struct reset_params *p)
{
	memset(p, 0, sizeof(*p));
	strcpy(p->urlroot, "/file_set/");
	unsigned seen = 0;
	for (const char *f = s, *end = s + len; f < end;) {
		const char *amp = memchr(f, '&', (size_t)(end - f));
		const char *fe = amp ? amp : end;
		const char *eq = memchr(f, '=', (size_t)(fe - f));
		if (eq && reset_field(p, f, (size_t)(eq - f), eq + 1, (size_t)(fe - eq - 1), &seen) < 0)
			return -1;
		f = fe + 1;
	}
	return seen == 15 ? 0 : -1;
}
