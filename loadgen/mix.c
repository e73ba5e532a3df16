/* Request-type mixes. The paper's workloads split their dynamic share 42/42/16 between
 * standard dynamic GETs, custom-ad GETs and POSTs (the SPECweb99 ratios without CGI, which the
 * paper excluded); `specweb99` is the benchmark's own mix (§3). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mix.h"

#define NAME_ITEM(id, name) name,
const char *const type_names[NTYPES] = {SW99_REQUEST_TYPES(NAME_ITEM)};
#undef NAME_ITEM

static void dynamic_mix(double dyn, double shares[NTYPES])
{
    shares[T_STATIC] = 1.0 - dyn;
    shares[T_DYN_GET] = 0.42 * dyn;
    shares[T_CAD_GET] = 0.42 * dyn;
    shares[T_POST] = 0.16 * dyn;
    shares[T_CGI_GET] = 0.0;
}

/* Returns 0, or -1 for an unknown name. */
int mix_by_name(const char *name, double shares[NTYPES])
{
    static const struct { const char *name; double dyn; } paper[] = {
        {"static", 0.0}, {"dynamic", 1.0}, {"mix30", 0.3}, {"mix50", 0.5}, {"mix80", 0.8},
    };
    for (size_t i = 0; i < sizeof paper / sizeof paper[0]; i++)
        if (strcmp(name, paper[i].name) == 0) {
            dynamic_mix(paper[i].dyn, shares);
            return 0;
        }
    if (strcmp(name, "specweb99") == 0) { /* §3: 70 / 12.45 / 12.6 / 4.8 / 0.15 % */
        const double s[NTYPES] = {0.70, 0.1245, 0.126, 0.048, 0.0015};
        memcpy(shares, s, sizeof s);
        return 0;
    }
    return -1;
}

/* "S,D,C,P,G": five non-negative shares summing to 1 (±0.001). Returns 0 or -1. */
int mix_parse_shares(const char *text, double shares[NTYPES])
{
    const char *p = text;
    double sum = 0;
    for (int t = 0; t < NTYPES; t++) {
        char *end;
        shares[t] = strtod(p, &end);
        if (end == p || shares[t] < 0 || !isfinite(shares[t]))
            return -1;
        sum += shares[t];
        if (t < NTYPES - 1) {
            if (*end != ',')
                return -1;
            p = end + 1;
        } else if (*end != '\0') {
            return -1;
        }
    }
    return fabs(sum - 1.0) <= 1e-3 ? 0 : -1;
}

int mix_type_by_name(const char *name)
{
    for (int t = 0; t < NTYPES; t++)
        if (strcmp(name, type_names[t]) == 0)
            return t;
    return -1;
}
