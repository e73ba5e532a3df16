/* http.h — in-place HTTP/1.x request parser.
 *
 * The parser never copies: every field is a slice into the caller's receive buffer, so both
 * servers can parse where the bytes landed (userver's per-connection buffer, ktux's provided
 * buffer).  It is incremental in the simplest way: call it again with the longer buffer;
 * HTTP_INCOMPLETE means "read more", and a request is complete only when its body is.
 * Pipelined requests: after a complete request, the next one starts at buf + req.total_len.
 */
#ifndef UKWEB_HTTP_H
#define UKWEB_HTTP_H

#include <stddef.h>

/* Limits [I]: SPECweb99 request lines are < 100 bytes and its POST bodies < 200 bytes; the
 * limits leave room for real clients and bound what a hostile one can make us hold. */
#define HTTP_MAX_REQUEST_LINE 2048 /* longer: 414 */
#define HTTP_MAX_HEADER_BYTES 8192 /* request line + headers + blank line; longer: 431 */
#define HTTP_MAX_BODY 4096         /* Content-Length above it: 413 */
#define HTTP_MAX_REQUEST (HTTP_MAX_HEADER_BYTES + HTTP_MAX_BODY)

enum http_method { HTTP_GET, HTTP_POST };

enum http_result { HTTP_OK, HTTP_INCOMPLETE, HTTP_ERROR };

/* What went wrong with a request; each maps to one status code and one status-counter key. */
enum http_error {
	HTTPE_NONE,
	HTTPE_BAD_REQUEST,       /* 400 malformed request line/header, bad Content-Length */
	HTTPE_URI_TOO_LONG,      /* 414 */
	HTTPE_HEADER_TOO_LARGE,  /* 431 */
	HTTPE_METHOD,            /* 405 anything but GET and POST */
	HTTPE_LENGTH_REQUIRED,   /* 411 POST without Content-Length */
	HTTPE_PAYLOAD_TOO_LARGE, /* 413 */
};

struct http_slice {
	const char *p;
	size_t len;
};

struct http_request {
	enum http_method method;
	int minor_version;        /* HTTP/1.0 or HTTP/1.1 */
	struct http_slice target; /* raw request-target, e.g. /specweb99?/file_set/dir00001/class1_2 */
	struct http_slice path;   /* target up to '?' (still percent-encoded) */
	struct http_slice query;  /* after '?', raw; len 0 and has_query 0 when absent */
	int has_query;
	struct http_slice host;
	struct http_slice cookie; /* has_cookie tells "no Cookie" from "empty Cookie" */
	int has_cookie;
	long content_length; /* -1 when absent */
	int keep_alive;      /* HTTP/1.1 default on, 1.0 default off; Connection header overrides */
	struct http_slice body;
	size_t header_len; /* request line + headers + blank line */
	size_t total_len;  /* header_len + body length: where a pipelined request starts */
};

/* Parse one request at the start of buf[0..len).  On HTTP_ERROR *err says why. */
enum http_result http_parse(const char *buf, size_t len, struct http_request *req,
			    enum http_error *err);

/* The status code for an error (400, 414, 431, 405, 411, 413). */
int http_error_status(enum http_error err);

/* Reason phrase for a status code ("OK", "Not Found", ...). */
const char *http_reason(int status);

#endif
