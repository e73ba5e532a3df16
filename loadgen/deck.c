/* The request deck of §2: Park–Miller RNG, Zipf tables, exact class counts, shuffling.
 * ukweb.workload implements the same generator; tests/test_loadgen.py compares the two. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "deck.h"

#define PM_A 16807
#define PM_M 2147483647
#define PM_Q 127773 /* M / A */
#define PM_R 2836   /* M % A */

/* Popularity rank → file index within a class (§2: rank 0 is classC_4). */
static const int FILE_ORDER[NFILES] = {4, 3, 5, 2, 6, 1, 7, 8, 0};
/* Class shares (§2: 35/50/14/1 %). */
static const double CLASS_SHARES[NCLASSES] = {0.35, 0.50, 0.14, 0.01};

/* One step of the minimal standard generator, with Schrage's method so that nothing overflows
 * 32 bits. Returns val/M as the spec does (S11 rounds through float; we keep double). */
double spec_random(struct spec_rng *r)
{
    int32_t hi = r->val / PM_Q, lo = r->val % PM_Q;
    int32_t test = PM_A * lo - PM_R * hi;
    r->val = test > 0 ? test : test + PM_M;
    return (double)r->val / PM_M;
}

int32_t spec_nrandom(struct spec_rng *r)
{
    spec_random(r);
    return r->val;
}

/* table[i] = 1 - cum(i)/sum, table[0] = 1, table[n] = 0 (§2). */
int zipf_init(struct zipf *z, int n, double exponent)
{
    z->n = n;
    z->table = calloc((size_t)n + 1, sizeof(double));
    if (!z->table)
        return -1;
    double sum = 0;
    for (int i = 1; i <= n; i++)
        sum += pow(1.0 / i, exponent);
    double cum = 0;
    z->table[0] = 1.0;
    for (int i = 1; i < n; i++) {
        cum += pow(1.0 / i, exponent);
        z->table[i] = 1.0 - cum / sum;
    }
    z->table[n] = 0.0;
    return 0;
}

void zipf_free(struct zipf *z)
{
    free(z->table);
    z->table = NULL;
}

/* First i with r >= table[i], minus one: 0 is the most popular value. */
int zipf_draw(const struct zipf *z, struct spec_rng *r)
{
    double x = spec_random(r);
    int i = 0;
    while (i <= z->n && x < z->table[i])
        i++;
    return i - 1;
}

/* The spec's shuffle: for i in 0..N-1, swap deck[N-i-1] with deck[nrandom % (N-i)]. */
static void shuffle_entries(struct deck_entry *e, int n, struct spec_rng *r)
{
    for (int i = 0; i < n; i++) {
        int pos = spec_nrandom(r) % (n - i);
        struct deck_entry t = e[n - i - 1];
        e[n - i - 1] = e[pos];
        e[pos] = t;
    }
}

/* [I] The spec leaves the type assignment open (§2). As ukweb.workload.Deck does: after the
 * classes, files and directories, one spec_random() per entry in deck order picks the type
 * from the cumulative shares (independent of class); r past a rounded sum goes to the last
 * type with a share. */
static int type_for(const double shares[NTYPES], double r)
{
    double cum = 0;
    int last = 0;
    for (int t = 0; t < NTYPES; t++) {
        cum += shares[t];
        if (r < cum)
            return t;
        if (shares[t] > 0)
            last = t;
    }
    return last;
}

/* One deck (S11 GenerateFileSpecs): classes in exact counts, per entry a Zipf file rank then a
 * Zipf directory; then the types; then the spec's shuffle. The class bound is the cumulative
 * share times N in double arithmetic, exactly as ukweb.workload computes it. */
static void deck_fill(struct deck *d)
{
    int n = DECK_SIZE, idx = 0;
    double total = 0;
    for (int c = 0; c < NCLASSES; c++) {
        total += CLASS_SHARES[c];
        for (; idx < n && idx < total * n; idx++) {
            d->e[idx].cls = (int8_t)c;
            d->e[idx].file = (int8_t)FILE_ORDER[zipf_draw(&d->zfile, &d->rng)];
            d->e[idx].dir = zipf_draw(&d->zdir, &d->rng);
        }
    }
    for (int i = 0; i < n; i++)
        d->e[i].type = (int8_t)type_for(d->shares, spec_random(&d->rng));
    shuffle_entries(d->e, n, &d->rng);
    d->next = 0;
}

int deck_init(struct deck *d, uint32_t seed, int dirs, const double shares[NTYPES])
{
    memset(d, 0, sizeof *d);
    d->rng.val = (int32_t)(seed % PM_M);
    if (d->rng.val == 0)
        d->rng.val = 1; /* 0 is the generator's fixed point */
    if (zipf_init(&d->zdir, dirs, 1.0) || zipf_init(&d->zfile, NFILES, 1.0))
        return -1;
    memcpy(d->shares, shares, sizeof d->shares);
    deck_fill(d);
    return 0;
}

void deck_free(struct deck *d)
{
    zipf_free(&d->zdir);
    zipf_free(&d->zfile);
}

/* Entries are dealt from the front; an exhausted deck is regenerated from the same RNG. */
struct deck_entry deck_next(struct deck *d)
{
    if (d->next >= DECK_SIZE)
        deck_fill(d);
    return d->e[d->next++];
}

/* §1.2: 25 directories plus one per 5 ops/s of the load point's target rate. */
int ndirs_for(int connections)
{
    return (int)(25 + ((400000.0 / 122000.0) * connections) / 5.0);
}

/* §1.3, truncating. */
int file_size(int cls, int num)
{
    static const int CLASS_BASE[NCLASSES] = {1024, 10240, 102400, 1024000};
    return CLASS_BASE[cls] * (num + 1) / 10;
}
