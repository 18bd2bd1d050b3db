/*
 * Pull-style streaming for synchronous callers: lr_future_next_delta hands
 * out the deltas in order on the calling thread, no callback needed.
 *
 * usage: stream_pull BASE_URL
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
	cfg.base_url = argv[1];
	lr_engine *eng;
	int rc = lr_engine_new(&cfg, &eng);
	if (rc < 0) {
		fprintf(stderr, "lr_engine_new: %s\n", lr_strerror(rc));
		return 1;
	}

	lr_request *rq = lr_request_new("openai/gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "Tell me a story.");
	lr_request_set_stream(rq, 1); /* stream, for lr_future_next_delta */
	lr_future *f = lr_submit(eng, rq);
	if (!f) {
		lr_engine_destroy(eng);
		return 1;
	}

	/* docs:begin pull */
	lr_delta d;
	size_t bytes = 0;
	int deltas = 0, waits = 0;
	printf("reply: ");
	for (;;) {
		rc = lr_future_next_delta(f, &d, 1000);
		if (rc == 1) { /* d is valid until the next call on f */
			fwrite(d.text, 1, d.text_len, stdout);
			bytes += d.text_len;
			deltas++;
		} else if (rc == LR_ETIMEOUT && ++waits < 30) {
			continue; /* nothing for a second: the stream goes on */
		} else {
			break; /* 0: the stream ended and every delta was handed out */
		}
	}
	printf("\n");
	const lr_result *r = lr_future_result(f); /* complete once rc == 0 */
	/* docs:end pull */

	int ok = rc == 0 && r && r->error == LR_OK && bytes == r->text_len;
	if (r && r->error)
		fprintf(stderr, "%s: %s\n", lr_error_name(r->error), r->error_message);
	printf("%d deltas, %zu bytes, %s\n", deltas, bytes, ok ? "stream complete" : "FAILED");
	lr_future_release(f);
	lr_engine_destroy(eng);
	return ok ? 0 : 1;
}
