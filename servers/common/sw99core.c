/* sw99core.c — the SPECweb99 rules shared by the servers and loadgen (see sw99core.h). */
#include "sw99core.h"

#include <stdlib.h>
#include <string.h>

#define LEAP_YEAR_S 31622400L  /* expired ads: one leap year before the normal expiry */
#define DEFAULT_PTTIME 1800    /* cadgen99: pttime 0 means 1800 s */
#define MAX_CAD_WEIGHT 75      /* minmatch of an ordinary ad (never reached, §4.5) */
#define EXPIRED_RUN 24         /* ads per expired range */

static const uint32_t AGE[4] = {0x08000000, 0x04000000, 0x02000000, 0x01000000};
static const uint32_t REGION[4] = {0x00800000, 0x00400000, 0x00200000, 0x00100000};
static const uint32_t USER_INT2[10] = {0x200, 0x100, 0x80, 0x40, 0x20, 0x10, 0x8, 0x4, 0x2, 0x1};
/* cadgen99 swaps indices 4 and 5 relative to upfgen99; the literal ports keep the quirk. */
static const uint32_t AD_INT2[10] = {0x200, 0x100, 0x80, 0x40, 0x10, 0x20, 0x8, 0x4, 0x2, 0x1};

/* The demographics bit set both generators derive from the mixed key k. */
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

static long key(long j)
{
	long k = (j * 10000) % 12301;
	return k == 0 ? 12300 : k;
}

long sw99_user_count(long maxload, long maxthread)
{
	return maxload > maxthread ? maxload : maxthread;
}

uint32_t sw99_user_demographics(long j)
{
	return demographics(key(j % SW99_ADS), USER_INT2);
}

void sw99_ads_generate(struct sw99_ad ads[SW99_ADS], long pttime, long maxthread, int exp1,
		       int exp2, long now)
{
	long ts = now + 2 * (pttime ? pttime : DEFAULT_PTTIME);
	for (long j = 0; j < SW99_ADS; j++) {
		long k = key(j);
		long w = (k * k) % 1048576;
		ads[j] = (struct sw99_ad){demographics(k, AD_INT2), (uint32_t)(w ? w : 0x27104),
					  MAX_CAD_WEIGHT, ts};
	}
	for (long j = (maxthread + 24) % 24; j < SW99_ADS; j += 24) { /* the always-match ads */
		ads[j].minmatch = 1;
		ads[j].weightings = 0x3FFFF;
		ads[j].demographics |= 0x3FF;
	}
	const int exps[2] = {exp1, exp2};
	for (int e = 0; e < 2; e++)
		for (int i = 0; i < EXPIRED_RUN; i++)
			ads[(exps[e] + i) % SW99_ADS].expires = ts - LEAP_YEAR_S;
}

int sw99_ads_parse(const char *data, size_t len, struct sw99_ad ads[SW99_ADS])
{
	if (len != (size_t)SW99_ADS * SW99_AD_RECORD)
		return -1;
	for (int j = 0; j < SW99_ADS; j++) {
		const char *rec = data + (size_t)j * SW99_AD_RECORD;
		if (rec[SW99_AD_RECORD - 1] != '\n')
			return -1;
		struct sw99_ad *a = &ads[j];
		a->demographics = (uint32_t)strtoul(rec + 6, NULL, 16);
		a->weightings = (uint32_t)strtoul(rec + 15, NULL, 16);
		a->minmatch = (int)strtol(rec + 24, NULL, 10);
		a->expires = strtol(rec + 28, NULL, 10);
	}
	return 0;
}

static int ad_weight(uint32_t user, const struct sw99_ad *a)
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

/* The spec (§4.5 step 4): "For ad = L+1, L+2, …, wrapping 359→0 and stopping when back at L"
 * and "If nothing matches, both implementations return the ad where the loop stopped (L) and
 * the last computed weight."  Read as S1's do-while: the loop steps first and tests after, so
 * L itself is the last ad weighed — it is returned when nothing else matches, as a match if
 * its own weight reaches its minmatch, and with its own weight either way. */
struct sw99_choice sw99_find_ad(uint32_t user_demographics, int last_ad,
				const struct sw99_ad ads[SW99_ADS])
{
	int ad = last_ad, w = 0;
	do {
		ad = (ad + 1) % SW99_ADS;
		w = ad_weight(user_demographics, &ads[ad]);
		if (w >= ads[ad].minmatch)
			break;
	} while (ad != last_ad);
	return (struct sw99_choice){ad, w};
}

/* Expiry is one rule, the spec's (§4.5 step 5, S1): Expired = now > the ad's expiry time in
 * Custom.Ads.  Not "the ad lies in an expired range": that is the same answer only until
 * Reset + 2·pttime, after which a server reports every ad expired. */
int sw99_expired(const struct sw99_ad *ad, long now)
{
	return now > ad->expires;
}

/* One "name=value" field of the Reset query; seen gets a bit per required field. */
static int reset_field(struct sw99_reset *p, const char *name, size_t nlen, const char *v,
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
		if (*end || e1 < 0 || e2 < 0 || e1 >= SW99_ADS || e2 >= SW99_ADS)
			return -1;
		p->exp1 = (int)e1, p->exp2 = (int)e2, *seen |= 8;
		return 0;
	}
	long n = strtol(val, &end, 10);
	if (!vlen || *end || n < 0 || n > SW99_MAX_USERS)
		return -1;
	if (nlen == 7 && memcmp(name, "maxload", 7) == 0) p->maxload = n, *seen |= 1;
	else if (nlen == 6 && memcmp(name, "pttime", 6) == 0) p->pttime = n, *seen |= 2;
	else if (nlen == 9 && memcmp(name, "maxthread", 9) == 0) p->maxthread = n, *seen |= 4;
	return 0; /* unknown fields are ignored */
}

int sw99_reset_parse(const char *s, size_t len, struct sw99_reset *p)
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
