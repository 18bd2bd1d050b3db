/*
 * Tokens and cost: per request in the result, per model and in total from
 * the engine, prices from its table; a progress callback on the way.
 *
 * usage: usage BASE_URL
 */
#include <llmring.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

/* docs:begin progress */
/* Called on the engine's thread when counts changed (here: on every change,
 * progress_interval_ms < 0). Must not block. */
static void on_progress(void *user, const lr_progress *p)
{
	atomic_int *calls = user;
	atomic_fetch_add(calls, 1);
	(void)p->succeeded; /* p->submitted, queued, in_flight, failed, tokens, cost_usd ... */
}
/* docs:end progress */

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BASE_URL\n", argv[0]);
		return 2;
	}
	atomic_int progress_calls = 0;
	lr_config cfg = lr_config_default();
	cfg.base_url = argv[1];
	cfg.on_progress = on_progress;
	cfg.progress_user = &progress_calls;
	cfg.progress_interval_ms = -1;
	lr_engine *eng;
	int rc = lr_engine_new(&cfg, &eng);
	if (rc < 0) {
		fprintf(stderr, "lr_engine_new: %s\n", lr_strerror(rc));
		return 1;
	}

	/* docs:begin batch */
	/* Three requests for a priced model, one for a model the table lacks. */
	static const char *const models[] = {"openai/gpt-4o-mini", "openai/gpt-4o-mini",
	                                     "openai/gpt-4o-mini", "mock/any"};
	lr_request *rqs[4];
	lr_future *fs[4] = {NULL};
	for (int i = 0; i < 4; i++) {
		rqs[i] = lr_request_new(models[i]);
		lr_request_add_message(rqs[i], LR_ROLE_USER, "Count the words of this prompt.");
	}
	int ok = lr_run_batch(eng, rqs, 4, fs, 30000); /* takes the requests; how many succeeded */
	for (int i = 0; i < 4; i++) {
		const lr_result *r = fs[i] ? lr_future_result(fs[i]) : NULL;
		if (r)
			printf("%s: %lld in, %lld out, cost %s%.8f\n", r->model ? r->model : "?",
			       (long long)r->usage.input_tokens, (long long)r->usage.output_tokens,
			       r->cost_usd < 0 ? "unpriced " : "$", r->cost_usd < 0 ? 0.0 : r->cost_usd);
	}
	/* docs:end batch */

	/* docs:begin price */
	double in = 0, cached_in = 0, out = 0;
	if (lr_engine_price(eng, "gpt-4o-mini-2024-07-18", &in, &cached_in, &out) == 0)
		printf("gpt-4o-mini: $%.3f in, $%.3f cached, $%.3f out per million tokens\n", in,
		       cached_in, out);
	const lr_result *r0 = lr_future_result(fs[0]); /* NULL for a NULL future */
	double expect = -1; /* the cost lr_result.cost_usd should hold */
	if (r0) {
		int64_t uncached = r0->usage.input_tokens - r0->usage.cached_input_tokens;
		expect = ((double)uncached * in + (double)r0->usage.cached_input_tokens * cached_in +
		          (double)r0->usage.output_tokens * out) / 1e6;
	}
	/* docs:end price */

	/* docs:begin report */
	lr_usage_report total;
	lr_model_usage per_model[8];
	int n = lr_engine_usage(eng, &total, per_model, 8); /* any thread, any time */
	for (int i = 0; i < n && i < 8; i++)
		printf("model %s (%s): %llu requests, %lld in, %lld out, %s $%.8f\n", per_model[i].model,
		       per_model[i].provider, (unsigned long long)per_model[i].requests,
		       (long long)per_model[i].input_tokens, (long long)per_model[i].output_tokens,
		       per_model[i].priced ? "priced" : "unpriced", per_model[i].cost_usd);
	printf("total: %llu requests, %llu succeeded, %lld tokens, $%.8f, %d unpriced model(s)\n",
	       (unsigned long long)total.requests, (unsigned long long)total.succeeded,
	       (long long)(total.input_tokens + total.output_tokens), total.cost_usd,
	       total.unpriced_models);
	/* docs:end report */

	int good = ok == 4 && n == 2 && total.requests == 4 && total.unpriced_models == 1 &&
	           r0 && fabs(r0->cost_usd - expect) < 1e-12 && atomic_load(&progress_calls) > 0;
	printf("%s (%d progress calls)\n", good ? "costs add up" : "MISMATCH",
	       atomic_load(&progress_calls));
	for (int i = 0; i < 4; i++)
		lr_future_release(fs[i]);
	lr_engine_destroy(eng);
	return good ? 0 : 1;
}
