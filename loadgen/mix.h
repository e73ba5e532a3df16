/* Request-type mixes (§3 and the paper's five workloads). */
#ifndef MIX_H
#define MIX_H

#include "loadgen.h"

int mix_by_name(const char *name, double shares[NTYPES]);
int mix_parse_shares(const char *text, double shares[NTYPES]);
int mix_type_by_name(const char *name);

#endif
