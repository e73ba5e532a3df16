/* docroot.h — map a URL path to a file, confined to the document root.
 *
 * Two guards, so that neither alone has to be perfect: the percent-decoded path is checked
 * lexically (no "..", no NUL, must start with '/'), and the file is opened with openat2
 * RESOLVE_BENEATH relative to the docroot directory, so a symlink cannot lead out either.
 */
#ifndef UKWEB_DOCROOT_H
#define UKWEB_DOCROOT_H

#include <stddef.h>
#include <sys/stat.h>

#define DOCROOT_MAX_PATH 1024

struct docroot {
	int dirfd;
};

/* 0 or -1 with errno. */
int docroot_open_root(struct docroot *d, const char *path);
void docroot_close(struct docroot *d);

/* Open the regular file named by url_path (percent-encoded, starting with '/').
 * Returns an fd (O_RDONLY|O_CLOEXEC) with *st filled, or -403 (escapes the root or not a
 * regular file we may serve), -404 (does not exist), -400 (malformed encoding). */
int docroot_open(const struct docroot *d, const char *url_path, size_t len, struct stat *st);

/* The lexical half of docroot_open, for callers that open the file themselves (ktux, through
 * io_uring): decode url_path into dst (cap bytes) and check it.  0 with *rel the path relative
 * to the docroot (inside dst, never empty), or -400 (malformed encoding, too long) or -403
 * (no leading '/', a "." or ".." segment, a backslash, or the root itself). */
int docroot_relative(const char *url_path, size_t len, char *dst, size_t cap, const char **rel);

/* Percent-decode src into dst (NUL-terminated).  0, or -1 on bad encoding, %00, or overflow. */
int docroot_decode(const char *src, size_t len, char *dst, size_t cap);

#endif
