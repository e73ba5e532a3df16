/* modreq.h — a request in TUX's user-module path (module.c; freed by life.c). */
#ifndef KTUX_MODREQ_H
#define KTUX_MODREQ_H

#include <stddef.h>
#include <stdint.h>

#include "../common/http.h"
#include "../common/stats.h"

/* TUX 2's user_req_t (include/net/tux_u.h), field for field: what the module sees. */
struct tux_user_req {
	uint32_t version_major, version_minor, version_patch, http_version, http_method, http_status;
	uint32_t sock, event, error, thread_nr, bytes_sent, client_host, objectlen, module_index;
	uint32_t keep_alive, cookies_len;
	uint64_t id, priv, object_addr;
	uint8_t query[256], objectname[256], cookies[128]; /* MAX_URI_LEN, MAX_COOKIE_LEN */
	uint8_t content_type[64], user_agent[64], accept[64], accept_charset[64]; /* MAX_FIELD_LEN */
	uint8_t accept_encoding[64], accept_language[64], cache_control[64], if_modified_since[64];
	uint8_t negotiate[64], pragma[64], referer[64];
	uint8_t new_date[30], pad[2]; /* DATE_LEN */
};
_Static_assert(sizeof(struct tux_user_req) == 1464, "TUX 2's user_req_t is 1464 bytes");

enum mod_step {
	MOD_NEW,    /* parsed by the kernel side, not yet seen by the module */
	MOD_OBJECT, /* GET_OBJECT done: the object is in the page cache (or m->failed) */
	MOD_SENT,   /* SEND_BUFFER done: the window is out */
};

struct modreq {
	enum mod_step step;
	enum req_type type;
	struct tux_user_req kreq; /* the kernel side's image of the request */
	struct tux_user_req ureq; /* the module's copy, refreshed at every hand-back */
	char *raw;                /* the request's bytes, kept by the kernel side */
	size_t raw_len;
	char post[HTTP_MAX_BODY]; /* READ_POST_DATA's destination */
	int obj_fd;
	size_t obj_size;
	void *map; /* GET_OBJECT's fill: the object mapped while its pages are faulted in */
	int failed; /* GET_OBJECT failed: c->resp is the error reply */
	char *win;  /* the module's send buffer */
	size_t win_len, win_sent;
	size_t off, total; /* the reply: bytes handed to SEND_BUFFER so far, of total */
	uint64_t queued_ns;
	/* thread CPU of a timed step: where the module's own work started (0: not timed) */
	uint64_t cpu_from;
	struct modreq *next_free; /* on the server's list of requests to reuse (life.c) */
};

#endif
