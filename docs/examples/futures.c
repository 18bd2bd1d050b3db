/*
 * Many requests in flight at once, each a future. A then-callback sees
 * each result as its request completes (on the engine's thread), and
 * lr_wait_all gathers them.
 *
 * usage: futures BASE_URL
 */
#include <llmring.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define N 8

/* One per request, found again through the future's user data. */
struct job {
	int index;
	int error;
	int64_t output_tokens;
	double total_ms;
};

/* docs:begin then */
/* Runs once per future when it completes: on the engine's thread, before
 * lr_future_wait or lr_wait_all see the future complete. It may read the
 * result; it must not block, and it does not own f. */
static void on_complete(void *user, lr_future *f)
{
	atomic_int *completed = user;
	struct job *job = lr_future_user_data(f);
	const lr_result *r = lr_future_result(f);
	job->error = r->error;
	job->output_tokens = r->usage.output_tokens;
	job->total_ms = r->timings.total_ms;
	/* Atomic: a future that completed before lr_future_then runs its
	 * callback at once on the submitting thread, beside the engine's. */
	atomic_fetch_add(completed, 1);
}
/* docs:end then */

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BASE_URL\n", argv[0]);
		return 2;
	}
	lr_config cfg = lr_config_default();
	cfg.base_url = argv[1];
	cfg.max_in_flight = 4; /* the other four wait in the engine's queue */
	lr_engine *eng;
	int rc = lr_engine_new(&cfg, &eng);
	if (rc < 0) {
		fprintf(stderr, "lr_engine_new: %s\n", lr_strerror(rc));
		return 1;
	}

	/* docs:begin submit */
	struct job jobs[N];
	lr_future *fs[N];
	atomic_int completed = 0;
	for (int i = 0; i < N; i++) {
		char prompt[64];
		snprintf(prompt, sizeof(prompt), "Say something about the number %d.", i);
		jobs[i] = (struct job){.index = i, .error = -1};
		lr_request *rq = lr_request_new("openai/gpt-4o-mini");
		lr_request_add_message(rq, LR_ROLE_USER, prompt);
		lr_request_set_user_data(rq, &jobs[i]); /* comes back from lr_future_user_data */
		fs[i] = lr_submit(eng, rq); /* takes rq (even a NULL one); never blocks */
		if (fs[i] && lr_future_then(fs[i], on_complete, &completed) < 0)
			fprintf(stderr, "request %d: a second then-callback\n", i);
	}
	int done = lr_wait_all(fs, N, 30000); /* a NULL entry never counts as complete */
	/* docs:end submit */

	int succeeded = 0;
	for (int i = 0; i < N; i++) {
		if (jobs[i].error == LR_OK)
			succeeded++;
		else
			fprintf(stderr, "request %d: %s\n", i, lr_error_name(jobs[i].error));
		printf("request %d: %lld tokens in %.1f ms\n", jobs[i].index,
		       (long long)jobs[i].output_tokens, jobs[i].total_ms);
		lr_future_release(fs[i]); /* NULL is allowed */
	}
	lr_engine_stats st;
	lr_engine_get_stats(eng, &st);
	printf("%d of %d succeeded (%d complete, %d callbacks); %llu connections opened, %llu reused\n",
	       succeeded, N, done, atomic_load(&completed), (unsigned long long)st.connections_opened,
	       (unsigned long long)st.connections_reused);
	lr_engine_destroy(eng);
	return succeeded == N && atomic_load(&completed) == N ? 0 : 1;
}
