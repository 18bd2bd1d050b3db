/*
 * A conversation: the session keeps the history, sends all of it with each
 * new user message, and appends the reply once it succeeds.
 *
 * usage: session BASE_URL
 */
#include <llmring.h>
#include <stdio.h>
#include <stdlib.h>

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

	/* docs:begin turns */
	lr_session *s = lr_session_new(eng, "openai/gpt-4o-mini", "You are a terse assistant.");
	if (!s) {
		lr_engine_destroy(eng);
		return 1;
	}
	static const char *const questions[] = {"What is io_uring?", "Who wrote it?",
	                                        "Since which Linux version?"};
	int failed = 0;
	for (int i = 0; i < 3; i++) {
		lr_future *f = lr_session_send(s, questions[i]); /* one turn at a time */
		if (!f || lr_future_wait(f, 30000) != 1) {
			failed = 1;
		} else {
			const lr_result *r = lr_future_result(f);
			if (r->error) {
				/* A failed turn leaves the history as it was. */
				fprintf(stderr, "turn %d: %s\n", i + 1, lr_error_name(r->error));
				failed = 1;
			} else {
				/* The reply is in the history already. */
				printf("turn %d: %lld input tokens\n", i + 1, (long long)r->usage.input_tokens);
			}
		}
		lr_future_release(f);
	}
	char *history = lr_session_history(s); /* malloc'd JSON array: ours to free */
	if (history)
		printf("history: %s\n", history);
	int turns = lr_session_turns(s), had_history = history != NULL;
	free(history);
	lr_session_free(s);
	/* docs:end turns */

	printf("%d turns\n", turns);
	lr_engine_destroy(eng);
	return !failed && had_history && turns == 3 ? 0 : 1;
}
