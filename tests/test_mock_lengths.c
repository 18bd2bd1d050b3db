/*
 * The mock as a server to measure (issue 12), part two: reply lengths
 * (max-token fields honoured exactly with --ignore-eos or vLLM's
 * "ignore_eos", in every dialect) and OpenAI's legacy /v1/completions,
 * whole and streamed, parsed as JSON. Part one is test_mock_capacity.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/json.h"

#include "mock_client.h"

/* ------------------------------------------------------------------ */
/* max_tokens exactly                                                  */

struct dialect_case {
	const char *name;
	const char *path, *stream_path;
	const char *body;        /* printf format: %u is the max-token value */
	const char *stream_body;
	const char *usage_path;  /* the completion tokens in the whole reply */
	const char *finish;      /* the whole reply's finish, as text */
	const char *token_event; /* one occurrence per streamed token */
};

static const struct dialect_case cases[] = {
	{"openai max_tokens", "/v1/chat/completions", "/v1/chat/completions",
	 "{\"max_tokens\":%u,\"ignore_eos\":true,\"messages\":[]}",
	 "{\"max_tokens\":%u,\"stream\":true,\"messages\":[]}", "usage.completion_tokens",
	 "\"finish_reason\":\"length\"", "\"delta\":{\"content\":\""},
	{"openai max_completion_tokens", "/v1/chat/completions", "/v1/chat/completions",
	 "{\"max_completion_tokens\":%u,\"messages\":[]}",
	 "{\"max_completion_tokens\":%u,\"stream\":true,\"messages\":[]}",
	 "usage.completion_tokens", "\"finish_reason\":\"length\"", "\"delta\":{\"content\":\""},
	{"anthropic", "/v1/messages", "/v1/messages", "{\"max_tokens\":%u,\"messages\":[]}",
	 "{\"max_tokens\":%u,\"stream\":true,\"messages\":[]}", "usage.output_tokens",
	 "\"stop_reason\":\"max_tokens\"", "\"type\":\"text_delta\""},
	{"ollama", "/api/chat", "/api/chat",
	 "{\"stream\":false,\"options\":{\"num_predict\":%u},\"messages\":[]}",
	 "{\"options\":{\"num_predict\":%u},\"messages\":[]}", "eval_count",
	 "\"done_reason\":\"length\"", "\"done\":false"},
	{"gemini", "/v1beta/models/g:generateContent",
	 "/v1beta/models/g:streamGenerateContent?alt=sse",
	 "{\"contents\":[],\"generationConfig\":{\"maxOutputTokens\":%u}}",
	 "{\"contents\":[],\"generationConfig\":{\"maxOutputTokens\":%u}}",
	 "usageMetadata.candidatesTokenCount", "\"finishReason\":\"MAX_TOKENS\"", "data: "},
	{"completions", "/v1/completions", "/v1/completions",
	 "{\"prompt\":\"hi\",\"max_tokens\":%u}",
	 "{\"prompt\":\"hi\",\"max_tokens\":%u,\"stream\":true}", "usage.completion_tokens",
	 "\"finish_reason\":\"length\"", "\"finish_reason\":null"},
};

/* With --ignore-eos. */
static void max_tokens_is_honoured_exactly_in_every_dialect(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = 4;
	o.ignore_eos = 1;
	struct mock_server *s = start_mock(&o);
	uint16_t port = mock_server_port(s);
	const unsigned asked[] = {1, 4, 37};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const struct dialect_case *dc = &cases[k];
		for (size_t a = 0; a < sizeof(asked) / sizeof(asked[0]); a++) {
			char body[256];
			struct reply r;
			snprintf(body, sizeof(body), dc->body, asked[a]);
			roundtrip(port, dc->path, body, &r);
			printf("# %s %u\n", dc->name, asked[a]);
			assert_int_equal(r.status, 200);
			assert_int_equal(json_int_at(r.body, r.body_len, dc->usage_path), asked[a]);
			assert_non_null(strstr(r.body, dc->finish));
			reply_free(&r);
			snprintf(body, sizeof(body), dc->stream_body, asked[a]);
			roundtrip(port, dc->stream_path, body, &r);
			assert_int_equal(r.status, 200);
			assert_true(r.complete);
			assert_int_equal(count_str(r.body, dc->token_event), asked[a]);
			reply_free(&r);
		}
	}
	mock_server_stop(s);
}

/* Without --ignore-eos, vLLM's "ignore_eos":true asks for it per request;
 * otherwise `tokens` is where the reply stops, a max-token field only cuts. */
static void ignore_eos_in_the_body_makes_max_tokens_exact(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = 4;
	struct mock_server *s = start_mock(&o);
	uint16_t port = mock_server_port(s);
	struct reply r;
	roundtrip(port, "/v1/completions", "{\"prompt\":\"p\",\"max_tokens\":30,\"ignore_eos\":true}",
		  &r);
	assert_int_equal(json_int_at(r.body, r.body_len, "usage.completion_tokens"), 30);
	reply_free(&r);
	roundtrip(port, "/v1/chat/completions",
		  "{\"messages\":[],\"max_tokens\":4,\"ignore_eos\":true}", &r);
	assert_int_equal(json_int_at(r.body, r.body_len, "usage.completion_tokens"), 4);
	assert_non_null(strstr(r.body, "\"finish_reason\":\"length\""));
	reply_free(&r);
	roundtrip(port, "/v1/chat/completions", "{\"messages\":[],\"max_tokens\":30}", &r);
	assert_int_equal(json_int_at(r.body, r.body_len, "usage.completion_tokens"), 4);
	assert_non_null(strstr(r.body, "\"finish_reason\":\"stop\""));
	reply_free(&r);
	roundtrip(port, "/v1/messages", "{\"max_tokens\":2,\"messages\":[]}", &r);
	assert_int_equal(json_int_at(r.body, r.body_len, "usage.output_tokens"), 2);
	reply_free(&r);
	mock_server_stop(s);
}

static void without_max_tokens_the_length_is_tokens_and_it_stops(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = 6;
	o.ignore_eos = 1;
	struct mock_server *s = start_mock(&o);
	struct reply r;
	roundtrip(mock_server_port(s), "/v1/completions", "{\"prompt\":\"a b c\"}", &r);
	assert_int_equal(json_int_at(r.body, r.body_len, "usage.completion_tokens"), 6);
	assert_int_equal(json_int_at(r.body, r.body_len, "usage.prompt_tokens"), 3);
	char *fin = choice0_string(r.body, r.body_len, "finish_reason");
	assert_string_equal(fin, "stop");
	free(fin);
	reply_free(&r);
	roundtrip(mock_server_port(s), "/api/chat",
		  "{\"stream\":false,\"options\":{\"num_predict\":-1},\"messages\":[]}", &r);
	assert_int_equal(json_int_at(r.body, r.body_len, "eval_count"), 6);
	reply_free(&r);
	mock_server_stop(s);
}

static void max_tokens_above_the_cap_gets_the_cap(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	struct mock_server *s = start_mock(&o);
	struct reply r;
	roundtrip(mock_server_port(s), "/v1/completions",
		  "{\"prompt\":\"x\",\"max_tokens\":999999999999,\"ignore_eos\":true}", &r);
	assert_int_equal(json_int_at(r.body, r.body_len, "usage.completion_tokens"), 1000000);
	char *text = choice0_string(r.body, r.body_len, "text");
	assert_int_equal(count_words(text), 1000000);
	free(text);
	reply_free(&r);
	mock_server_stop(s);
}

/* An unpaced stream longer than the mock's send buffer mark waits for
 * the client (it is not built in memory at once) and arrives whole. */
static void a_long_unpaced_stream_arrives_whole(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.ignore_eos = 1;
	struct mock_server *s = start_mock(&o);
	struct reply r;
	roundtrip(mock_server_port(s), "/v1/completions",
		  "{\"prompt\":\"x\",\"max_tokens\":20000,\"stream\":true,"
		  "\"stream_options\":{\"include_usage\":true}}", &r);
	assert_true(r.complete);
	assert_int_equal(count_str(r.body, "\"finish_reason\":null"), 20000);
	assert_non_null(strstr(r.body, "\"completion_tokens\":20000"));
	assert_non_null(strstr(r.body, "data: [DONE]\n\n"));
	reply_free(&r);
	mock_server_stop(s);
}

/* ------------------------------------------------------------------ */
/* /v1/completions                                                     */

static void completions_whole_reply_has_the_text_completion_shape(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	struct mock_server *s = start_mock(&o);
	struct reply r;
	roundtrip(mock_server_port(s), "/v1/completions",
		  "{\"model\":\"m-7b\",\"prompt\":[\"one two\",\"three\"],\"max_tokens\":5}", &r);
	assert_int_equal(r.status, 200);
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, r.body, r.body_len), 0);
	assert_true(json_string_eq(&d, json_object_get(&d, 0, "id"), "cmpl-mock-1"));
	assert_true(json_string_eq(&d, json_object_get(&d, 0, "object"), "text_completion"));
	assert_true(json_string_eq(&d, json_object_get(&d, 0, "model"), "m-7b"));
	int64_t v;
	assert_true(json_get_int(&d, json_object_get(&d, 0, "created"), &v) && v > 0);
	int ch = json_object_get(&d, 0, "choices");
	assert_int_equal(d.tok[ch].size, 1);
	assert_true(json_get_int(&d, json_object_get(&d, ch + 1, "index"), &v) && v == 0);
	assert_true(json_string_eq(&d, json_object_get(&d, ch + 1, "finish_reason"), "length"));
	int logprobs = json_object_get(&d, ch + 1, "logprobs");
	assert_true(logprobs >= 0 && d.tok[logprobs].type == JSON_PRIMITIVE); /* null */
	char *text = json_dup_string(&d, json_object_get(&d, ch + 1, "text"));
	assert_int_equal(count_words(text), 5);
	free(text);
	assert_true(json_get_int(&d, json_path(&d, 0, "usage.prompt_tokens"), &v) && v == 3);
	assert_true(json_get_int(&d, json_path(&d, 0, "usage.completion_tokens"), &v) && v == 5);
	assert_true(json_get_int(&d, json_path(&d, 0, "usage.total_tokens"), &v) && v == 8);
	json_doc_free(&d);
	reply_free(&r);
	/* Without a prompt: OpenAI's 400. */
	roundtrip(mock_server_port(s), "/v1/completions", "{\"max_tokens\":5}", &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "\"type\":\"invalid_request_error\""));
	reply_free(&r);
	mock_server_stop(s);
}

/* Splits an SSE body into its data: payloads; returns how many. */
static size_t sse_payloads(char *body, char **out, size_t max)
{
	size_t n = 0;
	for (char *p = body; (p = strstr(p, "data: ")) && n < max;) {
		p += 6;
		char *e = strstr(p, "\n\n");
		assert_non_null(e);
		*e = '\0';
		out[n++] = p;
		p = e + 2;
	}
	return n;
}

static void completions_stream_sends_chunks_finish_usage_and_done(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	/* The text is a function of the request number: request 1 of each. */
	struct mock_server *s = start_mock(&o);
	struct reply whole, r;
	roundtrip(mock_server_port(s), "/v1/completions", "{\"prompt\":\"p\",\"max_tokens\":4}",
		  &whole);
	char *whole_text = choice0_string(whole.body, whole.body_len, "text");
	mock_server_stop(s);
	s = start_mock(&o);
	roundtrip(mock_server_port(s), "/v1/completions",
		  "{\"prompt\":\"p\",\"max_tokens\":4,\"stream\":true,"
		  "\"stream_options\":{\"include_usage\":true}}", &r);
	assert_int_equal(r.status, 200);
	char *ev[16];
	size_t n = sse_payloads(r.body, ev, 16);
	assert_int_equal(n, 4 + 1 + 1 + 1); /* tokens, finish, usage, [DONE] */
	char text[256] = "";
	for (size_t i = 0; i < 6; i++) {
		struct json_doc d = {0};
		assert_int_equal(json_parse(&d, ev[i], strlen(ev[i])), 0);
		assert_true(json_string_eq(&d, json_object_get(&d, 0, "id"), "cmpl-mock-1"));
		assert_true(json_string_eq(&d, json_object_get(&d, 0, "object"), "text_completion"));
		int ch = json_object_get(&d, 0, "choices");
		int usage = json_object_get(&d, 0, "usage");
		if (i < 5) {
			assert_int_equal(d.tok[ch].size, 1);
			assert_true(d.tok[usage].type == JSON_PRIMITIVE); /* null */
			int fin = json_object_get(&d, ch + 1, "finish_reason");
			if (i < 4)
				assert_true(d.tok[fin].type == JSON_PRIMITIVE); /* null */
			else
				assert_true(json_string_eq(&d, fin, "length"));
			char piece[64];
			assert_true(json_get_string(&d, json_object_get(&d, ch + 1, "text"), piece,
						    sizeof(piece)) >= 0);
			strcat(text, piece);
		} else {
			assert_int_equal(d.tok[ch].size, 0);
			int64_t v;
			assert_true(json_get_int(&d, json_path(&d, 0, "usage.completion_tokens"), &v));
			assert_int_equal(v, 4);
		}
		json_doc_free(&d);
	}
	assert_string_equal(ev[6], "[DONE]");
	assert_string_equal(text, whole_text); /* the pieces concatenate to the whole text */
	free(whole_text);
	reply_free(&whole);
	reply_free(&r);
	mock_server_stop(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(max_tokens_is_honoured_exactly_in_every_dialect),
		cmocka_unit_test(ignore_eos_in_the_body_makes_max_tokens_exact),
		cmocka_unit_test(without_max_tokens_the_length_is_tokens_and_it_stops),
		cmocka_unit_test(max_tokens_above_the_cap_gets_the_cap),
		cmocka_unit_test(a_long_unpaced_stream_arrives_whole),
		cmocka_unit_test(completions_whole_reply_has_the_text_completion_shape),
		cmocka_unit_test(completions_stream_sends_chunks_finish_usage_and_done),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
