/*
 * The response cache (lr_config.cache_path) through the public API,
 * against the scripted server, which counts the requests that reach it:
 * what makes two requests one entry and what does not, streamed replay,
 * the modes, and the failures that must never fail a request (a corrupt
 * file, a full disk) or lose entries (two processes writing at once).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "llmring.h"
#include "test_server.h"

/* ---- the server ---------------------------------------------------------- */

#define CHUNK(delta, finish)                                                                    \
	"data: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"model\":\"m-1\","    \
	"\"choices\":[{\"index\":0,\"delta\":" delta ",\"finish_reason\":" finish "}]}\n\n"

static const char stream_body[] =
	CHUNK("{\"role\":\"assistant\",\"content\":\"Hel\"}", "null")
	CHUNK("{\"content\":\"lo \\u00e9\"}", "null")
	CHUNK("{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
	      "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\"}}]}", "null")
	CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]}", "null")
	CHUNK("{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\",\"type\":\"function\","
	      "\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]}", "null")
	CHUNK("{}", "\"tool_calls\"")
	"data: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"choices\":[],"
	"\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\n\n"
	"data: [DONE]\n\n";

struct server_ctx {
	_Atomic unsigned n;       /* requests that reached the server */
};

/* One reply per connection thread: the reply is borrowed until the
 * handler's next call on that connection. */
static _Thread_local char reply_buf[70000];

static void handler(void *arg, const struct ts_request *rq, struct ts_reply *reply)
{
	struct server_ctx *c = arg;
	unsigned n = atomic_fetch_add(&c->n, 1) + 1;
	const char *b = rq->body;
	int len;
	if (strstr(b, "srv:500")) {
		len = snprintf(reply_buf, sizeof(reply_buf), "HTTP/1.1 500 Internal Server Error\r\n"
		               "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
	} else if (strstr(b, "\"stream\":true") && strstr(b, "srv:cut")) {
		/* Half a stream, then the connection closes. */
		len = snprintf(reply_buf, sizeof(reply_buf), "HTTP/1.1 200 OK\r\n"
		               "Content-Type: text/event-stream\r\n\r\n%.*s", 200, stream_body);
		reply->action = TS_SEND_CLOSE;
	} else if (strstr(b, "\"stream\":true")) {
		len = snprintf(reply_buf, sizeof(reply_buf), "HTTP/1.1 200 OK\r\nx-request-id: req_s%u\r\n"
		               "Content-Type: text/event-stream\r\nContent-Length: %zu\r\n\r\n%s", n,
		               strlen(stream_body), stream_body);
	} else {
		/* The answer names the request's number: a second answer differs. */
		char pad[40000] = "";
		if (strstr(b, "srv:big"))
			memset(pad, 'x', sizeof(pad) - 1);
		char body[42000];
		int bl = snprintf(body, sizeof(body),
		                  "{\"id\":\"chatcmpl-%u\",\"object\":\"chat.completion\",\"model\":\"m-1\","
		                  "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
		                  "\"content\":\"answer %u%s\"},\"finish_reason\":\"stop\"}],"
		                  "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}",
		                  n, n, pad);
		len = snprintf(reply_buf, sizeof(reply_buf), "HTTP/1.1 200 OK\r\nx-request-id: req_%u\r\n"
		               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", n, bl,
		               body);
	}
	reply->data = reply_buf;
	reply->len = (size_t)len;
}

struct fixture {
	struct server_ctx ctx;
	struct test_server *srv;
	char url[64];
	char path[64];
	int logs;
	char last_log[256];
};

static struct fixture *fx;

static int setup(void **state)
{
	fx = calloc(1, sizeof(*fx));
	assert_int_equal(test_server_start(handler, &fx->ctx, &fx->srv), 0);
	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%u/v1", test_server_port(fx->srv));
	snprintf(fx->path, sizeof(fx->path), "/tmp/llmring-test-cache-%d.db", (int)getpid());
	*state = fx;
	return 0;
}

static void remove_db(const char *path)
{
	char p[80];
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

static int teardown(void **state)
{
	(void)state;
	test_server_stop(fx->srv);
	remove_db(fx->path);
	free(fx);
	return 0;
}

static int fresh(void **state)
{
	(void)state;
	remove_db(fx->path);
	atomic_store(&fx->ctx.n, 0);
	fx->logs = 0;
	fx->last_log[0] = '\0';
	return 0;
}

/* ThreadSanitizer cannot follow a child that starts threads after a
 * fork of a threaded process (the server's): those tests skip there. */
#if defined(__SANITIZE_THREAD__)
#define SKIP_FORK_UNDER_TSAN() skip()
#else
#define SKIP_FORK_UNDER_TSAN() ((void)0)
#endif

static void on_log(void *user, const char *msg)
{
	struct fixture *f = user;
	f->logs++;
	snprintf(f->last_log, sizeof(f->last_log), "%s", msg);
}

static lr_engine *engine(int mode)
{
	lr_config cfg = lr_config_default();
	cfg.base_url = fx->url;
	cfg.api_key = "k";
	cfg.max_retries = 0;
	cfg.cache_path = fx->path;
	cfg.cache_mode = mode;
	cfg.on_log = on_log;
	cfg.log_user = fx;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	return e;
}

static unsigned served(void)
{
	return atomic_load(&fx->ctx.n);
}

/* The reply text of body (a JSON request), and whether it was cached. */
static int ask(lr_engine *e, const char *body, char *text, size_t cap)
{
	lr_request *rq = lr_request_new(NULL);
	assert_int_equal(lr_request_set_body(rq, body, strlen(body)), 0);
	lr_future *f = lr_complete(e, rq, 10000);
	const lr_result *r = lr_future_result(f);
	assert_non_null(r);
	if (r->error)
		print_error("request failed: %s\n", r->error_message);
	assert_int_equal(r->error, LR_OK);
	snprintf(text, cap, "%s", r->text ? r->text : "");
	int cached = r->cached;
	lr_future_release(f);
	return cached;
}

/* ---- the key ------------------------------------------------------------- */

static void test_same_request_written_differently_is_one_entry(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	char first[64], again[64];
	assert_false(ask(e, "{\"model\":\"m\",\"temperature\":1.0,\"seed\":7,"
	                    "\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}]}",
	                 first, sizeof(first)));
	static const char *const same[] = {
		/* reordered keys, at both levels */
		"{\"messages\":[{\"content\":\"h\\u00e9\",\"role\":\"user\"}],\"seed\":7,\"temperature\":1.0,"
		"\"model\":\"m\"}",
		/* whitespace */
		" {\n \"model\" : \"m\" ,\t\"temperature\" : 1.0 , \"seed\" : 7 , \"messages\" : [ { \"role\" :"
		" \"user\" , \"content\" : \"h\\u00e9\" } ] }\n",
		/* 1 and 1.0, 7 and 7.0e0; the character raw and escaped */
		"{\"model\":\"m\",\"temperature\":1,\"seed\":7.0e0,\"messages\":[{\"role\":\"user\","
		"\"content\":\"h\xc3\xa9\"}]}",
		/* user, metadata and stream_options do not change the answer */
		"{\"model\":\"m\",\"temperature\":1.0,\"seed\":7,\"user\":\"u-42\",\"metadata\":{\"run\":3},"
		"\"stream_options\":{\"include_usage\":true},"
		"\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}]}",
	};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		assert_true(ask(e, same[i], again, sizeof(again)));
		assert_string_equal(again, first);
	}
	assert_int_equal(served(), 1);
	/* What does change the answer is a new entry each. */
	static const char *const other[] = {
		"{\"model\":\"m\",\"temperature\":0.5,\"seed\":7,\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}]}",
		"{\"model\":\"m\",\"temperature\":1.0,\"seed\":8,\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}]}",
		"{\"model\":\"m2\",\"temperature\":1.0,\"seed\":7,\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}]}",
		"{\"model\":\"m\",\"temperature\":1.0,\"seed\":7,\"messages\":[{\"role\":\"user\",\"content\":\"he\"}]}",
		"{\"model\":\"m\",\"temperature\":1.0,\"seed\":7,\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}],\"n\":1}",
	};
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
		assert_false(ask(e, other[i], again, sizeof(again)));
	assert_int_equal(served(), 1 + sizeof(other) / sizeof(other[0]));
	lr_cache_stats st;
	assert_int_equal(lr_engine_cache_stats(e, &st), 0);
	assert_int_equal(st.hits, 4);
	assert_int_equal(st.errors, 0);
	assert_int_equal(fx->logs, 0);
	lr_engine_destroy(e);
	/* Stored on disk: a new engine (a new process, as far as the file
	 * knows) answers from it. */
	unsigned before = served();
	e = engine(LR_CACHE_READWRITE);
	assert_true(ask(e, same[0], again, sizeof(again)));
	assert_string_equal(again, first);
	assert_int_equal(served(), before);
	lr_engine_destroy(e);
}

static void test_a_different_base_url_is_a_different_entry(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	char t[64];
	const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"base\"}]}";
	assert_false(ask(e, body, t, sizeof(t)));
	lr_request *rq = lr_request_new(NULL);
	lr_request_set_body(rq, body, strlen(body));
	char other[80];
	snprintf(other, sizeof(other), "http://127.0.0.1:%u/v2", test_server_port(fx->srv));
	lr_request_set_base_url(rq, other);
	lr_future *f = lr_complete(e, rq, 10000);
	assert_int_equal(lr_future_result(f)->cached, 0);
	lr_future_release(f);
	assert_int_equal(served(), 2);
	lr_engine_destroy(e);
}

/* ---- streams ------------------------------------------------------------- */

struct collected {
	char text[256];
	char ids[2][32], names[2][32], args[2][64];
	int calls;
	char finish[32];
};

static void collect(void *user, const lr_delta *d)
{
	struct collected *c = user;
	strncat(c->text, d->text, d->text_len);
	if (d->tool_index >= 0 && d->tool_index < 2) {
		int i = d->tool_index;
		if (i + 1 > c->calls)
			c->calls = i + 1;
		if (d->tool_id)
			snprintf(c->ids[i], sizeof(c->ids[i]), "%s", d->tool_id);
		if (d->tool_name)
			snprintf(c->names[i], sizeof(c->names[i]), "%s", d->tool_name);
		strncat(c->args[i], d->tool_arguments, d->tool_arguments_len);
	}
	if (d->finish_reason)
		snprintf(c->finish, sizeof(c->finish), "%s", d->finish_reason);
}

static const lr_result *streamed(lr_engine *e, const char *prompt, struct collected *c,
                                 lr_future **out)
{
	lr_request *rq = lr_request_new("openai/m");
	lr_request_add_message(rq, LR_ROLE_USER, prompt);
	lr_request_add_tool(rq, "get_weather", "the weather", NULL);
	memset(c, 0, sizeof(*c));
	lr_request_on_delta(rq, collect, c);
	*out = lr_complete(e, rq, 10000);
	return lr_future_result(*out);
}

static void test_streamed_replay_equals_the_original_stream(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	struct collected orig, again;
	lr_future *f1, *f2, *f3;
	const lr_result *r1 = streamed(e, "weather?", &orig, &f1);
	assert_int_equal(r1->error, LR_OK);
	assert_false(r1->cached);
	assert_string_equal(orig.text, "Hello \xc3\xa9");
	assert_int_equal(orig.calls, 2);
	const lr_result *r2 = streamed(e, "weather?", &again, &f2);
	assert_int_equal(r2->error, LR_OK);
	assert_true(r2->cached);
	assert_true(r2->streamed);
	assert_int_equal(served(), 1);
	assert_string_equal(again.text, orig.text);
	assert_int_equal(again.calls, orig.calls);
	for (int i = 0; i < orig.calls; i++) {
		assert_string_equal(again.ids[i], orig.ids[i]);
		assert_string_equal(again.names[i], orig.names[i]);
		assert_string_equal(again.args[i], orig.args[i]);
	}
	assert_string_equal(again.args[0], "{\"city\":\"Oslo\"}");
	assert_string_equal(again.finish, "tool_calls");
	/* The result too: text, calls, usage, the reply's own id. */
	assert_string_equal(r2->text, r1->text);
	assert_int_equal(r2->tool_call_count, 2);
	assert_string_equal(r2->tool_calls[1].name, "now");
	assert_int_equal(r2->usage.input_tokens, 3);
	assert_int_equal(r2->usage.output_tokens, 5);
	assert_string_equal(r2->request_id, "req_s1");
	assert_non_null(strstr(r2->body, "\"chatcmpl-s1\""));
	assert_true(r2->cost_usd == 0);
	/* The same request not streamed is the same entry. */
	lr_request *rq = lr_request_new("openai/m");
	lr_request_add_message(rq, LR_ROLE_USER, "weather?");
	lr_request_add_tool(rq, "get_weather", "the weather", NULL);
	f3 = lr_complete(e, rq, 10000);
	const lr_result *r3 = lr_future_result(f3);
	assert_true(r3->cached);
	assert_false(r3->streamed);
	assert_string_equal(r3->text, r1->text);
	assert_int_equal(r3->tool_call_count, 2);
	assert_string_equal(r3->tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
	assert_int_equal(served(), 1);
	lr_future_release(f1);
	lr_future_release(f2);
	lr_future_release(f3);
	lr_engine_destroy(e);
}

static void test_pull_stream_gets_the_replay(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	struct collected c;
	lr_future *f;
	streamed(e, "pull", &c, &f);
	lr_future_release(f);
	lr_request *rq = lr_request_new("openai/m");
	lr_request_add_message(rq, LR_ROLE_USER, "pull");
	lr_request_add_tool(rq, "get_weather", "the weather", NULL);
	lr_request_set_stream(rq, 1);
	f = lr_submit(e, rq);
	struct collected got = {0};
	lr_delta d;
	while (lr_future_next_delta(f, &d, 10000) == 1)
		collect(&got, &d);
	assert_true(lr_future_result(f)->cached);
	assert_string_equal(got.text, c.text);
	assert_string_equal(got.args[0], c.args[0]);
	lr_future_release(f);
	assert_int_equal(served(), 1);
	lr_engine_destroy(e);
}

static void test_failures_are_never_stored(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"srv:500\"}]}";
	for (int i = 0; i < 2; i++) {
		lr_request *rq = lr_request_new(NULL);
		lr_request_set_body(rq, body, strlen(body));
		lr_future *f = lr_complete(e, rq, 10000);
		assert_int_equal(lr_future_result(f)->error, LR_ESERVER);
		lr_future_release(f);
	}
	/* A stream that broke off half way is not a reply to keep. */
	for (int i = 0; i < 2; i++) {
		struct collected c;
		lr_future *f;
		const lr_result *r = streamed(e, "srv:cut", &c, &f);
		assert_int_not_equal(r->error, LR_OK);
		lr_future_release(f);
	}
	assert_int_equal(served(), 4);
	lr_cache_stats st;
	lr_engine_cache_stats(e, &st);
	assert_int_equal(st.hits, 0);
	assert_int_equal(st.stores, 0);
	lr_engine_destroy(e);
}

static void test_embeddings_are_cached(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	for (int i = 0; i < 2; i++) {
		lr_request *rq = lr_request_new("openai/emb");
		lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS);
		lr_request_add_input(rq, "vector me");
		lr_future *f = lr_complete(e, rq, 10000);
		assert_int_equal(lr_future_result(f)->error, LR_OK);
		assert_int_equal(lr_future_result(f)->cached, i);
		lr_future_release(f);
	}
	assert_int_equal(served(), 1);
	lr_engine_destroy(e);
}

/* Many at once, from two threads: every future completes once, the second
 * wave from the cache alone (the hand-offs between the caller, the cache
 * thread and the engine thread, which tools/tsan.sh runs this for). */
#define WAVE 200

struct wave {
	lr_engine *e;
	int first;
	lr_future *fs[WAVE / 2];
};

static void *submit_half(void *arg)
{
	struct wave *w = arg;
	for (int i = 0; i < WAVE / 2; i++) {
		char body[128];
		snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"w%d\"}]}",
		         w->first + i);
		lr_request *rq = lr_request_new(NULL);
		lr_request_set_body(rq, body, strlen(body));
		w->fs[i] = lr_submit(w->e, rq);
	}
	return NULL;
}

static int run_wave(lr_engine *e)
{
	struct wave w[2] = {{e, 0, {0}}, {e, WAVE / 2, {0}}};
	pthread_t t[2];
	for (int k = 0; k < 2; k++)
		pthread_create(&t[k], NULL, submit_half, &w[k]);
	int cached = 0;
	for (int k = 0; k < 2; k++) {
		pthread_join(t[k], NULL);
		assert_int_equal(lr_wait_all(w[k].fs, WAVE / 2, 20000), WAVE / 2);
		for (int i = 0; i < WAVE / 2; i++) {
			assert_int_equal(lr_future_result(w[k].fs[i])->error, LR_OK);
			cached += lr_future_result(w[k].fs[i])->cached;
			lr_future_release(w[k].fs[i]);
		}
	}
	return cached;
}

static void test_many_at_once_from_two_threads(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	assert_int_equal(run_wave(e), 0);
	assert_int_equal(served(), WAVE);
	assert_int_equal(run_wave(e), WAVE);
	assert_int_equal(served(), WAVE);
	lr_engine_destroy(e);
}

/* ---- modes ----------------------------------------------------------------- */

/* Plain HTTP calls (files, batches) go past the cache both ways: a
 * batch's status must never be answered from an old copy. */
static void test_http_calls_are_never_cached(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	const char *first = NULL;
	for (int i = 0; i < 2; i++) {
		lr_request *rq = lr_request_new_http("openai", LR_METHOD_POST, "/v1/chat/completions");
		assert_non_null(rq);
		static const char body[] = "{\"model\":\"m\",\"messages\":[]}";
		assert_int_equal(lr_request_add_body_bytes(rq, body, sizeof(body) - 1, NULL, NULL), 0);
		lr_future *f = lr_complete(e, rq, 10000);
		const lr_result *r = lr_future_result(f);
		assert_int_equal(r->error, LR_OK);
		assert_int_equal(r->cached, 0);
		assert_non_null(r->body);
		if (i == 0)
			first = strstr(r->body, "answer 1") ? "answer 1" : NULL;
		else
			assert_non_null(strstr(r->body, "answer 2"));
		lr_future_release(f);
	}
	assert_non_null(first);
	assert_int_equal(served(), 2);
	lr_engine_destroy(e);
}

static void test_modes(void **state)
{
	(void)state;
	char t1[64], t2[64];
	const char *a = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"mode a\"}]}";
	const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"mode b\"}]}";
	/* off: no file at all. */
	lr_engine *e = engine(LR_CACHE_OFF);
	assert_false(ask(e, a, t1, sizeof(t1)));
	assert_false(ask(e, a, t1, sizeof(t1)));
	lr_engine_destroy(e);
	assert_int_not_equal(access(fx->path, F_OK), 0);
	assert_int_equal(served(), 2);
	/* write: always asks, and stores what it got. */
	e = engine(LR_CACHE_WRITE);
	assert_false(ask(e, a, t1, sizeof(t1)));
	assert_false(ask(e, a, t2, sizeof(t2)));
	assert_string_not_equal(t1, t2);
	lr_engine_destroy(e);
	assert_int_equal(served(), 4);
	struct stat st_file;
	assert_int_equal(stat(fx->path, &st_file), 0);
	assert_int_equal(st_file.st_mode & 0777, 0600); /* replies may be private */
	/* read: answers from what write stored last, stores nothing new. */
	e = engine(LR_CACHE_READ);
	assert_true(ask(e, a, t1, sizeof(t1)));
	assert_string_equal(t1, t2);
	assert_false(ask(e, b, t1, sizeof(t1)));
	assert_false(ask(e, b, t1, sizeof(t1)));
	lr_cache_stats st;
	lr_engine_cache_stats(e, &st);
	assert_int_equal(st.stores, 0);
	lr_engine_destroy(e);
	assert_int_equal(served(), 6);
	/* readwrite: both. */
	e = engine(LR_CACHE_READWRITE);
	assert_false(ask(e, b, t1, sizeof(t1)));
	assert_true(ask(e, b, t2, sizeof(t2)));
	assert_string_equal(t1, t2);
	lr_engine_destroy(e);
	assert_int_equal(served(), 7);
	assert_int_equal(fx->logs, 0);
	/* A mode that is none of them is refused. */
	lr_config cfg = lr_config_default();
	cfg.cache_path = fx->path;
	cfg.cache_mode = 9;
	lr_engine *bad = NULL;
	assert_int_equal(lr_engine_new(&cfg, &bad), LR_EINVAL);
}

/* ---- failures of the cache -------------------------------------------------- */

static void test_a_corrupt_file_fails_no_request_and_is_reported_once(void **state)
{
	(void)state;
	FILE *f = fopen(fx->path, "w");
	for (int i = 0; i < 500; i++)
		fputs("this is not a SQLite database, whatever its name says\n", f);
	fclose(f);
	lr_engine *e = engine(LR_CACHE_READWRITE);
	char t[64];
	for (int i = 0; i < 3; i++)
		assert_false(ask(e, "{\"model\":\"m\",\"messages\":[]}", t, sizeof(t)));
	assert_int_equal(served(), 3);
	lr_engine_destroy(e);
	assert_int_equal(fx->logs, 1);
	assert_non_null(strstr(fx->last_log, "cannot be used"));
	assert_non_null(strstr(fx->last_log, fx->path));
}

/* In a child: a file-size limit (SIGXFSZ ignored, so writes fail with
 * EFBIG) just past the files as the first big response left them (so
 * whatever the page size, the first is stored and the next are not). */
static void test_a_full_disk_fails_no_request_and_is_reported_once(void **state)
{
	(void)state;
	SKIP_FORK_UNDER_TSAN();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		lr_engine *e = engine(LR_CACHE_READWRITE);
		char t[64], body[128];
		int bad = 0;
		for (int i = 0; i < 6; i++) {
			snprintf(body, sizeof(body),
			         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"srv:big %d\"}]}", i);
			bad |= ask(e, body, t, sizeof(t)); /* a miss, answered, every time */
			usleep(60000); /* past the cache's 50 ms write delay: a transaction each */
			lr_cache_stats st0;
			lr_engine_cache_stats(e, &st0);
			for (int tries = 0; i == 0 && st0.stores == 0 && tries < 500; tries++) {
				usleep(10000);
				lr_engine_cache_stats(e, &st0);
			}
			if (i == 0) {
				char wal[96];
				struct stat db_st, wal_st;
				snprintf(wal, sizeof(wal), "%s-wal", fx->path);
				off_t most = stat(fx->path, &db_st) == 0 ? db_st.st_size : 0;
				if (stat(wal, &wal_st) == 0 && wal_st.st_size > most)
					most = wal_st.st_size;
				struct rlimit rl = {(rlim_t)most + 4096, (rlim_t)most + 4096};
				bad |= st0.stores != 1 || setrlimit(RLIMIT_FSIZE, &rl) != 0;
			}
		}
		lr_cache_stats st;
		lr_engine_cache_stats(e, &st);
		lr_engine_destroy(e);
		bad |= fx->logs != 1 || !strstr(fx->last_log, "could not store") || st.errors == 0;
		if (bad)
			fprintf(stderr, "logs %d (%s), errors %lu\n", fx->logs, fx->last_log,
			        (unsigned long)st.errors);
		_exit(bad ? 1 : 0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

#define WRITERS 2
#define PER_WRITER 150

static void test_two_processes_write_one_cache_at_once(void **state)
{
	(void)state;
	SKIP_FORK_UNDER_TSAN();
	pid_t pids[WRITERS];
	for (int w = 0; w < WRITERS; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0) {
			/* Overlapping sets: prompts 0..149 and 75..224. */
			lr_engine *e = engine(LR_CACHE_READWRITE);
			lr_future *fs[PER_WRITER];
			for (int i = 0; i < PER_WRITER; i++) {
				char body[128];
				snprintf(body, sizeof(body),
				         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"p%d\"}]}",
				         w * PER_WRITER / 2 + i);
				lr_request *rq = lr_request_new(NULL);
				lr_request_set_body(rq, body, strlen(body));
				fs[i] = lr_submit(e, rq);
			}
			int bad = lr_wait_all(fs, PER_WRITER, 20000) != PER_WRITER;
			for (int i = 0; i < PER_WRITER; i++) {
				const lr_result *r = lr_future_result(fs[i]);
				if (r && r->error && !bad)
					fprintf(stderr, "writer %d: request %d: %s\n", w, i, r->error_message);
				bad |= !r || r->error != LR_OK;
				lr_future_release(fs[i]);
			}
			lr_cache_stats st;
			lr_engine_cache_stats(e, &st);
			lr_engine_destroy(e);
			bad |= st.errors != 0 || fx->logs != 0;
			if (bad)
				fprintf(stderr, "writer %d: errors %lu, logs %d (%s)\n", w,
				        (unsigned long)st.errors, fx->logs, fx->last_log);
			_exit(bad ? 1 : 0);
		}
	}
	for (int w = 0; w < WRITERS; w++) {
		int status;
		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	sqlite3 *db;
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	sqlite3_stmt *st;
	/* Two processes storing one key at the same moment may both keep a
	 * row (lookups take the newest): the distinct keys are what counts. */
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(DISTINCT key) FROM llmring_entries", -1,
	                                    &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), PER_WRITER * 3 / 2); /* every distinct prompt */
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* And every one of them is a hit now. */
	unsigned before = served();
	lr_engine *e = engine(LR_CACHE_READ);
	char t[64];
	for (int i = 0; i < PER_WRITER * 3 / 2; i += 7) {
		char body[128];
		snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"p%d\"}]}", i);
		assert_true(ask(e, body, t, sizeof(t)));
	}
	lr_engine_destroy(e);
	assert_int_equal(served(), before);
}

/* ---- from outside a request: cache-only lookups, stores under a key ------- */

/* A cache-only request for body: its error (0 for a hit), whether it was
 * cached, its key (zeros when it has none) and its reply text. */
static int look_up(lr_engine *e, const char *body, lr_cache_key *key, char *text, size_t cap)
{
	lr_request *rq = lr_request_new(NULL);
	assert_int_equal(lr_request_set_body(rq, body, strlen(body)), 0);
	assert_int_equal(lr_request_set_cache_only(rq, 1), 0);
	lr_future *f = lr_complete(e, rq, 10000);
	const lr_result *r = lr_future_result(f);
	assert_non_null(r);
	memset(key, 0, sizeof(*key));
	int kr = lr_future_cache_key(f, key);
	int err = r->error;
	if (!err) {
		assert_int_equal(r->cached, 1);
		assert_int_equal(kr, 0);
	} else {
		assert_int_equal(r->cached, 0);
		assert_true(r->cost_usd < 0); /* nothing was sent, nothing priced */
	}
	if (text)
		snprintf(text, cap, "%s", r->text ? r->text : "");
	lr_future_release(f);
	return err;
}

static const char stored_body[] =
	"{\"id\":\"chatcmpl-kept\",\"object\":\"chat.completion\",\"model\":\"m-batch\","
	"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"from a batch\"},"
	"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3}}";

static void test_a_cache_only_request_answers_hits_and_never_sends_a_miss(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"only\"}]}";
	lr_cache_key miss_key, hit_key;
	char t[64], fetched[64];
	assert_int_equal(look_up(e, body, &miss_key, t, sizeof(t)), LR_ENOTCACHED);
	assert_int_equal(served(), 0);
	assert_string_equal(miss_key.provider, "openai");
	assert_int_equal(miss_key.endpoint, LR_ENDPOINT_CHAT);
	/* The same request sent is stored; then the lookup finds it, under
	 * the same key. */
	assert_false(ask(e, body, fetched, sizeof(fetched)));
	assert_int_equal(look_up(e, body, &hit_key, t, sizeof(t)), 0);
	assert_string_equal(t, fetched);
	assert_memory_equal(hit_key.sha256, miss_key.sha256, 32);
	assert_int_equal(served(), 1);
	/* The miss is no request in the usage: the fetch and the hit are. */
	lr_usage_report u;
	lr_engine_usage(e, &u, NULL, 0);
	assert_int_equal(u.requests, 2);
	assert_int_equal(u.failed, 0);
	lr_engine_destroy(e);
	/* Written down: a new engine's lookup finds it too. */
	e = engine(LR_CACHE_READ);
	assert_int_equal(look_up(e, body, &hit_key, t, sizeof(t)), 0);
	assert_string_equal(t, fetched);
	lr_engine_destroy(e);
	assert_int_equal(served(), 1);
}

static void test_a_response_stored_under_a_key_answers_later_requests(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"batched\"}]}";
	/* The same request written another way has the same key. */
	const char *same = "{ \"messages\" : [{\"content\":\"batched\",\"role\":\"user\"}], \"model\":\"m\"}";
	lr_cache_key key;
	char t[64];
	assert_int_equal(look_up(e, body, &key, NULL, 0), LR_ENOTCACHED);
	assert_int_equal(lr_engine_cache_store(e, &key, "req_batch_1", stored_body,
	                                       sizeof(stored_body) - 1), 1);
	/* Found at once (held in memory until written), sent or not. */
	assert_true(ask(e, same, t, sizeof(t)));
	assert_string_equal(t, "from a batch");
	assert_int_equal(look_up(e, same, &key, t, sizeof(t)), 0);
	/* Once flushed it is in the file, for any other connection. */
	assert_int_equal(lr_engine_cache_flush(e, 10000), 1);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *st_rows = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*), max(request_id) FROM llmring_entries",
	                                    -1, &st_rows, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st_rows), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st_rows, 0), 1);
	assert_string_equal((const char *)sqlite3_column_text(st_rows, 1), "req_batch_1");
	sqlite3_finalize(st_rows);
	sqlite3_close(db);
	lr_engine_destroy(e);
	assert_int_equal(served(), 0);
	/* And on disk, with its request id. */
	e = engine(LR_CACHE_READWRITE);
	lr_request *rq = lr_request_new(NULL);
	lr_request_set_body(rq, body, strlen(body));
	lr_future *f = lr_complete(e, rq, 10000);
	const lr_result *r = lr_future_result(f);
	assert_int_equal(r->error, LR_OK);
	assert_int_equal(r->cached, 1);
	assert_string_equal(r->request_id, "req_batch_1");
	assert_string_equal(r->model, "m-batch");
	lr_future_release(f);
	lr_cache_stats st;
	lr_engine_cache_stats(e, &st);
	assert_int_equal(st.hits, 1);
	lr_engine_destroy(e);
	assert_int_equal(served(), 0);
	assert_int_equal(fx->logs, 0);
}

static void test_what_cannot_be_stored_is_refused(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	lr_cache_key key;
	assert_int_equal(look_up(e, "{\"model\":\"m\",\"messages\":[]}", &key, NULL, 0), LR_ENOTCACHED);
	static const char not_json[] = "{\"id\":\"x\",";
	assert_int_equal(lr_engine_cache_store(e, &key, NULL, not_json, sizeof(not_json) - 1), LR_EINVAL);
	assert_int_equal(lr_engine_cache_store(e, NULL, NULL, stored_body, 10), LR_EINVAL);
	lr_cache_key bad = key;
	snprintf(bad.provider, sizeof(bad.provider), "nobody");
	assert_int_equal(lr_engine_cache_store(e, &bad, NULL, stored_body, sizeof(stored_body) - 1),
	                 LR_EINVAL);
	bad = key;
	bad.endpoint = 7;
	assert_int_equal(lr_engine_cache_store(e, &bad, NULL, stored_body, sizeof(stored_body) - 1),
	                 LR_EINVAL);
	/* An HTTP call is never cached, so never cache-only. */
	lr_request *call = lr_request_new_http("openai", LR_METHOD_GET, "/v1/batches");
	assert_int_equal(lr_request_set_cache_only(call, 1), LR_EINVAL);
	lr_request_free(call);
	lr_engine_destroy(e);
}

static void test_cache_only_and_stores_follow_the_mode(void **state)
{
	(void)state;
	const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"moded\"}]}";
	lr_cache_key key;
	char t[64];
	/* write: never looks up (a miss, with its key), stores. */
	lr_engine *e = engine(LR_CACHE_WRITE);
	assert_int_equal(look_up(e, body, &key, NULL, 0), LR_ENOTCACHED);
	assert_string_equal(key.provider, "openai");
	assert_int_equal(lr_engine_cache_store(e, &key, NULL, stored_body, sizeof(stored_body) - 1), 1);
	assert_int_equal(look_up(e, body, &key, NULL, 0), LR_ENOTCACHED);
	lr_engine_destroy(e);
	/* read: finds what write stored, stores nothing. */
	e = engine(LR_CACHE_READ);
	assert_int_equal(look_up(e, body, &key, t, sizeof(t)), 0);
	assert_string_equal(t, "from a batch");
	const char *other = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"unstored\"}]}";
	lr_cache_key other_key;
	assert_int_equal(look_up(e, other, &other_key, NULL, 0), LR_ENOTCACHED);
	assert_int_equal(lr_engine_cache_store(e, &other_key, NULL, stored_body, sizeof(stored_body) - 1),
	                 0);
	lr_engine_destroy(e);
	e = engine(LR_CACHE_READWRITE);
	assert_int_equal(look_up(e, other, &other_key, NULL, 0), LR_ENOTCACHED);
	lr_engine_destroy(e);
	/* off, and no cache at all: every lookup misses, without a key. */
	for (int off = 0; off < 2; off++) {
		lr_config cfg = lr_config_default();
		cfg.base_url = fx->url;
		cfg.api_key = "k";
		cfg.cache_path = off ? fx->path : NULL;
		cfg.cache_mode = off ? LR_CACHE_OFF : 0;
		assert_int_equal(lr_engine_new(&cfg, &e), 0);
		lr_request *rq = lr_request_new(NULL);
		lr_request_set_body(rq, body, strlen(body));
		lr_request_set_cache_only(rq, 1);
		lr_future *f = lr_complete(e, rq, 10000);
		assert_int_equal(lr_future_result(f)->error, LR_ENOTCACHED);
		assert_int_equal(lr_future_cache_key(f, &key), LR_EINVAL);
		lr_future_release(f);
		assert_int_equal(lr_engine_cache_store(e, &other_key, NULL, stored_body,
		                                       sizeof(stored_body) - 1), 0);
		assert_int_equal(lr_engine_cache_flush(e, 0), 1);
		lr_engine_destroy(e);
	}
	assert_int_equal(served(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_same_request_written_differently_is_one_entry, fresh),
		cmocka_unit_test_setup(test_a_different_base_url_is_a_different_entry, fresh),
		cmocka_unit_test_setup(test_streamed_replay_equals_the_original_stream, fresh),
		cmocka_unit_test_setup(test_pull_stream_gets_the_replay, fresh),
		cmocka_unit_test_setup(test_failures_are_never_stored, fresh),
		cmocka_unit_test_setup(test_embeddings_are_cached, fresh),
		cmocka_unit_test_setup(test_many_at_once_from_two_threads, fresh),
		cmocka_unit_test_setup(test_http_calls_are_never_cached, fresh),
		cmocka_unit_test_setup(test_modes, fresh),
		cmocka_unit_test_setup(test_a_corrupt_file_fails_no_request_and_is_reported_once, fresh),
		cmocka_unit_test_setup(test_a_full_disk_fails_no_request_and_is_reported_once, fresh),
		cmocka_unit_test_setup(test_two_processes_write_one_cache_at_once, fresh),
		cmocka_unit_test_setup(test_a_cache_only_request_answers_hits_and_never_sends_a_miss, fresh),
		cmocka_unit_test_setup(test_a_response_stored_under_a_key_answers_later_requests, fresh),
		cmocka_unit_test_setup(test_what_cannot_be_stored_is_refused, fresh),
		cmocka_unit_test_setup(test_cache_only_and_stores_follow_the_mode, fresh),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
