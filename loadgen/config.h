/* The command line and --config JSON (docs/interfaces.md, "loadgen: command line"). */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>

#include "loadgen.h"

/* Fill cfg from argv. Returns 0, or -1 with a one-line message in err (exit code 2). */
int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

#endif
