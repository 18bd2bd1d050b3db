/* engine/core/ratelimit: the token buckets as pure functions of explicit
 * now_ns values (no clock, no sleeping). Rates are per minute; a bucket
 * holds one second's allowance and starts full. Waits are
 * floor(need / rate) + 1 ns, so they are asserted within 2 ns of the
 * exact value (the rate per ns is not exact in binary). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/ratelimit.h"

#define SEC 1000000000ull

static void near_u64(uint64_t got, uint64_t want, uint64_t tol, int line)
{
	uint64_t d = got > want ? got - want : want - got;
	if (d > tol)
		fail_msg("line %d: got %llu, want %llu (+-%llu)", line, (unsigned long long)got,
		         (unsigned long long)want, (unsigned long long)tol);
}
#define assert_wait(got, want) near_u64((got), (want), 2, __LINE__)

static void near_d(double got, double want, int line)
{
	if (fabs(got - want) > 1e-6)
		fail_msg("line %d: got %.9f, want %.9f", line, got, want);
}
#define assert_level(got, want) near_d((got), (want), __LINE__)

static void init_and_enabled(void **state)
{
	(void)state;
	struct limits l;
	limits_init(&l, 0, 0, 5);
	assert_false(limits_enabled(&l));
	assert_true(l.requests.rate_per_ns == 0 && l.tokens.rate_per_ns == 0);
	assert_true(l.requests.capacity == 0 && l.tokens.capacity == 0);
	assert_int_equal(l.refilled_ns, 5);
	assert_int_equal(l.paused_until_ns, 0);
	/* Unlimited admits anything, at once, and takes nothing. */
	for (int i = 0; i < 1000; i++)
		assert_int_equal(limits_admit(&l, 5, 1e12), 0);
	assert_true(l.requests.level == 0 && l.tokens.level == 0);

	/* Negative is unlimited too. */
	limits_init(&l, -5, -1, 0);
	assert_false(limits_enabled(&l));

	limits_init(&l, 600, 0, 0);
	assert_true(limits_enabled(&l));
	assert_level(l.requests.capacity, 10);
	assert_level(l.requests.level, 10);
	assert_level(l.requests.rate_per_ns, 1e-8);
	assert_true(l.tokens.rate_per_ns == 0);

	limits_init(&l, 0, 60000, 0);
	assert_true(limits_enabled(&l));
	assert_level(l.tokens.capacity, 1000);
	assert_level(l.tokens.level, 1000);
	assert_true(l.requests.rate_per_ns == 0);

	/* Under 60 a minute a bucket still holds one. */
	limits_init(&l, 30, 6, 0);
	assert_level(l.requests.capacity, 1);
	assert_level(l.tokens.capacity, 1);
	assert_level(l.requests.level, 1);
}

static void burst_then_wait(void **state)
{
	(void)state;
	struct limits l;
	const uint64_t t0 = 7 * SEC;
	limits_init(&l, 600, 60000, t0);
	/* One second's allowance: 10 requests of 100 tokens, at once. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(limits_admit(&l, t0, 100), 0);
	assert_level(l.requests.level, 0);
	assert_level(l.tokens.level, 0);
	/* The 11th waits one request's (and 100 tokens') refill: 0.1 s. */
	uint64_t w = limits_admit(&l, t0, 100);
	assert_wait(w, SEC / 10 + 1);
	assert_true(w >= SEC / 10);
	/* Refused: nothing taken. */
	assert_level(l.requests.level, 0);
	assert_level(l.tokens.level, 0);
	/* Asked again halfway, it waits the rest. */
	assert_wait(limits_admit(&l, t0 + w / 2, 100), w - w / 2);
	assert_level(l.requests.level, 0.5);
	assert_level(l.tokens.level, 50);
	/* When the wait is over it is admitted. */
	assert_int_equal(limits_admit(&l, t0 + w, 100), 0);
	assert_true(l.requests.level < 1e-6 && l.tokens.level < 1e-6);
	/* The next waits about 0.1 s more. */
	assert_wait(limits_admit(&l, t0 + w, 100), SEC / 10 + 1);
}

static void refill_over_time(void **state)
{
	(void)state;
	struct limits l;
	limits_init(&l, 600, 60000, 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(limits_admit(&l, 0, 100), 0);
	/* Half a second refills half the buckets. */
	assert_wait(limits_admit(&l, SEC / 2, 600), SEC / 10 + 1);
	assert_level(l.requests.level, 5);
	assert_level(l.tokens.level, 500);
	assert_int_equal(l.refilled_ns, SEC / 2);
	for (int i = 0; i < 5; i++)
		assert_int_equal(limits_admit(&l, SEC / 2, 100), 0);
	assert_wait(limits_admit(&l, SEC / 2, 1), SEC / 10 + 1);
	/* Never above capacity, however long. */
	assert_int_equal(limits_admit(&l, 3600 * SEC, 0), 0);
	assert_level(l.requests.level, 9);
	assert_level(l.tokens.level, 1000);
	/* Time going back refills nothing and is not an error. */
	assert_int_equal(limits_admit(&l, SEC, 0), 0);
	assert_level(l.requests.level, 8);
	assert_int_equal(l.refilled_ns, 3600 * SEC);
}

static void both_required(void **state)
{
	(void)state;
	struct limits l;
	/* Requests there, tokens not. */
	limits_init(&l, 600, 60000, 0);
	assert_int_equal(limits_admit(&l, 0, 1000), 0);
	assert_level(l.requests.level, 9);
	assert_level(l.tokens.level, 0);
	assert_wait(limits_admit(&l, 0, 250), SEC / 4 + 1);
	assert_level(l.requests.level, 9);
	assert_level(l.tokens.level, 0);
	/* A request of no tokens needs only the request. */
	assert_int_equal(limits_admit(&l, 0, 0), 0);
	assert_level(l.requests.level, 8);

	/* Tokens there, requests not: 60 a minute, one a second. */
	limits_init(&l, 60, 60000, 0);
	assert_int_equal(limits_admit(&l, 0, 1), 0);
	assert_wait(limits_admit(&l, 0, 1), SEC + 1);
	assert_level(l.requests.level, 0);
	assert_level(l.tokens.level, 999);
	/* Both short: the longer wait. */
	limits_init(&l, 60, 60000, 0);
	assert_int_equal(limits_admit(&l, 0, 1000), 0);
	assert_wait(limits_admit(&l, 0, 500), SEC + 1);
	limits_init(&l, 600, 6000, 0);
	assert_int_equal(limits_admit(&l, 0, 100), 0);
	assert_wait(limits_admit(&l, 0, 50), SEC / 2 + 1);
	assert_level(l.requests.level, 9);
	assert_level(l.tokens.level, 0);

	/* Only requests limited: tokens are not counted. */
	limits_init(&l, 600, 0, 0);
	assert_int_equal(limits_admit(&l, 0, 1e9), 0);
	assert_true(l.tokens.level == 0);
	/* Only tokens limited. */
	limits_init(&l, 0, 60000, 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(limits_admit(&l, 0, 10), 0);
	assert_true(l.requests.level == 0);
	assert_wait(limits_admit(&l, 0, 10), SEC / 100 + 1);
}

static void larger_than_the_bucket(void **state)
{
	(void)state;
	struct limits l;
	limits_init(&l, 0, 60000, 0);
	/* Waits for a full bucket (1000), then takes all 2500. */
	assert_int_equal(limits_admit(&l, 0, 500), 0);
	assert_wait(limits_admit(&l, 0, 2500), SEC / 2 + 1);
	assert_level(l.tokens.level, 500);
	assert_int_equal(limits_admit(&l, SEC, 2500), 0);
	assert_level(l.tokens.level, -1500);
	/* The debt is waited for: (1500 + 100) / 1000 a second. */
	assert_wait(limits_admit(&l, SEC, 100), 1600 * SEC / 1000 + 1);
}

static void correct(void **state)
{
	(void)state;
	struct limits l;
	limits_init(&l, 600, 60000, 0);
	assert_int_equal(limits_admit(&l, 0, 100), 0);
	assert_level(l.tokens.level, 900);
	/* Under-estimated: the difference is taken. */
	limits_correct(&l, 100, 300);
	assert_level(l.tokens.level, 700);
	/* Over-estimated: given back. */
	limits_correct(&l, 100, 50);
	assert_level(l.tokens.level, 750);
	/* Unknown usage (negative): nothing. */
	limits_correct(&l, 100, -1);
	assert_level(l.tokens.level, 750);
	/* Given back, but never above capacity. */
	limits_correct(&l, 5000, 0);
	assert_level(l.tokens.level, 1000);
	/* Far under-estimated: the level goes negative... */
	limits_correct(&l, 100, 2100);
	assert_level(l.tokens.level, -1000);
	assert_level(l.requests.level, 9);
	/* ...and the next request waits for it: (1000 + 10) / 1000 s. */
	assert_wait(limits_admit(&l, 0, 10), 1010 * SEC / 1000 + 1);
	assert_level(l.tokens.level, -1000);
	assert_int_equal(limits_admit(&l, 2 * SEC, 10), 0);
	assert_level(l.tokens.level, 990);

	/* Tokens unlimited: nothing to correct. */
	limits_init(&l, 600, 0, 0);
	limits_correct(&l, 0, 1e6);
	assert_true(l.tokens.level == 0);
	assert_int_equal(limits_admit(&l, 0, 1), 0);
}

static void follow(void **state)
{
	(void)state;
	struct limits l;
	limits_init(&l, 600, 60000, 0);
	limits_follow(&l, 0, 3, 200);
	assert_level(l.requests.level, 3);
	assert_level(l.tokens.level, 200);
	/* Never raised by the provider. */
	limits_follow(&l, 0, 5, 500);
	assert_level(l.requests.level, 3);
	assert_level(l.tokens.level, 200);
	/* Negative: not said. */
	limits_follow(&l, 0, -1, -1);
	assert_level(l.requests.level, 3);
	assert_level(l.tokens.level, 200);
	/* Refilled to now first, then capped: 0.1 s later 4 and 300. */
	limits_follow(&l, SEC / 10, -1, 250);
	assert_level(l.requests.level, 4);
	assert_level(l.tokens.level, 250);
	assert_int_equal(l.refilled_ns, SEC / 10);
	/* Nothing remains: the next waits a request's refill. */
	limits_follow(&l, SEC / 10, 0, -1);
	assert_level(l.requests.level, 0);
	assert_wait(limits_admit(&l, SEC / 10, 1), SEC / 10 + 1);
	limits_follow(&l, SEC / 10, -1, 0);
	assert_wait(limits_admit(&l, SEC / 10, 1), SEC / 10 + 1);
	limits_init(&l, 600, 60000, 0);
	limits_follow(&l, 0, -1, 0);
	assert_wait(limits_admit(&l, 0, 1), SEC / 1000 + 1);

	/* Unlimited buckets stay unlimited. */
	limits_init(&l, 0, 0, 0);
	limits_follow(&l, 0, 0, 0);
	assert_false(limits_enabled(&l));
	assert_int_equal(limits_admit(&l, 0, 1e6), 0);
}

static void pause_until(void **state)
{
	(void)state;
	struct limits l;
	limits_init(&l, 600, 60000, 0);
	limits_pause(&l, 5 * SEC);
	assert_int_equal(l.paused_until_ns, 5 * SEC);
	/* Nothing before until_ns: the wait is exactly the rest. */
	assert_int_equal(limits_admit(&l, 0, 1), 5 * SEC);
	assert_int_equal(limits_admit(&l, SEC, 1), 4 * SEC);
	assert_int_equal(limits_admit(&l, 5 * SEC - 1, 0), 1);
	/* Refused: nothing taken. */
	assert_level(l.requests.level, 10);
	assert_level(l.tokens.level, 1000);
	/* At until_ns and after: admitted. */
	assert_int_equal(limits_admit(&l, 5 * SEC, 1), 0);
	assert_int_equal(limits_admit(&l, 6 * SEC, 1), 0);
	assert_level(l.requests.level, 9);
	/* An earlier pause does not shorten a later one. */
	limits_pause(&l, 10 * SEC);
	limits_pause(&l, 7 * SEC);
	assert_int_equal(l.paused_until_ns, 10 * SEC);
	assert_int_equal(limits_admit(&l, 8 * SEC, 1), 2 * SEC);
	assert_int_equal(limits_admit(&l, 10 * SEC, 1), 0);
	/* After a pause the buckets still apply. */
	limits_init(&l, 60, 0, 0);
	limits_pause(&l, SEC / 2);
	assert_int_equal(limits_admit(&l, SEC / 2, 1), 0);
	assert_wait(limits_admit(&l, SEC / 2, 1), SEC + 1);

	/* A 429's pause holds even when no limits are set. */
	limits_init(&l, 0, 0, 0);
	limits_pause(&l, 3 * SEC);
	assert_int_equal(limits_admit(&l, SEC, 1), 2 * SEC);
	assert_int_equal(limits_admit(&l, 3 * SEC, 1), 0);
}

static double est(const char *body, int max_tokens)
{
	return limits_estimate_tokens(body, body ? strlen(body) : 0, max_tokens);
}

static void estimate_tokens(void **state)
{
	(void)state;
	const char *b;
	/* Bytes / 4 (not rounded) plus the body's budget. */
	b = "{\"model\":\"m\",\"max_tokens\":100}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 100);
	b = "{\"max_completion_tokens\": 42, \"model\":\"m\"}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 42);
	/* max_completion_tokens is read before max_tokens. */
	b = "{\"max_tokens\":10,\"max_completion_tokens\":20}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 20);
	/* The other dialects' names. */
	b = "{\"generationConfig\":{\"maxOutputTokens\":64}}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 64);
	b = "{\"options\":{\"num_predict\":32}}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 32);
	/* None named: 256. */
	b = "{\"model\":\"m\",\"messages\":[]}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 256);
	assert_level(est("abc", 0), 0.75 + 256);
	assert_level(est("", 0), 256);
	assert_level(est(NULL, 0), 256);
	/* Blanks around the colon. */
	b = "{\"max_tokens\" :\n\t 7}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 7);
	/* Zero is a budget of zero. */
	b = "{\"max_tokens\":0}";
	assert_level(est(b, 0), (double)strlen(b) / 4);
	/* Not a number: not a budget. */
	b = "{\"max_tokens\":-5}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 256);
	b = "{\"max_tokens\":null}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 256);
	/* The name as a value is passed over for the key. */
	b = "{\"stop\":[\"max_tokens\"],\"max_tokens\":9}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 9);
	/* Escaped inside a string it is not the key. */
	b = "{\"content\":\"\\\"max_tokens\\\": 5\"}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 256);
	/* At most nine digits are read (no overflow). */
	b = "{\"max_tokens\":12345678901}";
	assert_level(est(b, 0), (double)strlen(b) / 4 + 123456789);
	/* Only len bytes are read. */
	b = "{\"model\":\"m\"}{\"max_tokens\":100}";
	assert_level(limits_estimate_tokens(b, 13, 0), 13.0 / 4 + 256);
	b = "{\"max_tokens\":100";
	assert_level(limits_estimate_tokens(b, strlen(b) - 1, 0), (double)(strlen(b) - 1) / 4 + 10);

	/* The request's own max_tokens (lr_request), when > 0, is the
	 * budget and the body is not searched. */
	b = "{\"max_tokens\":100}";
	assert_level(est(b, 50), (double)strlen(b) / 4 + 50);
	assert_level(est(b, 5000), (double)strlen(b) / 4 + 5000);
	assert_level(est("{}", 10), 0.5 + 10);
	assert_level(est(NULL, 10), 10);
	/* Zero or negative: the body's, or 256. */
	assert_level(est(b, -1), (double)strlen(b) / 4 + 100);
	assert_level(est("{}", -1), 0.5 + 256);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(init_and_enabled),
		cmocka_unit_test(burst_then_wait),
		cmocka_unit_test(refill_over_time),
		cmocka_unit_test(both_required),
		cmocka_unit_test(larger_than_the_bucket),
		cmocka_unit_test(correct),
		cmocka_unit_test(follow),
		cmocka_unit_test(pause_until),
		cmocka_unit_test(estimate_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
