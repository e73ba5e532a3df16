/* Response validation as the SPECweb99 client did it (§6.3), plus the exact custom-ad
 * prediction of §4.5 from the User.Personality and Custom.Ads tables of §4.6. */
#ifndef VALIDATE_H
#define VALIDATE_H

#include "deck.h"
#include "http_client.h"
#include "loadgen.h"

#define NADS SW99_ADS
#define MAX_AD_WEIGHT SW99_MAX_AD_WEIGHT

/* The tables a server generates at Reset (§4.6), built here by the same core from the Reset
 * parameters, as if the Reset happened when loadgen started (just after the sweep's Reset). */
struct ad_tables {
    int nusers;          /* User.Personality records: max(maxload, maxthread) */
    uint32_t *user_dem;
    struct sw99_ad ads[NADS];
};

/* What was asked, so the reply can be checked against it. */
struct request_info {
    struct deck_entry e;
    int user_id;          /* 10000 + user index (cad_get, post) */
    int last_ad;          /* sent in the cookie (cad_get, post) */
    const char *query;    /* the dynamic GET's query string as sent */
    int url_mode;         /* --url: status and length only */
};

struct ad { int id, weight, expired; };

int ad_tables_init(struct ad_tables *t, const struct config *cfg);
void ad_tables_free(struct ad_tables *t);
/* The ad a server answers (§4.5), Expired as of now; {-1, 0, 1} for an unknown user or ad. */
struct ad predict_ad(const struct ad_tables *t, int user_id, int last_ad);
/* Returns E_NONE or the error kind; *ad_id gets the returned Ad_id of a valid cad_get. */
enum err_kind validate_response(const struct config *cfg, const struct ad_tables *t,
                                const struct request_info *q, const struct http_resp *r,
                                int *ad_id);
uint64_t max_response_body(void);

#endif
