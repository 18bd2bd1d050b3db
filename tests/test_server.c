/*
 * The scripted test server (see test_server.h). Deliberately simple and
 * blocking: an accept thread plus one thread per connection, so each
 * connection does exactly what the handler says, in order, and nothing the
 * engine does can change the server's timing.
 *
 * Shutdown: every blocking call is either a socket operation (unblocked by
 * shutdown() from test_server_stop) or a sleep on a condition variable
 * (woken by the stop broadcast). Sockets are closed only under the server
 * mutex, so stop never calls shutdown() on a descriptor number that a
 * connection thread has already closed and the kernel has reused.
 */
#include "test_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TS_STR_(x) #x
#define TS_STR(x) TS_STR_(x)

#define TS_OK_BODY \
	"{\"id\":\"chatcmpl-test\",\"object\":\"chat.completion\"," \
	"\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0," \
	"\"message\":{\"role\":\"assistant\",\"content\":\"Hello from the test server\"}," \
	"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5," \
	"\"completion_tokens\":7,\"total_tokens\":12}}"
#define TS_OK_BODY_LEN 277
_Static_assert(sizeof(TS_OK_BODY) - 1 == TS_OK_BODY_LEN, "fix TS_OK_BODY_LEN");

const char ts_ok_response[] =
	"HTTP/1.1 200 OK\r\n"
	"Content-Type: application/json\r\n"
	"x-request-id: req_test_0001\r\n"
	"Content-Length: " TS_STR(TS_OK_BODY_LEN) "\r\n"
	"\r\n"
	TS_OK_BODY;

/* A request head larger than this is a broken client: drop the connection. */
#define TS_MAX_HEAD (1u << 20)
#define TS_MAX_BODY (64u << 20)

struct ts_conn {
	struct test_server *srv;
	int fd;                  /* -1 once closed; guarded by srv->mu */
	unsigned id;
	pthread_t thread;
	struct ts_conn *next;
};

struct test_server {
	ts_handler handler;
	void *ctx;
	int lfd;
	uint16_t port;
	pthread_t accept_thread;
	atomic_uint n_conns;
	atomic_uint n_requests;
	atomic_bool stopping;
	pthread_mutex_t mu;
	pthread_cond_t stop_cv;  /* broadcast by stop; wakes sleeping delays */
	struct ts_conn *conns;   /* owned: every accepted connection, freed by stop */
};

/* Sleeps ms unless the server is stopping; false when it is. */
static bool ts_sleep(struct test_server *s, unsigned ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mu);
	while (!atomic_load(&s->stopping)) {
		if (pthread_cond_timedwait(&s->stop_cv, &s->mu, &until) == ETIMEDOUT)
			break;
	}
	bool alive = !atomic_load(&s->stopping);
	pthread_mutex_unlock(&s->mu);
	return alive;
}

static void ts_close(struct ts_conn *c, bool reset)
{
	pthread_mutex_lock(&c->srv->mu);
	if (c->fd >= 0) {
		if (reset) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		}
		close(c->fd);
		c->fd = -1;
	}
	pthread_mutex_unlock(&c->srv->mu);
}

static bool ts_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static bool ts_send(struct ts_conn *c, const struct ts_reply *r)
{
	if (r->len == 0)
		return true;
	if (r->byte_delay_ms == 0)
		return ts_write_all(c->fd, r->data, r->len);
	for (size_t i = 0; i < r->len; i++) {
		if (i > 0 && !ts_sleep(c->srv, r->byte_delay_ms))
			return false;
		if (!ts_write_all(c->fd, r->data + i, 1))
			return false;
	}
	return true;
}

/* Case-insensitive search for a header line's value in a NUL-terminated head. */
static const char *ts_header(const char *head, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			return v;
		}
	}
	return NULL;
}

/*
 * Reads one request into *buf (head, NUL, body, NUL laid out as the handler
 * sees them); bytes past it stay at the front of the buffer for the next
 * call. Returns false on EOF, error or an unusable request.
 */
struct ts_rbuf {
	char *data;    /* owned, grows */
	size_t len;    /* bytes received and not yet consumed */
	size_t cap;
};

static bool ts_fill(int fd, struct ts_rbuf *b)
{
	if (b->cap - b->len < 4096) {
		size_t ncap = b->cap ? b->cap * 2 : 16384;
		char *n = realloc(b->data, ncap + 1);
		if (!n)
			return false;
		b->data = n;
		b->cap = ncap;
	}
	ssize_t r;
	do
		r = recv(fd, b->data + b->len, b->cap - b->len, 0);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return false;
	b->len += (size_t)r;
	return true;
}

static char *ts_memmem_crlf2(const char *p, size_t n)
{
	return memmem(p, n, "\r\n\r\n", 4);
}

static void ts_conn_serve(struct ts_conn *c)
{
	struct test_server *s = c->srv;
	struct ts_rbuf in = { 0 };      /* owned: raw bytes from the socket */
	char *req = NULL;               /* owned: head NUL body NUL for the handler */
	unsigned index = 0;
	bool hang = false;

	for (;;) {
		char *end;
		while (!(end = in.data ? ts_memmem_crlf2(in.data, in.len) : NULL)) {
			if (in.len > TS_MAX_HEAD || !ts_fill(c->fd, &in))
				goto out;
		}
		size_t head_len = (size_t)(end - in.data) + 4;

		free(req);
		req = malloc(head_len + 1);
		if (!req)
			goto out;
		memcpy(req, in.data, head_len);
		req[head_len] = '\0';
		size_t body_len = 0;
		const char *cl = ts_header(req, "Content-Length");
		if (cl) {
			char *e;
			unsigned long long v = strtoull(cl, &e, 10);
			if (e == cl || v > TS_MAX_BODY)
				goto out;
			body_len = (size_t)v;
		}
		while (in.len < head_len + body_len) {
			if (!ts_fill(c->fd, &in))
				goto out;
		}
		char *n = realloc(req, head_len + 1 + body_len + 1);
		if (!n)
			goto out;
		req = n;
		memcpy(req + head_len + 1, in.data + head_len, body_len);
		req[head_len + 1 + body_len] = '\0';
		in.len -= head_len + body_len;
		memmove(in.data, in.data + head_len + body_len, in.len);

		if (hang)  /* a hung connection reads and ignores everything */
			continue;

		struct ts_request rq = {
			.conn_id = c->id,
			.index_on_conn = index++,
			.global_index = atomic_fetch_add(&s->n_requests, 1),
			.head = req,
			.head_len = head_len,
			.body = req + head_len + 1,
			.body_len = body_len,
		};
		struct ts_reply reply = { 0 };
		s->handler(s->ctx, &rq, &reply);

		if (reply.delay_ms && !ts_sleep(s, reply.delay_ms))
			goto out;
		switch (reply.action) {
		case TS_SEND:
			if (!ts_send(c, &reply))
				goto out;
			break;
		case TS_SEND_CLOSE:
			ts_send(c, &reply);
			goto out;
		case TS_CLOSE:
			goto out;
		case TS_RESET:
			ts_send(c, &reply);
			ts_close(c, true);
			goto out;
		case TS_HANG:
			if (!ts_send(c, &reply))
				goto out;
			hang = true;
			break;
		}
	}
out:
	free(req);
	free(in.data);
	ts_close(c, false);
}

static void *ts_conn_main(void *arg)
{
	ts_conn_serve(arg);
	return NULL;
}

static void *ts_accept_main(void *arg)
{
	struct test_server *s = arg;
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (atomic_load(&s->stopping))
				return NULL;
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
			    errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				continue;
			return NULL;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

		struct ts_conn *c = calloc(1, sizeof *c);  /* owned by s->conns */
		if (!c) {
			close(fd);
			continue;
		}
		c->srv = s;
		c->fd = fd;
		c->id = atomic_fetch_add(&s->n_conns, 1);
		if (pthread_create(&c->thread, NULL, ts_conn_main, c) != 0) {
			close(fd);
			free(c);
			continue;
		}
		pthread_mutex_lock(&s->mu);
		c->next = s->conns;
		s->conns = c;
		pthread_mutex_unlock(&s->mu);
	}
}

int test_server_start(ts_handler handler, void *ctx, struct test_server **out)
{
	struct test_server *s = calloc(1, sizeof *s);  /* owned: the caller, via stop */
	if (!s)
		return -ENOMEM;
	s->handler = handler;
	s->ctx = ctx;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->stop_cv, &ca);
	pthread_condattr_destroy(&ca);

	int err;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0) {
		err = -errno;
		goto fail;
	}
	int one = 1;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sa;
	if (bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    listen(s->lfd, 1024) < 0 ||
	    getsockname(s->lfd, (struct sockaddr *)&sa, &sl) < 0) {
		err = -errno;
		goto fail;
	}
	s->port = ntohs(sa.sin_port);
	err = -pthread_create(&s->accept_thread, NULL, ts_accept_main, s);
	if (err)
		goto fail;
	*out = s;
	return 0;
fail:
	if (s->lfd >= 0)
		close(s->lfd);
	pthread_cond_destroy(&s->stop_cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
	return err;
}

uint16_t test_server_port(const struct test_server *s)
{
	return s->port;
}

unsigned test_server_connections(const struct test_server *s)
{
	return atomic_load(&((struct test_server *)s)->n_conns);
}

unsigned test_server_requests(const struct test_server *s)
{
	return atomic_load(&((struct test_server *)s)->n_requests);
}

void test_server_stop(struct test_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	atomic_store(&s->stopping, true);
	pthread_cond_broadcast(&s->stop_cv);
	pthread_mutex_unlock(&s->mu);

	/* shutdown() wakes the blocked accept(); the accept thread then
	 * adds no more connections, so the list is final once it is joined. */
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->accept_thread, NULL);
	close(s->lfd);

	pthread_mutex_lock(&s->mu);
	for (struct ts_conn *c = s->conns; c; c = c->next)
		if (c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->mu);

	struct ts_conn *c = s->conns;
	while (c) {
		struct ts_conn *next = c->next;
		pthread_join(c->thread, NULL);
		free(c);
		c = next;
	}
	pthread_cond_destroy(&s->stop_cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
