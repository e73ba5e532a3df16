/* response.c — response headers and the response object (see response.h). */
#include "response.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "http.h"

void response_init(struct response *r)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->keep_alive = 1;
}

void response_free(struct response *r)
{
	buf_free(&r->body);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->kind = BODY_NONE;
	r->head_len = 0;
	r->file_at = 0;
}

size_t response_length(const struct response *r)
{
	switch (r->kind) {
	case BODY_BUF: return r->head_len + r->body.len;
	case BODY_FILE: return r->head_len + r->body.len + r->file_len;
	default: return r->head_len;
	}
}

int response_set_head(struct response *r, int minor_version, int status, const char *content_type,
		      size_t content_length, const char *extra_headers, const char *server_name)
{
	/* HTTP/1.0 clients get "Connection: Keep-Alive" to keep the connection (spec §5.1);
	 * HTTP/1.1 clients keep it by default and get "Connection: close" otherwise. */
	const char *conn = !r->keep_alive ? "Connection: close\r\n"
			   : minor_version == 0 ? "Connection: Keep-Alive\r\n" : "";
	int n = snprintf(r->head, sizeof(r->head),
			 "HTTP/1.%d %d %s\r\nServer: %s\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\n%s%s\r\n",
			 minor_version, status, http_reason(status), server_name, content_type,
			 content_length, extra_headers, conn);
	if (n < 0 || (size_t)n >= sizeof(r->head))
		return -1;
	r->status = status;
	r->head_len = (size_t)n;
	return 0;
}

void response_error(struct response *r, int minor_version, int status, const char *server_name)
{
	response_free(r);
	r->keep_alive = 0;
	r->kind = BODY_BUF;
	if (buf_printf(&r->body, "<html><body><h1>%d %s</h1></body></html>\n", status,
		       http_reason(status)) < 0)
		r->kind = BODY_NONE;
	size_t len = r->kind == BODY_BUF ? r->body.len : 0;
	response_set_head(r, minor_version, status, "text/html", len, "", server_name);
}
