/* sw99_conformance — the C SPECweb99 core (common/sw99core.c) against the custom-ad
 * conformance table (data/specweb99/ad_conformance.csv, written by make_ad_conformance.py).
 *
 *   sw99_conformance data/specweb99/ad_conformance.csv
 *
 * For every row: load the table (`file:NAME` = tables/NAME.ads next to the CSV, parsed as
 * Custom.Ads; `reset:MAXTHREAD:EXP1:EXP2:PTTIME:AT` = generated as at a Reset at time AT),
 * check the user's generated demographics when the row names a user_id, then the ad search
 * and expiry.  Prints each mismatch and "N rows, M mismatches"; exit 0 when none, 1 when
 * some, 2 when the table cannot be read.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sw99core.h"

#define MAX_FIELDS 9

static char csv_dir[PATH_MAX];

/* Split line (no quoting: the generator writes none) into fields; their count. */
static int split(char *line, char **f)
{
	int n = 0;
	line[strcspn(line, "\r\n")] = '\0';
	for (char *p = line; n < MAX_FIELDS; n++) {
		f[n] = p;
		char *comma = strchr(p, ',');
		if (!comma)
			return n + 1;
		*comma = '\0';
		p = comma + 1;
	}
	return n + 1; /* too many */
}

/* The ads of a table reference; 0, or -1 (message printed). */
static int load_table(const char *ref, struct sw99_ad ads[SW99_ADS])
{
	long mt, pt, at;
	int e1, e2;
	if (sscanf(ref, "reset:%ld:%d:%d:%ld:%ld", &mt, &e1, &e2, &pt, &at) == 5) {
		sw99_ads_generate(ads, pt, mt, e1, e2, at);
		return 0;
	}
	char path[PATH_MAX + 64];
	static char data[SW99_ADS * SW99_AD_RECORD + 1];
	if (strncmp(ref, "file:", 5) != 0 ||
	    snprintf(path, sizeof(path), "%s/tables/%s.ads", csv_dir, ref + 5) >= (int)sizeof(path)) {
		fprintf(stderr, "sw99_conformance: bad table reference %s\n", ref);
		return -1;
	}
	FILE *f = fopen(path, "rb");
	size_t n = f ? fread(data, 1, sizeof(data), f) : 0;
	if (f)
		fclose(f);
	if (!f || sw99_ads_parse(data, n, ads) < 0) {
		fprintf(stderr, "sw99_conformance: %s: %s\n", path, f ? "not a Custom.Ads table" : strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sw99_conformance AD_CONFORMANCE.csv\n");
		return 2;
	}
	FILE *in = fopen(argv[1], "r");
	if (!in) {
		fprintf(stderr, "sw99_conformance: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", argv[1]);
	snprintf(csv_dir, sizeof(csv_dir), "%s", dirname(tmp));
	char line[1024], *f[MAX_FIELDS + 1];
	int rows = 0, bad = 0;
	static struct sw99_ad ads[SW99_ADS];
	for (int lineno = 1; fgets(line, sizeof(line), in); lineno++) {
		if (lineno == 1)
			continue; /* the header */
		if (split(line, f) != MAX_FIELDS || load_table(f[1], ads) < 0) {
			fprintf(stderr, "sw99_conformance: %s:%d: malformed row\n", argv[1], lineno);
			fclose(in);
			return 2;
		}
		/* case,table,user_id,user_dem,last_ad,now,ad,weight,expired */
		uint32_t dem = (uint32_t)strtoul(f[3], NULL, 16);
		int last = atoi(f[4]), want_ad = atoi(f[6]), want_w = atoi(f[7]), want_e = atoi(f[8]);
		long now = atol(f[5]);
		rows++;
		if (f[2][0] && sw99_user_demographics(atol(f[2]) - SW99_USER_BASE) != dem) {
			printf("%s: user %s demographics %08X, table says %08X\n", f[0], f[2],
			       sw99_user_demographics(atol(f[2]) - SW99_USER_BASE), dem);
			bad++;
			continue;
		}
		struct sw99_choice c = sw99_find_ad(dem, last, ads);
		int expired = sw99_expired(&ads[c.ad], now);
		if (c.ad != want_ad || c.weight != want_w || expired != want_e) {
			printf("%s: got ad %d weight %d expired %d, table says %d %d %d\n", f[0], c.ad,
			       c.weight, expired, want_ad, want_w, want_e);
			bad++;
		}
	}
	fclose(in);
	printf("%d rows, %d mismatches\n", rows, bad);
	return bad ? 1 : 0;
}
