/*
 * Allocation-failure sweep (issue 9; tests/alloc_fail.h, as SQLite's
 * test_malloc): each scenario runs once per N = 1, 2, ... with the Nth
 * counted allocation failing, until a run makes no allocation fail. Every
 * N up to SWEEP_EVERY runs; past it about SWEEP_SAMPLES evenly spread ones
 * (a stride), to stay within about a minute under ASan: only the TLS
 * scenarios get there (mbedTLS, linked statically here so that its
 * allocations count, makes ~27,000 per handshake). LLMRING_ALLOC_FAIL_FULL=1
 * runs every N (see env_long for the other knobs).
 *
 * Each run: lr_engine_new, the scenario's request, lr_engine_destroy. The
 * call that met the failure returns LR_ENOMEM (lr_engine_new, lr_submit's
 * NULL, the request builders), or the request ends with out_of_memory, or
 * it succeeds in full when the failure was recoverable (a success is
 * checked: text or tool call, usage, body, the deltas adding up to the
 * text). Then, with nothing failing, the same engine must serve the next
 * request. Every wait is bounded and a watchdog aborts a run that hangs;
 * LeakSanitizer (the ASan build) reports a leak of any run at exit.
 *
 * Scenarios (the table `scenarios`): engine new/destroy, requests to the
 * in-process mock in each dialect, whole, streamed and with tool calls,
 * the API's other ways to submit and collect, a retry (500 then 200 from
 * the scripted server), a session, TLS, and a plain HTTP call (body
 * parts copied, borrowed and from a file; the answer to a sink). The servers are started
 * exempt, so only the engine's (and its mbedTLS's) allocations count.
 */
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "alloc_fail.h"
#include "llmring.h"
#include "mock_server.h"
#include "test_server.h"

#define SWEEP_EVERY 120   /* every N up to here */
#define SWEEP_SAMPLES 120 /* then about this many, evenly spread */
#define SWEEP_MAX 1000000 /* a scenario still failing here is broken */
#define RUN_TIMEOUT_S 30  /* watchdog per run */
#define WAIT_MS 10000

enum kind { K_ENGINE, K_REQUEST, K_SESSION };
enum server { S_MOCK, S_RETRY, S_TLS };

struct scenario {
	const char *name;
	enum kind kind;
	enum server server;
	const char *model;   /* NULL: gpt-4o-mini */
	bool stream;         /* pulled with lr_future_next_delta */
	bool tools;          /* the mock answers with a tool call */
	bool persist;        /* every allocation from the Nth on fails */
	bool ca_file;        /* the engine reads a CA bundle */
	bool rate_limit;     /* requests go through the rate-limit queue */
	bool caller_driven;  /* lr_config.drive_from_caller */
	bool pair;           /* two requests at once, one slot: the second queues */
	bool embed;          /* an embeddings request */
	bool on_delta;       /* a delta callback (instead of pulling) */
	bool own_url;        /* lr_request_set_base_url */
	bool reap;           /* lr_config.reap_completions, reaped after the wait */
	bool batch;          /* lr_run_batch of three */
	bool http;           /* a plain HTTP call: body parts from bytes and a file, a sink */
};

static struct mock_server *mock, *tls_mock;
static struct test_server *retry_srv;
static char mock_url[64], tls_url[64], retry_url[64];
static char cert_dir[PATH_MAX], ca_path[PATH_MAX + 16];
static bool have_tls;
static int http_body_fd = -1; /* the middle of the http scenario's body (a memfd) */

/* Figures over the whole program. */
#define MAX_SITES 4096
static void *sites[MAX_SITES]; /* distinct failing call sites */
static int nsites;
static unsigned long paths[MAX_SITES]; /* distinct call paths to them */
static int npaths;
static long total_runs, total_enomem, total_recovered;
static int scenarios_done;

/* The scripted server answers the first request after each reset with a
 * retryable 500, everything else with 200. */
static atomic_uint retry_seen;

#define RETRY_BODY "{\"error\":{\"message\":\"try again\",\"type\":\"x\"}}\n"
static const char retry_500[] =
	"HTTP/1.1 500 Internal Server Error\r\n"
	"Content-Type: application/json\r\n"
	"retry-after-ms: 0\r\n"
	"Content-Length: 45\r\n"
	"\r\n" RETRY_BODY;
_Static_assert(sizeof(RETRY_BODY) - 1 == 45, "fix the Content-Length");

static void retry_handler(void *ctx, const struct ts_request *rq, struct ts_reply *reply)
{
	(void)ctx;
	(void)rq;
	bool first = atomic_fetch_add(&retry_seen, 1) == 0;
	reply->data = first ? retry_500 : ts_ok_response;
	reply->len = first ? sizeof(retry_500) - 1 : strlen(ts_ok_response);
	reply->action = TS_SEND;
}

/* Which scenario and N are running, for the watchdog. */
static const char *volatile cur_name = "";
static volatile long cur_n;

static void watchdog(int sig)
{
	(void)sig;
	char msg[160];
	int len = snprintf(msg, sizeof(msg), "\nalloc_fail: %s N=%ld still running after %d s (hang)\n",
	                   cur_name, cur_n, RUN_TIMEOUT_S);
	if (write(2, msg, (size_t)len) < 0)
		_exit(3);
	abort();
}

static int make_engine(const struct scenario *sc, lr_engine **eng)
{
	lr_config cfg = lr_config_default();
	cfg.max_retries = sc->server == S_RETRY ? 2 : 0;
	cfg.base_url = sc->server == S_TLS ? tls_url : sc->server == S_RETRY ? retry_url : mock_url;
	if (sc->ca_file || sc->server == S_TLS)
		cfg.ca_file = ca_path;
	cfg.drive_from_caller = sc->caller_driven;
	cfg.reap_completions = sc->reap;
	if (sc->pair)
		cfg.max_in_flight = 1;
	if (sc->rate_limit) {
		cfg.requests_per_minute = 60000;
		cfg.tokens_per_minute = 1000000;
	}
	cfg.connect_timeout_s = 5;
	cfg.total_timeout_s = 20;
	return lr_engine_new(&cfg, eng);
}

/* The deltas of a streamed run (static: the test's own allocations would
 * count too). */
static char streamed[65536];
static size_t streamed_len;

/*
 * One request; its outcome: 0, LR_ENOMEM, or another code after printing
 * why (a failure). A success must be whole.
 */
/* A whole success: text (or the tool call), usage, a JSON body, and for
 * a stream the deltas adding up to the text. NULL, or what is missing. */
static const char *incomplete(const struct scenario *sc, const lr_result *r)
{
	if (sc->http) {
		/* The sink (streamed[]) has the whole chat.completion. */
		if (r->http_status != 200 || r->body || !memmem(streamed, streamed_len, "\"chat.completion\"", 17) ||
		    streamed[streamed_len - 1] != '}')
			return "no body in the sink";
		return NULL;
	}
	if (sc->embed) {
		if (!r->body || strlen(r->body) != r->body_len || !r->body_is_json ||
		    !strstr(r->body, "\"embedding\"") || r->usage.input_tokens <= 0)
			return "no embedding";
		return NULL;
	}
	if (sc->tools) {
		if (r->tool_call_count != 1 || !r->tool_calls[0].name || !r->tool_calls[0].id ||
		    strcmp(r->tool_calls[0].name, "get_weather") || r->tool_calls[0].arguments_len == 0)
			return "no tool call";
	} else if (!r->text || r->text_len == 0 || strlen(r->text) != r->text_len) {
		return "no text";
	}
	if (r->usage.output_tokens <= 0)
		return "no usage";
	if (!r->body || strlen(r->body) != r->body_len || !r->body_is_json)
		return "no JSON body";
	if ((sc->stream || sc->on_delta) && !sc->tools &&
	    (streamed_len != r->text_len || memcmp(streamed, r->text, r->text_len)))
		return "the deltas do not add up to the text";
	return NULL;
}

/* An outcome: a TLS handshake mbedTLS broke by ignoring an allocation
 * failure of its own (see outcome). */
#define OUT_MBEDTLS_LOST 1
static long total_mbedtls_lost;
static int last_attempts;   /* of the last request that completed */
static int main_attempts;   /* of a run's own request (not the check after) */

/* The engine of the request running (for reaping). */
static lr_engine *cur_engine;

/* The future's outcome (see one_request); releases it. */
static int outcome(const struct scenario *sc, lr_future *f)
{
	if (lr_future_wait(f, WAIT_MS) != 1) {
		fprintf(stderr, "  the future did not complete in %d ms\n", WAIT_MS);
		lr_future_release(f);
		return LR_ETIMEOUT;
	}
	if (sc->reap) {
		/* The engine's reference comes back through the reap queue. */
		lr_future *got = NULL;
		int n = lr_engine_reap(cur_engine, &got, 1, WAIT_MS);
		if (n != 1 || got != f) {
			fprintf(stderr, "  lr_engine_reap gave %d futures, not this one\n", n);
			lr_future_release(f);
			return LR_EPROTO;
		}
		lr_future_release(got);
	}
	const lr_result *r = lr_future_result(f);
	int err = r->error;
	const char *bad;
	if (err == LR_ETLS_HANDSHAKE && alloc_fail_failed() > 0 && alloc_fail_in_mbedtls()) {
		/* mbedTLS 2.28 turns some of its own allocation failures into
		 * protocol errors (ECDH parameters: "ServerKeyExchange"), or
		 * drops them (ssl_calc_finished_tls_sha256 ignores tls_prf's):
		 * a wrong Finished, refused by either side. Not the engine's
		 * to see; counted apart. */
		err = OUT_MBEDTLS_LOST;
	} else if (err && err != LR_ENOMEM) {
		fprintf(stderr, "  error %s: %s\n", lr_error_name(err),
		        r->error_message ? r->error_message : "-");
	} else if (err == LR_ENOMEM && !r->error_message) {
		fprintf(stderr, "  out_of_memory without a message\n");
		err = LR_EPROTO;
	} else if (!err && (bad = incomplete(sc, r))) {
		fprintf(stderr, "  success with %s\n", bad);
		err = LR_EPROTO;
	}
	last_attempts = r->attempts;
	lr_future_release(f);
	return err;
}

static void on_delta(void *user, const lr_delta *d)
{
	(void)user;
	if (streamed_len + d->text_len <= sizeof(streamed)) {
		memcpy(streamed + streamed_len, d->text, d->text_len);
		streamed_len += d->text_len;
	}
}

static int sink(void *user, const char *data, size_t len)
{
	(void)user;
	if (streamed_len + len > sizeof(streamed))
		return LR_EPROTO;
	memcpy(streamed + streamed_len, data, len);
	streamed_len += len;
	return 0;
}

static void release_nothing(void *user, const void *data)
{
	(void)user;
	(void)data;
}

/* POST /v1/chat/completions as a plain HTTP call: the body in three parts
 * (copied, from a file, borrowed), the answer to a sink. */
static lr_request *build_http_request(int *rc)
{
	static const char head[] = "{\"model\":\"gpt-4o-mini\",";
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_POST, "/v1/chat/completions");
	if (!rq) {
		*rc = LR_ENOMEM;
		return NULL;
	}
	*rc = lr_request_add_header(rq, "X-Test", "1");
	if (!*rc)
		*rc = lr_request_add_body_bytes(rq, head, strlen(head), NULL, NULL);
	if (!*rc)
		*rc = lr_request_add_body_file(rq, http_body_fd, 0, -1);
	if (!*rc)
		*rc = lr_request_add_body_bytes(rq, "}", 1, release_nothing, NULL);
	if (!*rc)
		*rc = lr_request_on_response_body(rq, sink, NULL);
	if (*rc) {
		lr_request_free(rq);
		return NULL;
	}
	return rq;
}

static lr_request *build_request(const struct scenario *sc, int *rc)
{
	if (sc->http)
		return build_http_request(rc);
	lr_request *rq = lr_request_new(sc->model      ? sc->model
	                                : sc->embed ? "text-embedding-3-small"
	                                            : "gpt-4o-mini");
	if (!rq) {
		*rc = LR_ENOMEM;
		return NULL;
	}
	if (sc->embed) {
		*rc = lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS);
		if (!*rc)
			*rc = lr_request_add_input(rq, "some words to embed");
		if (*rc) {
			lr_request_free(rq);
			return NULL;
		}
		return rq;
	}
	*rc = lr_request_add_message(rq, LR_ROLE_USER, "hello there");
	if (!*rc)
		*rc = lr_request_set_max_tokens(rq, 64); /* Anthropic needs one */
	if (!*rc && sc->on_delta)
		*rc = lr_request_on_delta(rq, on_delta, NULL);
	if (!*rc && sc->own_url)
		*rc = lr_request_set_base_url(rq, mock_url);
	if (!*rc && sc->stream)
		*rc = lr_request_set_stream(rq, 1);
	if (!*rc && sc->tools)
		*rc = lr_request_add_tool(rq, "get_weather", "Forecast for a city",
		                          "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}");
	if (*rc) {
		lr_request_free(rq);
		return NULL;
	}
	return rq;
}

/* Two turns of a session; the second sends the first's history. */
static int session_turns(lr_engine *eng, const struct scenario *sc)
{
	lr_session *ss = lr_session_new(eng, sc->model ? sc->model : "gpt-4o-mini", "be brief");
	if (!ss)
		return LR_ENOMEM;
	int err = 0, turn;
	for (turn = 0; turn < 2 && !err; turn++) {
		lr_future *f = lr_session_send(ss, turn ? "and then?" : "hello there");
		err = f ? outcome(sc, f) : LR_ENOMEM;
	}
	if (!err) {
		char *h = lr_session_history(ss);
		if (!h) {
			err = LR_ENOMEM;
		} else {
			/* system, then user and assistant per turn */
			if (lr_session_turns(ss) != 2 || !strstr(h, "and then?")) {
				fprintf(stderr, "  a successful turn is missing from the history\n");
				err = LR_EPROTO;
			}
			free(h);
		}
	}
	lr_session_free(ss);
	return err;
}

static int one_request(lr_engine *eng, const struct scenario *sc)
{
	if (sc->kind == K_SESSION)
		return session_turns(eng, sc);
	bool stream = sc->stream;
	int rc;
	cur_engine = eng;
	streamed_len = 0;
	if (sc->batch) {
		/* Every request's own outcome counts (the call's is a count). */
		lr_request *rqs[3] = {NULL, NULL, NULL};
		lr_future *fs[3] = {NULL, NULL, NULL};
		for (int i = 0; i < 3; i++)
			if (!(rqs[i] = build_request(sc, &rc))) {
				for (int k = 0; k < i; k++)
					lr_request_free(rqs[k]);
				return rc;
			}
		int ok = lr_run_batch(eng, rqs, 3, fs, WAIT_MS);
		int err = ok < 0 ? ok : 0;
		for (int i = 0; i < 3; i++) {
			int one = fs[i] ? outcome(sc, fs[i]) : LR_ENOMEM;
			if (!err || (err == LR_ENOMEM && one != 0 && one != LR_ENOMEM))
				err = one;
		}
		return err;
	}
	lr_request *rq = build_request(sc, &rc);
	if (!rq)
		return rc;
	lr_future *f = lr_submit(eng, rq);
	if (!f)
		return LR_ENOMEM;
	if (sc->pair) {
		/* Both outcomes count; the second waits for the first's slot. */
		lr_request *rq2 = build_request(sc, &rc);
		lr_future *f2 = rq2 ? lr_submit(eng, rq2) : NULL;
		int first = outcome(sc, f);
		int second = f2 ? outcome(sc, f2) : rq2 ? LR_ENOMEM : rc;
		return first && first != LR_ENOMEM ? first : second ? second : first;
	}
	if (stream && !sc->on_delta) {
		lr_delta d;
		int n;
		while ((n = lr_future_next_delta(f, &d, WAIT_MS)) == 1) {
			if (streamed_len + d.text_len > sizeof(streamed)) {
				fprintf(stderr, "  more streamed text than expected\n");
				lr_future_release(f);
				return LR_EPROTO;
			}
			memcpy(streamed + streamed_len, d.text, d.text_len);
			streamed_len += d.text_len;
		}
		if (n != 0) {
			fprintf(stderr, "  lr_future_next_delta returned %s\n", lr_error_name(n));
			lr_future_release(f);
			return n;
		}
	}
	return outcome(sc, f);
}

static void note_path(unsigned long path)
{
	if (!path)
		return;
	for (int i = 0; i < npaths; i++)
		if (paths[i] == path)
			return;
	if (npaths < MAX_SITES)
		paths[npaths++] = path;
}

static void note_site(void *site)
{
	if (!site)
		return;
	for (int i = 0; i < nsites; i++)
		if (sites[i] == site)
			return;
	if (nsites < MAX_SITES)
		sites[nsites++] = site;
}

/*
 * Runs the scenario with the nth allocation failing (0: none). Returns how
 * many allocations were made to fail; fails the test on a wrong outcome.
 */
static long run_once(const struct scenario *sc, long n, long *calls)
{
	cur_name = sc->name;
	cur_n = n;
	alarm(RUN_TIMEOUT_S);
	lr_engine *eng = NULL;
	alloc_fail_arm(n, sc->persist);
	int rc = make_engine(sc, &eng);
	int out = rc;
	if (!rc && sc->kind == K_ENGINE) {
		lr_engine_destroy(eng); /* destroy is swept too */
		eng = NULL;
	} else if (!rc) {
		atomic_store(&retry_seen, 0);
		out = one_request(eng, sc);
		main_attempts = last_attempts;
	}
	long failed = alloc_fail_failed();
	*calls = alloc_fail_calls();
	void *site = alloc_fail_site();
	unsigned long path = alloc_fail_path();
	alloc_fail_arm(0, false);

	if (out == OUT_MBEDTLS_LOST)
		total_mbedtls_lost++;
	else if (out != 0 && out != LR_ENOMEM)
		fail_msg("%s N=%ld: %s (expected success or out_of_memory)", sc->name, n,
		         lr_error_name(out));
	if (out == LR_ENOMEM && failed == 0)
		fail_msg("%s N=%ld: out_of_memory with no allocation failing", sc->name, n);
	if (failed) {
		total_runs++;
		note_site(site);
		note_path(path);
		if (out == LR_ENOMEM)
			total_enomem++;
		else if (out == 0)
			total_recovered++;
	}
	if (eng) {
		/* The engine outlived the failure: it must still work. */
		atomic_store(&retry_seen, 0);
		int again = one_request(eng, sc);
		if (again != 0)
			fail_msg("%s N=%ld: the next request failed (%s)", sc->name, n, lr_error_name(again));
		lr_engine_destroy(eng);
	}
	alarm(0);
	return failed;
}

/* Environment: LLMRING_ALLOC_FAIL_ONLY=NAME runs one scenario,
 * LLMRING_ALLOC_FAIL_FROM=N starts at N, LLMRING_ALLOC_FAIL_FULL=1 runs
 * every N (minutes for TLS under ASan), LLMRING_ALLOC_FAIL_TRACE=1
 * prints each failing allocation's stack. */
static long env_long(const char *name, long dflt)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 10) : dflt;
}

static void sweep(const struct scenario *sc)
{
	const char *only = getenv("LLMRING_ALLOC_FAIL_ONLY");
	if (only && *only && strcmp(only, sc->name))
		skip();
	long calls, n;
	assert_int_equal(run_once(sc, 0, &calls), 0);
	if (sc->server == S_RETRY)
		assert_int_equal(main_attempts, 2); /* the retry path is what it sweeps */
	long clean_calls = calls, runs = 0, enomem_before = total_enomem;
	long recovered_before = total_recovered, lost_before = total_mbedtls_lost;
	int sites_before = nsites;
	/* Past SWEEP_EVERY a stride (odd, so it meets sites of either
	 * parity): the TLS runs make tens of thousands of allocations in
	 * mbedTLS, each run a handshake. */
	long stride = clean_calls > SWEEP_EVERY ? (clean_calls - SWEEP_EVERY) / SWEEP_SAMPLES | 1 : 1;
	if (env_long("LLMRING_ALLOC_FAIL_FULL", 0))
		stride = 1;
	/* Scenarios of about the same count sample different N. */
	long offset = 0;
	for (const char *c = sc->name; *c; c++)
		offset += (unsigned char)*c;
	offset %= stride;
	for (n = env_long("LLMRING_ALLOC_FAIL_FROM", 1); n <= SWEEP_MAX;
	     n += n < SWEEP_EVERY ? (n + 1 == SWEEP_EVERY ? 1 + offset : 1) : stride) {
		if (run_once(sc, n, &calls) == 0)
			break; /* the run ended before its nth allocation */
		runs++;
	}
	if (n > SWEEP_MAX)
		fail_msg("%s: still failing allocations at N=%d", sc->name, SWEEP_MAX);
	fprintf(stderr, "alloc_fail: %-12s %5ld allocations in a clean run, swept N=1..%ld "
	        "(stride %ld past %d): %ld runs, %ld out_of_memory, %ld recovered, %ld broken by "
	        "mbedTLS, %d new sites\n",
	        sc->name, clean_calls, n - 1, stride, SWEEP_EVERY, runs, total_enomem - enomem_before,
	        total_recovered - recovered_before, total_mbedtls_lost - lost_before,
	        nsites - sites_before);
	scenarios_done++;
}

/* The scenarios, one cmocka test each. */
static const struct scenario scenarios[] = {
	{.name = "engine", .kind = K_ENGINE},
	{.name = "engine+ca", .kind = K_ENGINE, .ca_file = true},
	{.name = "chat", .kind = K_REQUEST},
	{.name = "chat-persist", .kind = K_REQUEST, .persist = true},
	{.name = "stream", .kind = K_REQUEST, .stream = true},
	{.name = "stream-persist", .kind = K_REQUEST, .stream = true, .persist = true},
	{.name = "tools", .kind = K_REQUEST, .tools = true},
	{.name = "tools-stream", .kind = K_REQUEST, .tools = true, .stream = true},
	{.name = "anthropic-stream", .kind = K_REQUEST, .model = "anthropic/claude-haiku-4-5", .stream = true},
	{.name = "gemini-stream", .kind = K_REQUEST, .model = "gemini/gemini-2.0-flash", .stream = true},
	{.name = "ollama-stream", .kind = K_REQUEST, .model = "ollama/llama3", .stream = true},
	{.name = "anthropic", .kind = K_REQUEST, .model = "anthropic/claude-haiku-4-5"},
	{.name = "rate-limited", .kind = K_REQUEST, .rate_limit = true},
	{.name = "retry", .kind = K_REQUEST, .server = S_RETRY},
	{.name = "queued-pair", .kind = K_REQUEST, .pair = true},
	{.name = "batch", .kind = K_REQUEST, .batch = true},
	{.name = "embeddings", .kind = K_REQUEST, .embed = true},
	{.name = "on-delta", .kind = K_REQUEST, .stream = true, .on_delta = true},
	{.name = "request-url", .kind = K_REQUEST, .own_url = true},
	{.name = "reap", .kind = K_REQUEST, .reap = true},
	{.name = "anthropic-tools-stream", .kind = K_REQUEST, .model = "anthropic/claude-haiku-4-5",
	 .tools = true, .stream = true},
	{.name = "gemini-tools", .kind = K_REQUEST, .model = "gemini/gemini-2.0-flash", .tools = true},
	{.name = "caller-driven", .kind = K_REQUEST, .caller_driven = true},
	{.name = "session", .kind = K_SESSION},
	{.name = "tls", .kind = K_REQUEST, .server = S_TLS},
	{.name = "tls-stream", .kind = K_REQUEST, .server = S_TLS, .stream = true},
	{.name = "http-call", .kind = K_REQUEST, .http = true},
	{.name = "http-call-tls", .kind = K_REQUEST, .http = true, .server = S_TLS},
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static void test_scenario(void **state)
{
	const struct scenario *sc = *state;
	if (!have_tls && (sc->server == S_TLS || sc->ca_file))
		skip();
	sweep(sc);
}

static const char *source_dir(void)
{
	const char *env = getenv("LLMRING_SOURCE_DIR");
	return env ? env : LLMRING_SOURCE_DIR;
}

/* Test certificates (tests/certs/gen-certs.sh); false: no TLS scenario. */
static bool make_certs(void)
{
	char tmpl[] = "/tmp/llmring-oom-XXXXXX";
	if (!mkdtemp(tmpl))
		return false;
	snprintf(cert_dir, sizeof(cert_dir), "%s", tmpl);
	char cmd[PATH_MAX * 2 + 64];
	snprintf(cmd, sizeof(cmd), "bash %s/tests/certs/gen-certs.sh %s >/dev/null 2>&1", source_dir(),
	         cert_dir);
	if (system(cmd) != 0)
		return false;
	snprintf(ca_path, sizeof(ca_path), "%s/ca.crt", cert_dir);
	return true;
}

static int setup(void **s)
{
	(void)s;
	signal(SIGALRM, watchdog);
	alloc_fail_trace(env_long("LLMRING_ALLOC_FAIL_TRACE", 0) != 0);
	if (!ALLOC_FAIL_MBEDTLS)
		fprintf(stderr, "alloc_fail: no static mbedTLS (or objcopy): its allocations do not count\n");
	alloc_fail_exempt_begin();
	struct mock_options o;
	mock_options_default(&o);
	int rc = mock_server_start(&o, &mock);
	if (rc == 0)
		rc = test_server_start(retry_handler, NULL, &retry_srv);
	static const char middle[] = "\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]";
	http_body_fd = memfd_create("http-body", MFD_CLOEXEC);
	if (rc == 0 && (http_body_fd < 0 || write(http_body_fd, middle, strlen(middle)) != (ssize_t)strlen(middle)))
		rc = -1;
	have_tls = rc == 0 && make_certs();
	if (have_tls) {
		static char crt[PATH_MAX + 32], key[PATH_MAX + 32];
		snprintf(crt, sizeof(crt), "%s/server.crt", cert_dir);
		snprintf(key, sizeof(key), "%s/server.key", cert_dir);
		mock_options_default(&o);
		o.tls_cert_file = crt;
		o.tls_key_file = key;
		have_tls = mock_server_start(&o, &tls_mock) == 0;
	}
	alloc_fail_exempt_end();
	if (rc != 0)
		return -1;
	snprintf(mock_url, sizeof(mock_url), "http://127.0.0.1:%u", (unsigned)mock_server_port(mock));
	snprintf(retry_url, sizeof(retry_url), "http://127.0.0.1:%u/v1",
	         (unsigned)test_server_port(retry_srv));
	if (have_tls)
		snprintf(tls_url, sizeof(tls_url), "https://localhost:%u/v1",
		         (unsigned)mock_server_port(tls_mock));
	else
		fprintf(stderr, "alloc_fail: no test certificates (openssl?): TLS scenarios skipped\n");
	return 0;
}

static int teardown(void **s)
{
	(void)s;
	alloc_fail_exempt_begin();
	mock_server_stop(mock);
	if (tls_mock)
		mock_server_stop(tls_mock);
	test_server_stop(retry_srv);
	alloc_fail_exempt_end();
	if (http_body_fd >= 0)
		close(http_body_fd);
	if (cert_dir[0]) {
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", cert_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "alloc_fail: could not remove %s\n", cert_dir);
	}
	fprintf(stderr, "alloc_fail: %d scenarios, %ld runs with a failed allocation "
	        "(%ld out_of_memory, %ld recovered, %ld TLS handshakes mbedTLS broke), "
	        "%d distinct failing call sites, %d distinct call paths (%d frames)\n",
	        scenarios_done, total_runs, total_enomem, total_recovered, total_mbedtls_lost, nsites,
	        npaths, ALLOC_FAIL_DEPTH);
	return 0;
}

int main(void)
{
	struct CMUnitTest tests[NSCENARIOS];
	for (size_t i = 0; i < NSCENARIOS; i++)
		tests[i] = (struct CMUnitTest){.name = scenarios[i].name, .test_func = test_scenario,
		                               .initial_state = (void *)&scenarios[i]};
	return cmocka_run_group_tests(tests, setup, teardown);
}
