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
 * States (ktux.h): MODULE (queued or in a step) → OPENING → FILLING (GET_OBJECT) → MODULE →
 * SENDING (SEND_BUFFER in flight) → MODULE … → FINISH_REQ → conn.c's conn_response_sent.
 * The loop (loop.c) runs the FIFO and, with --sched tux, re-enters after each step.  A queued
 * connection holds an inflight reference, so a client that resets while its request is
 * queued is freed only once it leaves the FIFO.
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
#include "modreq.h"

#define MODULE_WINDOW (64 * 1024) /* [I] the module's send buffer */
#define MODULE_CPU_EVERY 8        /* [I] one step in 8 is timed with the thread CPU clock */

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* ---- the module's CPU time: thread CPU of timed steps, actions excluded ----
 * Checked on a process with a known split: bench/module_cpu_split.c (tests/test_ktux_module.py). */

static uint64_t g_clock_bias; /* what a timed interval adds by itself (0: not measured yet) */

/* Two back-to-back thread-clock reads, median of 255: taken off every timed interval. */
static uint64_t clock_bias(void)
{
	uint64_t d[255];
	for (int i = 0; i < 255; i++) {
		uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		d[i] = clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	}
	for (int i = 1; i < 255; i++)
		for (int j = i; j > 0 && d[j] < d[j - 1]; j--) {
			uint64_t t = d[j];
			d[j] = d[j - 1];
			d[j - 1] = t;
		}
	return d[127] ? d[127] : 1;
}

static void cpu_pause(struct server *s, struct modreq *m)
{
	if (!m->cpu_from)
		return;
	uint64_t d = clock_ns(CLOCK_THREAD_CPUTIME_ID) - m->cpu_from;
	s->st->module.cpu_timed_ns += d > g_clock_bias ? d - g_clock_bias : 0;
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
	c->state = ST_MODULE;
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
	struct modreq *m = s->modreq_free;
	if (m)
		s->modreq_free = m->next_free;
	else
		m = calloc(1, sizeof *m);
	if (m) {
		m->step = MOD_NEW;
		m->win_len = m->win_sent = m->off = m->total = 0;
		m->map = NULL;
		m->failed = 0;
		m->cpu_from = 0;
	}
	if (!m || !(m->raw = malloc(req->total_len)) || (!c->dyn && !(c->dyn = malloc(sizeof *c->dyn)))) {
		if (m) {
			free(m->raw);
			m->raw = NULL;
			m->next_free = s->modreq_free;
			s->modreq_free = m;
		}
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
	c->state = ST_SENDING;
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

/* A SEND_BUFFER's send completed (the connection is open). */
enum next module_send_done(struct server *s, struct conn *c, int res)
{
	if (res <= 0) {
		conn_abort(s, c, SE_RESET); /* EPIPE / ECONNRESET: the client went away */
		return NEXT_NONE;
	}
	struct modreq *m = c->mod;
	s->st->bytes_out += (uint64_t)res;
	conn_touch(s, c);
	m->win_sent += (size_t)res;
	if (m->win_sent < m->win_len)
		submit_window(s, c); /* TUX's user_send_buffer repeats in the kernel: no action */
	else
		fifo_push(s, c, MOD_SENT);
	return NEXT_NONE;
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
	io_uring_sqe_set_data64(sqe, ud_pack(OP_MODULE_FILL, 0, c->fd));
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
	c->state = ST_FILLING;
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
	file_submit_open(s, c, rel, OP_MODULE_OPEN); /* GET_OBJECT: the lookup through the ring */
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
static enum next step_sent(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	if (m->off < m->total) {
		send_window(s, c);
		return NEXT_NONE;
	}
	action_enter(s, c); /* FINISH_REQ */
	module_free(s, c);
	return NEXT_RESPONSE_SENT; /* keep-alive, pipelined input, or linger and close */
}

struct conn *module_next(struct server *s)
{
	while (s->fifo_head) {
		struct conn *c = fifo_pop(s);
		if (c->state != ST_CLOSING)
			return c;
		conn_op_done(s, c); /* reset while queued: freed now that the FIFO let go */
	}
	return NULL;
}

/* One hand-back: the request image copied to the module (prepare_userspace_req), then the
 * module's step. */
enum next module_step(struct server *s, struct conn *c)
{
	struct modreq *m = c->mod;
	s->st->module.fifo_waits++;
	s->st->module.fifo_wait_ns += clock_ns(CLOCK_MONOTONIC) - m->queued_ns;
	handback(s, m);
	uint64_t n = ++s->st->module.steps;
	if (!g_clock_bias)
		g_clock_bias = clock_bias();
	m->cpu_from = n % MODULE_CPU_EVERY == 0 ? clock_ns(CLOCK_THREAD_CPUTIME_ID) : 0;
	if (m->cpu_from)
		s->st->module.steps_timed++;
	enum next next = NEXT_NONE;
	switch (m->step) {
	case MOD_NEW: step_new(s, c); break;
	case MOD_OBJECT: step_object(s, c); break;
	case MOD_SENT: next = step_sent(s, c); break;
	}
	if (c->mod && c->mod->cpu_from) { /* a step that ended without an entering action */
		cpu_pause(s, c->mod);
		c->mod->cpu_from = 0;
	}
	return next;
}
