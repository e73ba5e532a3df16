/* adtables.h — the User.Personality and Custom.Ads files of a server (spec §4.5, §4.6).
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
#include "sw99core.h"

struct adtables {
	uint32_t *users; /* personality[user - 10000] */
	size_t nusers;
	struct sw99_ad ads[SW99_ADS];
	int loaded;
	/* identity of the files last loaded */
	ino_t up_ino, ca_ino;
	off_t up_size;
	struct timespec up_mtime;
};

struct ad_choice {
	int ad_id, weight, expired;
};

/* The file contents, byte for byte. */
int adtables_user_personality(struct buf *out, long maxload, long maxthread);
int adtables_custom_ads(struct buf *out, long pttime, long maxthread, int exp1, int exp2, time_t now);

/* Regenerate both files in state_dir (atomically).  0, or -1 with errno. */
int adtables_write(const char *state_dir, const struct sw99_reset *p, time_t now);
/* Load the files when they changed since the last load (or never loaded).  0, or -1. */
int adtables_refresh(struct adtables *t, const char *state_dir);
void adtables_free(struct adtables *t);

/* The ad for user_id after last_ad (§4.5 steps 3-5, the search and expiry of sw99core).
 * -1 when the user or last_ad is unknown. */
int adtables_choose_ad(const struct adtables *t, long user_id, int last_ad, time_t now,
		       struct ad_choice *out);

#endif
