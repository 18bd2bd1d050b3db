/*
 * One request, blocking: lr_complete submits it and waits for the result.
 *
 * usage: complete BASE_URL     (e.g. http://127.0.0.1:8000/v1 of `llmring mock`)
 */
#include <llmring.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BASE_URL\n", argv[0]);
		return 2;
	}
	lr_config cfg = lr_config_default();
	cfg.base_url = argv[1]; /* copied by lr_engine_new: it may go away after */
	lr_engine *eng;
	int rc = lr_engine_new(&cfg, &eng);
	if (rc < 0) {
		fprintf(stderr, "lr_engine_new: %s\n", lr_strerror(rc));
		return 1;
	}

	lr_request *rq = lr_request_new("openai/gpt-4o-mini");
	rc = lr_request_add_message(rq, LR_ROLE_SYSTEM, "Answer in one line."); /* LR_EINVAL if rq is NULL */
	if (rc == 0)
		rc = lr_request_add_message(rq, LR_ROLE_USER, "What is io_uring?");
	if (rc == 0)
		rc = lr_request_set_max_tokens(rq, 64);
	if (rc < 0) {
		fprintf(stderr, "building the request: %s\n", lr_strerror(rc));
		lr_request_free(rq); /* never submitted: still ours */
		lr_engine_destroy(eng);
		return 1;
	}

	lr_future *f = lr_complete(eng, rq, 30000); /* takes rq over; NULL only when out of memory */
	int ok = 0;
	if (f) {
		const lr_result *r = lr_future_result(f); /* complete: never NULL here */
		if (r->error) {
			fprintf(stderr, "%s (HTTP %d): %s\n", lr_error_name(r->error), r->http_status,
			        r->error_message);
		} else {
			printf("reply: %s\n", r->text ? r->text : "");
			printf("finish_reason=%s input_tokens=%lld output_tokens=%lld attempts=%d\n",
			       r->finish_reason ? r->finish_reason : "-", (long long)r->usage.input_tokens,
			       (long long)r->usage.output_tokens, r->attempts);
			ok = 1;
		}
		lr_future_release(f); /* the result goes with it */
	}
	lr_engine_destroy(eng);
	return ok ? 0 : 1;
}
