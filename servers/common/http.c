/* http.c — in-place HTTP/1.x request parser (see http.h). */
#include "http.h"

#include <string.h>
#include <strings.h>

static const char *find_crlf(const char *p, const char *end)
{
	for (; p + 1 < end; p++)
		if (p[0] == '\r' && p[1] == '\n')
			return p;
	return NULL;
}

static int slice_ieq(const char *p, size_t len, const char *lit)
{
	return strlen(lit) == len && strncasecmp(p, lit, len) == 0;
}

/* Does the comma-separated token list contain tok (case-insensitive)? */
static int has_token(const char *p, size_t len, const char *tok)
{
	size_t tl = strlen(tok);
	for (size_t i = 0; i + tl <= len; i++)
		if (strncasecmp(p + i, tok, tl) == 0)
			return 1;
	return 0;
}

static enum http_error parse_method(const char *p, size_t len, struct http_request *req)
{
	if (len == 3 && memcmp(p, "GET", 3) == 0)
		req->method = HTTP_GET;
	else if (len == 4 && memcmp(p, "POST", 4) == 0)
		req->method = HTTP_POST;
	else {
		for (size_t i = 0; i < len; i++)
			if (p[i] < 'A' || p[i] > 'Z')
				return HTTPE_BAD_REQUEST; /* not a method token at all */
		return HTTPE_METHOD;
	}
	return HTTPE_NONE;
}

static void split_target(struct http_request *req)
{
	const char *q = memchr(req->target.p, '?', req->target.len);
	req->path = req->target;
	req->has_query = q != NULL;
	req->query.p = q ? q + 1 : req->target.p + req->target.len;
	req->query.len = q ? (size_t)(req->target.p + req->target.len - q - 1) : 0;
	if (q)
		req->path.len = (size_t)(q - req->target.p);
}

/* "METHOD SP target SP HTTP/1.x" */
static enum http_error parse_request_line(const char *p, size_t len, struct http_request *req)
{
	const char *end = p + len;
	const char *sp1 = memchr(p, ' ', len);
	if (!sp1 || sp1 == p)
		return HTTPE_BAD_REQUEST;
	const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1 || sp1[1] != '/')
		return HTTPE_BAD_REQUEST;
	if (end - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return HTTPE_BAD_REQUEST;
	for (const char *c = sp1 + 1; c < sp2; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return HTTPE_BAD_REQUEST;
	enum http_error e = parse_method(p, (size_t)(sp1 - p), req);
	if (e != HTTPE_NONE)
		return e;
	req->minor_version = sp2[8] - '0';
	req->keep_alive = req->minor_version == 1;
	req->target.p = sp1 + 1;
	req->target.len = (size_t)(sp2 - sp1 - 1);
	split_target(req);
	return HTTPE_NONE;
}

/* Content-Length: digits only (no sign, no spaces inside), bounded. */
static enum http_error parse_length(const char *v, size_t len, struct http_request *req)
{
	if (len == 0 || req->content_length >= 0)
		return HTTPE_BAD_REQUEST; /* empty or repeated */
	long n = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return HTTPE_BAD_REQUEST;
		if (n > HTTP_MAX_BODY)
			return HTTPE_PAYLOAD_TOO_LARGE; /* stop before overflow */
		n = n * 10 + (v[i] - '0');
	}
	if (n > HTTP_MAX_BODY)
		return HTTPE_PAYLOAD_TOO_LARGE;
	req->content_length = n;
	return HTTPE_NONE;
}

static enum http_error parse_header(const char *p, size_t len, struct http_request *req)
{
	const char *colon = memchr(p, ':', len);
	if (!colon || colon == p)
		return HTTPE_BAD_REQUEST;
	for (const char *c = p; c < colon; c++)
		if (*c == ' ' || *c == '\t')
			return HTTPE_BAD_REQUEST; /* no whitespace in field names (RFC 9112 §5.1) */
	size_t nlen = (size_t)(colon - p);
	const char *v = colon + 1, *end = p + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t vlen = (size_t)(end - v);
	if (slice_ieq(p, nlen, "Content-Length"))
		return parse_length(v, vlen, req);
	if (slice_ieq(p, nlen, "Transfer-Encoding"))
		return HTTPE_LENGTH_REQUIRED; /* we take only Content-Length bodies */
	if (slice_ieq(p, nlen, "Connection")) {
		if (has_token(v, vlen, "close"))
			req->keep_alive = 0;
		else if (has_token(v, vlen, "keep-alive"))
			req->keep_alive = 1;
	} else if (slice_ieq(p, nlen, "Cookie")) {
		req->cookie = (struct http_slice){v, vlen};
		req->has_cookie = 1;
	} else if (slice_ieq(p, nlen, "Host")) {
		req->host = (struct http_slice){v, vlen};
	}
	return HTTPE_NONE;
}

/* Request line and headers.  Returns HTTP_OK with header_len set, or INCOMPLETE/ERROR. */
static enum http_result parse_head(const char *buf, size_t len, struct http_request *req,
				   enum http_error *err)
{
	const char *end = buf + len, *eol = find_crlf(buf, end);
	if (!eol) {
		/* Too long only when the line cannot end in time: a last '\r' may be the CR of
		 * its CRLF (a request line of exactly the limit, split by TCP after the CR). */
		size_t line = len - (len > 0 && buf[len - 1] == '\r');
		*err = line > HTTP_MAX_REQUEST_LINE ? HTTPE_URI_TOO_LONG : HTTPE_NONE;
		return *err ? HTTP_ERROR : HTTP_INCOMPLETE;
	}
	if ((size_t)(eol - buf) > HTTP_MAX_REQUEST_LINE) {
		*err = HTTPE_URI_TOO_LONG;
		return HTTP_ERROR;
	}
	if ((*err = parse_request_line(buf, (size_t)(eol - buf), req)) != HTTPE_NONE)
		return HTTP_ERROR;
	for (const char *line = eol + 2;; line = eol + 2) {
		eol = find_crlf(line, end);
		size_t upto = (size_t)((eol ? eol + 2 : end) - buf);
		if (upto > HTTP_MAX_HEADER_BYTES) {
			*err = HTTPE_HEADER_TOO_LARGE;
			return HTTP_ERROR;
		}
		if (!eol)
			return HTTP_INCOMPLETE;
		if (eol == line) {
			req->header_len = upto;
			return HTTP_OK;
		}
		if ((*err = parse_header(line, (size_t)(eol - line), req)) != HTTPE_NONE)
			return HTTP_ERROR;
	}
}

enum http_result http_parse(const char *buf, size_t len, struct http_request *req,
			    enum http_error *err)
{
	memset(req, 0, sizeof(*req));
	req->content_length = -1;
	*err = HTTPE_NONE;
	enum http_result r = parse_head(buf, len, req, err);
	if (r != HTTP_OK)
		return r;
	if (req->method == HTTP_POST && req->content_length < 0) {
		*err = HTTPE_LENGTH_REQUIRED;
		return HTTP_ERROR;
	}
	size_t body = req->content_length > 0 ? (size_t)req->content_length : 0;
	if (len - req->header_len < body)
		return HTTP_INCOMPLETE;
	req->body = (struct http_slice){buf + req->header_len, body};
	req->total_len = req->header_len + body;
	return HTTP_OK;
}

int http_error_status(enum http_error err)
{
	switch (err) {
	case HTTPE_URI_TOO_LONG: return 414;
	case HTTPE_HEADER_TOO_LARGE: return 431;
	case HTTPE_METHOD: return 405; /* 4xx [I]: the request is refused, the server is fine */
	case HTTPE_LENGTH_REQUIRED: return 411;
	case HTTPE_PAYLOAD_TOO_LARGE: return 413;
	default: return 400;
	}
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}
