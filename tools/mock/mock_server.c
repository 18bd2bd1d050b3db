/*
 * The mock LLM server's public side (mock_server.h): options and fault
 * names, start and stop, and the server thread, which owns one io_uring
 * and hands every completion to mock_conn.c.
 *
 * The mock parses requests with its own code (mock_request.c), never with
 * engine/http: a mock that shared the client's parser would hide the bugs
 * the two would share. The other files are listed in mock_internal.h.
 */
#include "mock_batches.h"
#include "mock_tls.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const fault_names[MOCK_FAULT_COUNT] = {
	[MOCK_FAULT_NONE] = "none",
	[MOCK_FAULT_429] = "429",
	[MOCK_FAULT_500] = "500",
	[MOCK_FAULT_503] = "503",
	[MOCK_FAULT_RESET] = "reset",
	[MOCK_FAULT_TRUNCATE] = "truncate",
	[MOCK_FAULT_MALFORMED] = "malformed",
	[MOCK_FAULT_SLOW_HEADERS] = "slow-headers",
	[MOCK_FAULT_CLOSE] = "close",
	[MOCK_FAULT_529] = "529",
	[MOCK_FAULT_STREAM_ERROR] = "stream-error",
	[MOCK_FAULT_400] = "400",
	[MOCK_FAULT_401] = "401",
	[MOCK_FAULT_403] = "403",
	[MOCK_FAULT_404] = "404",
	[MOCK_FAULT_409] = "409",
	[MOCK_FAULT_422] = "422",
	[MOCK_FAULT_CONTEXT] = "context",
	[MOCK_FAULT_QUOTA] = "quota",
};

int mock_fault_from_mem(const char *s, size_t n)
{
	for (int i = 1; i < MOCK_FAULT_COUNT; i++)
		if (strlen(fault_names[i]) == n && strncasecmp(fault_names[i], s, n) == 0)
			return i;
	return -1;
}

static const char *const batch_fault_names[MOCK_BF_COUNT] = {
	[MOCK_BF_NONE] = "none", [MOCK_BF_INVALID] = "invalid", [MOCK_BF_EXPIRE] = "expire",
	[MOCK_BF_FAIL] = "fail", [MOCK_BF_CUT] = "cut", [MOCK_BF_429] = "429",
};

int mock_batch_fault_from_mem(const char *s, size_t n)
{
	for (int i = 1; i < MOCK_BF_COUNT; i++)
		if (strlen(batch_fault_names[i]) == n && strncasecmp(batch_fault_names[i], s, n) == 0)
			return i;
	return -1;
}

int mock_fault_from_name(const char *name)
{
	return name ? mock_fault_from_mem(name, strlen(name)) : -1;
}

const char *mock_fault_name(int fault)
{
	return fault >= 0 && fault < MOCK_FAULT_COUNT ? fault_names[fault] : NULL;
}

void mock_options_default(struct mock_options *o)
{
	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->port = 0;
	o->tokens = 16;
	o->slow_header_ms = 100;
}

static int ring_init(struct mock_server *s)
{
	struct io_uring_params p;
	const char *plain = getenv("LLMRING_RING_PLAIN");
	if (!s->o.plain_ring && !(plain && strcmp(plain, "1") == 0)) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
			  IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
		p.cq_entries = RING_CQ_ENTRIES;
		if (io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p) == 0)
			return 0;
	}
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = RING_CQ_ENTRIES;
	int r = io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p);
	if (r == 0)
		return 0;
	return io_uring_queue_init(RING_ENTRIES, &s->ring, 0);
}

static void set_started(struct mock_server *s, int v)
{
	pthread_mutex_lock(&s->mu);
	s->started = v;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void *server_thread(void *arg)
{
	struct mock_server *s = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the host */

	int r = ring_init(s); /* created here: the ring belongs to this thread */
	if (r < 0) {
		set_started(s, r);
		return NULL;
	}
	mock_accept_arm(s);
	mock_stop_arm(s);
	set_started(s, 1);

	struct io_uring_cqe *cqes[CQE_BATCH];
	bool busy = false; /* batch work is waiting: do not sleep in the kernel */
	for (;;) {
		if (s->stopping && s->nconns == 0 && !s->accept_armed && !s->accept_retry_armed &&
		    !(s->bs && s->bs->timer_armed))
			break;
		r = busy ? io_uring_submit(&s->ring) : io_uring_submit_and_wait(&s->ring, 1);
		if (r < 0 && r != -EINTR && r != -EBUSY && r != -ETIME && r != -EAGAIN) {
			fprintf(stderr, "mock server: io_uring_submit_and_wait: %s\n", strerror(-r));
			break;
		}
		unsigned got;
		while ((got = io_uring_peek_batch_cqe(&s->ring, cqes, CQE_BATCH)) > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME_COARSE, &ts);
			s->now = (uint64_t)ts.tv_sec;
			for (unsigned i = 0; i < got; i++)
				mock_handle_cqe(s, cqes[i]);
			io_uring_cq_advance(&s->ring, got);
			mock_batch_run_ready(s);
		}
		/* One slice of batch work per turn, between the connections' work. */
		busy = s->bs && !s->stopping && mock_batches_tick(s);
	}
	/* Normally empty; after a ring failure, drop what is left. */
	io_uring_queue_exit(&s->ring);
	while (s->conns) {
		s->conns->closing = true;
		s->conns->inflight = 0;
		mock_conn_free(s, s->conns);
	}
	return NULL;
}

static int listen_socket(const char *host, uint16_t port, uint16_t *bound)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL; /* owned here, freed below */
	char ps[8];
	snprintf(ps, sizeof(ps), "%u", (unsigned)port);
	if (host && strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	int r = getaddrinfo(host && *host ? host : NULL, ps, &hints, &ai);
	if (r != 0)
		return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	int fd = -1, err = -EADDRNOTAVAIL;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 4096) == 0)
			break;
		err = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return err;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

int mock_server_start(const struct mock_options *o, struct mock_server **out)
{
	*out = NULL;
	struct mock_server *s = calloc(1, sizeof(*s)); /* caller's, via mock_server_stop */
	if (!s)
		return -ENOMEM;
	s->o = *o;
	snprintf(s->host, sizeof(s->host), "%s", o->host ? o->host : "127.0.0.1");
	s->o.host = s->host;
	if (!s->o.slow_header_ms)
		s->o.slow_header_ms = 100;
	double cum = 0;
	for (int k = 0; k < MOCK_FAULT_COUNT; k++) {
		double r = k == MOCK_FAULT_NONE ? 0 : o->fault_rate[k];
		cum += r > 0 ? r : 0;
		s->fault_cum[k] = cum;
	}
	if (o->error && o->error_size)
		o->error[0] = '\0';
	if (o->tls_cert_file || o->tls_key_file) {
		int r = mock_tls_new(o->tls_cert_file, o->tls_key_file, &s->tls, o->error,
				     o->error ? o->error_size : 0);
		if (r < 0) {
			free(s);
			return r;
		}
	}
	s->o.tls_cert_file = s->o.tls_key_file = NULL; /* not kept: the files are loaded */
	s->o.error = NULL;
	int br = mock_bstore_new(o, &s->bs, o->error, o->error ? o->error_size : 0);
	if (br < 0) {
		mock_tls_free(s->tls);
		free(s);
		return br;
	}
	s->o.state_dir = NULL; /* the store keeps its copy */
	int fd = listen_socket(s->host, o->port, &s->port);
	if (fd < 0) {
		mock_bstore_free(s->bs);
		mock_tls_free(s->tls);
		free(s);
		return fd;
	}
	s->lfd = fd;
	s->efd = eventfd(0, EFD_CLOEXEC);
	if (s->efd < 0) {
		int e = -errno;
		close(fd);
		mock_bstore_free(s->bs);
		mock_tls_free(s->tls);
		free(s);
		return e;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	int r = pthread_create(&s->thread, NULL, server_thread, s);
	if (r == 0) {
		pthread_mutex_lock(&s->mu);
		while (s->started == 0)
			pthread_cond_wait(&s->cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
		if (s->started < 0) {
			r = s->started;
			pthread_join(s->thread, NULL);
		}
	} else {
		r = -r;
	}
	if (r < 0) {
		close(s->lfd);
		close(s->efd);
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		mock_bstore_free(s->bs);
		mock_tls_free(s->tls);
		free(s);
		return r;
	}
	*out = s;
	return 0;
}

uint16_t mock_server_port(const struct mock_server *s)
{
	return s->port;
}

uint64_t mock_server_requests(const struct mock_server *s)
{
	return atomic_load_explicit(&((struct mock_server *)s)->requests, memory_order_relaxed);
}

uint64_t mock_server_connections(const struct mock_server *s)
{
	return atomic_load_explicit(&((struct mock_server *)s)->connections,
				    memory_order_relaxed);
}

uint64_t mock_server_tls_resumptions(const struct mock_server *s)
{
	return s->tls ? mock_tls_resumptions(s->tls) : 0;
}

unsigned mock_server_generating(const struct mock_server *s)
{
	return atomic_load_explicit(&((struct mock_server *)s)->stat_generating,
				    memory_order_relaxed);
}

unsigned mock_server_waiting(const struct mock_server *s)
{
	return atomic_load_explicit(&((struct mock_server *)s)->stat_waiting,
				    memory_order_relaxed);
}

void mock_server_stop(struct mock_server *s)
{
	if (!s)
		return;
	uint64_t one = 1;
	ssize_t w;
	do
		w = write(s->efd, &one, sizeof(one));
	while (w < 0 && errno == EINTR);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	close(s->efd);
	mock_buf_free(&s->scratch);
	mock_bstore_free(s->bs); /* after the thread: its downloads used it */
	mock_tls_free(s->tls); /* after the thread: its connections used it */
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}
