/*
 * The mock server's connections on its ring.
 *
 * Shape of the loop: a multishot accept on the listener, one plain recv per
 * connection into its own growable buffer, at most one send per connection
 * (bytes produced while it is in flight collect in a second buffer and go
 * out in the next send), one ring timeout per connection for delays
 * (ttft, itl, slow headers), and an eventfd read that asks the thread to
 * stop. Completions are reaped in batches and every SQE produced while
 * handling them goes to the kernel in the next io_uring_submit_and_wait, so
 * many sends share one io_uring_enter.
 *
 * Requests on one connection are answered strictly in order: while a
 * response is still in progress (waiting on a timer) later pipelined
 * requests stay in the input buffer.
 *
 * TLS (mock_tls.c) sits between the ring and the same HTTP code: a TLS
 * connection receives ciphertext into its TLS engine's buffer, decrypts it
 * into `in` on each recv completion, and at flush time encrypts `pend` into
 * `tpend`, which is sent like `pend` in plain mode. Plain connections only
 * pay for the `c->tls` branches.
 */
#include "mock_batches.h"
#include "mock_tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static struct io_uring_sqe *sqe_get(struct mock_server *s)
{
	struct io_uring_sqe *sqe;
	while (!(sqe = io_uring_get_sqe(&s->ring)))
		io_uring_submit(&s->ring); /* SQ full: hand what we have over */
	return sqe;
}

static inline uint64_t ud(struct conn *c, unsigned tag)
{
	return (uint64_t)(uintptr_t)c | tag;
}

static void recv_arm(struct mock_server *s, struct conn *c);
static void tls_recv_arm(struct mock_server *s, struct conn *c, size_t want);
static void conn_process(struct mock_server *s, struct conn *c);

static void send_arm(struct mock_server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_send(sqe, c->fd, c->out.p + c->out_off, c->out.len - c->out_off,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud(c, TAG_SEND));
	c->send_armed = true;
	c->inflight++;
}

void mock_timer_arm_us(struct mock_server *s, struct conn *c, uint64_t us)
{
	c->ts.tv_sec = (long long)(us / 1000000);
	c->ts.tv_nsec = (long long)(us % 1000000) * 1000;
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_timeout(sqe, &c->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud(c, TAG_TIMER));
	c->timer_armed = true;
	c->inflight++;
}

void mock_timer_arm_at_ns(struct mock_server *s, struct conn *c, uint64_t due_ns)
{
	c->ts.tv_sec = (long long)(due_ns / 1000000000ull);
	c->ts.tv_nsec = (long long)(due_ns % 1000000000ull);
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_timeout(sqe, &c->ts, 0, IORING_TIMEOUT_ABS);
	io_uring_sqe_set_data64(sqe, ud(c, TAG_TIMER));
	c->timer_armed = true;
	c->inflight++;
}

uint64_t mock_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Encrypts what the HTTP side produced, then sends like plain mode does. */
static void tls_flush(struct mock_server *s, struct conn *c)
{
	if (c->closing)
		return;
	if (c->pend.len) {
		/* Cannot fail with a memory sink after the handshake; if it does,
		 * drop the bytes and let conn_process close (callers still use c). */
		if (mock_tls_conn_write(c->tls, c->pend.p, c->pend.len) < 0) {
			c->want_close = CLOSE_FIN;
			c->tls_bare_close = true;
		}
		c->pend.len = 0;
	}
	if (c->send_armed || c->tpend.len == 0)
		return;
	struct mock_buf t = c->out;
	c->out = c->tpend;
	c->tpend = t;
	c->tpend.len = 0;
	c->out_off = 0;
	send_arm(s, c);
}

/* Starts the next send when none is in flight: pend becomes out. */
void mock_conn_flush(struct mock_server *s, struct conn *c)
{
	if (c->tls) {
		tls_flush(s, c);
		return;
	}
	if (c->send_armed || c->closing || c->pend.len == 0)
		return;
	struct mock_buf t = c->out;
	c->out = c->pend;
	c->pend = t;
	c->pend.len = 0;
	c->out_off = 0;
	send_arm(s, c);
}

void mock_conn_free(struct mock_server *s, struct conn *c)
{
	if (c->rst) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	mock_buf_free(&c->in);
	mock_buf_free(&c->out);
	mock_buf_free(&c->pend);
	mock_buf_free(&c->tpend);
	mock_tls_conn_free(c->tls);
	mock_buf_free(&c->job.whole);
	mock_buf_free(&c->job.prefix);
	mock_bfile_unref(c->job.src);
	free(c);
}

static void conn_maybe_free(struct mock_server *s, struct conn *c)
{
	if (c->closing && c->inflight == 0)
		mock_conn_free(s, c);
}

/* Cancels what is in flight; the conn is freed after the last completion
 * (the kernel may still be using its buffers until then). */
static void conn_close(struct mock_server *s, struct conn *c, bool rst)
{
	if (c->closing)
		return;
	c->closing = true;
	c->rst = rst;
	mock_batch_release(s, c); /* a disconnect frees its slot or queue place */
	if (c->recv_armed || c->send_armed) {
		struct io_uring_sqe *sqe = sqe_get(s);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	}
	if (c->timer_armed) {
		struct io_uring_sqe *sqe = sqe_get(s);
		io_uring_prep_timeout_remove(sqe, ud(c, TAG_TIMER), 0);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	}
	conn_maybe_free(s, c);
}


/* Queues close_notify before an orderly close; true when a send of it is
 * now in flight. Not after a reset, a truncation or a failed handshake. */
static bool tls_close_notify(struct mock_server *s, struct conn *c)
{
	if (c->tls_notified || c->rst || c->tls_bare_close)
		return false;
	c->tls_notified = true;
	if (mock_tls_conn_close_notify(c->tls) < 0)
		return false;
	tls_flush(s, c);
	return c->send_armed;
}

/* Answers complete requests in order, sends, decides on closing, keeps a
 * recv armed. Called after every completion on the connection. */
static void conn_process(struct mock_server *s, struct conn *c)
{
	if (c->job.active && c->job.wait_send && c->pend.len + c->tpend.len < PEND_HIGH) {
		c->job.wait_send = false;
		mock_job_run(s, c);
	}
	while (!c->closing && !c->want_close && !c->job.active &&
	       c->pend.len + c->tpend.len < PEND_HIGH) {
		if (!c->head_done) {
			int r = mock_parse_head(c);
			if (r == 0)
				break;
			if (r != 1) {
				mock_respond_parse_error(s, c, r);
				mock_job_run(s, c);
				break;
			}
			c->head_done = true;
		}
		if (c->in.len - c->in_start < c->rq.head_len + c->rq.body_len)
			break;
		mock_dispatch(s, c);
		c->in_start += c->rq.head_len + c->rq.body_len;
		c->head_done = false;
		c->scan = 0;
		mock_job_run(s, c);
	}
	if (c->closing)
		return;
	if (c->rd_eof && c->job.active && c->job.batch == BATCH_WAITING) {
		/* Gone before its generation started (as uvicorn reads an EOF:
		 * a disconnect); nothing of the reply was sent. */
		conn_close(s, c, false);
		return;
	}
	mock_conn_flush(s, c);
	bool idle = !c->job.active && !c->send_armed && c->pend.len == 0;
	if (idle && c->rd_eof && !c->want_close)
		c->want_close = CLOSE_FIN; /* the client is done sending */
	if (idle && c->want_close) {
		if (c->tls && tls_close_notify(s, c))
			return; /* closed once the alert is sent */
		conn_close(s, c, c->rst);
		return;
	}
	if (!c->recv_armed && !c->rd_eof && !c->want_close)
		recv_arm(s, c);
}

void mock_conn_resume(struct mock_server *s, struct conn *c)
{
	if (c->closing)
		return;
	mock_job_run(s, c);
	conn_process(s, c);
}

static void recv_arm(struct mock_server *s, struct conn *c)
{
	/* Only here is the buffer moved: no recv is writing into it. */
	size_t have = c->in.len - c->in_start;
	if (c->in_start) {
		memmove(c->in.p, c->in.p + c->in_start, have);
		c->in.len = have;
		c->in_start = 0;
	}
	if (c->job.active && have >= IN_BACKLOG_MAX)
		return; /* re-armed when the job is done */
	size_t want = 4096;
	if (c->head_done && c->rq.head_len + c->rq.body_len > have &&
	    c->rq.head_len + c->rq.body_len - have > want)
		want = c->rq.head_len + c->rq.body_len - have;
	if (c->tls) {
		tls_recv_arm(s, c, want);
		return;
	}
	if (c->in.cap == 0)
		mock_buf_reserve(&c->in, IN_INITIAL > want ? IN_INITIAL : want);
	else
		mock_buf_reserve(&c->in, want);
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_recv(sqe, c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
	io_uring_sqe_set_data64(sqe, ud(c, TAG_RECV));
	c->recv_armed = true;
	c->inflight++;
}

/* TLS: the recv lands in the TLS engine's ciphertext buffer (left alone
 * until the completion: only on_recv consumes from it). */
static void tls_recv_arm(struct mock_server *s, struct conn *c, size_t want)
{
	want = want < TLS_RECV_MIN ? TLS_RECV_MIN : want > TLS_RECV_MAX ? TLS_RECV_MAX : want;
	unsigned char *p;
	size_t n;
	mock_tls_conn_in_space(c->tls, want, &p, &n);
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_recv(sqe, c->fd, p, n, 0);
	io_uring_sqe_set_data64(sqe, ud(c, TAG_RECV));
	c->recv_armed = true;
	c->inflight++;
}

/* TLS: res ciphertext bytes arrived. Advances the handshake, then decrypts
 * all complete records into `in`. A handshake or record failure closes this
 * connection (after any alert mbedTLS queued has been sent). */
static void tls_absorb(struct conn *c, size_t res)
{
	mock_tls_conn_in_commit(c->tls, res);
	int r = mock_tls_conn_handshake(c->tls);
	if (r == 0)
		return;
	if (r < 0) {
		c->want_close = CLOSE_FIN;
		c->tls_bare_close = true;
		return;
	}
	for (;;) {
		mock_buf_reserve(&c->in, TLS_PLAIN_CHUNK);
		int n = mock_tls_conn_read(c->tls, c->in.p + c->in.len, c->in.cap - c->in.len);
		if (n > 0) {
			c->in.len += (size_t)n;
			continue;
		}
		if (n == -EPIPE) {
			c->rd_eof = true; /* close_notify: the client is done sending */
		} else if (n < 0) {
			c->want_close = CLOSE_FIN;
			c->tls_bare_close = true;
		}
		return;
	}
}

static void on_recv(struct mock_server *s, struct conn *c, int res)
{
	c->recv_armed = false;
	c->inflight--;
	if (c->closing) {
		conn_maybe_free(s, c);
		return;
	}
	if (res < 0) {
		if (res == -EINTR || res == -EAGAIN) {
			recv_arm(s, c);
			return;
		}
		conn_close(s, c, false);
		return;
	}
	if (res == 0)
		c->rd_eof = true;
	else if (c->tls)
		tls_absorb(c, (size_t)res);
	else
		c->in.len += (size_t)res;
	conn_process(s, c);
}

static void on_send(struct mock_server *s, struct conn *c, int res)
{
	c->send_armed = false;
	c->inflight--;
	if (c->closing) {
		conn_maybe_free(s, c);
		return;
	}
	if (res < 0 && (res == -EINTR || res == -EAGAIN)) {
		send_arm(s, c);
		return;
	}
	if (res <= 0) {
		conn_close(s, c, false);
		return;
	}
	c->out_off += (size_t)res;
	if (c->out_off < c->out.len) {
		send_arm(s, c); /* short send */
		return;
	}
	c->out.len = 0;
	conn_process(s, c);
}

static void on_timer(struct mock_server *s, struct conn *c, int res)
{
	c->timer_armed = false;
	c->inflight--;
	if (c->closing) {
		conn_maybe_free(s, c);
		return;
	}
	mock_job_run(s, c);
	conn_process(s, c);
}

void mock_accept_arm(struct mock_server *s)
{
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_multishot_accept(sqe, s->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, TAG_ACCEPT);
	s->accept_armed = true;
}

/* The multishot accept ended: start it again, after a pause on errors. */
static void accept_rearm(struct mock_server *s, int res)
{
	if (s->stopping)
		return;
	if (res >= 0 || res == -EINTR || res == -EAGAIN) {
		mock_accept_arm(s);
		return;
	}
	/* Out of fds and the like: retry in 10 ms, not in a hot loop. */
	s->accept_retry_ts.tv_sec = 0;
	s->accept_retry_ts.tv_nsec = 10 * 1000000;
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_timeout(sqe, &s->accept_retry_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, TAG_ACCEPT_RETRY);
	s->accept_retry_armed = true;
}

/* mbedTLS output: queued for the next send. */
static void tls_sink(void *arg, const unsigned char *p, size_t n)
{
	struct conn *c = arg;
	put(&c->tpend, p, n);
}

static void on_accept(struct mock_server *s, int res, unsigned flags)
{
	if (!(flags & IORING_CQE_F_MORE)) {
		s->accept_armed = false;
		accept_rearm(s, res);
	}
	if (res < 0)
		return;
	if (s->stopping) {
		close(res);
		return;
	}
	int one = 1;
	setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct conn *c = calloc(1, sizeof(*c)); /* owned by the server's list */
	if (!c)
		abort();
	if (s->tls) {
		c->tls = mock_tls_conn_new(s->tls, tls_sink, c);
		if (!c->tls) {
			free(c);
			close(res);
			return;
		}
	}
	c->fd = res;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	atomic_fetch_add_explicit(&s->connections, 1, memory_order_relaxed);
	recv_arm(s, c);
}

void mock_stop_arm(struct mock_server *s)
{
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_read(sqe, s->efd, &s->efd_val, sizeof(s->efd_val), 0);
	io_uring_sqe_set_data64(sqe, TAG_STOP);
}

static void begin_stop(struct mock_server *s)
{
	s->stopping = true;
	if (s->accept_armed) {
		struct io_uring_sqe *sqe = sqe_get(s);
		io_uring_prep_cancel64(sqe, TAG_ACCEPT, 0);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	}
	if (s->accept_retry_armed) {
		struct io_uring_sqe *sqe = sqe_get(s);
		io_uring_prep_timeout_remove(sqe, TAG_ACCEPT_RETRY, 0);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	}
	for (struct conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		conn_close(s, c, false);
	}
	mock_batch_timer_cancel(s);
}

void mock_handle_cqe(struct mock_server *s, struct io_uring_cqe *cqe)
{
	uint64_t d = cqe->user_data;
	unsigned tag = (unsigned)(d & TAG_MASK);
	struct conn *c = (struct conn *)(uintptr_t)(d & ~TAG_MASK);
	switch (tag) {
	case TAG_RECV: on_recv(s, c, cqe->res); break;
	case TAG_SEND: on_send(s, c, cqe->res); break;
	case TAG_TIMER: on_timer(s, c, cqe->res); break;
	case TAG_ACCEPT: on_accept(s, cqe->res, cqe->flags); break;
	case TAG_ACCEPT_RETRY:
		s->accept_retry_armed = false;
		if (!s->stopping)
			mock_accept_arm(s);
		break;
	case TAG_BATCH: mock_batch_timer_fired(s); break;
	case TAG_STOP:
		if (cqe->res == -EINTR || cqe->res == -EAGAIN)
			mock_stop_arm(s);
		else
			begin_stop(s);
		break;
	default: break;
	}
}
