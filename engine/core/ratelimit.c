#include "core/ratelimit.h"

#include <stdlib.h>
#include <string.h>

/* A bucket holds one second's allowance (at least one unit) and starts
 * full: providers meter per minute but may enforce it over shorter
 * periods (OpenAI: 60,000 a minute can mean 1,000 a second), so bursts
 * are kept to a second's worth. */
static void bucket_init(struct bucket *b, double per_minute)
{
	b->rate_per_ns = per_minute > 0 ? per_minute / 60e9 : 0;
	b->capacity = per_minute > 0 ? (per_minute / 60 > 1 ? per_minute / 60 : 1) : 0;
	b->level = b->capacity;
}

void limits_init(struct limits *l, double rpm, double tpm, uint64_t now_ns)
{
	memset(l, 0, sizeof(*l));
	bucket_init(&l->requests, rpm);
	bucket_init(&l->tokens, tpm);
	l->refilled_ns = now_ns;
}

bool limits_enabled(const struct limits *l)
{
	return l->requests.rate_per_ns > 0 || l->tokens.rate_per_ns > 0;
}

static void refill(struct limits *l, uint64_t now_ns)
{
	if (now_ns <= l->refilled_ns)
		return;
	double dt = (double)(now_ns - l->refilled_ns);
	struct bucket *bs[2] = {&l->requests, &l->tokens};
	for (int i = 0; i < 2; i++) {
		struct bucket *b = bs[i];
		if (b->rate_per_ns <= 0)
			continue;
		b->level += dt * b->rate_per_ns;
		if (b->level > b->capacity)
			b->level = b->capacity;
	}
	l->refilled_ns = now_ns;
}

static uint64_t wait_for(const struct bucket *b, double need)
{
	if (b->rate_per_ns <= 0 || b->level >= need)
		return 0;
	double ns = (need - b->level) / b->rate_per_ns;
	return ns < 1 ? 1 : (uint64_t)ns + 1;
}

uint64_t limits_admit(struct limits *l, uint64_t now_ns, double tokens)
{
	if (now_ns < l->paused_until_ns)
		return l->paused_until_ns - now_ns;
	refill(l, now_ns);
	/* A request larger than the whole bucket waits for a full one and
	 * then takes all it needs: the level goes below zero and later
	 * requests wait that much longer, so the rate holds on average. */
	double need = tokens;
	if (l->tokens.rate_per_ns > 0 && need > l->tokens.capacity)
		need = l->tokens.capacity;
	uint64_t wr = wait_for(&l->requests, 1);
	uint64_t wt = wait_for(&l->tokens, need);
	uint64_t w = wr > wt ? wr : wt;
	if (w)
		return w;
	if (l->requests.rate_per_ns > 0)
		l->requests.level -= 1;
	if (l->tokens.rate_per_ns > 0)
		l->tokens.level -= tokens;
	return 0;
}

void limits_correct(struct limits *l, double estimated, double actual)
{
	if (l->tokens.rate_per_ns > 0 && actual >= 0) {
		l->tokens.level -= actual - estimated;
		if (l->tokens.level > l->tokens.capacity)
			l->tokens.level = l->tokens.capacity;
	}
}

void limits_follow(struct limits *l, uint64_t now_ns, double remaining_requests,
                   double remaining_tokens)
{
	refill(l, now_ns);
	if (l->requests.rate_per_ns > 0 && remaining_requests >= 0 && remaining_requests < l->requests.level)
		l->requests.level = remaining_requests;
	if (l->tokens.rate_per_ns > 0 && remaining_tokens >= 0 && remaining_tokens < l->tokens.level)
		l->tokens.level = remaining_tokens;
}

void limits_pause(struct limits *l, uint64_t until_ns)
{
	if (until_ns > l->paused_until_ns)
		l->paused_until_ns = until_ns;
}

/* The integer after "key": in body, or -1. */
static long number_after(const char *body, size_t len, const char *key)
{
	size_t klen = strlen(key);
	const char *p = body, *end = body + len;
	while ((p = memmem(p, (size_t)(end - p), key, klen))) {
		const char *q = p + klen;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q < end && *q == ':') {
			q++;
			while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
				q++;
			long v = 0;
			int digits = 0;
			while (q < end && *q >= '0' && *q <= '9' && digits < 9) {
				v = v * 10 + (*q++ - '0');
				digits++;
			}
			if (digits)
				return v;
		}
		p += klen;
	}
	return -1;
}

double limits_estimate_tokens(const char *body, size_t len, int max_tokens)
{
	double prompt = (double)len / 4;
	long completion = max_tokens > 0 ? max_tokens : -1;
	if (completion < 0 && body)
		completion = number_after(body, len, "\"max_completion_tokens\"");
	if (completion < 0 && body)
		completion = number_after(body, len, "\"max_tokens\"");
	if (completion < 0 && body)
		completion = number_after(body, len, "\"maxOutputTokens\"");
	if (completion < 0 && body)
		completion = number_after(body, len, "\"num_predict\"");
	return prompt + (completion >= 0 ? (double)completion : 256);
}
