/*
 * A host event loop: the engine runs on its own thread and queues each
 * completed future; the completion fd wakes the host's poll(), and
 * lr_engine_reap hands the futures out on the host's thread. Also the
 * engine's user data, its log callback and its ring mode.
 *
 * usage: host_loop BASE_URL
 */
#define _POSIX_C_SOURCE 200809L
#include <llmring.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>

#define N 8

struct app {
	int reaped, succeeded;
};

/* The library never prints: its diagnostics come here, on the engine's
 * thread, one line without a newline. */
static void on_log(void *user, const char *message)
{
	(void)user;
	fprintf(stderr, "llmring: %s\n", message);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BASE_URL\n", argv[0]);
		return 2;
	}
	struct app app = {0};
	/* docs:begin config */
	lr_config cfg = lr_config_default();
	cfg.base_url = argv[1];
	cfg.reap_completions = 1; /* completed futures go to lr_engine_reap */
	cfg.user_data = &app;     /* never touched by the engine */
	cfg.on_log = on_log;
	lr_engine *eng;
	int rc = lr_engine_new(&cfg, &eng);
	if (rc < 0) {
		fprintf(stderr, "lr_engine_new: %s\n", lr_strerror(rc));
		return 1;
	}
	struct app *a = lr_engine_user_data(eng); /* == &app */
	printf("ring mode %s, llmring %s\n", lr_engine_ring_mode(eng), lr_version());
	/* docs:end config */

	/* docs:begin loop */
	for (intptr_t i = 0; i < N; i++) {
		lr_request *rq = lr_request_new("openai/gpt-4o-mini");
		lr_request_add_message(rq, LR_ROLE_USER, "hello");
		lr_request_set_user_data(rq, (void *)i);
		/* The reaped handle is a reference of its own: this one can go now. */
		lr_future_release(lr_submit(eng, rq));
	}
	struct pollfd pfd = {.fd = lr_engine_completion_fd(eng), .events = POLLIN};
	while (a->reaped < N) {
		if (poll(&pfd, 1, 10000) <= 0)
			break; /* nothing for 10 s (or poll failed): give up */
		lr_future *done[4];
		int n = lr_engine_reap(eng, done, 4, 0); /* 0: no wait; the fd stays readable
		                                           * while anything is left */
		for (int k = 0; k < n; k++) {
			const lr_result *r = lr_future_result(done[k]);
			a->succeeded += r->error == LR_OK;
			a->reaped++;
			printf("request %d: %s\n", (int)(intptr_t)lr_future_user_data(done[k]),
			       lr_error_name(r->error));
			lr_future_release(done[k]); /* each reaped handle once */
		}
	}
	/* docs:end loop */

	printf("reaped %d, %d succeeded\n", a->reaped, a->succeeded);
	lr_engine_destroy(eng);
	return a->succeeded == N ? 0 : 1;
}
