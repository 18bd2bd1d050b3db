/*
 * The retry policy as functions (engine/core/retry.c): every rule of
 * retry_allowed, the delay schedule with its jitter bounds, and the
 * header parsers. No engine, no clock, no sleeping: test_retry.c checks
 * the same rules end to end against a server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/retry.h"
#include "llmring.h"

static struct attempt_outcome outcome(int err, int status)
{
	return (struct attempt_outcome){
		.error = err, .http_status = status, .should_retry = -1, .attempts = 1, .max_retries = 2};
}

static void success_is_never_retried(void **state)
{
	(void)state;
	struct attempt_outcome o = outcome(0, 200);
	assert_false(retry_allowed(&o));
	o.should_retry = 1;
	assert_false(retry_allowed(&o));
}

static void statuses_retried_as_the_sdks_do(void **state)
{
	(void)state;
	static const int retried[] = {408, 409, 429, 500, 502, 503, 504, 529};
	static const int kept[] = {400, 401, 403, 404, 413, 422};
	for (size_t i = 0; i < sizeof(retried) / sizeof(retried[0]); i++) {
		struct attempt_outcome o = outcome(LR_ESERVER, retried[i]);
		assert_true(retry_allowed(&o));
	}
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		struct attempt_outcome o = outcome(LR_EBADREQUEST, kept[i]);
		assert_false(retry_allowed(&o));
	}
}

static void transport_failures_without_a_response(void **state)
{
	(void)state;
	static const int retried[] = {LR_ECONNECT, LR_ECONNRESET, LR_ETIMEOUT, LR_EPROTO};
	static const int kept[] = {LR_ETLS_HANDSHAKE, LR_ETLS_UNTRUSTED, LR_ETLS_NAME, LR_EINVAL, LR_ENOMEM,
	                           LR_ETOOLARGE, LR_ECANCELLED};
	for (size_t i = 0; i < sizeof(retried) / sizeof(retried[0]); i++) {
		struct attempt_outcome o = outcome(retried[i], 0);
		assert_true(retry_allowed(&o));
	}
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		struct attempt_outcome o = outcome(kept[i], 0);
		assert_false(retry_allowed(&o));
	}
}

static void a_2xx_that_broke_off_is_retried_by_cause(void **state)
{
	(void)state;
	static const int retried[] = {LR_ECONNRESET, LR_ETIMEOUT, LR_ESERVER, LR_EOVERLOADED,
	                              LR_ERATELIMIT, LR_EPROTO};
	for (size_t i = 0; i < sizeof(retried) / sizeof(retried[0]); i++) {
		struct attempt_outcome o = outcome(retried[i], 200);
		assert_true(retry_allowed(&o));
	}
	struct attempt_outcome o = outcome(LR_ETOOLARGE, 200);
	assert_false(retry_allowed(&o));
}

static void should_retry_header_overrides_the_status(void **state)
{
	(void)state;
	struct attempt_outcome o = outcome(LR_EBADREQUEST, 400);
	o.should_retry = 1;
	assert_true(retry_allowed(&o));
	o = outcome(LR_ESERVER, 503);
	o.should_retry = 0;
	assert_false(retry_allowed(&o));
	/* without a response there is no header to obey */
	o = outcome(LR_ECONNRESET, 0);
	o.should_retry = 0;
	assert_true(retry_allowed(&o));
}

static void never_quota_cancel_exhausted_or_delivered(void **state)
{
	(void)state;
	struct attempt_outcome o = outcome(LR_EQUOTA, 429);
	o.should_retry = 1;
	assert_false(retry_allowed(&o));
	o = outcome(LR_ECANCELLED, 0);
	assert_false(retry_allowed(&o));
	o = outcome(LR_ESERVER, 500);
	o.attempts = 3; /* max_retries 2: the third attempt was the last */
	assert_false(retry_allowed(&o));
	o.attempts = 2;
	assert_true(retry_allowed(&o));
	o.delivered = true;
	assert_false(retry_allowed(&o));
}

static void delay_follows_retry_after_then_backoff(void **state)
{
	(void)state;
	/* Retry-After between 0 and 60 s is obeyed exactly, jitter or not */
	assert_int_equal(retry_delay_ns(2.5, 1, 0.9), 2500000000ull);
	assert_int_equal(retry_delay_ns(0, 1, 0.5), 0);
	assert_int_equal(retry_delay_ns(60, 1, 0.5), 60000000000ull);
	/* beyond 60 s (or absent) the backoff applies: 0.5 s doubling to 8 s */
	static const uint64_t base_ns[] = {500000000ull, 1000000000ull, 2000000000ull,
	                                   4000000000ull, 8000000000ull, 8000000000ull};
	for (int attempts = 1; attempts <= 6; attempts++) {
		uint64_t base = base_ns[attempts - 1];
		assert_int_equal(retry_delay_ns(-1, attempts, 0), base);
		assert_int_equal(retry_delay_ns(61, attempts, 0), base);
		/* a draw of 1 would take 25 % off; the largest draw is below 1 */
		uint64_t least = retry_delay_ns(-1, attempts, 0.999999);
		assert_true(least > base * 3 / 4 && least < base);
	}
}

static void jitter_draws_are_uniform_in_the_unit_interval(void **state)
{
	(void)state;
	uint64_t s = 0x9e3779b97f4a7c15ull;
	double sum = 0, lo = 1, hi = 0;
	const int n = 100000;
	for (int i = 0; i < n; i++) {
		double d = retry_jitter_draw(retry_jitter_next(&s));
		assert_true(d >= 0 && d < 1);
		sum += d;
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	assert_true(sum / n > 0.49 && sum / n < 0.51);
	assert_true(lo < 0.001 && hi > 0.999);
	assert_true(retry_jitter_draw(UINT64_MAX) < 1.0);
}

static void header_parsers(void **state)
{
	(void)state;
	assert_int_equal(retry_parse_should_retry("true", 4), 1);
	assert_int_equal(retry_parse_should_retry("TRUE", 4), 1);
	assert_int_equal(retry_parse_should_retry("false", 5), 0);
	assert_int_equal(retry_parse_should_retry("yes", 3), -1);
	assert_int_equal(retry_parse_should_retry("true ", 5), -1);

	assert_true(retry_parse_after_ms("1500", 4) == 1.5);
	assert_true(retry_parse_after_ms("1500xyz", 4) == 1.5); /* only len bytes count */
	assert_true(retry_parse_after_ms("-5", 2) == -1);
	assert_true(retry_parse_after_ms("soon", 4) == -1);

	assert_true(retry_parse_after("7", 1, 0) == 7);
	assert_true(retry_parse_after("0.25", 4, 0) == 0.25);
	assert_true(retry_parse_after("-1", 2, 0) == -1);
	assert_true(retry_parse_after("later", 5, 0) == -1);
	/* an HTTP date is a wait from now, never negative */
	const char *date = "Wed, 21 Oct 2015 07:28:00 GMT";
	struct tm tm = {.tm_year = 115, .tm_mon = 9, .tm_mday = 21, .tm_hour = 7, .tm_min = 27};
	time_t minute_before = timegm(&tm);
	assert_true(retry_parse_after(date, strlen(date), minute_before) == 60);
	assert_true(retry_parse_after(date, strlen(date), minute_before + 3600) == 0);
	/* a value longer than any number is cut, not overrun */
	char long_value[200];
	memset(long_value, '9', sizeof(long_value));
	assert_true(retry_parse_after(long_value, sizeof(long_value), 0) > 1e60);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(success_is_never_retried),
		cmocka_unit_test(statuses_retried_as_the_sdks_do),
		cmocka_unit_test(transport_failures_without_a_response),
		cmocka_unit_test(a_2xx_that_broke_off_is_retried_by_cause),
		cmocka_unit_test(should_retry_header_overrides_the_status),
		cmocka_unit_test(never_quota_cancel_exhausted_or_delivered),
		cmocka_unit_test(delay_follows_retry_after_then_backoff),
		cmocka_unit_test(jitter_draws_are_uniform_in_the_unit_interval),
		cmocka_unit_test(header_parsers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
