/*
 * The computation core of `llmring bench` (tools/cli/bench_metrics.c,
 * bench_arrivals.c): hand-built timelines whose every figure is worked
 * out by hand in the comments, numpy's percentile and std on small
 * arrays, and the gamma sampler's moments. No network, no clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench_arrivals.h"
#include "bench_metrics.h"
#include "llmring.h"

#define MS 1000000ull            /* ns */
#define BASE (1000ull * 1000 * MS) /* 1000 s: monotonic times are never 0 */

static void check_close(double got, double want, double eps, const char *what, int line)
{
	if (!(fabs(got - want) <= eps)) {
		print_error("line %d: %s = %.9g, want %.9g (+- %g)\n", line, what, got, want, eps);
		fail();
	}
}
#define assert_close(got, want, eps) check_close((got), (want), (eps), #got, __LINE__)

static struct bench_config config_with(const double *percentiles, size_t n)
{
	struct bench_config c;
	bench_config_defaults(&c);
	for (size_t i = 0; i < n; i++)
		c.percentiles[i] = percentiles[i];
	c.percentile_count = n;
	return c;
}

/* ---- numpy's statistics ------------------------------------------------- */

static void percentiles_match_numpy_linear_interpolation(void **state)
{
	(void)state;
	/* np.percentile([1,2,3,4], p): index (n-1) p/100 = 3 p/100.
	 * p50: 1.5 -> 2 + 0.5 = 2.5; p90: 2.7 -> 4 - 1 * 0.3 = 3.7;
	 * p99: 2.97 -> 3.97; p25: 0.75 -> 1.75; p0: 1; p100: 4. */
	const double a[] = {1, 2, 3, 4};
	assert_close(bench_percentile_sorted(a, 4, 50), 2.5, 1e-12);
	assert_close(bench_percentile_sorted(a, 4, 90), 3.7, 1e-12);
	assert_close(bench_percentile_sorted(a, 4, 99), 3.97, 1e-12);
	assert_close(bench_percentile_sorted(a, 4, 25), 1.75, 1e-12);
	assert_close(bench_percentile_sorted(a, 4, 0), 1, 0);
	assert_close(bench_percentile_sorted(a, 4, 100), 4, 0);
	/* [15,20,35,40,50], p40: index 1.6 -> 20 + 15 * 0.6 = 29 (numpy: 29.0);
	 * p10: 0.4 -> 15 + 5 * 0.4 = 17. */
	const double b[] = {15, 20, 35, 40, 50};
	assert_close(bench_percentile_sorted(b, 5, 40), 29, 1e-12);
	assert_close(bench_percentile_sorted(b, 5, 10), 17, 1e-12);
	const double one[] = {7.5};
	assert_close(bench_percentile_sorted(one, 1, 99), 7.5, 0);
}

static void std_is_the_population_std_and_median_averages_the_middle(void **state)
{
	(void)state;
	/* [2,4,4,4,5,5,7,9]: mean 5; squared deviations 9,1,1,1,0,0,4,16 = 32;
	 * 32 / 8 = 4 -> std 2 (ddof 0; ddof 1 would be 2.138). Median of the
	 * sorted middle pair 4, 5 = 4.5. */
	double v[] = {9, 4, 5, 2, 4, 7, 4, 5};
	const double p[] = {50, 99};
	struct bench_config c = config_with(p, 2);
	struct bench_stat s;
	bench_stat_of(v, 8, &c, &s);
	assert_int_equal(s.count, 8);
	assert_close(s.mean, 5, 1e-12);
	assert_close(s.std, 2, 1e-12);
	assert_close(s.median, 4.5, 1e-12);
	assert_close(s.percentile[0], 4.5, 1e-12);
	/* p99: index 6.93 -> 9 - 2 * 0.07 = 8.86 */
	assert_close(s.percentile[1], 8.86, 1e-12);
	assert_close(s.min, 2, 0);
	assert_close(s.max, 9, 0);
}

static void an_empty_set_gives_zeros_as_vllm_does(void **state)
{
	(void)state;
	/* vLLM: np.mean(values or 0) -> np.mean(0) = 0, and so on. */
	struct bench_config c;
	bench_config_defaults(&c);
	struct bench_stat s;
	bench_stat_of(NULL, 0, &c, &s);
	assert_int_equal(s.count, 0);
	assert_close(s.mean, 0, 0);
	assert_close(s.median, 0, 0);
	assert_close(s.std, 0, 0);
	assert_close(s.percentile[2], 0, 0);
}

/* ---- one request -------------------------------------------------------- */

static void record_events_keep_their_times_in_four_bytes_each(void **state)
{
	(void)state;
	struct bench_record r;
	bench_record_init(&r, BASE);
	assert_int_equal(r.output_tokens, BENCH_NO_USAGE);
	/* 100,000 events, 1.0004 ms apart: offsets are rounded to the µs,
	 * from the first event (no drift), so each is within 0.5 µs. */
	for (uint32_t i = 0; i < 100000; i++)
		assert_int_equal(bench_record_event(&r, BASE + 5 * MS + (uint64_t)i * 1000400, i > 0), 0);
	bench_record_finish(&r, BASE + 200 * 1000 * MS, 0);
	assert_int_equal(r.event_count, 100000);
	assert_int_equal(r.text_events, 99999);
	assert_int_equal(r.event_cap, 99999); /* shrunk to fit */
	for (uint32_t i = 0; i < 100000; i += 997) {
		int64_t want = (int64_t)(BASE + 5 * MS + (uint64_t)i * 1000400);
		int64_t got = (int64_t)bench_record_event_ns(&r, i);
		assert_true(llabs(got - want) <= 500);
	}
	int64_t last_want = (int64_t)(BASE + 5 * MS + 99999ull * 1000400);
	assert_true(llabs((int64_t)bench_record_last_event_ns(&r) - last_want) <= 500);
	bool counted = false;
	assert_int_equal(bench_record_output_tokens(&r, &counted), 99999);
	assert_true(counted);
	bench_record_release(&r);
	assert_null(r.later_event_us);
	assert_int_equal(r.event_count, 1);
}

static void a_success_without_a_choice_event_is_a_failure(void **state)
{
	(void)state;
	/* vLLM: "Never received a valid chunk to calculate TTFT. This
	 * response will be marked as failed!" */
	struct bench_record r;
	bench_record_init(&r, BASE);
	r.sent_ns = BASE;
	bench_record_finish(&r, BASE + MS, 0);
	assert_int_equal(r.error, BENCH_ENOCHOICE);
	assert_string_equal(bench_error_name(BENCH_ENOCHOICE), "no_choice_event");
	assert_string_equal(bench_error_name(LR_ETIMEOUT), "timeout");
}

static void reported_zero_tokens_fall_back_to_counted_events(void **state)
{
	(void)state;
	/* vLLM: `if not output_len:` treats 0 like None. */
	struct bench_record r;
	bench_record_init(&r, BASE);
	bench_record_event(&r, BASE + MS, true);
	bench_record_event(&r, BASE + 2 * MS, true);
	r.output_tokens = 0;
	bool counted = false;
	assert_int_equal(bench_record_output_tokens(&r, &counted), 2);
	assert_true(counted);
	r.output_tokens = 7;
	assert_int_equal(bench_record_output_tokens(&r, &counted), 7);
	assert_false(counted);
	bench_record_release(&r);
}

/* ---- a whole run, by hand ----------------------------------------------- */

/* A request with events at the given ms after BASE (the first without
 * text when first_is_role, like a chat stream's role chunk). */
static void make_request(struct bench_record *r, uint64_t intended_ms, uint64_t sent_ms,
                         const uint64_t *event_ms, size_t events, bool first_is_role, uint64_t end_ms,
                         int error)
{
	bench_record_init(r, BASE + intended_ms * MS);
	r->sent_ns = BASE + sent_ms * MS;
	for (size_t i = 0; i < events; i++)
		assert_int_equal(bench_record_event(r, BASE + event_ms[i] * MS, !(first_is_role && i == 0)), 0);
	bench_record_finish(r, BASE + end_ms * MS, error);
}

/*
 * Six requests; the run is [BASE, BASE + 2 s): duration 2 s.
 *   A intended 0, sent 1, events 11 21 41 (first: role only), end 42;
 *     usage 3 tokens, prompt 10.
 *       TTFT 11-1 = 10, E2EL 41-1 = 40, TPOT (40-10)/(3-1) = 15,
 *       ITL 10, 20; from intended TTFT 11, E2EL 41; lag 1 (not late).
 *   B intended 100, sent 102, events 132 137 142 147 152 (first: role
 *     only), end 153; no usage (4 text events counted), prompt 20.
 *       TTFT 30, E2EL 50, TPOT (50-30)/(4-1) = 6.6667, ITL 5 5 5 5;
 *       from intended TTFT 32, E2EL 52; lag 2 (late).
 *   C intended 200, sent 200, one event 260, end 261; usage 1, prompt 5.
 *       TTFT 60, E2EL 60, no TPOT (one token: 0 for goodput), no ITL.
 *   D intended 300, sent 300, events 310 320, timeout at 1300; prompt 7.
 *       failed: left out of everything but failed and errors.
 *   E intended 400, sent 401, HTTP 200 without a choice event, end 402.
 *       failed (no_choice_event); lag 1.
 *   F intended 500, never sent: dropped.
 */
static size_t hand_built_run(struct bench_record *r)
{
	static const uint64_t a[] = {11, 21, 41}, b[] = {132, 137, 142, 147, 152}, c[] = {260}, d[] = {310, 320};
	make_request(&r[0], 0, 1, a, 3, true, 42, 0);
	r[0].output_tokens = 3;
	r[0].prompt_tokens = 10;
	make_request(&r[1], 100, 102, b, 5, true, 153, 0);
	r[1].prompt_tokens = 20;
	make_request(&r[2], 200, 200, c, 1, false, 261, 0);
	r[2].output_tokens = 1;
	r[2].prompt_tokens = 5;
	make_request(&r[3], 300, 300, d, 2, false, 1300, LR_ETIMEOUT);
	r[3].prompt_tokens = 7;
	make_request(&r[4], 400, 401, NULL, 0, false, 402, 0);
	bench_record_init(&r[5], BASE + 500 * MS);
	return 6;
}

static void release_all(struct bench_record *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bench_record_release(&r[i]);
}

static struct bench_config run_config(void)
{
	const double p[] = {50, 90, 99};
	struct bench_config c = config_with(p, 3);
	c.start_ns = BASE;
	c.end_ns = BASE + 2000 * MS;
	return c;
}

static void vllm_counts_tokens_and_throughputs(void **state)
{
	(void)state;
	struct bench_record r[6];
	size_t n = hand_built_run(r);
	struct bench_config c = run_config();
	struct bench_summary s;
	assert_int_equal(bench_summarize(r, n, &c, &s), 0);
	assert_int_equal(s.completed, 3);
	assert_int_equal(s.failed, 2); /* D and E; F was never sent */
	assert_int_equal(s.dropped, 1);
	assert_int_equal(s.sent, 5);
	/* input 10 + 20 + 5 = 35, output 3 + 4 + 1 = 8: completed only */
	assert_int_equal(s.total_input, 35);
	assert_int_equal(s.total_output, 8);
	assert_int_equal(s.output_tokens_counted, 1); /* B */
	assert_close(s.duration_s, 2, 1e-12);
	assert_close(s.request_throughput, 1.5, 1e-12);      /* 3 / 2 */
	assert_close(s.output_throughput, 4, 1e-12);         /* 8 / 2 */
	assert_close(s.total_token_throughput, 21.5, 1e-12); /* 43 / 2 */
	assert_false(s.goodput_enabled);
	assert_close(s.request_goodput, 0, 0);
	bench_summary_free(&s);
	release_all(r, n);
}

static void vllm_latency_statistics(void **state)
{
	(void)state;
	struct bench_record r[6];
	size_t n = hand_built_run(r);
	struct bench_config c = run_config();
	struct bench_summary s;
	assert_int_equal(bench_summarize(r, n, &c, &s), 0);
	/* TTFT [10, 30, 60]: mean 33.3333; deviations -23.333, -3.333, 26.667,
	 * squares 544.44 + 11.11 + 711.11 = 1266.67, / 3 = 422.22, std 20.548;
	 * p90 index 1.8 -> 60 - 30 * 0.2 = 54; p99 1.98 -> 60 - 30 * 0.02 = 59.4. */
	assert_int_equal(s.ttft.count, 3);
	assert_close(s.ttft.mean, 100.0 / 3, 1e-9);
	assert_close(s.ttft.median, 30, 1e-9);
	assert_close(s.ttft.std, sqrt(3800.0 / 9), 1e-9);
	assert_close(s.ttft.percentile[0], 30, 1e-9);
	assert_close(s.ttft.percentile[1], 54, 1e-9);
	assert_close(s.ttft.percentile[2], 59.4, 1e-9);
	/* TPOT [15, 20/3] (C has one token: left out): mean 65/6 = 10.8333,
	 * median the same, std |15 - 10.8333| = 4.16667. */
	assert_int_equal(s.tpot.count, 2);
	assert_close(s.tpot.mean, 65.0 / 6, 1e-9);
	assert_close(s.tpot.median, 65.0 / 6, 1e-9);
	assert_close(s.tpot.std, 25.0 / 6, 1e-9);
	/* ITL pooled [10, 20, 5, 5, 5, 5] (D's gap is left out): sorted
	 * 5 5 5 5 10 20, mean 50/6 = 8.3333, median (5 + 5)/2 = 5; squares
	 * 4 * 11.111 + 2.778 + 136.111 = 183.333, / 6 = 30.556, std 5.5277;
	 * p90 index 4.5 -> 20 - 10 * 0.5 = 15; p99 4.95 -> 20 - 10 * 0.05 = 19.5. */
	assert_int_equal(s.itl.count, 6);
	assert_close(s.itl.mean, 50.0 / 6, 1e-9);
	assert_close(s.itl.median, 5, 1e-9);
	assert_close(s.itl.std, sqrt(1100.0 / 36), 1e-9);
	assert_close(s.itl.percentile[1], 15, 1e-9);
	assert_close(s.itl.percentile[2], 19.5, 1e-9);
	/* E2EL [40, 50, 60]: mean 50, median 50, std sqrt(200 / 3) = 8.165. */
	assert_close(s.e2el.mean, 50, 1e-9);
	assert_close(s.e2el.median, 50, 1e-9);
	assert_close(s.e2el.std, sqrt(200.0 / 3), 1e-9);
	/* The sorted samples stay for the CDFs. */
	assert_close(s.ttft_ms[0], 10, 1e-9);
	assert_close(s.ttft_ms[2], 60, 1e-9);
	assert_int_equal(s.itl_us[0], 5000);
	assert_int_equal(s.itl_us[5], 20000);
	bench_summary_free(&s);
	release_all(r, n);
}

static void goodput_counts_requests_meeting_every_slo(void **state)
{
	(void)state;
	struct bench_record r[6];
	size_t n = hand_built_run(r);
	struct bench_config c = run_config();
	struct bench_summary s;
	/* ttft <= 35 and tpot <= 10: A fails TPOT (15), B passes (30, 6.67),
	 * C fails TTFT (60): 1 good / 2 s = 0.5. */
	c.slo_ttft_ms = 35;
	c.slo_tpot_ms = 10;
	assert_int_equal(bench_summarize(r, n, &c, &s), 0);
	assert_true(s.goodput_enabled);
	assert_int_equal(s.good_completed, 1);
	assert_close(s.request_goodput, 0.5, 1e-12);
	bench_summary_free(&s);
	/* e2el <= 50 alone: A (40) and B (50, the bound included): 2 / 2 s. */
	c = run_config();
	c.slo_e2el_ms = 50;
	assert_int_equal(bench_summarize(r, n, &c, &s), 0);
	assert_int_equal(s.good_completed, 2);
	assert_close(s.request_goodput, 1, 1e-12);
	bench_summary_free(&s);
	/* tpot <= 1 alone: only C, whose single token counts as TPOT 0. */
	c = run_config();
	c.slo_tpot_ms = 1;
	assert_int_equal(bench_summarize(r, n, &c, &s), 0);
	assert_int_equal(s.good_completed, 1);
	bench_summary_free(&s);
	release_all(r, n);
}

static void latencies_from_the_intended_send_time_and_schedule_lag(void **state)
{
	(void)state;
	struct bench_record r[6];
	size_t n = hand_built_run(r);
	struct bench_config c = run_config();
	c.target_rate = 10;
	struct bench_summary s;
	assert_int_equal(bench_summarize(r, n, &c, &s), 0);
	/* TTFT from intended [11, 32, 60]: mean 103/3; E2EL [41, 52, 60]: mean 51. */
	assert_close(s.ttft_from_intended.mean, 103.0 / 3, 1e-9);
	assert_close(s.ttft_from_intended.median, 32, 1e-9);
	assert_close(s.e2el_from_intended.mean, 51, 1e-9);
	assert_close(s.e2el_from_intended.max, 60, 1e-9);
	/* Lag of the five sent: A 1, B 2, C 0, D 0, E 1 -> mean 0.8, median 1,
	 * max 2; late (> 1 ms): B only. No slot waits. */
	assert_int_equal(s.schedule_lag.count, 5);
	assert_close(s.schedule_lag.mean, 0.8, 1e-9);
	assert_close(s.schedule_lag.median, 1, 1e-9);
	assert_close(s.schedule_lag.max, 2, 1e-9);
	assert_int_equal(s.late_arrivals, 1);
	/* p99 of 0 0 1 1 2: index 3.96 -> 2 - 1 * 0.04 = 1.96 (asked or not). */
	assert_close(s.schedule_lag.percentile[2], 1.96, 1e-9);
	assert_close(s.schedule_lag_p99_ms, 1.96, 1e-9);
	assert_close(s.queue_wait.max, 0, 0);
	/* 5 sent by the last send at 401 ms: 5 / 0.401 s. */
	assert_close(s.achieved_rate, 5 / 0.401, 1e-9);
	assert_close(s.target_rate, 10, 0);
	/* Reported tokens per text event, requests with usage: A 3 tokens over
	 * 2 text events, C 1 over 1: 4 / 3. */
	assert_close(s.tokens_per_event, 4.0 / 3, 1e-12);
	bench_summary_free(&s);
	release_all(r, n);
}

static void errors_by_code_most_frequent_first(void **state)
{
	(void)state;
	struct bench_record r[8];
	size_t n = hand_built_run(r);
	/* Two more timeouts: timeout 3, no_choice_event 1. */
	static const uint64_t none[1] = {0};
	make_request(&r[n++], 600, 600, none, 0, false, 700, LR_ETIMEOUT);
	make_request(&r[n++], 650, 650, none, 0, false, 700, LR_ETIMEOUT);
	struct bench_config c = run_config();
	struct bench_summary s;
	assert_int_equal(bench_summarize(r, n, &c, &s), 0);
	assert_int_equal(s.failed, 4);
	assert_int_equal(s.error_kinds, 2);
	assert_int_equal(s.errors[0].code, LR_ETIMEOUT);
	assert_int_equal(s.errors[0].count, 3);
	assert_int_equal(s.errors[1].code, BENCH_ENOCHOICE);
	assert_int_equal(s.errors[1].count, 1);
	bench_summary_free(&s);
	release_all(r, n);
}

static void timeline_per_second(void **state)
{
	(void)state;
	struct bench_record r[6];
	size_t n = hand_built_run(r);
	struct bench_config c = run_config();
	struct bench_summary s;
	assert_int_equal(bench_summarize(r, n, &c, &s), 0);
	/* [BASE, BASE + 2 s): two seconds. Second 0: sent A-E (5); A, B, C
	 * complete; E fails (402 ms); one in flight at its end (D). Second 1:
	 * D fails at 1300 ms; none in flight. Events of successful requests:
	 * 3 + 5 + 1 = 9, all in second 0, tokens 3 + 4 + 1 = 8. */
	assert_int_equal(s.timeline_len, 2);
	assert_int_equal(s.timeline_start_ns, BASE);
	assert_int_equal(s.timeline[0].sent, 5);
	assert_int_equal(s.timeline[0].completed, 3);
	assert_int_equal(s.timeline[0].failed, 1);
	assert_int_equal(s.timeline[0].in_flight, 1);
	assert_int_equal(s.timeline[0].events, 9);
	assert_close(s.timeline[0].output_tokens, 8, 1e-9);
	assert_int_equal(s.timeline[1].sent, 0);
	assert_int_equal(s.timeline[1].failed, 1);
	assert_int_equal(s.timeline[1].in_flight, 0);
	assert_int_equal(s.timeline[1].events, 0);
	/* vLLM's peaks: A [1, 41), B [102, 152), C [200, 260) never overlap;
	 * its token buckets start at the earliest send (1 ms): 9 in the first. */
	assert_int_equal(s.max_concurrent_requests, 1);
	assert_close(s.max_output_tokens_per_s, 9, 0);
	bench_summary_free(&s);
	release_all(r, n);
}

static void peak_concurrency_lets_an_end_go_before_a_start_at_the_same_instant(void **state)
{
	(void)state;
	/* [0, 10), [5, 15), [10, 20): at 10 the first ends before the third
	 * starts (vLLM's half-open sweep), so the peak is 2, not 3. */
	static const uint64_t e1[] = {4, 10}, e2[] = {9, 15}, e3[] = {14, 20};
	struct bench_record r[3];
	make_request(&r[0], 0, 0, e1, 2, false, 10, 0);
	make_request(&r[1], 5, 5, e2, 2, false, 15, 0);
	make_request(&r[2], 10, 10, e3, 2, false, 20, 0);
	struct bench_config c = run_config();
	struct bench_summary s;
	assert_int_equal(bench_summarize(r, 3, &c, &s), 0);
	assert_int_equal(s.max_concurrent_requests, 2);
	bench_summary_free(&s);
	release_all(r, 3);
}

static void time_waiting_for_a_slot_is_queue_wait_not_lag(void **state)
{
	(void)state;
	/* Capped open loop: due at 0, a slot at 50 ms, sent 50.2 ms later,
	 * first event 60.2, last 80.2. Lag 0.2 (not late), queue wait 50;
	 * vLLM's TTFT 10, ours from intended 60.2; E2EL 30 against 80.2. */
	struct bench_record r;
	bench_record_init(&r, BASE);
	r.admitted_ns = BASE + 50 * MS;
	r.sent_ns = BASE + 50 * MS + 200000;
	bench_record_event(&r, r.sent_ns + 10 * MS, true);
	bench_record_event(&r, r.sent_ns + 30 * MS, true);
	bench_record_finish(&r, r.sent_ns + 31 * MS, 0);
	struct bench_config c = run_config();
	struct bench_summary s;
	assert_int_equal(bench_summarize(&r, 1, &c, &s), 0);
	assert_close(s.schedule_lag.max, 0.2, 1e-9);
	assert_int_equal(s.late_arrivals, 0);
	assert_close(s.queue_wait.max, 50, 1e-9);
	assert_close(s.ttft.mean, 10, 1e-9);
	assert_close(s.ttft_from_intended.mean, 60.2, 1e-9);
	assert_close(s.e2el.mean, 30, 1e-9);
	assert_close(s.e2el_from_intended.mean, 80.2, 1e-9);
	bench_summary_free(&s);
	bench_record_release(&r);
}

static void bad_percentiles_are_refused(void **state)
{
	(void)state;
	const double p[] = {50, 101};
	struct bench_config c = config_with(p, 2);
	struct bench_summary s;
	assert_int_equal(bench_summarize(NULL, 0, &c, &s), LR_EINVAL);
	c.percentiles[1] = NAN;
	assert_int_equal(bench_summarize(NULL, 0, &c, &s), LR_EINVAL);
	c.percentile_count = BENCH_MAX_PERCENTILES + 1;
	assert_int_equal(bench_summarize(NULL, 0, &c, &s), LR_EINVAL);
}

static void no_records_give_an_empty_summary(void **state)
{
	(void)state;
	struct bench_config c = run_config();
	struct bench_summary s;
	assert_int_equal(bench_summarize(NULL, 0, &c, &s), 0);
	assert_int_equal(s.completed, 0);
	assert_close(s.ttft.mean, 0, 0);
	assert_close(s.request_throughput, 0, 0);
	bench_summary_free(&s);
}

/* ---- arrivals ----------------------------------------------------------- */

static void gamma_moments(double shape, double scale, uint64_t seed)
{
	/* Gamma(k, theta): mean k theta, variance k theta^2. */
	enum { SAMPLES = 200000 };
	struct bench_rng rng;
	bench_rng_seed(&rng, seed);
	double sum = 0, squares = 0;
	for (int i = 0; i < SAMPLES; i++) {
		double x = bench_rng_gamma(&rng, shape, scale);
		assert_true(x >= 0 && isfinite(x));
		sum += x;
		squares += x * x;
	}
	double mean = sum / SAMPLES;
	double variance = squares / SAMPLES - mean * mean;
	double want_mean = shape * scale, want_variance = shape * scale * scale;
	if (fabs(mean / want_mean - 1) > 0.01 || fabs(variance / want_variance - 1) > 0.03) {
		print_error("shape %g: mean %g (want %g), variance %g (want %g)\n", shape, mean, want_mean,
		            variance, want_variance);
		fail();
	}
}

static void gamma_sampler_mean_and_variance(void **state)
{
	(void)state;
	gamma_moments(0.5, 1, 42);
	gamma_moments(1, 1, 42);
	gamma_moments(4, 1, 42);
	/* vLLM's scale for rate 20 and burstiness 4: 1 / (20 * 4). */
	gamma_moments(4, 1.0 / 80, 7);
}

static void uniform_stays_inside_the_open_interval(void **state)
{
	(void)state;
	struct bench_rng rng;
	bench_rng_seed(&rng, 0);
	for (int i = 0; i < 100000; i++) {
		double u = bench_rng_uniform(&rng);
		assert_true(u > 0 && u < 1);
	}
}

static void the_same_seed_gives_the_same_schedule(void **state)
{
	(void)state;
	uint64_t a[1000], b[1000], other[1000];
	assert_int_equal(arrival_schedule_fill(a, 1000, 50, 0.5, 1234), 0);
	assert_int_equal(arrival_schedule_fill(b, 1000, 50, 0.5, 1234), 0);
	assert_int_equal(arrival_schedule_fill(other, 1000, 50, 0.5, 1235), 0);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, other, sizeof(a));
	for (size_t i = 1; i < 1000; i++)
		assert_true(a[i] >= a[i - 1]);
	/* vLLM rescales so the last is count / rate: 1000 / 50 = 20 s. */
	assert_true(llabs((long long)a[999] - 20000000000ll) <= 1);
	/* The first waits one gap too: not 0. */
	assert_true(a[0] > 0);
}

static void open_ended_schedule_keeps_the_rate(void **state)
{
	(void)state;
	/* --duration: no rescaling; 100,000 exponential gaps at 1,000 req/s
	 * end near 100 s (the sum's sd is sqrt(100000) ms = 0.32 s). */
	struct arrival_schedule s;
	assert_int_equal(arrival_schedule_init(&s, 1000, 1, 99), 0);
	uint64_t last = 0, t = 0;
	for (int i = 0; i < 100000; i++) {
		t = arrival_schedule_next_ns(&s);
		assert_true(t >= last);
		last = t;
	}
	assert_true(fabs((double)t / 1e9 - 100) < 2);
}

static void infinite_rate_sends_everything_at_once(void **state)
{
	(void)state;
	uint64_t t[100];
	memset(t, 0xff, sizeof(t));
	assert_int_equal(arrival_schedule_fill(t, 100, INFINITY, 1, 5), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(t[i], 0);
}

static void infinite_burstiness_gives_even_gaps(void **state)
{
	(void)state;
	/* Every gap 1 / rate: request i at (i + 1) / 4 s. */
	uint64_t t[8];
	assert_int_equal(arrival_schedule_fill(t, 8, 4, INFINITY, 5), 0);
	for (int i = 0; i < 8; i++)
		assert_true(llabs((long long)t[i] - (long long)(i + 1) * 250000000ll) <= 1);
}

static void bad_rates_are_refused(void **state)
{
	(void)state;
	struct arrival_schedule s;
	uint64_t t[1];
	assert_int_equal(arrival_schedule_init(&s, 0, 1, 1), LR_EINVAL);
	assert_int_equal(arrival_schedule_init(&s, -1, 1, 1), LR_EINVAL);
	assert_int_equal(arrival_schedule_init(&s, NAN, 1, 1), LR_EINVAL);
	assert_int_equal(arrival_schedule_init(&s, 1, 0, 1), LR_EINVAL);
	assert_int_equal(arrival_schedule_fill(t, 1, 1, NAN, 1), LR_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(percentiles_match_numpy_linear_interpolation),
		cmocka_unit_test(std_is_the_population_std_and_median_averages_the_middle),
		cmocka_unit_test(an_empty_set_gives_zeros_as_vllm_does),
		cmocka_unit_test(record_events_keep_their_times_in_four_bytes_each),
		cmocka_unit_test(a_success_without_a_choice_event_is_a_failure),
		cmocka_unit_test(reported_zero_tokens_fall_back_to_counted_events),
		cmocka_unit_test(vllm_counts_tokens_and_throughputs),
		cmocka_unit_test(vllm_latency_statistics),
		cmocka_unit_test(goodput_counts_requests_meeting_every_slo),
		cmocka_unit_test(latencies_from_the_intended_send_time_and_schedule_lag),
		cmocka_unit_test(errors_by_code_most_frequent_first),
		cmocka_unit_test(timeline_per_second),
		cmocka_unit_test(peak_concurrency_lets_an_end_go_before_a_start_at_the_same_instant),
		cmocka_unit_test(time_waiting_for_a_slot_is_queue_wait_not_lag),
		cmocka_unit_test(bad_percentiles_are_refused),
		cmocka_unit_test(no_records_give_an_empty_summary),
		cmocka_unit_test(gamma_sampler_mean_and_variance),
		cmocka_unit_test(uniform_stays_inside_the_open_interval),
		cmocka_unit_test(the_same_seed_gives_the_same_schedule),
		cmocka_unit_test(open_ended_schedule_keeps_the_rate),
		cmocka_unit_test(infinite_rate_sends_everything_at_once),
		cmocka_unit_test(infinite_burstiness_gives_even_gaps),
		cmocka_unit_test(bad_rates_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
