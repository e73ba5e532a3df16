/* summary.json: the measurement phase's totals, merged over the worker threads. */
#ifndef SUMMARY_H
#define SUMMARY_H

#include "conn.h"

struct cpu_time { double user_s, sys_s; };

int summary_write(const char *path, const struct config *cfg, struct worker *ws, int nworkers,
                  struct cpu_time cpu);

#endif
