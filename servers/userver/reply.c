/* reply.c — a request's reply as userver builds it (see reply.h). */
#include "reply.h"

#include <sys/stat.h>
#include <unistd.h>

int reply_build(struct site *s, enum dyn_send mode, const struct http_request *req,
		const char *remote_addr, struct response *r)
{
	struct sw99_pending p;
	if (!site_respond_begin(s, req, remote_addr, r, &p))
		return 0; /* static, status, a command, or an error: complete */
	struct stat st;
	int fd = docroot_open(&s->docroot, p.url, p.url_len, &st), e;
	if (fd < 0) {
		e = sw99_open_error(fd);
	} else if (mode == DYN_SENDFILE && sw99_file_unchanged(&p)) {
		e = sw99_finish_sendfile(&s->module, &p, r, fd, (size_t)st.st_size); /* r owns fd */
	} else { /* a custom-ad GET substitutes ads in a copy; --dynamic-send copy: every reply */
		long got = sw99_read_file(fd, r, &p, (size_t)st.st_size);
		close(fd);
		e = sw99_finish(&s->module, &p, r, got);
	}
	site_respond_finish(s, &p, r, e);
	return 1;
}
