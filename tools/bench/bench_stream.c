/*
 * Client CPU per streamed SSE event through the whole path (HTTP, SSE,
 * JSON, delta callback), as BRIEF.md defines it: the mock as a process of
 * its own sending one event per chunk, concurrency 64; CPU of this process
 * divided by (requests x events per request). Also the peak RSS with many
 * concurrent streams.
 *
 * usage: bench_stream LLMRING [REQUESTS] [TOKENS] [CONCURRENCY] [ITL_MS] [MODEL]
 * ITL_MS 0 lets the mock coalesce events into fewer TCP sends; 1 or more
 * sends every event on its own. MODEL picks the dialect the mock speaks
 * (gpt-4o-mini, anthropic/..., ollama/..., gemini/...). With CONCURRENCY
 * in the thousands and a slow ITL_MS it measures memory per open stream.
 */
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "llmring.h"

static pid_t mock_pid;

static unsigned long long deltas;
static const char *model = "gpt-4o-mini";

static void on_delta(void *user, const lr_delta *d)
{
	(void)user;
	(void)d;
	deltas++;
}

static int run(lr_engine *e, int n, int concurrency)
{
	int submitted = 0, done = 0, failed = 0;
	lr_future *out[256];
	while (done < n) {
		while (submitted < n && submitted - done < 2 * concurrency) {
			lr_request *rq = lr_request_new(model);
			lr_request_add_message(rq, LR_ROLE_USER, "Write one short sentence about the sea.");
			lr_request_on_delta(rq, on_delta, NULL);
			lr_future_release(lr_submit(e, rq));
			submitted++;
		}
		int want = submitted - done < concurrency ? submitted - done : concurrency;
		int k = lr_engine_reap_batch(e, out, 256, want, 60000);
		if (k <= 0)
			break;
		for (int i = 0; i < k; i++) {
			if (lr_future_result(out[i])->error && failed++ < 3)
				fprintf(stderr, "  %s\n", lr_future_result(out[i])->error_message);
			lr_future_release(out[i]);
		}
		done += k;
	}
	return failed;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_stream LLMRING [REQUESTS] [TOKENS] [CONCURRENCY] [ITL_MS]\n");
		return 2;
	}
	int n = argc > 2 ? atoi(argv[2]) : 5000;
	const char *tokens = argc > 3 ? argv[3] : "100";
	int c = argc > 4 ? atoi(argv[4]) : 64;
	const char *itl = argc > 5 ? argv[5] : "0";
	if (argc > 6)
		model = argv[6];
	/* Thousands of streams need as many descriptors (the mock inherits it). */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	char url[128];
	char *extra[] = {"--tokens", (char *)tokens, "--itl-ms", (char *)itl, NULL};
	mock_pid = bench_spawn_mock(argv[1], extra, url, sizeof(url));
	/* The origin only: each dialect adds its own path (/v1/messages, ...). */
	char *path = strstr(url + 7, "/");
	if (path)
		*path = '\0';
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.max_in_flight = (unsigned)c;
	cfg.ring_entries = c > 256 ? 4096 : 256;
	cfg.reap_completions = 1;
	cfg.drive_from_caller = 1;
	lr_engine *e = NULL;
	if (lr_engine_new(&cfg, &e))
		return 1;
	run(e, 200, c < 200 ? c : 200); /* warm up the pool */
	deltas = 0;
	struct rusage before;
	getrusage(RUSAGE_SELF, &before);
	double c0 = bench_self_cpu_s(), t0 = bench_now_s();
	int failed = run(e, n, c);
	double cpu = bench_self_cpu_s() - c0, wall = bench_now_s() - t0;
	/* Events per request as the mock sends them. OpenAI: role, one per
	 * token, the finish chunk, the usage chunk, [DONE]. Anthropic:
	 * message_start, block start, ping, one per token, block stop,
	 * message_delta, message_stop. Ollama: one line per token and the done
	 * line. Gemini: one chunk per token. */
	const char *provider = lr_model_provider(model, NULL);
	int extra_events = !strcmp(provider, "anthropic") ? 6 : !strcmp(provider, "ollama") ? 1
	                   : !strcmp(provider, "gemini")  ? 0 : 4;
	double events = (double)n * (atoi(tokens) + extra_events);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("%s: streams %d (failed %d), tokens %s, concurrency %d, itl %s ms: %.2f s, %.0f events/s\n",
	       provider, n, failed, tokens, c, itl, wall, events / wall);
	double user = (double)(ru.ru_utime.tv_sec - before.ru_utime.tv_sec) +
	              (double)(ru.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1e6;
	printf("client CPU per streamed event: %.3f us (%.1f us per stream); deltas delivered %llu\n",
	       cpu * 1e6 / events, cpu * 1e6 / n, deltas);
	printf("of which user space: %.3f us per event, kernel %.3f us\n", user * 1e6 / events,
	       (cpu - user) * 1e6 / events);
	int open_streams = n < c ? n : c;
	printf("peak RSS %ld KiB; %.1f KiB more than before the run = %.2f KiB per open stream (%d)\n",
	       ru.ru_maxrss, (double)(ru.ru_maxrss - before.ru_maxrss),
	       (double)(ru.ru_maxrss - before.ru_maxrss) / open_streams, open_streams);
	lr_engine_destroy(e);
	kill(mock_pid, SIGINT);
	waitpid(mock_pid, NULL, 0);
	return 0;
}
