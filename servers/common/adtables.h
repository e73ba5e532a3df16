/* adtables.h — User.Personality and Custom.Ads (spec §4.5, §4.6).
 *
 * Generated at Reset byte for byte as upfgen99/cadgen99 do, written atomically (temp file +
 * rename) into the state directory, and re-read by every process when the file changed
 * (inode/size/mtime differ — a rename gives a new inode, so even two Resets within one second
 * are noticed; S1 used the mtime alone and had to sleep a second around each Reset).
 */
#ifndef UKWEB_ADTABLES_H
#define UKWEB_ADTABLES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"

#define ADS_COUNT 360
#define UP_RECORD 15 /* "%5d %8X\n" */
#define CA_RECORD 39 /* "%5d %8X %8X %3d %10d\n" */

struct reset_params {
	long maxload, pttime, maxthread;
	int exp1, exp2;
	char urlroot[128];
};

struct ad {
	uint32_t demographics, weightings;
	int minmatch;
	long expires;
};

struct adtables {
	uint32_t *users; /* personality[user - 10000] */
	size_t nusers;
	struct ad ads[ADS_COUNT];
	int loaded;
	/* identity of the files last loaded */
	ino_t up_ino, ca_ino;
	off_t up_size;
	struct timespec up_mtime;
};

struct ad_choice {
	int ad_id, weight, expired;
};

/* Parse "maxload=..&pttime=..&maxthread=..&exp=E1,E2&urlroot=.." (after "command/Reset&").
 * 0, or -1 when a field is missing or out of range. */
int reset_params_parse(const char *s, size_t len, struct reset_params *p);

/* The file contents, byte for byte. */
int adtables_user_personality(struct buf *out, long maxload, long maxthread);
int adtables_custom_ads(struct buf *out, long pttime, long maxthread, int exp1, int exp2, time_t now);

/* Regenerate both files in state_dir (atomically).  0, or -1 with errno. */
int adtables_write(const char *state_dir, const struct reset_params *p, time_t now);
/* Load the files when they changed since the last load (or never loaded).  0, or -1. */
int adtables_refresh(struct adtables *t, const char *state_dir);
void adtables_free(struct adtables *t);

/* The ad for user_id after last_ad (§4.5 step 3–5).  -1 when the user is unknown. */
int adtables_find_ad(const struct adtables *t, long user_id, int last_ad, time_t now,
		     struct ad_choice *out);

#endif
