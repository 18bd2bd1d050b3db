/*
 * TCP over the ring. The connection counts its SQEs in flight; closing
 * cancels each by its user_data (a cancel by fd scans every request the
 * ring has in the kernel, so closing n connections that way is O(n^2)),
 * waits for their CQEs, then closes the fd through the ring, and only then reports
 * `closed`, so no CQE can ever arrive for freed memory.
 */
#include "io/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "llmring.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static void conn_submit_close(struct conn *c)
{
	c->close_queued = true;
	c->ops_in_flight++;
	struct io_uring_sqe *sqe = ring_sqe(c->ring, &c->op_close);
	if (c->fd >= 0)
		io_uring_prep_close(sqe, c->fd);
	else
		io_uring_prep_nop(sqe); /* keep `closed` asynchronous */
	c->fd = -1;
}

/* Every CQE of the connection ends here: the last one of a closing
 * connection starts the fd close. */
static void conn_op_done(struct conn *c)
{
	c->ops_in_flight--;
	if (c->closing && !c->close_queued && c->ops_in_flight == 0)
		conn_submit_close(c);
}

static void conn_arm_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(c->ring, &c->op_recv);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RING_BUF_GROUP;
	c->recv_armed = true;
	c->ops_in_flight++;
}

static void on_close_cqe(struct ring_op *op, int res, unsigned flags)
{
	struct conn *c = container_of(op, struct conn, op_close);
	c->ops_in_flight--;
	tls_conn_free(c->tls);
	c->tls = NULL;
	buf_free(&c->tls_tx);
	c->h->closed(c); /* may free c */
}

void conn_abandon(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	tls_conn_free(c->tls);
	c->tls = NULL;
	buf_free(&c->tls_tx);
}

/* ---- TLS: ciphertext out through the ring, plaintext up to the owner ---- */

static void tls_flush(struct conn *c)
{
	if (c->tls_send_busy || c->closing)
		return;
	/* The sent ciphertext's buffer goes back to malloc rather than
	 * waiting in this connection: malloc hands the chunk it got last
	 * (still in the cache) to the next record sealed on any connection,
	 * where a buffer kept here would be cold by this connection's next
	 * request (with many pooled connections), and an idle connection
	 * then holds no ciphertext buffer. */
	buf_free(&c->tls_tx);
	if (tls_conn_take_output(c->tls, &c->tls_tx) == 0) {
		if (c->tls_user_send) {
			c->tls_user_send = false;
			c->h->sent(c, 0);
		}
		return;
	}
	c->tls_send_busy = true;
	c->tx = c->tls_tx.data;
	c->tx_len = c->tls_tx.len;
	c->tx_done = 0;
	struct io_uring_sqe *sqe = ring_sqe(c->ring, &c->op_send);
	io_uring_prep_send(sqe, c->fd, c->tx, c->tx_len, MSG_NOSIGNAL);
	c->send_inflight = true;
	c->ops_in_flight++;
}

static void tls_fail(struct conn *c, int code)
{
	c->tls_err.code = code;
	if (!c->tls_ready)
		c->h->connected(c, -EPROTO);
	else
		c->h->eof(c, -EPROTO);
}

static void tls_handshake_step(struct conn *c)
{
	int r = tls_conn_handshake(c->tls, c->tls_err.message, sizeof(c->tls_err.message));
	tls_flush(c);
	if (r == 0 || c->closing)
		return;
	if (r < 0) {
		tls_fail(c, r);
		return;
	}
	c->tls_ready = true;
	c->tls_resumed = tls_conn_resumed(c->tls);
	c->h->connected(c, 0);
}

/* Decrypts what arrived and hands it up record by record. */
static void tls_received(struct conn *c, char *data, size_t len)
{
	int fr = tls_conn_feed(c->tls, data, len);
	if (fr) {
		error_set(&c->tls_err, fr, 0, fr == LR_ENOMEM ? "out of memory buffering TLS data"
		                                              : "TLS data was lost (internal error)");
		tls_fail(c, fr); /* an LR_E* code, as every tls_err.code (-ENOMEM is LR_ESERVER) */
		return;
	}
	if (!c->tls_ready) {
		tls_handshake_step(c);
		if (!c->tls_ready || c->closing)
			return;
	}
	/* The ring buffer is lent to TLS until a read returns 0 or less. */
	while (!c->closing) {
		char *plain;
		long n = tls_conn_read(c->tls, &plain, c->tls_err.message, sizeof(c->tls_err.message));
		if (n > 0) {
			c->h->received(c, plain, (size_t)n);
			continue;
		}
		if (n == TLS_CLOSED)
			c->h->eof(c, 0);
		else if (n < 0)
			tls_fail(c, (int)n);
		break;
	}
	tls_flush(c); /* reading may have produced output (alerts) */
}

static void conn_rearm_deferred(struct ring_deferred *d)
{
	struct conn *c = container_of(d, struct conn, rearm);
	c->recv_deferred = false;
	c->ops_in_flight--;
	if (c->closing) {
		c->ops_in_flight++;
		conn_op_done(c);
		return;
	}
	conn_arm_recv(c);
}

static void on_recv_cqe(struct ring_op *op, int res, unsigned flags)
{
	struct conn *c = container_of(op, struct conn, op_recv);
	bool more = flags & IORING_CQE_F_MORE;
	if (flags & IORING_CQE_F_BUFFER) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		if (res > 0 && !c->closing) {
			if (c->tls)
				tls_received(c, ring_buf(c->ring, bid), (size_t)res);
			else
				c->h->received(c, ring_buf(c->ring, bid), (size_t)res);
		}
		ring_buf_recycle(c->ring, bid);
	}
	if (more)
		return;
	c->recv_armed = false;
	if (!c->closing) {
		if (res == -ENOBUFS) {
			/* The buffers ran out: the data waits in the socket.
			 * Re-arming now would fail again before the recycled
			 * buffers are back; the next turn has them. The op stays
			 * counted in flight, so a close waits for the re-arm. */
			c->recv_deferred = true;
			ring_defer(c->ring, &c->rearm, conn_rearm_deferred);
			return;
		}
		if (res > 0) {
			/* Multishot ended without an error: re-arm. */
			c->ops_in_flight--;
			conn_arm_recv(c);
			return;
		}
		c->h->eof(c, res); /* 0: orderly shutdown by the peer */
	}
	conn_op_done(c);
}

static void on_send_cqe(struct ring_op *op, int res, unsigned flags)
{
	struct conn *c = container_of(op, struct conn, op_send);
	c->send_inflight = false;
	if (!c->closing) {
		if (res < 0) {
			if (c->tls && !c->tls_ready) {
				c->h->connected(c, res);
			} else {
				c->tls_user_send = false;
				c->h->sent(c, res);
			}
		} else {
			c->tx_done += (size_t)res;
			if (c->tx_done < c->tx_len) {
				/* Short send: the rest goes out as the next SQE. */
				struct io_uring_sqe *sqe = ring_sqe(c->ring, &c->op_send);
				io_uring_prep_send(sqe, c->fd, c->tx + c->tx_done, c->tx_len - c->tx_done,
				                   MSG_NOSIGNAL);
				c->send_inflight = true;
				return; /* still one op in flight */
			}
			if (c->tls) {
				c->tls_send_busy = false;
				c->ops_in_flight--;
				tls_flush(c); /* more ciphertext, or report the user's send */
				if (c->closing && !c->close_queued && c->ops_in_flight == 0)
					conn_submit_close(c);
				return;
			}
			c->h->sent(c, 0);
		}
	}
	conn_op_done(c);
}

static void on_connect_cqe(struct ring_op *op, int res, unsigned flags)
{
	struct conn *c = container_of(op, struct conn, op_connect);
	c->connect_inflight = false;
	if (!c->closing) {
		if (res == 0)
			conn_arm_recv(c);
		if (res == 0 && c->tls) {
			if (c->h->handshaking)
				c->h->handshaking(c);
			tls_handshake_step(c); /* the ClientHello goes out */
		} else {
			c->h->connected(c, res);
		}
	}
	conn_op_done(c);
}

static void on_socket_cqe(struct ring_op *op, int res, unsigned flags)
{
	struct conn *c = container_of(op, struct conn, op_socket);
	if (res >= 0) {
		c->fd = res;
		if (!c->closing) {
			/* Requests are written whole; never wait for Nagle. */
			int one = 1;
			setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			struct io_uring_sqe *sqe = ring_sqe(c->ring, &c->op_connect);
			io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)&c->addr, c->addr_len);
			c->connect_inflight = true;
			c->ops_in_flight++;
		}
	} else if (!c->closing) {
		c->h->connected(c, res); /* EMFILE and friends surface here */
	}
	conn_op_done(c);
}

void conn_init(struct conn *c, struct ring *r, const struct conn_handler *h)
{
	memset(c, 0, sizeof(*c));
	c->ring = r;
	c->h = h;
	c->fd = -1;
	c->op_socket.complete = on_socket_cqe;
	c->op_connect.complete = on_connect_cqe;
	c->op_send.complete = on_send_cqe;
	c->op_recv.complete = on_recv_cqe;
	c->op_close.complete = on_close_cqe;
}

void conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len)
{
	memcpy(&c->addr, sa, len);
	c->addr_len = len;
	struct io_uring_sqe *sqe = ring_sqe(c->ring, &c->op_socket);
	io_uring_prep_socket(sqe, sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
	c->ops_in_flight++;
}

void conn_connect_tls(struct conn *c, const struct sockaddr *sa, socklen_t len, struct tls_conn *tls)
{
	c->tls = tls;
	conn_connect(c, sa, len);
}

void conn_send(struct conn *c, const char *data, size_t len)
{
	if (c->tls) {
		int r = tls_conn_write(c->tls, data, len);
		if (r) {
			error_set(&c->tls_err, r, 0, "%s",
			          r == LR_ENOMEM ? "out of memory encrypting the request" : "TLS encryption failed");
			c->h->sent(c, -EPROTO);
			return;
		}
		c->tls_user_send = true;
		tls_flush(c);
		return;
	}
	c->tx = data;
	c->tx_len = len;
	c->tx_done = 0;
	struct io_uring_sqe *sqe = ring_sqe(c->ring, &c->op_send);
	io_uring_prep_send(sqe, c->fd, data, len, MSG_NOSIGNAL);
	c->send_inflight = true;
	c->ops_in_flight++;
}

void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	if (c->tls && c->tls_ready && !c->tls_send_busy && c->fd >= 0) {
		/* A clean close_notify: send it, and stop only the receive,
		 * so the alert is not cancelled on its way out. */
		tls_conn_close_notify(c->tls);
		tls_flush(c);
		c->closing = true;
		if (c->recv_armed) {
			struct io_uring_sqe *sqe = ring_sqe(c->ring, NULL);
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&c->op_recv, 0);
		}
		if (c->ops_in_flight == 0)
			conn_submit_close(c);
		return;
	}
	c->closing = true;
	if (c->ops_in_flight == 0) {
		conn_submit_close(c);
		return;
	}
	if (c->fd >= 0) {
		/* By user_data, each a lookup in one hash bucket; a deferred
		 * re-arm is not in the kernel and ends on its own turn. */
		struct ring_op *ops[3] = {c->connect_inflight ? &c->op_connect : NULL,
		                          c->send_inflight ? &c->op_send : NULL,
		                          c->recv_armed ? &c->op_recv : NULL};
		for (int i = 0; i < 3; i++) {
			if (!ops[i])
				continue;
			struct io_uring_sqe *sqe = ring_sqe(c->ring, NULL);
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)ops[i], 0);
		}
	}
	/* else: the socket SQE is in flight; its CQE closes what it got. */
}
