/*
 * Streaming with a callback: each delta of the reply is handed over as its
 * event is parsed, on the engine's thread. The result then holds the whole
 * text, joined from the deltas.
 *
 * usage: stream BASE_URL
 */
#include <llmring.h>
#include <stdio.h>
#include <string.h>

/* What the callback collects; read by main only after the future completed. */
struct collected {
	char text[4096];
	size_t len;
	int deltas;
	char finish_reason[32];
};

/* docs:begin on_delta */
/* On the engine's thread, once per parsed event, never batched. The
 * delta's pointers are valid only during the call; text is not
 * NUL-terminated. Must not block. */
static void on_delta(void *user, const lr_delta *d)
{
	struct collected *c = user;
	if (d->text_len && c->len + d->text_len < sizeof(c->text)) {
		memcpy(c->text + c->len, d->text, d->text_len);
		c->len += d->text_len;
	}
	if (d->finish_reason)
		snprintf(c->finish_reason, sizeof(c->finish_reason), "%s", d->finish_reason);
	c->deltas++;
}
/* docs:end on_delta */

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

	/* docs:begin submit */
	struct collected c = {.len = 0};
	lr_request *rq = lr_request_new("anthropic/claude-haiku-4-5");
	lr_request_add_message(rq, LR_ROLE_USER, "Tell me a story.");
	lr_request_set_max_tokens(rq, 256);
	lr_request_on_delta(rq, on_delta, &c); /* asks for a stream */
	lr_future *f = lr_submit(eng, rq);
	if (!f || lr_future_wait(f, 30000) != 1) {
		fprintf(stderr, "no result in time\n");
		lr_future_release(f);
		lr_engine_destroy(eng);
		return 1;
	}
	const lr_result *r = lr_future_result(f);
	/* docs:end submit */

	int ok = r->error == LR_OK && r->streamed && r->text && c.len == r->text_len &&
	         memcmp(c.text, r->text, c.len) == 0;
	if (r->error)
		fprintf(stderr, "%s: %s\n", lr_error_name(r->error), r->error_message);
	printf("%d deltas, %zu bytes, finish_reason %s (result: %s), provider %s\n", c.deltas, c.len,
	       c.finish_reason, r->finish_reason ? r->finish_reason : "-", r->provider);
	printf("ttft %.2f ms, total %.2f ms, %lld output tokens\n", r->timings.ttft_ms,
	       r->timings.total_ms, (long long)r->usage.output_tokens);
	printf(ok ? "the deltas join to the result's text\n" : "MISMATCH\n");
	lr_future_release(f);
	lr_engine_destroy(eng);
	return ok ? 0 : 1;
}
