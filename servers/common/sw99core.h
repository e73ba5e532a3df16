/* sw99core.h — the SPECweb99 rules the servers and the load generator share (spec §3, §4):
 * the request types, URL and tag constants, the Reset query, the User.Personality and
 * Custom.Ads tables (§4.6), the custom-ad search (§4.5) and expiry.
 *
 * Linked by userver, ktux and loadgen, so a rule changed here changes on both sides of the
 * wire.  No I/O, no allocation: the servers keep their files (adtables.c), loadgen its tables
 * in memory (validate.c).  The Python oracle (lib/ukweb/specweb99.py) is a separate
 * implementation; both are checked against data/specweb99/ad_conformance.csv.
 */
#ifndef UKWEB_SW99CORE_H
#define UKWEB_SW99CORE_H

#include <stddef.h>
#include <stdint.h>

/* The request types, in the order of loadgen --mix-shares and of every per-type array and
 * JSON object (names as ukweb.workload.REQUEST_TYPES).  Each user derives its enum and names:
 *   #define T_ITEM(id, name) T_##id,     enum req_type { SW99_REQUEST_TYPES(T_ITEM) NTYPES };
 *   #define NAME_ITEM(id, name) name,    names[] = { SW99_REQUEST_TYPES(NAME_ITEM) };      */
#define SW99_REQUEST_TYPES(X) \
	X(STATIC, "static") X(DYN_GET, "dyn_get") X(CAD_GET, "cad_get") X(POST, "post") \
	X(CGI_GET, "cgi_get")
/* A server also counts the two kinds a load generator never sends in the measured load. */
#define SW99_SERVER_REQUEST_TYPES(X) SW99_REQUEST_TYPES(X) X(COMMAND, "command") X(STATUS, "status")

/* URLs (§4.1, §4.8) and the CAD tag (§1.4): NNNNN at +34, X at +45, Y at +47. */
#define SW99_SCRIPT "/specweb99"
#define SW99_CGI_SCRIPT "/cgi-bin/specweb99"
#define SW99_COMMAND "command/"
#define SW99_RESET "Reset&"
#define SW99_FETCH "Fetch"
#define SW99_WRAP_SUFFIX "\n</pre>\n</body></html>\n" /* §4.2, after the file */
#define SW99_CAD_PREFIX "<!WEB99CAD><IMG SRC=\"/file_set/dir"
#define SW99_CAD_PREFIX_LEN 34
#define SW99_CAD_TAG_LEN 62
#define SW99_CAD_DIR_AT 34
#define SW99_CAD_CLASS_AT 45
#define SW99_CAD_FILE_AT 47

/* The tables (§4.6). */
#define SW99_ADS 360
#define SW99_USER_BASE 10000      /* user_id = 10000 + the User.Personality record */
#define SW99_MAX_USERS 1000000L   /* bound on maxload/maxthread [I]: 15 MB of User.Personality */
#define SW99_MAX_AD_WEIGHT 63     /* 15 + 15 + 15 + 15 + 3: the largest always-match weight */
#define SW99_USER_RECORD 15       /* "%5d %8X\n" */
#define SW99_AD_RECORD 39         /* "%5d %8X %8X %3d %10d\n" */
#define SW99_USER_FMT "%5ld %8X\n"
#define SW99_AD_FMT "%5d %8X %8X %3d %10ld\n"

struct sw99_ad {
	uint32_t demographics, weightings;
	int minmatch;
	long expires; /* time_t seconds */
};

/* "maxload=..&pttime=..&maxthread=..&exp=E1,E2&urlroot=.." (after "command/Reset&"). */
struct sw99_reset {
	long maxload, pttime, maxthread;
	int exp1, exp2;
	char urlroot[128];
};

/* 0, or -1 when a field is missing or out of range (unknown fields are ignored). */
int sw99_reset_parse(const char *s, size_t len, struct sw99_reset *p);

/* User.Personality: how many records a Reset writes, and record j's demographics (upfgen99). */
long sw99_user_count(long maxload, long maxthread);
uint32_t sw99_user_demographics(long j);

/* Custom.Ads as cadgen99 generates it at time now (Reset); and parsed back from its bytes
 * (exactly SW99_ADS records of SW99_AD_RECORD bytes): 0, or -1 when malformed. */
void sw99_ads_generate(struct sw99_ad ads[SW99_ADS], long pttime, long maxthread, int exp1,
		       int exp2, long now);
int sw99_ads_parse(const char *data, size_t len, struct sw99_ad ads[SW99_ADS]);

/* §4.5 step 4: the ad after last_ad (0..SW99_ADS-1) for a user, and its weight. */
struct sw99_choice {
	int ad, weight;
};
struct sw99_choice sw99_find_ad(uint32_t user_demographics, int last_ad,
				const struct sw99_ad ads[SW99_ADS]);

/* §4.5 step 5: Expired at time now. */
int sw99_expired(const struct sw99_ad *ad, long now);

#endif
