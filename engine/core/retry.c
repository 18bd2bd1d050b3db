/* The retry policy (retry.h). */
#include "core/retry.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "llmring.h"
#include "util/clock.h"

/* Whether an attempt that ended with o->error may be tried again, as the
 * official SDKs decide: connection failures and timeouts, 408, 409, 429
 * and 5xx (Anthropic's 529 too), x-should-retry overriding either way;
 * never an exhausted quota, another 4xx, a cancellation, a TLS
 * verification failure or a request refused before sending; a stream
 * only while none of it reached the caller. */
bool retry_allowed(const struct attempt_outcome *o)
{
	int err = o->error;
	if (!err || o->attempts > o->max_retries || err == LR_ECANCELLED || err == LR_EQUOTA)
		return false;
	if (o->delivered)
		return false; /* part of a stream was delivered: a retry would repeat it */
	if (o->should_retry >= 0 && o->http_status)
		return o->should_retry == 1;
	int st = o->http_status;
	if (st >= 200 && st < 300) {
		/* The response broke off or a stream reported an error: the
		 * transport or the server failed, not the request. */
		return err == LR_ECONNRESET || err == LR_ETIMEOUT || err == LR_ESERVER ||
		       err == LR_EOVERLOADED || err == LR_ERATELIMIT || err == LR_EPROTO;
	}
	if (st)
		return st == 408 || st == 409 || st == 429 || st >= 500;
	/* A failed TLS handshake is not retried: a server that does not
	 * speak TLS, or TLS we cannot agree on, stays that way. */
	return err == LR_ECONNECT || err == LR_ECONNRESET || err == LR_ETIMEOUT || err == LR_EPROTO;
}

uint64_t retry_delay_ns(double retry_after_s, int attempts, double draw)
{
	if (retry_after_s >= 0 && retry_after_s <= 60)
		return clock_seconds_to_ns(retry_after_s);
	double base = 0.5;
	for (int i = 1; i < attempts && base < 8; i++)
		base *= 2;
	if (base > 8)
		base = 8;
	return clock_seconds_to_ns(base * (1.0 - 0.25 * draw));
}

uint64_t retry_jitter_next(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

double retry_jitter_draw(uint64_t x)
{
	return (double)(x >> 11) / (double)(1ull << 53);
}

int retry_parse_should_retry(const char *value, size_t len)
{
	if (len == 4 && strncasecmp(value, "true", 4) == 0)
		return 1;
	if (len == 5 && strncasecmp(value, "false", 5) == 0)
		return 0;
	return -1;
}

/* A header value as a NUL-terminated copy, cut to the buffer. */
static void value_copy(char *dst, size_t cap, const char *value, size_t len)
{
	size_t n = len < cap - 1 ? len : cap - 1;
	memcpy(dst, value, n);
	dst[n] = '\0';
}

double retry_parse_after_ms(const char *value, size_t len)
{
	char num[32];
	value_copy(num, sizeof(num), value, len);
	char *end;
	double ms = strtod(num, &end);
	return end != num && ms >= 0 ? ms / 1000.0 : -1;
}

double retry_parse_after(const char *value, size_t len, time_t now)
{
	char num[64];
	value_copy(num, sizeof(num), value, len);
	char *end;
	double secs = strtod(num, &end);
	if (end != num && secs >= 0)
		return secs;
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (strptime(num, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
		/* An HTTP date: the wait is until then (never negative). */
		double wait = difftime(timegm(&tm), now);
		return wait > 0 ? wait : 0;
	}
	return -1;
}
