/* The SPECweb99 request deck (§2): exact class counts, Zipf directories and files. */
#ifndef DECK_H
#define DECK_H

#include "loadgen.h"

#define DECK_SIZE 1000 /* [I] S11 uses 1000; the real client's size is a parameter */

struct deck_entry { int8_t cls, file, type; int32_t dir; };

struct zipf { int n; double *table; };

struct deck {
    struct spec_rng rng;
    struct zipf zdir, zfile;
    double shares[NTYPES];
    struct deck_entry e[DECK_SIZE];
    int next;
};

double spec_random(struct spec_rng *r);
int32_t spec_nrandom(struct spec_rng *r);
int zipf_init(struct zipf *z, int n, double exponent);
void zipf_free(struct zipf *z);
int zipf_draw(const struct zipf *z, struct spec_rng *r);
int deck_init(struct deck *d, uint32_t seed, int dirs, const double shares[NTYPES]);
void deck_free(struct deck *d);
struct deck_entry deck_next(struct deck *d);

#endif
