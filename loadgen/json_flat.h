/* A reader for flat JSON objects: {"key": "string" | number | true | false | [values], ...}. */
#ifndef JSON_FLAT_H
#define JSON_FLAT_H

#include <stddef.h>

/* Called once per scalar value (once per element of an array value). Non-zero stops. */
typedef int (*json_set_fn)(void *ctx, const char *key, const char *val, char *err, size_t n);

/* Returns 0, or -1 with a one-line message in err. */
int json_flat_load(const char *path, json_set_fn set, void *ctx, char *err, size_t n);

#endif
