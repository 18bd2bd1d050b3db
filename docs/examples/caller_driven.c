/*
 * No engine thread: with drive_from_caller the ring belongs to the thread
 * that made the engine and moves only inside that thread's calls. First as
 * a host loop (poll the completion fd with the engine's next deadline, one
 * lr_engine_run turn, reap), then as a bulk consumer (lr_engine_reap_batch
 * drives the ring itself until enough are ready).
 *
 * usage: caller_driven BASE_URL
 */
#define _POSIX_C_SOURCE 200809L
#include <llmring.h>
#include <poll.h>
#include <stdio.h>

#define N 16

static void submit(lr_engine *eng, int n)
{
	for (int i = 0; i < n; i++) {
		lr_request *rq = lr_request_new("openai/gpt-4o-mini");
		lr_request_add_message(rq, LR_ROLE_USER, "hello");
		lr_future_release(lr_submit(eng, rq)); /* the reaped handle is another one */
	}
}

/* Releases n reaped futures; returns how many succeeded. */
static int consume(lr_future **done, int n)
{
	int ok = 0;
	for (int k = 0; k < n; k++) {
		ok += lr_future_result(done[k])->error == LR_OK;
		lr_future_release(done[k]);
	}
	return ok;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BASE_URL\n", argv[0]);
		return 2;
	}
	lr_config cfg = lr_config_default();
	cfg.base_url = argv[1];
	cfg.drive_from_caller = 1; /* this thread drives the ring */
	cfg.reap_completions = 1;
	lr_engine *eng;
	int rc = lr_engine_new(&cfg, &eng);
	if (rc < 0) {
		fprintf(stderr, "lr_engine_new: %s\n", lr_strerror(rc));
		return 1;
	}

	/* docs:begin host */
	submit(eng, N);
	/* From this call on the kernel signals the fd for every ring completion. */
	struct pollfd pfd = {.fd = lr_engine_completion_fd(eng), .events = POLLIN};
	int reaped = 0, ok = 0, turns = 0;
	while (reaped < N && turns++ < 100000) {
		int wait_ms = lr_engine_next_deadline_ms(eng); /* -1: nothing timed */
		if (poll(&pfd, 1, wait_ms) < 0)
			break;
		if (lr_engine_run(eng, 0) < 0) /* one turn, no waiting */
			break;
		lr_future *done[8];
		int n = lr_engine_reap(eng, done, 8, 0);
		if (n > 0) {
			ok += consume(done, n);
			reaped += n;
		}
	}
	printf("host loop: %d reaped, %d succeeded\n", reaped, ok);
	/* docs:end host */

	/* docs:begin bulk */
	submit(eng, N);
	int bulk = 0, bulk_ok = 0;
	while (bulk < N) {
		lr_future *done[N];
		/* Turns the ring until 4 are ready (or 10 s passed: then what there is). */
		int n = lr_engine_reap_batch(eng, done, N, 4, 10000);
		if (n <= 0)
			break; /* LR_E*, or nothing within 10 s */
		bulk_ok += consume(done, n);
		bulk += n;
	}
	printf("bulk: %d reaped, %d succeeded\n", bulk, bulk_ok);
	/* docs:end bulk */

	lr_engine_destroy(eng); /* on this thread, as every call that drives */
	return ok == N && bulk_ok == N ? 0 : 1;
}
