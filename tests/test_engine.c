/*
 * The engine through the public API: result fields, deadlines, malformed
 * and oversized responses, HTTP status mapping, cancellation, reaping,
 * shutdown with requests in flight, and load from several threads.
 * The scripted test server gives exact server behaviour; the in-process
 * mock server gives volume.
 *
 * Long (over 800 lines) on purpose: one subject's specification, a list of
 * short independent cases sharing one fixture and its helpers; the file is
 * read as a table, and a split would copy the fixture into each part.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <liburing.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "llmring.h"
#include "mock_server.h"
#include "test_server.h"
#include "util/test_hooks.h"

/* ---- fixture ---------------------------------------------------------- */

#define FX_MAX_FDS 16

/* Everything a test starts; teardown frees it even after a failed assert. */
struct fx {
	struct test_server *srv;   /* owned: stopped in teardown */
	struct mock_server *mock;  /* owned: stopped in teardown */
	lr_engine *eng;            /* owned: destroyed in teardown */
	lr_config cfg;             /* adjusted by the test before fx_engine() */
	char url[64];
	lr_future **futs;          /* owned: every handle, released in teardown */
	size_t nfuts, cap;
	char *scratch;             /* owned: a response the test built */
	int fds[FX_MAX_FDS];       /* owned: raw sockets a test made */
	int nfds;
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	if (!fx)
		return -1;
	fx->cfg = lr_config_default();
	fx->cfg.max_retries = 0;   /* no engine retries yet */
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;
	if (fx->eng)
		lr_engine_destroy(fx->eng);
	unsetenv("LLMRING_RING_PLAIN");
	for (size_t i = 0; i < fx->nfuts; i++)
		lr_future_release(fx->futs[i]);
	free(fx->futs);
	test_server_stop(fx->srv);
	if (fx->mock)
		mock_server_stop(fx->mock);
	for (int i = 0; i < fx->nfds; i++)
		close(fx->fds[i]);
	free(fx->scratch);
	free(fx);
	return 0;
}

static void fx_url(struct fx *fx, uint16_t port)
{
	snprintf(fx->url, sizeof fx->url, "http://127.0.0.1:%u/v1", (unsigned)port);
}

static void fx_server(struct fx *fx, ts_handler h, void *ctx)
{
	assert_int_equal(test_server_start(h, ctx, &fx->srv), 0);
	fx_url(fx, test_server_port(fx->srv));
}

static void fx_mock(struct fx *fx)
{
	struct mock_options o;
	mock_options_default(&o);
	o.port = 0;
	assert_int_equal(mock_server_start(&o, &fx->mock), 0);
	fx_url(fx, mock_server_port(fx->mock));
}

static void fx_engine(struct fx *fx)
{
	fx->cfg.base_url = fx->url;
	assert_int_equal(lr_engine_new(&fx->cfg, &fx->eng), 0);
	assert_non_null(fx->eng);
}

static void fx_track(struct fx *fx, lr_future *f)
{
	if (fx->nfuts == fx->cap) {
		fx->cap = fx->cap ? fx->cap * 2 : 64;
		fx->futs = realloc(fx->futs, fx->cap * sizeof *fx->futs);
		assert_non_null(fx->futs);
	}
	fx->futs[fx->nfuts++] = f;
}

static lr_request *new_request(const char *text)
{
	lr_request *rq = lr_request_new("gpt-4o-mini");
	assert_non_null(rq);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, text), 0);
	return rq;
}

static lr_future *fx_submit_rq(struct fx *fx, lr_request *rq)
{
	lr_future *f = lr_submit(fx->eng, rq);
	assert_non_null(f);
	fx_track(fx, f);
	return f;
}

static lr_future *fx_submit(struct fx *fx)
{
	return fx_submit_rq(fx, new_request("hi"));
}

/* Waits (bounded, so a hung engine fails instead of hanging the suite). */
static const lr_result *wait_result(lr_future *f)
{
	assert_int_equal(lr_future_wait(f, 10000), 1);
	const lr_result *r = lr_future_result(f);
	assert_non_null(r);
	return r;
}

static void report(const char *what, const lr_result *r)
{
	fprintf(stderr, "%s: %s (%s) status %d\n", what, lr_error_name(r->error),
		r->error_message ? r->error_message : "-", r->http_status);
}

static void assert_error(const lr_result *r, int err)
{
	if (r->error != err) {
		report("unexpected outcome", r);
		fail_msg("expected %s, got %s", lr_error_name(err), lr_error_name(r->error));
	}
}

static void assert_ok(const lr_result *r)
{
	assert_error(r, 0);
	assert_int_equal(r->http_status, 200);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Polls until the server has seen n requests (so they are on the wire). */
static void wait_server_requests(struct fx *fx, unsigned n)
{
	for (int i = 0; i < 500 && test_server_requests(fx->srv) < n; i++)
		sleep_ms(10);
	assert_int_equal(test_server_requests(fx->srv), n);
}

/* The body of ts_ok_response. */
static const char *ok_body(void)
{
	return strstr(ts_ok_response, "\r\n\r\n") + 4;
}

/* A complete response: status line, extra header lines, Content-Length, body. */
static char *build_response(const char *status_line, const char *headers, const char *body)
{
	size_t n = strlen(status_line) + strlen(headers) + strlen(body) + 128;
	char *out = malloc(n);  /* owned: the caller */
	assert_non_null(out);
	snprintf(out, n, "%s\r\nContent-Type: application/json\r\n"
		 "x-request-id: req_err_1\r\n%sContent-Length: %zu\r\n\r\n%s",
		 status_line, headers, strlen(body), body);
	return out;
}

/* ---- handlers --------------------------------------------------------- */

/* Answers every request the same way. */
struct canned {
	const char *data;
	size_t len;
	enum ts_action action;
	unsigned delay_ms;
	unsigned byte_delay_ms;
};

static void reply_canned(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	const struct canned *c = ctx;
	r->data = c->data;
	r->len = c->len;
	r->action = c->action;
	r->delay_ms = c->delay_ms;
	r->byte_delay_ms = c->byte_delay_ms;
}

static void reply_ok(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	r->data = ts_ok_response;
	r->len = strlen(ts_ok_response);
}

static void reply_hang(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	r->action = TS_HANG;
}

/* Requests whose body carries BAD_MARKER get the canned reply; the others
 * succeed after a delay, so they overlap it on other connections. */
#define BAD_MARKER "please-answer-badly"

static void reply_bad_if_marked(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	if (strstr(rq->body, BAD_MARKER)) {
		reply_canned(ctx, rq, r);
		return;
	}
	reply_ok(NULL, rq, r);
	r->delay_ms = 200;
}

/* Keeps the first request's head and body for the test to inspect. */
struct capture {
	pthread_mutex_t mu;
	char head[4096];
	char body[4096];
	size_t body_len;
	int seen;
};

static void reply_ok_capture(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	struct capture *c = ctx;
	pthread_mutex_lock(&c->mu);
	if (!c->seen++) {
		snprintf(c->head, sizeof c->head, "%s", rq->head);
		snprintf(c->body, sizeof c->body, "%s", rq->body);
		c->body_len = rq->body_len;
	}
	pthread_mutex_unlock(&c->mu);
	reply_ok(NULL, rq, r);
}

/* The server thread filled the capture under its lock before replying:
 * taking the lock once orders those writes before the test's reads. */
static void capture_sync(struct capture *c)
{
	pthread_mutex_lock(&c->mu);
	pthread_mutex_unlock(&c->mu);
}

/* Case-insensitive: does the head carry "name: value" exactly? */
static int head_has(const char *head, const char *name, const char *value)
{
	char want[512];
	snprintf(want, sizeof want, "\r\n%s: %s\r\n", name, value);
	size_t wl = strlen(want);
	for (const char *p = head; (p = strstr(p, "\r\n")); p += 2)
		if (strncasecmp(p, want, wl) == 0)
			return 1;
	return 0;
}

static int head_has_name(const char *head, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = head; (p = strstr(p, "\r\n")); p += 2)
		if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':')
			return 1;
	return 0;
}

/* ---- a successful request --------------------------------------------- */

static void test_successful_request_fills_result_fields(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx_engine(fx);

	const lr_result *r = wait_result(fx_submit(fx));
	assert_ok(r);
	assert_null(r->error_message);
	assert_non_null(r->body);
	assert_int_equal(r->body_len, strlen(ok_body()));
	assert_memory_equal(r->body, ok_body(), r->body_len);
	assert_int_equal(r->body[r->body_len], '\0');
	assert_int_equal(r->usage.input_tokens, 5);
	assert_int_equal(r->usage.output_tokens, 7);
	assert_non_null(r->request_id);
	assert_string_equal(r->request_id, "req_test_0001");
	assert_non_null(r->model);
	assert_string_equal(r->model, "gpt-4o-mini");
	assert_int_equal(r->attempts, 1);
	assert_true(r->retry_after_s < 0);
}

static void test_timings_are_ordered_queued_ttfb_total(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx_engine(fx);

	/* Sequential requests, some after a pause, so each starts from a
	 * different engine loop state. */
	for (int i = 0; i < 20; i++) {
		if (i % 4 == 3)
			sleep_ms(50);
		const lr_result *r = wait_result(fx_submit(fx));
		assert_ok(r);
		const lr_timings *t = &r->timings;
		if (!(t->queued_ms >= 0 && t->queued_ms <= t->ttfb_ms && t->ttfb_ms > 0 &&
		      t->ttfb_ms <= t->total_ms && t->total_ms < 10000))
			fail_msg("request %d: queued %.3f ttfb %.3f total %.3f ms", i,
				 t->queued_ms, t->ttfb_ms, t->total_ms);
	}
}

static void test_request_is_post_json_to_base_path_chat_completions(void **state)
{
	struct fx *fx = *state;
	static struct capture cap = { .mu = PTHREAD_MUTEX_INITIALIZER };
	cap.seen = 0;
	fx_server(fx, reply_ok_capture, &cap);
	fx_engine(fx);

	assert_ok(wait_result(fx_submit(fx)));

	capture_sync(&cap);
	assert_true(strncmp(cap.head, "POST /v1/chat/completions HTTP/1.1\r\n", 36) == 0);
	char host[64];
	snprintf(host, sizeof host, "127.0.0.1:%u", (unsigned)test_server_port(fx->srv));
	assert_true(head_has(cap.head, "Host", host));
	assert_true(head_has(cap.head, "Content-Type", "application/json"));
	char len[32];
	snprintf(len, sizeof len, "%zu", cap.body_len);
	assert_true(head_has(cap.head, "Content-Length", len));
	assert_non_null(strstr(cap.body, "gpt-4o-mini"));
	assert_non_null(strstr(cap.body, "\"hi\""));
	assert_non_null(strstr(cap.body, "\"user\""));
}

static void test_custom_base_url_without_key_sends_no_authorization(void **state)
{
	struct fx *fx = *state;
	static struct capture cap = { .mu = PTHREAD_MUTEX_INITIALIZER };
	cap.seen = 0;
	fx_server(fx, reply_ok_capture, &cap);
	fx->cfg.api_key = NULL;
	fx_engine(fx);

	assert_ok(wait_result(fx_submit(fx)));
	capture_sync(&cap);
	assert_false(head_has_name(cap.head, "Authorization"));
}

static void test_api_key_is_sent_as_bearer_token(void **state)
{
	struct fx *fx = *state;
	static struct capture cap = { .mu = PTHREAD_MUTEX_INITIALIZER };
	cap.seen = 0;
	fx_server(fx, reply_ok_capture, &cap);
	fx->cfg.api_key = "sk-test-123";
	fx_engine(fx);

	assert_ok(wait_result(fx_submit(fx)));
	capture_sync(&cap);
	assert_true(head_has(cap.head, "Authorization", "Bearer sk-test-123"));
}

/* Counts the longest run of 'a' in each request body. */
static _Atomic size_t longest_a_run;

static void reply_ok_measure_run(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	size_t best = 0, cur = 0;
	for (size_t i = 0; i < rq->body_len; i++) {
		cur = rq->body[i] == 'a' ? cur + 1 : 0;
		if (cur > best)
			best = cur;
	}
	longest_a_run = best;
	reply_ok(NULL, rq, r);
}

static void test_large_request_body_is_sent_whole(void **state)
{
	struct fx *fx = *state;
	enum { RUN = 2 << 20 };
	fx_server(fx, reply_ok_measure_run, NULL);
	fx_engine(fx);

	fx->scratch = malloc(RUN + 1);  /* 2 MiB of text: many short sends */
	assert_non_null(fx->scratch);
	memset(fx->scratch, 'a', RUN);
	fx->scratch[RUN] = '\0';
	longest_a_run = 0;
	assert_ok(wait_result(fx_submit_rq(fx, new_request(fx->scratch))));
	assert_int_equal(longest_a_run, RUN);
}

static void test_large_response_body_is_received_whole(void **state)
{
	struct fx *fx = *state;
	enum { CONTENT = 8 << 20 };
	static const char pre[] = "{\"id\":\"big\",\"object\":\"chat.completion\",\"model\":\"m\","
		"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"";
	static const char post[] = "\"},\"finish_reason\":\"stop\"}],"
		"\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}";
	size_t body_len = sizeof pre - 1 + CONTENT + sizeof post - 1;
	fx->scratch = malloc(body_len + 256);
	assert_non_null(fx->scratch);
	int h = snprintf(fx->scratch, 256, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n", body_len);
	char *body = fx->scratch + h;
	memcpy(body, pre, sizeof pre - 1);
	for (size_t i = 0; i < CONTENT; i++)  /* varied bytes catch reordering */
		body[sizeof pre - 1 + i] = (char)('a' + i % 26);
	memcpy(body + sizeof pre - 1 + CONTENT, post, sizeof post - 1);
	static struct canned c;
	c = (struct canned){ .data = fx->scratch, .len = (size_t)h + body_len };
	fx_server(fx, reply_canned, &c);
	fx_engine(fx);

	const lr_result *r = wait_result(fx_submit(fx));
	assert_ok(r);
	assert_int_equal(r->body_len, body_len);
	assert_true(memcmp(r->body, body, body_len) == 0);
	assert_int_equal(r->usage.output_tokens, 7);
}

static void test_chunked_response_trickled_byte_by_byte_is_decoded(void **state)
{
	struct fx *fx = *state;
	const char *body = ok_body();
	size_t blen = strlen(body), n = 0, cap = 4096;
	fx->scratch = malloc(cap);
	assert_non_null(fx->scratch);
	n += (size_t)snprintf(fx->scratch, cap, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			      "X-Request-ID: req_chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (size_t off = 0; off < blen; off += 50) {
		size_t k = blen - off < 50 ? blen - off : 50;
		n += (size_t)snprintf(fx->scratch + n, cap - n, "%zx;ext=1\r\n%.*s\r\n", k,
				      (int)k, body + off);
	}
	n += (size_t)snprintf(fx->scratch + n, cap - n, "0\r\nX-Trailer: t\r\n\r\n");
	static struct canned c;
	c = (struct canned){ .data = fx->scratch, .len = n, .byte_delay_ms = 1 };
	fx_server(fx, reply_canned, &c);
	fx_engine(fx);

	const lr_result *r = wait_result(fx_submit(fx));
	assert_ok(r);
	assert_int_equal(r->body_len, blen);
	assert_memory_equal(r->body, body, blen);
	assert_int_equal(r->usage.input_tokens, 5);
	assert_string_equal(r->request_id, "req_chunked");
}

static void test_interim_100_continue_is_skipped(void **state)
{
	struct fx *fx = *state;
	static char resp[1024];
	snprintf(resp, sizeof resp, "HTTP/1.1 100 Continue\r\n\r\n%s", ts_ok_response);
	static struct canned c = { .data = resp };
	c.len = strlen(resp);
	fx_server(fx, reply_canned, &c);
	fx_engine(fx);

	const lr_result *r = wait_result(fx_submit(fx));
	assert_ok(r);
	assert_int_equal(r->usage.output_tokens, 7);
}

/* ---- deadlines -------------------------------------------------------- */

static void test_idle_deadline_fires_when_body_stalls(void **state)
{
	struct fx *fx = *state;
	/* The whole head and part of the body, then silence. */
	static struct canned c = { .data = ts_ok_response, .action = TS_HANG };
	c.len = (size_t)(ok_body() - ts_ok_response) + 40;
	fx_server(fx, reply_canned, &c);
	fx_engine(fx);

	lr_request *rq = new_request("hi");
	assert_int_equal(lr_request_set_timeouts(rq, 5, 0.3, 30), 0);
	double t0 = now_s();
	const lr_result *r = wait_result(fx_submit_rq(fx, rq));
	double dt = now_s() - t0;

	assert_error(r, LR_ETIMEOUT);
	assert_true(dt >= 0.15);
	assert_true(dt < 1.5);
}

static void test_idle_deadline_from_config_applies(void **state)
{
	struct fx *fx = *state;
	static struct canned c = { .data = ts_ok_response, .action = TS_HANG };
	c.len = (size_t)(ok_body() - ts_ok_response) + 40;
	fx_server(fx, reply_canned, &c);
	fx->cfg.idle_timeout_s = 0.3;
	fx_engine(fx);

	double t0 = now_s();
	const lr_result *r = wait_result(fx_submit(fx));
	assert_error(r, LR_ETIMEOUT);
	assert_true(now_s() - t0 < 1.5);
}

static void test_total_deadline_fires_on_trickling_response(void **state)
{
	struct fx *fx = *state;
	/* One byte every 100 ms: never 0.5 s of silence, so the idle deadline
	 * cannot fire; only the 1.5 s total can. */
	static char trickle[1024];
	int n = snprintf(trickle, sizeof trickle,
			 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: 100000\r\n\r\n{\"x\":\"");
	memset(trickle + n, 'a', sizeof trickle - (size_t)n);
	static struct canned c = { .data = trickle, .len = sizeof trickle,
				   .byte_delay_ms = 100 };
	fx_server(fx, reply_canned, &c);
	fx_engine(fx);

	lr_request *rq = new_request("hi");
	assert_int_equal(lr_request_set_timeouts(rq, 5, 0.5, 1.5), 0);
	double t0 = now_s();
	const lr_result *r = wait_result(fx_submit_rq(fx, rq));
	double dt = now_s() - t0;

	assert_error(r, LR_ETIMEOUT);
	assert_true(dt >= 1.0);  /* not the idle deadline misfiring */
	assert_true(dt < 7.5);
}

/* The first request the server sees is answered after 1 s, the rest at once. */
static void reply_ok_first_slow(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	reply_ok(NULL, rq, r);
	if (rq->global_index == 0)
		r->delay_ms = 1000;
}

/*
 * A request waits for a slot (engine-wide or per origin) behind one that
 * takes 1 s, with a total deadline of 0.5 s. Whether the queue time counts
 * toward it or not, the request must not go on the wire after its
 * deadline has passed: either it succeeds, or it times out unsent.
 */
static void check_queued_request_not_sent_after_deadline(struct fx *fx, int per_origin)
{
	fx_server(fx, reply_ok_first_slow, NULL);
	if (per_origin)
		fx->cfg.max_conns_per_origin = 1;
	else
		fx->cfg.max_in_flight = 1;
	fx_engine(fx);

	lr_future *slow = fx_submit(fx);
	lr_request *rq = new_request("hi");
	assert_int_equal(lr_request_set_timeouts(rq, 0, 0, 0.5), 0);
	lr_future *queued = fx_submit_rq(fx, rq);

	const lr_result *r = wait_result(queued);
	assert_ok(wait_result(slow));
	if (r->error == 0)
		return;
	assert_error(r, LR_ETIMEOUT);
	sleep_ms(100);
	if (test_server_requests(fx->srv) != 1)
		fail_msg("the request timed out after %.0f ms but was sent anyway "
			 "(queued %.0f ms)", r->timings.total_ms, r->timings.queued_ms);
}

static void test_request_queued_for_in_flight_slot_is_not_sent_after_total_deadline(void **state)
{
	check_queued_request_not_sent_after_deadline(*state, 0);
}

static void test_request_queued_for_connection_is_not_sent_after_total_deadline(void **state)
{
	check_queued_request_not_sent_after_deadline(*state, 1);
}

static void test_total_deadline_fires_when_server_never_answers(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_hang, NULL);
	fx_engine(fx);

	lr_request *rq = new_request("hi");
	assert_int_equal(lr_request_set_timeouts(rq, 5, 30, 0.5), 0);
	double t0 = now_s();
	const lr_result *r = wait_result(fx_submit_rq(fx, rq));
	assert_error(r, LR_ETIMEOUT);
	assert_int_equal(r->http_status, 0);
	assert_true(now_s() - t0 < 2.5);
}

/* A non-blocking connect to port: 1 connected within ms, 0 still pending. */
static int try_connect(struct fx *fx, uint16_t port, int ms)
{
	assert_true(fx->nfds < FX_MAX_FDS);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	fx->fds[fx->nfds++] = fd;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
		return 1;
	assert_int_equal(errno, EINPROGRESS);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	if (poll(&p, 1, ms) <= 0)
		return 0;
	int err = 0;
	socklen_t el = sizeof err;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
	return err == 0;
}

/*
 * Points fx->url at a listener that never accepts, its backlog filled:
 * later SYNs are dropped, so a connect to it hangs. Skips the test where
 * the kernel still completes such connects.
 */
static void fx_unconnectable_url(struct fx *fx)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	fx->fds[fx->nfds++] = lfd;
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sa;
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(lfd, 0), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	uint16_t port = ntohs(sa.sin_port);

	for (int i = 0; i < 4; i++)
		try_connect(fx, port, 50);
	if (try_connect(fx, port, 300)) {
		fprintf(stderr, "a full listen backlog still accepts connects on this "
			"kernel: a hanging connect cannot be provoked\n");
		skip();
	}
	fx_url(fx, port);
}

static void test_connect_deadline_fires_when_backlog_is_full(void **state)
{
	struct fx *fx = *state;
	fx_unconnectable_url(fx);
	fx->cfg.connect_timeout_s = 0.3;
	fx->cfg.idle_timeout_s = 30;
	fx->cfg.total_timeout_s = 30;
	fx_engine(fx);

	double t0 = now_s();
	const lr_result *r = wait_result(fx_submit(fx));
	assert_error(r, LR_ETIMEOUT);
	assert_true(now_s() - t0 < 1.5);
}

static void test_cancel_during_connect_completes_with_cancelled(void **state)
{
	struct fx *fx = *state;
	fx_unconnectable_url(fx);
	fx->cfg.connect_timeout_s = 30;
	fx_engine(fx);

	lr_future *f = fx_submit(fx);
	sleep_ms(100);  /* the connect is under way */
	double t0 = now_s();
	lr_future_cancel(f);
	assert_int_equal(lr_future_wait(f, 5000), 1);
	assert_true(now_s() - t0 < 1.0);
	assert_error(lr_future_result(f), LR_ECANCELLED);
}

static void test_destroy_during_connect_is_prompt(void **state)
{
	struct fx *fx = *state;
	fx_unconnectable_url(fx);
	fx->cfg.connect_timeout_s = 30;
	fx_engine(fx);

	lr_future *f = fx_submit(fx);
	sleep_ms(100);
	double t0 = now_s();
	lr_engine_destroy(fx->eng);
	fx->eng = NULL;
	assert_true(now_s() - t0 < 2.0);
	assert_int_equal(lr_future_done(f), 1);
	assert_error(lr_future_result(f), LR_ECANCELLED);
}

static void test_close_delimited_body_is_read_to_eof(void **state)
{
	struct fx *fx = *state;
	static char resp[1024];
	snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		 "Connection: close\r\n\r\n%s", ok_body());
	static struct canned c = { .data = resp, .action = TS_SEND_CLOSE };
	c.len = strlen(resp);
	fx_server(fx, reply_canned, &c);
	fx_engine(fx);

	for (int i = 0; i < 2; i++) {  /* the second proves it was not pooled */
		const lr_result *r = wait_result(fx_submit(fx));
		assert_ok(r);
		assert_int_equal(r->body_len, strlen(ok_body()));
	}
	assert_int_equal(test_server_connections(fx->srv), 2);
}

static void test_request_base_url_overrides_engine_default(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);  /* the engine default */
	struct test_server *other;
	assert_int_equal(test_server_start(reply_ok, NULL, &other), 0);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%u/v1", (unsigned)test_server_port(other));
	fx_engine(fx);

	lr_request *rq = new_request("hi");
	assert_int_equal(lr_request_set_base_url(rq, url), 0);
	const lr_result *r = wait_result(fx_submit_rq(fx, rq));
	unsigned other_requests = test_server_requests(other);
	test_server_stop(other);
	assert_ok(r);
	assert_int_equal(other_requests, 1);
	assert_int_equal(test_server_requests(fx->srv), 0);
}

static void test_refused_connection_is_connect_error(void **state)
{
	struct fx *fx = *state;
	/* A port that was just bound and closed has no listener. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sa;
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	fx_url(fx, ntohs(sa.sin_port));
	fx_engine(fx);

	double t0 = now_s();
	const lr_result *r = wait_result(fx_submit(fx));
	assert_error(r, LR_ECONNECT);
	assert_int_equal(r->http_status, 0);
	assert_true(now_s() - t0 < 2.0);
}

static void test_reset_before_any_response_byte_is_connection_reset(void **state)
{
	struct fx *fx = *state;
	static struct canned c = { .action = TS_RESET };
	fx_server(fx, reply_canned, &c);
	fx_engine(fx);

	const lr_result *r = wait_result(fx_submit(fx));
	assert_error(r, LR_ECONNRESET);
	assert_int_equal(r->http_status, 0);
}

/* ---- malformed and oversized responses --------------------------------- */

/*
 * One request gets `bad` while four others succeed on their own
 * connections at the same time; afterwards the engine still serves.
 */
static void check_bad_response(struct fx *fx, const char *bad, size_t len,
			       enum ts_action action, int expect)
{
	static struct canned c;
	c = (struct canned){ .data = bad, .len = len, .action = action };
	fx_server(fx, reply_bad_if_marked, &c);
	fx->cfg.max_header_bytes = 4096;
	fx->cfg.max_body_bytes = 1024;
	fx_engine(fx);

	lr_future *good[4];
	for (int i = 0; i < 2; i++)
		good[i] = fx_submit(fx);
	lr_future *badf = fx_submit_rq(fx, new_request(BAD_MARKER));
	for (int i = 2; i < 4; i++)
		good[i] = fx_submit(fx);

	const lr_result *r = wait_result(badf);
	assert_error(r, expect);
	assert_non_null(r->error_message);
	for (int i = 0; i < 4; i++)
		assert_ok(wait_result(good[i]));
	assert_ok(wait_result(fx_submit(fx)));
}

#define BAD(fx, lit, action, expect) \
	check_bad_response(fx, lit, sizeof(lit) - 1, action, expect)

static void test_malformed_status_line_is_protocol_error(void **state)
{
	BAD(*state, "HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\n{}", TS_SEND, LR_EPROTO);
}

static void test_header_block_over_max_header_bytes_is_too_large(void **state)
{
	struct fx *fx = *state;
	size_t cap = 16384;
	fx->scratch = malloc(cap);
	assert_non_null(fx->scratch);
	size_t n = (size_t)snprintf(fx->scratch, cap, "HTTP/1.1 200 OK\r\n");
	char filler[501];
	memset(filler, 'a', 500);
	filler[500] = '\0';
	for (int i = 0; i < 16; i++)  /* 16 x ~514 bytes: about 8 KiB of headers */
		n += (size_t)snprintf(fx->scratch + n, cap - n, "X-Filler-%02d: %s\r\n", i, filler);
	n += (size_t)snprintf(fx->scratch + n, cap - n, "Content-Length: 2\r\n\r\n{}");
	check_bad_response(fx, fx->scratch, n, TS_SEND, LR_ETOOLARGE);
}

static void test_content_length_overflow_is_protocol_error(void **state)
{
	BAD(*state, "HTTP/1.1 200 OK\r\nContent-Length: 184467440737095516160\r\n\r\n{}",
	    TS_SEND, LR_EPROTO);
}

static void test_transfer_encoding_with_content_length_is_protocol_error(void **state)
{
	BAD(*state, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
	    "2\r\n{}\r\n0\r\n\r\n", TS_SEND, LR_EPROTO);
}

static void test_bad_chunk_size_is_protocol_error(void **state)
{
	BAD(*state, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
	    TS_SEND, LR_EPROTO);
}

static void test_fin_in_the_middle_of_a_body_is_protocol_error(void **state)
{
	BAD(*state, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
	    "{\"id\":\"chatcmpl-cut\",", TS_SEND_CLOSE, LR_EPROTO);
}

static void test_body_over_max_body_bytes_is_too_large(void **state)
{
	struct fx *fx = *state;
	char body[4097];
	memset(body, ' ', 4096);
	body[0] = '{';
	body[4095] = '}';
	body[4096] = '\0';
	fx->scratch = build_response("HTTP/1.1 200 OK", "", body);
	check_bad_response(fx, fx->scratch, strlen(fx->scratch), TS_SEND, LR_ETOOLARGE);
}

static void test_chunked_body_over_max_body_bytes_is_too_large(void **state)
{
	struct fx *fx = *state;
	size_t cap = 8192;
	fx->scratch = malloc(cap);
	assert_non_null(fx->scratch);
	size_t n = (size_t)snprintf(fx->scratch, cap,
				    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 4; i++) {  /* 4 chunks of 1 KiB each */
		n += (size_t)snprintf(fx->scratch + n, cap - n, "400\r\n");
		memset(fx->scratch + n, ' ', 1024);
		n += 1024;
		n += (size_t)snprintf(fx->scratch + n, cap - n, "\r\n");
	}
	n += (size_t)snprintf(fx->scratch + n, cap - n, "0\r\n\r\n");
	check_bad_response(fx, fx->scratch, n, TS_SEND, LR_ETOOLARGE);
}

static void test_invalid_json_in_200_body_is_protocol_error(void **state)
{
	BAD(*state, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n"
	    "{not json}", TS_SEND, LR_EPROTO);
}

/* ---- HTTP status mapping ----------------------------------------------- */

static void check_status(struct fx *fx, const char *status_line, const char *body, int expect,
			 int status)
{
	static struct canned c;
	fx->scratch = build_response(status_line, "", body);
	c = (struct canned){ .data = fx->scratch, .len = strlen(fx->scratch) };
	fx_server(fx, reply_canned, &c);
	fx_engine(fx);

	const lr_result *r = wait_result(fx_submit(fx));
	assert_error(r, expect);
	assert_int_equal(r->http_status, status);
	assert_non_null(r->body);
	assert_int_equal(r->body_len, strlen(body));
	assert_memory_equal(r->body, body, r->body_len);
}

#define ERR_BODY(type, code) \
	"{\"error\":{\"message\":\"test error\",\"type\":\"" type "\",\"param\":null," \
	"\"code\":\"" code "\"}}"

static void test_http_401_is_auth_error(void **state)
{
	check_status(*state, "HTTP/1.1 401 Unauthorized",
		     ERR_BODY("invalid_request_error", "invalid_api_key"), LR_EAUTH, 401);
}

static void test_http_403_is_permission_denied(void **state)
{
	check_status(*state, "HTTP/1.1 403 Forbidden",
		     ERR_BODY("invalid_request_error", "unsupported_country_region_territory"),
		     LR_EPERMISSION, 403);
}

static void test_http_404_is_not_found(void **state)
{
	check_status(*state, "HTTP/1.1 404 Not Found",
		     ERR_BODY("invalid_request_error", "model_not_found"), LR_ENOTFOUND, 404);
}

static void test_http_400_is_bad_request(void **state)
{
	check_status(*state, "HTTP/1.1 400 Bad Request",
		     ERR_BODY("invalid_request_error", "invalid_value"), LR_EBADREQUEST, 400);
}

static void test_http_422_is_bad_request(void **state)
{
	check_status(*state, "HTTP/1.1 422 Unprocessable Entity",
		     "{\"detail\":\"invalid\"}", LR_EBADREQUEST, 422);
}

static void test_http_429_is_rate_limited(void **state)
{
	check_status(*state, "HTTP/1.1 429 Too Many Requests",
		     ERR_BODY("requests", "rate_limit_exceeded"), LR_ERATELIMIT, 429);
}

static void test_http_429_with_insufficient_quota_is_quota_error(void **state)
{
	check_status(*state, "HTTP/1.1 429 Too Many Requests",
		     ERR_BODY("insufficient_quota", "insufficient_quota"), LR_EQUOTA, 429);
}

static void test_http_503_is_overloaded(void **state)
{
	check_status(*state, "HTTP/1.1 503 Service Unavailable",
		     ERR_BODY("server_error", "overloaded"), LR_EOVERLOADED, 503);
}

static void test_http_500_is_server_error(void **state)
{
	check_status(*state, "HTTP/1.1 500 Internal Server Error",
		     ERR_BODY("server_error", "internal"), LR_ESERVER, 500);
}

static void test_http_error_keeps_request_id(void **state)
{
	struct fx *fx = *state;
	check_status(fx, "HTTP/1.1 500 Internal Server Error",
		     ERR_BODY("server_error", "internal"), LR_ESERVER, 500);
	const lr_result *r = lr_future_result(fx->futs[0]);
	assert_non_null(r->request_id);
	assert_string_equal(r->request_id, "req_err_1");
}

static void test_http_429_reports_fractional_retry_after(void **state)
{
	struct fx *fx = *state;
	static struct canned c;
	fx->scratch = build_response("HTTP/1.1 429 Too Many Requests", "Retry-After: 1.5\r\n",
				     ERR_BODY("requests", "rate_limit_exceeded"));
	c = (struct canned){ .data = fx->scratch, .len = strlen(fx->scratch) };
	fx_server(fx, reply_canned, &c);
	fx_engine(fx);

	const lr_result *r = wait_result(fx_submit(fx));
	assert_error(r, LR_ERATELIMIT);
	assert_true(r->retry_after_s > 1.49 && r->retry_after_s < 1.51);
}

/* ---- cancellation and waiting ------------------------------------------ */

static void test_cancel_of_unanswered_request_completes_once_with_cancelled(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_hang, NULL);
	fx->cfg.reap_completions = 1;
	fx_engine(fx);

	lr_request *rq = new_request("hi");
	lr_request_set_user_data(rq, (void *)fx);
	lr_future *f = fx_submit_rq(fx, rq);
	wait_server_requests(fx, 1);

	double t0 = now_s();
	lr_future_cancel(f);
	lr_future_cancel(f);  /* a second cancel must not complete it again */
	assert_int_equal(lr_future_wait(f, 5000), 1);
	assert_true(now_s() - t0 < 1.0);
	assert_error(lr_future_result(f), LR_ECANCELLED);

	lr_future *out[4];
	int n = lr_engine_reap(fx->eng, out, 4, 2000);
	for (int i = 0; i < n; i++)
		fx_track(fx, out[i]);
	assert_int_equal(n, 1);
	assert_ptr_equal(lr_future_user_data(out[0]), fx);
	assert_error(lr_future_result(out[0]), LR_ECANCELLED);
	n = lr_engine_reap(fx->eng, out, 4, 300);
	for (int i = 0; i < n; i++)
		fx_track(fx, out[i]);
	assert_int_equal(n, 0);
}

static void test_cancel_of_queued_request_completes_with_cancelled(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_hang, NULL);
	fx->cfg.max_in_flight = 1;  /* the second request waits for a slot */
	fx_engine(fx);

	lr_future *first = fx_submit(fx);
	lr_future *queued = fx_submit(fx);
	wait_server_requests(fx, 1);

	double t0 = now_s();
	lr_future_cancel(queued);
	assert_int_equal(lr_future_wait(queued, 5000), 1);
	assert_true(now_s() - t0 < 1.0);
	assert_error(lr_future_result(queued), LR_ECANCELLED);
	assert_int_equal(lr_future_done(first), 0);
	assert_int_equal(test_server_requests(fx->srv), 1);
}

static void test_cancel_after_completion_keeps_result(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx_engine(fx);

	lr_future *f = fx_submit(fx);
	assert_ok(wait_result(f));
	lr_future_cancel(f);
	assert_ok(lr_future_result(f));
}

/* ---- reused futures ---------------------------------------------------- */

/* The first request succeeds, every later one is reset before any byte. */
static void reply_ok_then_reset(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	atomic_int *n = ctx;
	if (atomic_fetch_add(n, 1) == 0)
		reply_ok(NULL, rq, r);
	else
		r->action = TS_RESET;
}

static void test_released_future_is_reused_with_nothing_of_its_last_result(void **state)
{
	struct fx *fx = *state;
	static atomic_int served;
	atomic_store(&served, 0);
	fx_server(fx, reply_ok_then_reset, &served);
	/* Driven from this thread: the engine has dropped its reference when
	 * the wait returns, so the release below is the last one. */
	fx->cfg.drive_from_caller = 1;
	fx_engine(fx);

	lr_future *first = lr_submit(fx->eng, new_request("hi"));
	assert_non_null(first);
	const lr_result *r = wait_result(first);
	assert_ok(r);
	assert_non_null(r->body);
	assert_non_null(r->text);
	assert_non_null(r->request_id);
	lr_future_release(first);

	lr_future *second = fx_submit(fx);
	/* The warmest released future comes back first: this is the reuse
	 * under test, not a fresh allocation. */
	assert_ptr_equal(second, first);
	r = wait_result(second);
	assert_true(r->error != 0);
	assert_non_null(r->error_message);
	assert_int_equal(r->http_status, 0);
	assert_null(r->body);
	assert_int_equal(r->body_len, 0);
	assert_null(r->text);
	assert_null(r->model);
	assert_null(r->request_id);
	assert_null(r->finish_reason);
	assert_int_equal(r->tool_call_count, 0);
	assert_int_equal(r->usage.input_tokens, 0);
	assert_int_equal(r->usage.output_tokens, 0);
	assert_int_equal(lr_future_user_data(second), NULL);
}

static void test_future_the_caller_holds_is_never_reused(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx_engine(fx);

	enum { N = 300 }; /* past the slab's count for max_in_flight 64 */
	lr_future *held = fx_submit(fx);
	assert_ok(wait_result(held));
	for (int i = 0; i < N; i++) {
		lr_future *f = lr_submit(fx->eng, new_request("again"));
		assert_non_null(f);
		assert_ptr_not_equal(f, held);
		assert_ok(wait_result(f));
		lr_future_release(f);
	}
	const lr_result *r = lr_future_result(held);
	assert_ok(r);
	assert_int_equal(r->body_len, strlen(ok_body()));
	assert_memory_equal(r->body, ok_body(), r->body_len);
}

static void test_results_outlive_the_engine_until_released(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx_engine(fx);

	enum { N = 200 };
	lr_future *fs[N];
	for (int i = 0; i < N; i++) {
		fs[i] = lr_submit(fx->eng, new_request("hi"));
		assert_non_null(fs[i]);
	}
	for (int i = 0; i < N; i++)
		assert_ok(wait_result(fs[i]));
	/* Half released while the engine lives (kept for reuse), half after. */
	for (int i = 0; i < N / 2; i++)
		lr_future_release(fs[i]);
	lr_engine_destroy(fx->eng);
	fx->eng = NULL;
	for (int i = N / 2; i < N; i++) {
		const lr_result *r = lr_future_result(fs[i]);
		assert_ok(r);
		assert_memory_equal(r->body, ok_body(), r->body_len);
		lr_future_release(fs[i]);
	}
}

static void test_future_wait_times_out_on_unanswered_request(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_hang, NULL);
	fx_engine(fx);

	lr_future *f = fx_submit(fx);
	double t0 = now_s();
	assert_int_equal(lr_future_wait(f, 100), 0);
	double dt = now_s() - t0;
	assert_true(dt >= 0.05);
	assert_true(dt < 2.0);
	assert_int_equal(lr_future_done(f), 0);
	assert_null(lr_future_result(f));
}

/* ---- reaping ------------------------------------------------------------ */

static void test_reap_delivers_each_completed_future_exactly_once(void **state)
{
	struct fx *fx = *state;
	enum { N = 100 };
	fx_server(fx, reply_ok, NULL);
	fx->cfg.reap_completions = 1;
	fx_engine(fx);

	static char tags[N];  /* user data: &tags[i] names request i */
	int seen[N] = { 0 };
	for (int i = 0; i < N; i++) {
		lr_request *rq = new_request("hi");
		lr_request_set_user_data(rq, &tags[i]);
		fx_submit_rq(fx, rq);
	}

	int got = 0;
	double deadline = now_s() + 20;
	while (got < N && now_s() < deadline) {
		lr_future *out[16];
		int n = lr_engine_reap(fx->eng, out, 16, 1000);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			fx_track(fx, out[i]);
			char *tag = lr_future_user_data(out[i]);
			assert_true(tag >= tags && tag < tags + N);
			seen[tag - tags]++;
			assert_int_equal(seen[tag - tags], 1);
			assert_ok(lr_future_result(out[i]));
		}
		got += n;
	}
	assert_int_equal(got, N);
	lr_future *extra[4];
	int n = lr_engine_reap(fx->eng, extra, 4, 300);
	for (int i = 0; i < n; i++)
		fx_track(fx, extra[i]);
	assert_int_equal(n, 0);
}

static void test_completion_fd_is_readable_when_a_future_is_reapable(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx->cfg.reap_completions = 1;
	fx_engine(fx);

	int cfd = lr_engine_completion_fd(fx->eng);
	assert_true(cfd >= 0);
	fx_submit(fx);
	struct pollfd p = { .fd = cfd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 10000), 1);
	lr_future *out[2];
	int n = lr_engine_reap(fx->eng, out, 2, 0);
	for (int i = 0; i < n; i++)
		fx_track(fx, out[i]);
	assert_int_equal(n, 1);
}


/* Issue 9: the fd stays readable while anything is reapable, for a host
 * loop that reads the fd itself and reaps at most two per readable event,
 * with completions pushed from another thread all the while (requests
 * that fail at submission complete on the submitting thread). */
enum { STRESS_N = 1000000 };
static void *stress_submitter(void *arg)
{
	lr_engine *eng = arg;
	for (int i = 0; i < STRESS_N; i++) {
		lr_request *rq = new_request("hi");
		lr_request_set_base_url(rq, "http://[::1/v1"); /* refused at once */
		lr_future *f = lr_submit(eng, rq);
		assert_non_null(f);
		lr_future_release(f);
	}
	return NULL;
}

static void test_completion_fd_stays_readable_for_a_consumer_that_reaps_two_at_a_time(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx->cfg.reap_completions = 1;
	fx_engine(fx);
	int cfd = lr_engine_completion_fd(fx->eng);
	assert_true(cfd >= 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, stress_submitter, fx->eng), 0);
	int got = 0, stalls = 0;
	while (got < STRESS_N) {
		struct pollfd p = { .fd = cfd, .events = POLLIN };
		if (poll(&p, 1, 10000) != 1) {
			stalls++;
			break;
		}
		uint64_t v;
		assert_int_equal(read(cfd, &v, sizeof(v)), (ssize_t)sizeof(v));
		lr_future *out[2];
		int n = lr_engine_reap(fx->eng, out, 2, 0);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			assert_int_equal(lr_future_result(out[i])->error, LR_EINVAL);
			lr_future_release(out[i]);
		}
		got += n;
	}
	pthread_join(th, NULL);
	assert_int_equal(stalls, 0);
	assert_int_equal(got, STRESS_N);
}


/* ---- API calls from callbacks (issue 9) --------------------------------- */

/* A request to a loopback listener that never accepts or answers. */
static lr_request *silent_request(struct fx *fx)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_true(fx->nfds < FX_MAX_FDS);
	fx->fds[fx->nfds++] = fd;
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", ntohs(sa.sin_port));
	lr_request *rq = new_request("hi");
	lr_request_set_base_url(rq, url);
	lr_request_set_timeouts(rq, 30, 30, 30);
	return rq;
}

struct from_callback {
	lr_engine *eng;
	lr_future *other;          /* a future that has not completed */
	int wait_self, wait_other, wait_other_now, reap_blocking;
	int ran;
};

static void then_calls_waiting_apis(void *user, lr_future *f)
{
	struct from_callback *fc = user;
	fc->wait_self = lr_future_wait(f, -1);
	fc->wait_other = lr_future_wait(fc->other, 5000);
	fc->wait_other_now = lr_future_wait(fc->other, 0);
	lr_future *out[1];
	fc->reap_blocking = lr_engine_reap(fc->eng, out, 1, 1000);
	fc->ran++;
}

static void test_waiting_calls_from_a_callback_refuse_instead_of_deadlocking(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx_engine(fx);
	static struct from_callback fc;
	memset(&fc, 0, sizeof(fc));
	fc.eng = fx->eng;
	fc.other = fx_submit_rq(fx, silent_request(fx));
	lr_future *f = lr_submit(fx->eng, new_request("hi"));
	fx_track(fx, f);
	assert_int_equal(lr_future_then(f, then_calls_waiting_apis, &fc), 0);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	assert_int_equal(fc.ran, 1);
	assert_int_equal(fc.wait_self, LR_EINVAL);   /* it completes when the callback returns */
	assert_int_equal(fc.wait_other, LR_EINVAL);  /* only this thread could complete it */
	assert_int_equal(fc.wait_other_now, 0);      /* a look without waiting is fine */
	assert_int_equal(fc.reap_blocking, LR_EINVAL);
	lr_future_cancel(fc.other);
}

static void then_destroys_engine(void *user, lr_future *f)
{
	lr_engine_destroy(user);
}

static void test_destroy_from_a_callback_stops_the_engine_which_frees_itself(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx_engine(fx);
	lr_engine *eng = fx->eng;
	lr_future *pending = fx_submit_rq(fx, silent_request(fx));
	fx->eng = NULL; /* destroyed by the callback */
	lr_future *f = lr_submit(eng, new_request("hi"));
	fx_track(fx, f);
	assert_int_equal(lr_future_then(f, then_destroys_engine, eng), 0);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	assert_ok(lr_future_result(f));
	/* The stop reaches the rest: the pending request ends cancelled. */
	assert_int_equal(lr_future_wait(pending, 10000), 1);
	assert_int_equal(lr_future_result(pending)->error, LR_ECANCELLED);
}

/* ---- volume against the mock server ------------------------------------- */

static void test_thousand_concurrent_requests_against_mock_all_succeed(void **state)
{
	struct fx *fx = *state;
	enum { N = 1000 };
	fx_mock(fx);
	fx->cfg.max_in_flight = 256;
	fx_engine(fx);

	for (int i = 0; i < N; i++)
		fx_submit(fx);
	for (int i = 0; i < N; i++) {
		const lr_result *r = wait_result(fx->futs[i]);
		assert_ok(r);
		assert_true(r->usage.input_tokens > 0);
		assert_true(r->usage.output_tokens > 0);
	}
	assert_int_equal(mock_server_requests(fx->mock), N);
	lr_engine_stats st;
	lr_engine_get_stats(fx->eng, &st);
	assert_int_equal(st.requests_completed, N);
	assert_true(st.connections_opened <= 256);
}

static void run_small_mock_scenario(struct fx *fx)
{
	for (int i = 0; i < 20; i++)
		fx_submit(fx);
	for (int i = 0; i < 20; i++) {
		const lr_result *r = wait_result(fx->futs[i]);
		assert_ok(r);
		assert_true(r->usage.output_tokens > 0);
	}
}

static void test_plain_ring_setup_serves_requests(void **state)
{
	struct fx *fx = *state;
	fx_mock(fx);
	fx->cfg.ring_plain = 1;
	fx_engine(fx);

	run_small_mock_scenario(fx);
	const char *mode = lr_engine_ring_mode(fx->eng);
	assert_non_null(mode);
	assert_string_equal(mode, "plain");
}

static void test_plain_ring_setup_forced_by_environment(void **state)
{
	struct fx *fx = *state;
	fx_mock(fx);
	fx->cfg.ring_plain = 0;
	fx->cfg.base_url = fx->url;
	/* Set until the engine is gone (teardown unsets it): when the engine
	 * reads it is its own business. */
	setenv("LLMRING_RING_PLAIN", "1", 1);
	assert_int_equal(lr_engine_new(&fx->cfg, &fx->eng), 0);

	run_small_mock_scenario(fx);
	assert_string_equal(lr_engine_ring_mode(fx->eng), "plain");
}

static void test_default_ring_mode_is_named(void **state)
{
	struct fx *fx = *state;
	fx_mock(fx);
	unsetenv("LLMRING_RING_PLAIN");
	fx_engine(fx);

	run_small_mock_scenario(fx);
	const char *mode = lr_engine_ring_mode(fx->eng);
	assert_non_null(mode);
	/* The best mode this kernel takes, found here independently: the
	 * engine must have chosen exactly that one. */
	const char *expect = "plain";
	const unsigned try_flags[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
	};
	const char *const try_names[] = {"single_issuer+defer_taskrun", "coop_taskrun"};
	for (int i = 0; i < 2; i++) {
		struct io_uring probe;
		struct io_uring_params p = {.flags = try_flags[i]};
		if (io_uring_queue_init_params(8, &probe, &p) == 0) {
			io_uring_queue_exit(&probe);
			expect = try_names[i];
			break;
		}
	}
	assert_string_equal(mode, expect);
}

/* ---- shutdown and threads ----------------------------------------------- */

static void test_destroy_with_requests_in_flight_completes_them_cancelled(void **state)
{
	struct fx *fx = *state;
	enum { N = 10 };
	fx_server(fx, reply_hang, NULL);
	fx->cfg.max_in_flight = 4;  /* 4 on the wire, 6 queued */
	fx_engine(fx);

	for (int i = 0; i < N; i++)
		fx_submit(fx);
	wait_server_requests(fx, 4);

	double t0 = now_s();
	lr_engine_destroy(fx->eng);
	fx->eng = NULL;
	assert_true(now_s() - t0 < 5.0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(lr_future_done(fx->futs[i]), 1);
		assert_error(lr_future_result(fx->futs[i]), LR_ECANCELLED);
	}
}

struct submitter {
	lr_engine *eng;
	lr_future **out;  /* borrowed: a slice of the fixture's handle array */
	int n;
};

static void *submit_main(void *arg)
{
	struct submitter *s = arg;
	for (int i = 0; i < s->n; i++) {
		lr_request *rq = lr_request_new("gpt-4o-mini");
		if (rq && lr_request_add_message(rq, LR_ROLE_USER, "hi from a thread") == 0)
			s->out[i] = lr_submit(s->eng, rq);
		else
			lr_request_free(rq);
	}
	return NULL;
}

static void test_submit_from_four_threads_at_once_completes_all(void **state)
{
	struct fx *fx = *state;
	enum { THREADS = 4, EACH = 250 };
	fx_mock(fx);
	fx_engine(fx);

	lr_future *all[THREADS * EACH] = { 0 };
	struct submitter sub[THREADS];
	pthread_t th[THREADS];
	for (int t = 0; t < THREADS; t++) {
		sub[t] = (struct submitter){ fx->eng, all + t * EACH, EACH };
		assert_int_equal(pthread_create(&th[t], NULL, submit_main, &sub[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (int i = 0; i < THREADS * EACH; i++)
		if (all[i])
			fx_track(fx, all[i]);

	assert_int_equal(fx->nfuts, THREADS * EACH);
	for (int i = 0; i < THREADS * EACH; i++)
		assert_ok(wait_result(all[i]));
	lr_engine_stats st;
	lr_engine_get_stats(fx->eng, &st);
	assert_int_equal(st.requests_completed, THREADS * EACH);
	assert_int_equal(mock_server_requests(fx->mock), THREADS * EACH);
}

/*
 * Defect 18: a submission that passed lr_submit's stopping check just as
 * lr_engine_destroy ran. The hook holds one in that window; destroy must
 * wait for its push (not free the engine under it) and complete it
 * through the one completion path.
 */
static struct {
	atomic_int armed;     /* 1: the next submission stops in the window */
	atomic_int in_window; /* the held submission has arrived */
	atomic_int release;   /* let it go on */
} g_window;

void engine_submit_window_hook(lr_engine *e)
{
	(void)e;
	int one = 1;
	if (!atomic_compare_exchange_strong(&g_window.armed, &one, 0))
		return;
	atomic_store(&g_window.in_window, 1);
	while (!atomic_load(&g_window.release))
		sleep_ms(1);
}

struct window_race {
	lr_engine *eng;
	lr_future *f;
	atomic_int destroyed;
};

static void *submit_into_window(void *arg)
{
	struct window_race *r = arg;
	r->f = lr_submit(r->eng, new_request("racing the destroy"));
	return NULL;
}

static void *destroy_engine(void *arg)
{
	struct window_race *r = arg;
	lr_engine_destroy(r->eng);
	atomic_store(&r->destroyed, 1);
	return NULL;
}

static void test_submission_racing_destroy_is_taken_and_completed_once(void **state)
{
	struct fx *fx = *state;
	fx_url(fx, 9); /* never reached: the request is cancelled */
	fx_engine(fx);
	struct window_race r = {.eng = fx->eng};
	fx->eng = NULL; /* destroyed by the test */
	atomic_store(&g_window.in_window, 0);
	atomic_store(&g_window.release, 0);
	atomic_store(&g_window.armed, 1);
	pthread_t submitter, destroyer;
	assert_int_equal(pthread_create(&submitter, NULL, submit_into_window, &r), 0);
	while (!atomic_load(&g_window.in_window))
		sleep_ms(1);
	assert_int_equal(pthread_create(&destroyer, NULL, destroy_engine, &r), 0);
	/* The loop stops and its thread ends; the free must still wait. */
	sleep_ms(200);
	assert_int_equal(atomic_load(&r.destroyed), 0);
	atomic_store(&g_window.release, 1);
	pthread_join(submitter, NULL);
	pthread_join(destroyer, NULL);
	assert_int_equal(atomic_load(&r.destroyed), 1);
	assert_non_null(r.f);
	fx_track(fx, r.f);
	assert_int_equal(lr_future_wait(r.f, 0), 1);
	const lr_result *res = lr_future_result(r.f);
	assert_error(res, LR_ECANCELLED);
	assert_non_null(res->provider);
	assert_string_equal(res->provider, "openai");
	assert_non_null(strstr(res->error_message, "shutting down"));
}

static void test_engine_and_session_carry_the_callers_pointer(void **state)
{
	struct fx *fx = *state;
	int mine = 0, other = 0;
	fx_url(fx, 9);
	fx->cfg.user_data = &mine;
	fx_engine(fx);
	assert_ptr_equal(lr_engine_user_data(fx->eng), &mine);
	assert_null(lr_engine_user_data(NULL));
	lr_session *s = lr_session_new(fx->eng, "gpt-4o-mini", NULL);
	assert_non_null(s);
	assert_null(lr_session_user_data(s));
	lr_session_set_user_data(s, &other);
	assert_ptr_equal(lr_session_user_data(s), &other);
	assert_null(lr_session_user_data(NULL));
	lr_session_free(s);
	/* The growth rule: the reserved tail is zero in the defaults. */
	lr_config d = lr_config_default();
	for (size_t i = 0; i < sizeof(d.reserved); i++)
		assert_int_equal(d.reserved[i], 0);
}

/* A refused request's message is its own: a later refusal on the same
 * thread does not rewrite it (it lived in thread-local storage). */
static void test_refusal_messages_do_not_change_under_the_caller(void **state)
{
	struct fx *fx = *state;
	fx_url(fx, 9);
	fx_engine(fx);
	const char *keys[] = {"frequency_penalty", "presence_penalty"};
	lr_future *f[2];
	for (int i = 0; i < 2; i++) {
		char body[200];
		snprintf(body, sizeof(body),
		         "{\"model\":\"anthropic/claude-haiku-4-5\",\"max_tokens\":5,"
		         "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"%s\":0.5}", keys[i]);
		lr_request *rq = lr_request_new(NULL);
		assert_non_null(rq);
		assert_int_equal(lr_request_set_body(rq, body, strlen(body)), 0);
		f[i] = fx_submit_rq(fx, rq);
	}
	for (int i = 0; i < 2; i++) {
		const lr_result *r = wait_result(f[i]);
		assert_int_equal(r->error, LR_EUNSUPPORTED);
		char want[100];
		snprintf(want, sizeof(want), "\"%s\" has no Anthropic equivalent", keys[i]);
		assert_non_null(strstr(r->error_message, want));
	}
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_successful_request_fills_result_fields),
		T(test_timings_are_ordered_queued_ttfb_total),
		T(test_request_is_post_json_to_base_path_chat_completions),
		T(test_custom_base_url_without_key_sends_no_authorization),
		T(test_api_key_is_sent_as_bearer_token),
		T(test_large_request_body_is_sent_whole),
		T(test_large_response_body_is_received_whole),
		T(test_chunked_response_trickled_byte_by_byte_is_decoded),
		T(test_interim_100_continue_is_skipped),
		T(test_idle_deadline_fires_when_body_stalls),
		T(test_idle_deadline_from_config_applies),
		T(test_total_deadline_fires_on_trickling_response),
		T(test_total_deadline_fires_when_server_never_answers),
		T(test_request_queued_for_in_flight_slot_is_not_sent_after_total_deadline),
		T(test_request_queued_for_connection_is_not_sent_after_total_deadline),
		T(test_connect_deadline_fires_when_backlog_is_full),
		T(test_cancel_during_connect_completes_with_cancelled),
		T(test_destroy_during_connect_is_prompt),
		T(test_refused_connection_is_connect_error),
		T(test_close_delimited_body_is_read_to_eof),
		T(test_request_base_url_overrides_engine_default),
		T(test_reset_before_any_response_byte_is_connection_reset),
		T(test_malformed_status_line_is_protocol_error),
		T(test_header_block_over_max_header_bytes_is_too_large),
		T(test_content_length_overflow_is_protocol_error),
		T(test_transfer_encoding_with_content_length_is_protocol_error),
		T(test_bad_chunk_size_is_protocol_error),
		T(test_fin_in_the_middle_of_a_body_is_protocol_error),
		T(test_body_over_max_body_bytes_is_too_large),
		T(test_chunked_body_over_max_body_bytes_is_too_large),
		T(test_invalid_json_in_200_body_is_protocol_error),
		T(test_http_401_is_auth_error),
		T(test_http_403_is_permission_denied),
		T(test_http_404_is_not_found),
		T(test_http_400_is_bad_request),
		T(test_http_422_is_bad_request),
		T(test_http_429_is_rate_limited),
		T(test_http_429_with_insufficient_quota_is_quota_error),
		T(test_http_503_is_overloaded),
		T(test_http_500_is_server_error),
		T(test_http_error_keeps_request_id),
		T(test_http_429_reports_fractional_retry_after),
		T(test_cancel_of_unanswered_request_completes_once_with_cancelled),
		T(test_cancel_of_queued_request_completes_with_cancelled),
		T(test_cancel_after_completion_keeps_result),
		T(test_released_future_is_reused_with_nothing_of_its_last_result),
		T(test_future_the_caller_holds_is_never_reused),
		T(test_results_outlive_the_engine_until_released),
		T(test_future_wait_times_out_on_unanswered_request),
		T(test_reap_delivers_each_completed_future_exactly_once),
		T(test_completion_fd_is_readable_when_a_future_is_reapable),
		T(test_completion_fd_stays_readable_for_a_consumer_that_reaps_two_at_a_time),
		T(test_waiting_calls_from_a_callback_refuse_instead_of_deadlocking),
		T(test_destroy_from_a_callback_stops_the_engine_which_frees_itself),
		T(test_thousand_concurrent_requests_against_mock_all_succeed),
		T(test_plain_ring_setup_serves_requests),
		T(test_plain_ring_setup_forced_by_environment),
		T(test_default_ring_mode_is_named),
		T(test_destroy_with_requests_in_flight_completes_them_cancelled),
		T(test_submit_from_four_threads_at_once_completes_all),
		T(test_submission_racing_destroy_is_taken_and_completed_once),
		T(test_engine_and_session_carry_the_callers_pointer),
		T(test_refusal_messages_do_not_change_under_the_caller),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
