/*
 * Rate limits as token buckets (requests and tokens per minute), owned by
 * the engine thread. A request is admitted when both buckets hold what it
 * needs; otherwise the caller learns how long until they will.
 */
#ifndef LR_RATELIMIT_H
#define LR_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bucket {
	double rate_per_ns;        /* refill; 0: unlimited */
	double capacity;           /* the most it holds (one second's allowance) */
	double level;              /* may go below 0 after a correction */
};

struct limits {
	struct bucket requests, tokens;
	uint64_t refilled_ns;      /* when the levels were last brought up to date */
	uint64_t paused_until_ns;  /* a 429's Retry-After: nothing before then */
};

void limits_init(struct limits *l, double rpm, double tpm, uint64_t now_ns);
bool limits_enabled(const struct limits *l);
/* Takes one request and `tokens` when both are there: returns 0. Else
 * takes nothing and returns the nanoseconds to wait (at least 1). */
uint64_t limits_admit(struct limits *l, uint64_t now_ns, double tokens);
/* The usage reported differs from the estimate taken: settle it. */
void limits_correct(struct limits *l, double estimated, double actual);
/* The provider says what remains (x-ratelimit-remaining-*): never hold
 * more than that. Negative values are "not said". */
void limits_follow(struct limits *l, uint64_t now_ns, double remaining_requests,
                   double remaining_tokens);
/* A 429 with Retry-After: admit nothing until then. */
void limits_pause(struct limits *l, uint64_t until_ns);

/* A request's token estimate before sending: prompt bytes / 4 plus the
 * completion budget named in the body (max_tokens or
 * max_completion_tokens), 256 when it names none. */
double limits_estimate_tokens(const char *body, size_t len, int max_tokens);

#endif
