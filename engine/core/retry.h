/*
 * The retry policy, as pure functions of what an attempt ended with: its
 * error, HTTP status, the server's retry headers and the attempts so far.
 * No clock and no engine state, so tests check every rule without
 * sleeping. The rules follow the official SDKs (openai-python,
 * anthropic-sdk-python): see retry.c.
 */
#ifndef LR_RETRY_H
#define LR_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* What one finished attempt says about trying again. */
struct attempt_outcome {
	int error;        /* the LR_E* it ended with (0: success, never retried) */
	int http_status;  /* 0 when no response head arrived */
	int should_retry; /* x-should-retry: 1 true, 0 false, -1 absent */
	int attempts;     /* attempts started, this one included */
	int max_retries;
	bool delivered;   /* part of a stream already reached the caller */
};

bool retry_allowed(const struct attempt_outcome *o);

/* The wait before the next attempt: retry_after_s (< 0: none) when it is
 * between 0 and 60 s, else 0.5 s doubling per retry up to 8 s, less up to
 * 25 % by `draw`, a uniform value in [0, 1). */
uint64_t retry_delay_ns(double retry_after_s, int attempts, double draw);

/* The next value of a xorshift64 state (not 0), and the value as a
 * uniform draw in [0, 1): jitter only spreads retries apart. */
uint64_t retry_jitter_next(uint64_t *state);
double retry_jitter_draw(uint64_t x);

/* Header values (not NUL-terminated). x-should-retry: 1, 0, or -1 when
 * neither "true" nor "false". retry-after-ms: seconds, or -1. Retry-After:
 * delta-seconds or an HTTP date (the wait from `now`, never negative), in
 * seconds, or -1. */
int retry_parse_should_retry(const char *value, size_t len);
double retry_parse_after_ms(const char *value, size_t len);
double retry_parse_after(const char *value, size_t len, time_t now);

#endif
