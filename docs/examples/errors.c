/*
 * Errors: every failure is a negative LR_E* code with a stable name
 * (lr_error_name) and a description (lr_strerror); a result carries the
 * code, a message, and the HTTP status when a response arrived. The mock
 * server is asked for faults with the x-mock-fault request header.
 *
 * usage: errors BASE_URL
 */
#include <llmring.h>
#include <stdio.h>
#include <string.h>

/* One request for the mock that fails as asked; no retries unless given. */
static lr_future *faulty(lr_engine *eng, const char *fault, int max_retries, double total_s)
{
	lr_request *rq = lr_request_new("openai/gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "hello");
	lr_request_add_header(rq, "x-mock-fault", fault);
	lr_request_set_max_retries(rq, max_retries);
	lr_request_set_timeouts(rq, 0, 0, total_s); /* <= 0: the engine's */
	return lr_submit(eng, rq);
}

/* Waits for f, prints its outcome, releases it; 1 when it failed with want. */
static int expect_error(const char *what, lr_future *f, int want)
{
	if (!f || lr_future_wait(f, 30000) != 1) {
		printf("%s: no result\n", what);
		lr_future_release(f);
		return 0;
	}
	const lr_result *r = lr_future_result(f);
	/* docs:begin report */
	if (r->error != LR_OK)
		printf("%s: %s (%d), HTTP %d, %d attempt(s): %s\n", what, lr_error_name(r->error), r->error,
		       r->http_status, r->attempts, r->error_message);
	/* docs:end report */
	int ok = r->error == want;
	lr_future_release(f);
	return ok;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BASE_URL\n", argv[0]);
		return 2;
	}
	int good = 1;

	/* docs:begin names */
	/* Codes, names and messages come from one list: LR_ERRNO_MAP. */
#define CHECK_CODE(code, value, name, text) \
	good &= strcmp(lr_error_name(LR_##code), name) == 0 && strcmp(lr_strerror(value), text) == 0;
	LR_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
	printf("%s / %s / %s\n", lr_error_name(LR_ETIMEOUT), lr_strerror(LR_ETIMEOUT),
	       lr_error_name(12345)); /* timeout / deadline exceeded / unknown_error */
	/* docs:end names */

	/* docs:begin check */
	/* Before any request: can an engine with this config reach the model? */
	char why[256];
	lr_config bare = lr_config_default(); /* no base URL: the public endpoints */
	int rc = lr_config_check_model(&bare, "anthropic/claude-haiku-4-5", why, sizeof(why));
	if (rc < 0)
		printf("check: %s: %s\n", lr_error_name(rc), why); /* auth_error without ANTHROPIC_API_KEY */
	/* docs:end check */
	good &= rc == LR_EAUTH;

	lr_config cfg = lr_config_default();
	cfg.base_url = argv[1];
	lr_engine *eng;
	rc = lr_engine_new(&cfg, &eng);
	if (rc < 0) {
		fprintf(stderr, "lr_engine_new: %s\n", lr_strerror(rc));
		return 1;
	}

	/* docs:begin refused */
	/* A request the engine refuses still gives a future, complete at once. */
	lr_future *f = lr_submit(eng, lr_request_new("openai/gpt-4o-mini")); /* no messages */
	good &= expect_error("refused", f, LR_EINVAL);
	/* docs:end refused */

	/* HTTP errors: the status and the provider's error body are kept. */
	good &= expect_error("429", faulty(eng, "429", 0, 0), LR_ERATELIMIT);
	good &= expect_error("500, one retry", faulty(eng, "500", 1, 0), LR_ESERVER);
	/* A response that is not JSON. */
	good &= expect_error("malformed", faulty(eng, "malformed", 0, 0), LR_EPROTO);
	/* slow-headers trickles the response head out: the total timeout ends it. */
	good &= expect_error("timeout", faulty(eng, "slow-headers", 0, 0.2), LR_ETIMEOUT);

	/* docs:begin cancel */
	f = faulty(eng, "slow-headers", 0, 0);
	if (f && lr_future_wait(f, 50) == 0) /* 0: not complete after 50 ms */
		lr_future_cancel(f); /* it still completes, once: with LR_ECANCELLED */
	good &= expect_error("cancelled", f, LR_ECANCELLED);
	/* docs:end cancel */

	lr_engine_destroy(eng);
	printf(good ? "every error as expected\n" : "UNEXPECTED\n");
	return good ? 0 : 1;
}
