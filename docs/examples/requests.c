/*
 * Three ways to say what to send: parameters by calls, a complete JSON
 * body of your own, and an embeddings request. Run together as a batch.
 *
 * usage: requests BASE_URL
 */
#include <llmring.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BASE_URL\n", argv[0]);
		return 2;
	}
	lr_config cfg = lr_config_default();
	cfg.base_url = argv[1];
	lr_engine *eng;
	int rc = lr_engine_new(&cfg, &eng);
	if (rc < 0) {
		fprintf(stderr, "lr_engine_new: %s\n", lr_strerror(rc));
		return 1;
	}
	lr_request *rqs[3];

	/* docs:begin params */
	/* Every setter returns 0 or a negative LR_E* code (LR_EINVAL for a
	 * value out of range or JSON that does not parse). */
	lr_request *rq = lr_request_new("gemini/gemini-2.0-flash");
	rc = lr_request_add_message(rq, LR_ROLE_SYSTEM, "Reply in JSON.");
	rc = rc ? rc : lr_request_add_message(rq, LR_ROLE_USER, "List three primes.");
	rc = rc ? rc : lr_request_set_max_tokens(rq, 100);
	rc = rc ? rc : lr_request_set_temperature(rq, 0.2);
	rc = rc ? rc : lr_request_set_seed(rq, 42);
	rc = rc ? rc : lr_request_add_stop(rq, "\n\n");
	rc = rc ? rc : lr_request_set_response_format(rq, "{\"type\":\"json_object\"}");
	rc = rc ? rc : lr_request_set_param(rq, "presence_penalty", "0.5"); /* any other field */
	rc = rc ? rc : lr_request_set_timeouts(rq, 5, 30, 120); /* connect, idle, total (s) */
	/* docs:end params */
	rqs[0] = rq;

	/* docs:begin body */
	/* A complete OpenAI-shaped body, copied. The request's model (when
	 * given) replaces the body's; message and parameter calls are refused
	 * at submission (LR_EINVAL) on a request with a body. */
	static const char body[] = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":20,"
	                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	rq = lr_request_new(NULL); /* the model comes from the body */
	rc = rc ? rc : lr_request_set_body(rq, body, strlen(body));
	/* docs:end body */
	rqs[1] = rq;

	/* docs:begin embeddings */
	rq = lr_request_new("openai/text-embedding-3-small");
	rc = rc ? rc : lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS);
	rc = rc ? rc : lr_request_add_input(rq, "first text");
	rc = rc ? rc : lr_request_add_input(rq, "second text");
	/* docs:end embeddings */
	rqs[2] = rq;

	if (rc < 0) {
		fprintf(stderr, "building the requests: %s\n", lr_strerror(rc));
		for (int i = 0; i < 3; i++)
			lr_request_free(rqs[i]);
		lr_engine_destroy(eng);
		return 1;
	}
	lr_future *fs[3] = {NULL};
	int ok = lr_run_batch(eng, rqs, 3, fs, 30000);
	for (int i = 0; i < 3; i++) {
		const lr_result *r = fs[i] ? lr_future_result(fs[i]) : NULL;
		if (!r)
			continue;
		if (r->error)
			printf("request %d: %s: %s\n", i, lr_error_name(r->error), r->error_message);
		else
			printf("request %d: %s via %s, HTTP %d, %zu body bytes%s\n", i,
			       r->model ? r->model : "?", r->provider, r->http_status, r->body_len,
			       r->body_is_json ? " of JSON" : "");
		lr_future_release(fs[i]);
	}
	printf("%d of 3 succeeded\n", ok);
	lr_engine_destroy(eng);
	return ok == 3 ? 0 : 1;
}
