/* module.c — TUX's user-space module API (--module-api tux, the default).
 *
 * TUX 2 (net/tux/main.c, include/net/tux_u.h in Red Hat's 2.4.21 kernel) ran a user-space
 * module on the worker task: the worker sits in sys_tux(EVENTLOOP); when a request for the
 * module reaches the head of the work queue the call returns to user mode with the request
 * copied out (a user_req_t), and every action the module asks for is another sys_tux call.
 * ktux keeps that shape: a request for the SPECweb99 module waits in the work FIFO, gets one
 * module step when it reaches the head, and each step ends in actions that are real kernel
 * crossings doing what TUX's did:
 *
 *   action          TUX                                    ktux
 *   GET_OBJECT      lookup; a miss goes to the I/O threads  openat2 through the ring, then the
 *                   (cachemiss.c), the request requeued     pages faulted in on a pool slot
 *                                                          (pool.c) unless mincore finds them
 *   READ_OBJECT     generic_file_read into the module's     pread into the module's buffer
 *                   buffer (the page cache has it)
 *   READ_POST_DATA  copy_to_user of the body                process_vm_readv of the body
 *   SEND_BUFFER     non-blocking send; on EAGAIN waits for  a send through the ring: done at
 *                   write space, then requeued             once, or parked on write space
 *   FINISH_REQ      log, keep-alive or close                io_uring_enter, then keep-alive
 *                                                          or linger (send.c's rule)
 *
 * GET_OBJECT, SEND_BUFFER and FINISH_REQ jump back into the event loop (their io_uring_enter
 * also takes in the completions that arrived); with --sched tux each such re-entry first
 * accepts until the listen queue is empty, then reaps (loop.c's pass), before the next module
 * step.  A dynamic GET makes 4 actions (GET_OBJECT, READ_OBJECT, SEND_BUFFER, FINISH_REQ),
 * 3 re-entries and 4 hand-backs, each copying a user_req_t to the module (on the first
 * return, and after GET_OBJECT, READ_OBJECT and SEND_BUFFER); a POST adds READ_POST_DATA.
 *
 * One request is in the module at a time (steps run one after another on the one thread).
 * [I] The module sends a reply in windows of MODULE_WINDOW bytes (READ_OBJECT + SEND_BUFFER
 * each), so a client that does not read holds one window, not the whole reply; a reply of up
 * to one window (SPECweb99 files of classes 0-2) is the 4 actions above.
 *
 * Connection lifecycle here: PH_MODULE (queued or in a step) → PH_FILE (GET_OBJECT's open
 * and fill) → PH_MODULE → PH_SENDING (SEND_BUFFER in flight) → PH_MODULE … → FINISH_REQ →
 * PH_IDLE (send.c's conn_response_sent).  A queued connection holds an inflight reference,
 * so a client that resets while its request is queued is freed only once it leaves the FIFO.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "ktux.h"

#define MODULE_WINDOW (64 * 1024) /* [I] the module's send buffer */
#define MODULE_CPU_EVERY 8        /* [I] one step in 8 is timed with the thread CPU clock */

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
};

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void module_free(struct conn *c)
{
	struct modreq *m = c->mod;
	if (!m)
		return;
	if (m->obj_fd >= 0)
		close(m->obj_fd);
	if (m->map)
		munmap(m->map, m->obj_size);
	free(m->win);
	free(m->raw);
	free(m);
	c->mod = NULL;
}

static void copy_field(uint8_t *dst, size_t cap, const struct http_slice *v)
{
	size_t n = v->len < cap - 1 ? v->len : cap - 1;
	memcpy(dst, v->p, n);
	dst[n] = 0;
}

/* What TUX's parser left in its request for the module (prepare_userspace_req's source). */
static void image_build(struct tux_user_req *u, const struct conn *c, const struct http_request *req)
{
	memset(u, 0, sizeof *u);
	u->version_major = 2;
	u->http_version = (uint32_t)req->minor_version;
	u->http_method = req->method == HTTP_POST ? 2 : 1;
	u->sock = (uint32_t)c->fd;
	u->keep_alive = (uint32_t)req->keep_alive;
	u->objectlen = (uint32_t)req->content_length;
	copy_field(u->query, sizeof u->query, &req->query);
	copy_field(u->objectname, sizeof u->objectname, &req->path);
	copy_field(u->cookies, sizeof u->cookies, &req->cookie);
	u->cookies_len = (uint32_t)strlen((const char *)u->cookies);
}

/* ---- the module's CPU time: thread CPU of timed steps, actions excluded ---- */

static void cpu_pause(struct server *s, struct modreq *m)
{
	if (m->cpu_from)
		s->st->module.cpu_timed_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - m->cpu_from;
}

static void cpu_resume(struct modreq *m)
{
	if (m->cpu_from)
		m->cpu_from = clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* An action: counted by request type; the module's clock stops while the kernel works. */
static void action_begin(struct server *s, struct conn *c)
{
	s->st->module.actions[c->mod->type]++;
	cpu_pause(s, c->mod);
}

/* GET_OBJECT, SEND_BUFFER, FINISH_REQ: the crossing submits the action's work and takes in
 * completions (io_uring_enter with GETEVENTS, never waiting); the module's step ends here. */
static void action_enter(struct server *s, struct conn *c)
{
	action_begin(s, c);
	ring_enter(&s->ring);
	c->mod->cpu_from = 0;
}

/* A return to the module with the request: its image copied out (prepare_userspace_req, on
 * every return from the event loop and from READ_OBJECT). */
static void handback(struct server *s, struct modreq *m)
{
	memcpy(&m->ureq, &m->kreq, sizeof m->ureq);
	__asm__ volatile("" : : "r"(&m->ureq) : "memory"); /* the copy is the module's to read */
	s->st->module.handbacks++;
}

/* READ_OBJECT: a synchronous read of the object (the page cache has it after GET_OBJECT). */
static ssize_t read_object(struct server *s, struct conn *c, int fd, char *dst, size_t n, off_t at)
{
	action_begin(s, c);
	ssize_t got = n ? pread(fd, dst, n, at) : 0;
	handback(s, c->mod);
	cpu_resume(c->mod);
	return got;
}

/* ---- the work FIFO ---- */

static void fifo_push(struct server *s, struct conn *c, enum mod_step step)
{
	c->mod->step = step;
	c->mod->queued_ns = clock_ns(CLOCK_MONOTONIC);
	c->phase = PH_MODULE;
	c->fifo_next = NULL;
	if (s->fifo_tail)
		s->fifo_tail->fifo_next = c;
	else
		s->fifo_head = c;
	s->fifo_tail = c;
	c->inflight++; /* the FIFO's reference */
}

static struct conn *fifo_pop(struct server *s)
{
	struct conn *c = s->fifo_head;
	s->fifo_head = c->fifo_next;
	if (!s->fifo_head)
		s->fifo_tail = NULL;
	c->inflight--;
	return c;
}

/* A request for the module, parsed by the kernel side: keep its bytes, queue it. */
void module_request(struct server *s, struct conn *c, const char *raw, const struct http_request *req)
{
	struct modreq *m = calloc(1, sizeof *m);
	if (!m || !(m->raw = malloc(req->total_len)) || (!c->dyn && !(c->dyn = malloc(sizeof *c->dyn)))) {
		if (m)
			free(m->raw);
		free(m);
		conn_abort(s, c, SE_INTERNAL);
		return;
	}
	memcpy(m->raw, raw, req->total_len);
	m->raw_len = req->total_len;
	m->type = sw99_classify(req);
	m->obj_fd = -1;
	image_build(&m->kreq, c, req);
	c->mod = m;
	s->st->module.requests[m->type]++;
	fifo_push(s, c, MOD_NEW);
}

/* ---- SEND_BUFFER: the reply in windows ---- */

/* Copy [off, off + n) of a memory piece [at, at + len) of the reply stream into dst. */
static size_t copy_piece(char *dst, size_t off, size_t n, size_t at, const char *p, size_t len)
{
	if (off >= at + len || off + n <= at)
		return 0;
	size_t from = off > at ? off - at : 0, to = off + n < at + len ? off + n - at : len;
	memcpy(dst + (at + from - off), p + from, to - from);
	return to - from;
}

/* The next window of the reply (head | body[0, file_at) | file | body[file_at, len) for a
 * file reply, head | body otherwise) into the module's buffer; the file's bytes by
 * READ_OBJECT.  0, or -1 when the file ended early (it shrank: the head promised more). */
static int window_fill(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	const struct response *r = &c->resp;
	size_t n = m->total - m->off < MODULE_WINDOW ? m->total - m->off : MODULE_WINDOW;
	size_t hl = r->head_len, at = r->kind == BODY_FILE ? r->file_at : r->body.len;
	size_t flen = r->kind == BODY_FILE ? r->file_len : 0;
	const char *body = r->kind != BODY_NONE ? r->body.data : NULL;
	size_t blen = r->kind != BODY_NONE ? r->body.len : 0;
	copy_piece(m->win, m->off, n, 0, r->head, hl);
	copy_piece(m->win, m->off, n, hl, body, at);
	copy_piece(m->win, m->off, n, hl + at + flen, body ? body + at : NULL, blen - at);
	size_t fa = hl + at; /* the file's place in the stream */
	if (flen > 0 && m->off < fa + flen && m->off + n > fa) {
		size_t from = m->off > fa ? m->off - fa : 0;
		size_t to = m->off + n < fa + flen ? m->off + n - fa : flen;
		ssize_t got = read_object(s, c, r->fd, m->win + (fa + from - m->off), to - from,
					  r->file_off + (off_t)from);
		if (got != (ssize_t)(to - from))
			return -1;
	}
	m->win_len = n;
	m->win_sent = 0;
	m->off += n;
	return 0;
}

static void submit_window(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_send(sqe, c->fd, m->win + m->win_sent, m->win_len - m->win_sent, MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_MODULE_SEND, 0, c->fd));
	c->inflight++;
}

/* READ_OBJECT (when the window holds file bytes), then SEND_BUFFER. */
static void send_window(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	if (!m->win && !(m->win = malloc(MODULE_WINDOW))) {
		conn_abort(s, c, SE_INTERNAL);
		return;
	}
	if (window_fill(s, c) < 0) {
		conn_abort(s, c, SE_INTERNAL);
		return;
	}
	c->phase = PH_SENDING;
	submit_window(s, c);
	action_enter(s, c);
}

/* c->resp is the reply: the module sends it. */
static void reply_start(struct server *s, struct conn *c)
{
	if (!c->resp.keep_alive)
		c->keep_alive = 0;
	c->mod->off = 0;
	c->mod->total = response_length(&c->resp);
	send_window(s, c);
}

void module_send_done(struct server *s, struct io_uring_cqe *cqe)
{
	struct conn *c = &s->conns[ud_fd(cqe->user_data)];
	c->inflight--;
	if (c->closing || cqe->res <= 0) {
		if (!c->closing)
			conn_abort(s, c, SE_RESET); /* EPIPE / ECONNRESET: the client went away */
		conn_op_done(s, c);
		return;
	}
	struct modreq *m = c->mod;
	s->st->bytes_out += (uint64_t)cqe->res;
	conn_touch(s, c);
	m->win_sent += (size_t)cqe->res;
	if (m->win_sent < m->win_len)
		submit_window(s, c); /* TUX's user_send_buffer repeats in the kernel: no action */
	else
		fifo_push(s, c, MOD_SENT);
}

/* ---- GET_OBJECT ---- */

static void object_failed(struct server *s, struct conn *c, int e)
{
	site_respond_finish(&s->site, c->dyn, &c->resp, e);
	c->mod->failed = 1;
	fifo_push(s, c, MOD_OBJECT);
}

static void object_ready(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	if (m->map) {
		munmap(m->map, m->obj_size);
		m->map = NULL;
	}
	fifo_push(s, c, MOD_OBJECT);
}

/* The fill, on a disk-I/O slot: TUX's cachemiss thread reading the object in. */
static void fill_submit(struct server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_madvise(sqe, c->mod->map, (off_t)c->mod->obj_size, MADV_POPULATE_READ);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_FILL, 0, c->fd));
	c->file_seq = s->ring.enter_seq;
	c->inflight++;
}

void module_open_done(struct server *s, struct conn *c, int fd)
{
	if (fd < 0) {
		object_failed(s, c, sw99_open_error(fd == -ENOENT || fd == -ENOTDIR ? -404 : -403));
		return;
	}
	struct stat st = {0};
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		object_failed(s, c, sw99_open_error(S_ISDIR(st.st_mode) ? -403 : -404));
		return;
	}
	struct modreq *m = c->mod;
	m->obj_fd = fd;
	m->obj_size = (size_t)st.st_size;
	if (m->obj_size == 0) {
		object_ready(s, c);
		return;
	}
	m->map = mmap(NULL, m->obj_size, PROT_READ, MAP_SHARED, fd, 0);
	if (m->map == MAP_FAILED) {
		m->map = NULL;
		object_ready(s, c); /* READ_OBJECT will read it (and block on a miss) */
		return;
	}
	if (page_resident(m->map, m->obj_size)) {
		object_ready(s, c); /* a page-cache hit: no I/O thread */
		return;
	}
	if (pool_take(s, c, fill_submit))
		fill_submit(s, c);
}

/* The fill completed; a failure shows up as READ_OBJECT's short read. */
void module_fill_done(struct server *s, struct conn *c, int res)
{
	(void)res;
	object_ready(s, c);
}

/* ---- the module's steps ---- */

/* MOD_NEW: the module reads the request (a POST's body by READ_POST_DATA) and the SPECweb99
 * module plans the reply; it needs the file (GET_OBJECT) or has its answer (SEND_BUFFER). */
static void step_new(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	struct http_request req;
	memset(&req, 0, sizeof req);
	enum http_error err = HTTPE_NONE;
	if (http_parse(m->raw, m->raw_len, &req, &err) != HTTP_OK) {
		conn_abort(s, c, SE_INTERNAL); /* parsed once already: cannot happen */
		return;
	}
	if (req.method == HTTP_POST && req.body.len > 0) {
		struct iovec local = {m->post, req.body.len}, remote = {(void *)req.body.p, req.body.len};
		action_begin(s, c); /* READ_POST_DATA */
		ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
		cpu_resume(m);
		if (got == (ssize_t)req.body.len)
			req.body.p = m->post;
	}
	if (!site_respond_begin(&s->site, &req, c->remote, &c->resp, c->dyn)) {
		reply_start(s, c); /* a command, or an error: complete */
		return;
	}
	c->dyn->keep_alive &= c->keep_alive; /* not while draining: the head says close */
	const char *rel;
	int rc = docroot_relative(c->dyn->url, c->dyn->url_len, c->key + 1, DOCROOT_MAX_PATH, &rel);
	if (rc < 0) {
		site_respond_finish(&s->site, c->dyn, &c->resp, sw99_open_error(rc));
		reply_start(s, c);
		return;
	}
	static_submit_open(s, c, rel); /* GET_OBJECT: the lookup through the ring */
	action_enter(s, c);
}

/* MOD_OBJECT: the reply around the object — its bytes go out unchanged (READ_OBJECT per
 * window), or (a custom-ad GET) READ_OBJECT reads it whole for the module to edit. */
static void step_object(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	if (m->failed) {
		reply_start(s, c);
		return;
	}
	int e;
	if (sw99_file_unchanged(c->dyn)) {
		int fd = m->obj_fd;
		m->obj_fd = -1; /* the reply owns it now */
		e = sw99_finish_sendfile(&s->site.module, c->dyn, &c->resp, fd, m->obj_size);
	} else {
		char *dst = sw99_file_dst(&c->resp, c->dyn, m->obj_size);
		long got = -1;
		if (dst)
			got = (long)read_object(s, c, m->obj_fd, dst, m->obj_size, 0);
		close(m->obj_fd);
		m->obj_fd = -1;
		e = dst ? sw99_finish(&s->site.module, c->dyn, &c->resp, got) : SE_INTERNAL;
	}
	site_respond_finish(&s->site, c->dyn, &c->resp, e);
	reply_start(s, c);
}

/* MOD_SENT: the next window, or FINISH_REQ. */
static void step_sent(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	if (m->off < m->total) {
		send_window(s, c);
		return;
	}
	action_enter(s, c); /* FINISH_REQ */
	module_free(c);
	conn_response_sent(s, c); /* keep-alive, pipelined input, or linger and close */
}

/* One hand-back: the request image copied to the module (prepare_userspace_req), then the
 * module's step. */
static void step(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	handback(s, m);
	uint64_t n = ++s->st->module.steps;
	m->cpu_from = n % MODULE_CPU_EVERY == 0 ? clock_ns(CLOCK_THREAD_CPUTIME_ID) : 0;
	if (m->cpu_from)
		s->st->module.steps_timed++;
	switch (m->step) {
	case MOD_NEW: step_new(s, c); break;
	case MOD_OBJECT: step_object(s, c); break;
	case MOD_SENT: step_sent(s, c); break;
	}
	if (c->mod && c->mod->cpu_from) { /* a step that ended without an entering action */
		cpu_pause(s, c->mod);
		c->mod->cpu_from = 0;
	}
}

void module_run_fifo(struct server *s, void (*reap)(struct server *s))
{
	while (s->fifo_head) {
		struct conn *c = fifo_pop(s);
		if (c->closing) {
			conn_op_done(s, c);
			continue;
		}
		s->st->module.fifo_waits++;
		s->st->module.fifo_wait_ns += clock_ns(CLOCK_MONOTONIC) - c->mod->queued_ns;
		step(s, c);
		if (s->cfg->sched == SCHED_TUX) { /* back in TUX's event loop: accept, then work */
			s->st->module.reentries++;
			s->st->module.accept_rounds++;
			accept_drain(s);
			reap(s);
		}
	}
}
