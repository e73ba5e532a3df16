/* buf.h — a growable byte buffer (response bodies, JSON, the Fetch reply). */
#ifndef UKWEB_BUF_H
#define UKWEB_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

/* All return 0, or -1 when memory ran out (the buffer is left as it was). */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal, quotes and escapes included. */
int buf_json_string(struct buf *b, const char *s);
/* ", \"key\": " then val as a JSON string, or null when val is NULL (config objects). */
int buf_json_key_string(struct buf *b, const char *key, const char *val);
void buf_free(struct buf *b);

#endif
