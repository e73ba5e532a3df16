/* docroot.c — path confinement to the document root (see docroot.h). */
#include "docroot.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int docroot_open_root(struct docroot *d, const char *path)
{
	d->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return d->dirfd < 0 ? -1 : 0;
}

void docroot_close(struct docroot *d)
{
	if (d->dirfd >= 0)
		close(d->dirfd);
	d->dirfd = -1;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int docroot_decode(const char *src, size_t len, char *dst, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)src[i];
		if (c == '%') {
			int hi = i + 2 < len ? hexval(src[i + 1]) : -1;
			int lo = i + 2 < len ? hexval(src[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c == 0 || o + 1 >= cap)
			return -1;
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return 0;
}

/* Any "." or ".." segment (after decoding, so "%2e%2e" is caught too)? */
static int has_dot_segment(const char *p)
{
	for (const char *s = p; *s;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return 1;
		s += n + (e ? 1 : 0);
	}
	return 0;
}

int docroot_relative(const char *url_path, size_t len, char *dst, size_t cap, const char **rel)
{
	if (docroot_decode(url_path, len, dst, cap) < 0)
		return -400;
	if (dst[0] != '/' || has_dot_segment(dst) || strchr(dst, '\\'))
		return -403;
	const char *r = dst + 1;
	while (*r == '/')
		r++;
	if (*r == '\0')
		return -403; /* the root itself: no directory listings */
	*rel = r;
	return 0;
}

int docroot_open(const struct docroot *d, const char *url_path, size_t len, struct stat *st)
{
	char path[DOCROOT_MAX_PATH];
	const char *rel;
	int rc = docroot_relative(url_path, len, path, sizeof(path), &rel);
	if (rc < 0)
		return rc;
	/* RESOLVE_BENEATH: the kernel refuses any resolution (symlink, "..") leaving dirfd. */
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
	int fd = (int)syscall(SYS_openat2, d->dirfd, rel, &how, sizeof(how));
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? -404 : -403;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		int dir = S_ISDIR(st->st_mode);
		close(fd);
		return dir ? -403 : -404;
	}
	return fd;
}
