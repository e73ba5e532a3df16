/* sendfile.c — the body of an uncached static response (too large for the cache, --no-cache,
 * or a fill already in flight), after its head has been sent.
 *
 * Zero-copy (default): splice file → pipe → socket, the two splices linked in one submission,
 * so the bytes go from the page cache to the socket without passing through user memory.
 * --no-zerocopy: read into a user buffer and send it, the copy TUX avoided.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "ktux.h"

#define PIPE_BYTES (256 * 1024) /* [I] pipe capacity asked for: one class-2 file per round */
#define COPY_CHUNK (64 * 1024)

static int ensure_pipe(struct conn *c)
{
	if (c->pipe[0] >= 0)
		return 0;
	if (pipe2(c->pipe, O_CLOEXEC) < 0) {
		c->pipe[0] = c->pipe[1] = -1;
		return -1;
	}
	/* best effort: the default 64 KiB also works */
	int n = fcntl(c->pipe[1], F_SETPIPE_SZ, PIPE_BYTES);
	c->pipe_cap = n > 0 ? (size_t)n : 65536;
	return 0;
}

static void splice_out(struct server *s, struct conn *c, size_t len)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_splice(sqe, c->pipe[0], -1, c->fd, -1, (unsigned)len, SPLICE_F_MOVE);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_SPLICE_OUT, 0, c->fd));
	c->inflight++;
}

/* One round: file → pipe linked to pipe → socket (on a disk-I/O slot, pool.c). */
static void splice_submit(struct server *s, struct conn *c)
{
	size_t len = c->file_left < c->pipe_cap ? c->file_left : c->pipe_cap;
	if (io_uring_sq_space_left(&s->ring.uring) < 2)
		ring_submit_wait(&s->ring); /* a link must not straddle two submissions */
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_splice(sqe, c->resp.fd, c->file_off, c->pipe[1], -1, (unsigned)len, SPLICE_F_MOVE);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, ud_pack(OP_SPLICE_IN, 0, c->fd));
	c->inflight++;
	splice_out(s, c, len);
}

static void splice_next(struct server *s, struct conn *c)
{
	if (pool_take(s, c, splice_submit))
		splice_submit(s, c);
}

static void copy_submit(struct server *s, struct conn *c)
{
	size_t len = c->file_left < COPY_CHUNK ? c->file_left : COPY_CHUNK;
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_read(sqe, c->resp.fd, c->bounce, (unsigned)len, (__u64)c->file_off);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_COPY_READ, 0, c->fd));
	c->file_seq = s->ring.enter_seq;
	c->inflight++;
}

static void copy_next(struct server *s, struct conn *c)
{
	if (pool_take(s, c, copy_submit))
		copy_submit(s, c);
}

/* The head is out: the file body (NEXT_FILE_SENT at once when it is empty). */
enum next splice_start(struct server *s, struct conn *c)
{
	c->state = ST_SPLICING;
	c->file_off = c->resp.file_off;
	c->file_left = c->resp.file_len;
	c->pipe_bytes = 0;
	if (c->file_left == 0)
		return NEXT_FILE_SENT;
	if (s->cfg->no_zerocopy) {
		if (!c->bounce && !(c->bounce = malloc(COPY_CHUNK))) {
			conn_abort(s, c, SE_INTERNAL);
			return NEXT_NONE;
		}
		copy_next(s, c);
		return NEXT_NONE;
	}
	if (ensure_pipe(c) < 0) {
		conn_abort(s, c, SE_INTERNAL);
		return NEXT_NONE;
	}
	splice_next(s, c);
	return NEXT_NONE;
}

/* After the pipe → socket half: drain what is left in the pipe, then the next round. */
static enum next splice_continue(struct server *s, struct conn *c)
{
	if (c->pipe_bytes > 0)
		splice_out(s, c, c->pipe_bytes);
	else if (c->file_left > 0)
		splice_next(s, c);
	else
		return NEXT_FILE_SENT;
	return NEXT_NONE;
}

enum next splice_done(struct server *s, struct conn *c, struct io_uring_cqe *cqe)
{
	int res = cqe->res;
	if (ud_op(cqe->user_data) == OP_SPLICE_IN) {
		if (res <= 0) { /* read error, or the file shrank: the head promised more */
			conn_abort(s, c, SE_INTERNAL);
			return NEXT_NONE;
		}
		c->pipe_bytes += (size_t)res;
		c->file_off += res;
		c->file_left -= (size_t)res;
		return NEXT_NONE; /* the linked out-splice (or its cancellation) follows */
	}
	if (res == -ECANCELED) /* a short file → pipe splice broke the link */
		return splice_continue(s, c);
	if (res <= 0) {
		conn_abort(s, c, SE_RESET);
		return NEXT_NONE;
	}
	c->pipe_bytes -= (size_t)res;
	s->st->bytes_out += (uint64_t)res;
	conn_touch(s, c);
	return splice_continue(s, c);
}

static void copy_send(struct server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	io_uring_prep_send(sqe, c->fd, c->bounce + c->chunk_sent, c->chunk_len - c->chunk_sent, MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_COPY_SEND, 0, c->fd));
	c->inflight++;
}

/* --no-zerocopy: a chunk arrived in the bounce buffer; send it. */
enum next copy_read_done(struct server *s, struct conn *c, int res)
{
	if (res <= 0) {
		conn_abort(s, c, SE_INTERNAL);
		return NEXT_NONE;
	}
	c->file_off += res;
	c->file_left -= (size_t)res;
	c->chunk_len = (size_t)res;
	c->chunk_sent = 0;
	copy_send(s, c);
	return NEXT_NONE;
}

/* A bounce-buffer send completed. */
enum next copy_sent(struct server *s, struct conn *c, int res)
{
	if (res <= 0) {
		conn_abort(s, c, SE_RESET);
		return NEXT_NONE;
	}
	s->st->bytes_out += (uint64_t)res;
	conn_touch(s, c);
	c->chunk_sent += (size_t)res;
	if (c->chunk_sent < c->chunk_len)
		copy_send(s, c);
	else if (c->file_left > 0)
		copy_next(s, c);
	else
		return NEXT_FILE_SENT;
	return NEXT_NONE;
}
