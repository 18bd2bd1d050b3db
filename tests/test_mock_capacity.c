/*
 * The mock as a server to measure (issue 12), part one: latency
 * distributions (--ttft-spread-ms, --itl-spread-ms) and simulated capacity
 * (--max-batch). Part two, the reply lengths and /v1/completions, is
 * tests/test_mock_lengths.c.
 *
 * Timings are asserted as lower bounds and orderings only: a loaded test
 * machine can make anything later, never earlier. Where a bound from above
 * is unavoidable (a freed slot must be reused before a long stream would
 * have ended) it is seconds wide.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mock_client.h"

/* ------------------------------------------------------------------ */
/* Latency distributions                                               */

static void spread_zero_draws_exactly_the_mean(void **state)
{
	(void)state;
	for (uint64_t n = 1; n < 1000; n++) {
		assert_int_equal(mock_draw_delay_us(7, 50, 0, n, 0), 50000);
		assert_int_equal(mock_draw_delay_us(7, 3, 0, n, n), 3000);
		assert_int_equal(mock_draw_delay_us(7, 0, 20, n, 0), 0);
	}
}

static void same_seed_gives_the_same_ttft_sequence(void **state)
{
	(void)state;
	unsigned differ = 0;
	for (uint64_t n = 1; n <= 1000; n++) {
		uint64_t a = mock_draw_delay_us(42, 100, 30, n, 0);
		assert_int_equal(a, mock_draw_delay_us(42, 100, 30, n, 0));
		differ += a != mock_draw_delay_us(43, 100, 30, n, 0);
		differ += a != mock_draw_delay_us(42, 100, 30, n + 1, 0);
	}
	assert_true(differ > 1900); /* another seed or request: other draws */
}

/* The sample mean and standard deviation of many draws are the asked-for
 * ones, and no draw is negative (a log-normal one cannot be). */
static void check_moments(unsigned mean_ms, unsigned spread_ms)
{
	const unsigned n = 200000;
	double sum = 0, sum2 = 0;
	for (unsigned i = 0; i < n; i++) {
		double x = (double)mock_draw_delay_us(5, mean_ms, spread_ms, i / 100 + 1, i % 100) / 1000.0;
		sum += x;
		sum2 += x * x;
	}
	double mean = sum / n, sd = sqrt(sum2 / n - mean * mean);
	printf("# mean %u sd %u: sample mean %.3f sd %.3f\n", mean_ms, spread_ms, mean, sd);
	assert_true(fabs(mean - mean_ms) < 0.01 * mean_ms);
	assert_true(fabs(sd - spread_ms) < 0.05 * spread_ms);
}

static void spread_draws_have_the_asked_mean_and_sd(void **state)
{
	(void)state;
	check_moments(100, 20);
	check_moments(20, 5);
	check_moments(10, 10);
}

/* On the wire: each request's TTFT is at least its draw. */
static void ttft_spread_delays_each_request_by_its_draw(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.ttft_ms = 40;
	o.ttft_spread_ms = 20;
	o.seed = 9;
	o.tokens = 2;
	struct mock_server *s = start_mock(&o);
	struct client c;
	client_open(&c, mock_server_port(s));
	for (uint64_t n = 1; n <= 8; n++) {
		double t0 = now_ms();
		send_request(&c, "/v1/chat/completions", "{\"stream\":true,\"messages\":[]}");
		struct reply r;
		read_reply(&c, &r);
		assert_true(r.complete && r.nchunks >= 2);
		double ttft = r.chunk_at[1] - t0; /* chunk 0 is the role chunk */
		double drawn = (double)mock_draw_delay_us(9, 40, 20, n, 0) / 1000.0;
		assert_true(ttft >= drawn - 1.0);
		reply_free(&r);
	}
	client_close(&c);
	mock_server_stop(s);
}

/* Spread 0 is today's exact pacing: ttft then itl apart. */
static void spread_zero_keeps_the_exact_pacing(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.ttft_ms = 60;
	o.itl_ms = 15;
	o.tokens = 5;
	struct mock_server *s = start_mock(&o);
	struct client c;
	client_open(&c, mock_server_port(s));
	double t0 = now_ms();
	send_request(&c, "/v1/chat/completions", "{\"stream\":true,\"messages\":[]}");
	struct reply r;
	read_reply(&c, &r);
	assert_true(r.complete);
	/* Cumulative bounds: a late chunk can shorten the next gap as seen
	 * here, never make a token arrive before the server sent it. */
	for (size_t i = 1; i <= 5; i++)
		assert_true(r.chunk_at[i] - t0 >= 60.0 + (double)(i - 1) * 15.0 - 1.0);
	reply_free(&r);
	client_close(&c);
	mock_server_stop(s);
}

/* ------------------------------------------------------------------ */
/* Simulated capacity                                                  */

struct sampler {
	struct mock_server *s;
	atomic_bool stop;
	unsigned max_generating;
	unsigned max_waiting;
};

static void *sample_batch(void *arg)
{
	struct sampler *sm = arg;
	while (!atomic_load(&sm->stop)) {
		unsigned g = mock_server_generating(sm->s), w = mock_server_waiting(sm->s);
		if (g > sm->max_generating)
			sm->max_generating = g;
		if (w > sm->max_waiting)
			sm->max_waiting = w;
		usleep(500);
	}
	return NULL;
}

struct stream_run {
	uint16_t port;
	const char *body;
	double sent, first_token, last;
	bool complete;
	pthread_barrier_t *go;
};

static void *run_stream(void *arg)
{
	struct stream_run *sr = arg;
	struct client c;
	client_open(&c, sr->port);
	pthread_barrier_wait(sr->go);
	sr->sent = now_ms();
	send_request(&c, "/v1/chat/completions", sr->body);
	struct reply r;
	read_reply(&c, &r);
	sr->complete = r.complete && r.nchunks > 2;
	if (sr->complete) {
		sr->first_token = r.chunk_at[1];
		sr->last = r.chunk_at[r.nchunks - 1];
	}
	reply_free(&r);
	client_close(&c);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void wait_for(struct mock_server *s, unsigned generating, unsigned waiting)
{
	double t0 = now_ms();
	while (mock_server_generating(s) != generating || mock_server_waiting(s) != waiting) {
		assert_true(now_ms() - t0 < 10000);
		usleep(1000);
	}
}

/* Six concurrent streams, --max-batch 2: never more than two generate;
 * the k-th pair's first tokens come no earlier than k generations in. */
static void max_batch_two_lets_two_of_six_streams_generate(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.ttft_ms = 50;
	o.itl_ms = 20;
	o.tokens = 8;
	o.max_batch = 2;
	struct mock_server *s = start_mock(&o);
	const double generation = 50 + 7 * 20; /* ttft + the gaps between 8 tokens */
	struct sampler sm = {.s = s};
	pthread_t sampler;
	assert_int_equal(pthread_create(&sampler, NULL, sample_batch, &sm), 0);
	enum { N = 6 };
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, N + 1);
	struct stream_run runs[N];
	pthread_t th[N];
	for (int i = 0; i < N; i++) {
		runs[i] = (struct stream_run){.port = mock_server_port(s), .go = &go,
			.body = "{\"stream\":true,\"messages\":[]}"};
		assert_int_equal(pthread_create(&th[i], NULL, run_stream, &runs[i]), 0);
	}
	pthread_barrier_wait(&go);
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	atomic_store(&sm.stop, true);
	pthread_join(sampler, NULL);
	pthread_barrier_destroy(&go);

	double first[N], t0 = runs[0].sent; /* the first request sent */
	for (int i = 1; i < N; i++)
		if (runs[i].sent < t0)
			t0 = runs[i].sent;
	for (int i = 0; i < N; i++) {
		assert_true(runs[i].complete);
		first[i] = runs[i].first_token - t0;
	}
	qsort(first, N, sizeof(first[0]), cmp_double);
	printf("# first tokens at %.0f %.0f %.0f %.0f %.0f %.0f ms\n", first[0], first[1],
	       first[2], first[3], first[4], first[5]);
	for (int k = 0; k < N; k++)
		assert_true(first[k] >= (k / 2) * generation + o.ttft_ms - 2.0);
	assert_int_equal(sm.max_generating, 2);
	assert_true(sm.max_waiting >= 1);
	assert_int_equal(mock_server_generating(s), 0);
	assert_int_equal(mock_server_waiting(s), 0);
	mock_server_stop(s);
}

/* --max-batch 1: a client that disconnects mid-stream frees its slot,
 * and one that gives up while queued frees its place; the queue goes on. */
static void disconnects_free_their_slot_and_queue_place(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.itl_ms = 50;
	o.tokens = 100; /* 5 s when left to run */
	o.max_batch = 1;
	struct mock_server *s = start_mock(&o);
	uint16_t port = mock_server_port(s);
	const char *stream = "{\"stream\":true,\"messages\":[]}";

	struct client a, b, c;
	client_open(&a, port);
	double t0 = now_ms();
	send_request(&a, "/v1/chat/completions", stream);
	struct reply ra;
	read_reply_upto(&a, &ra, 2); /* the role chunk and the first token */
	assert_int_equal(ra.nchunks, 2);
	reply_free(&ra);

	client_open(&b, port);
	send_request(&b, "/v1/chat/completions", stream);
	wait_for(s, 1, 1);
	client_close(&b); /* gives up while queued */
	wait_for(s, 1, 0);

	client_open(&c, port);
	send_request(&c, "/v1/chat/completions",
		     "{\"stream\":true,\"max_tokens\":2,\"messages\":[]}");
	wait_for(s, 1, 1);
	client_close(&a); /* disconnects mid-stream */

	struct reply rc;
	read_reply(&c, &rc);
	assert_true(rc.complete);
	assert_int_equal(count_str(rc.body, "\"delta\":{\"content\":\""), 2);
	/* Long before a's stream would have ended on its own. */
	assert_true(rc.chunk_at[1] - t0 < 4000);
	reply_free(&rc);
	client_close(&c);
	wait_for(s, 0, 0);
	mock_server_stop(s);
}

/* Whole replies hold a slot for ttft + tokens * itl: the second of two
 * waits for the first. */
static void whole_replies_hold_a_slot_for_their_generation_time(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.ttft_ms = 30;
	o.itl_ms = 10;
	o.tokens = 5;
	o.max_batch = 1;
	struct mock_server *s = start_mock(&o);
	struct client a, b;
	client_open(&a, mock_server_port(s));
	client_open(&b, mock_server_port(s));
	double t0 = now_ms();
	send_request(&a, "/v1/chat/completions", "{\"messages\":[]}");
	wait_for(s, 1, 0);
	send_request(&b, "/api/chat", "{\"stream\":false,\"messages\":[]}");
	struct reply ra, rb;
	read_reply(&a, &ra);
	read_reply(&b, &rb);
	assert_true(ra.complete && rb.complete);
	assert_true(ra.chunk_at[0] - t0 >= 30 + 5 * 10 - 1);
	assert_true(rb.chunk_at[0] - t0 >= 2 * (30 + 5 * 10) - 1);
	assert_true(rb.chunk_at[0] >= ra.chunk_at[0]);
	reply_free(&ra);
	reply_free(&rb);
	client_close(&a);
	client_close(&b);
	mock_server_stop(s);
}

/* Stopping the server with generations running and queued frees them all
 * (LeakSanitizer watches), and embeddings never take a slot. */
static void stop_with_a_full_queue_frees_everything(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.itl_ms = 1000;
	o.tokens = 100; /* streams that would run 100 s; embeddings answer at once */
	o.max_batch = 1;
	struct mock_server *s = start_mock(&o);
	struct client c[4];
	for (int i = 0; i < 4; i++) {
		client_open(&c[i], mock_server_port(s));
		send_request(&c[i], "/v1/chat/completions", "{\"stream\":true,\"messages\":[]}");
	}
	wait_for(s, 1, 3);
	struct reply r;
	roundtrip(mock_server_port(s), "/v1/embeddings", "{\"input\":\"a b\"}", &r);
	assert_int_equal(r.status, 200);
	reply_free(&r);
	assert_int_equal(mock_server_waiting(s), 3);
	mock_server_stop(s);
	for (int i = 0; i < 4; i++)
		client_close(&c[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(spread_zero_draws_exactly_the_mean),
		cmocka_unit_test(same_seed_gives_the_same_ttft_sequence),
		cmocka_unit_test(spread_draws_have_the_asked_mean_and_sd),
		cmocka_unit_test(ttft_spread_delays_each_request_by_its_draw),
		cmocka_unit_test(spread_zero_keeps_the_exact_pacing),
		cmocka_unit_test(max_batch_two_lets_two_of_six_streams_generate),
		cmocka_unit_test(disconnects_free_their_slot_and_queue_place),
		cmocka_unit_test(whole_replies_hold_a_slot_for_their_generation_time),
		cmocka_unit_test(stop_with_a_full_queue_frees_everything),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
