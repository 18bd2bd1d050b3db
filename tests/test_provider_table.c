/*
 * The table of provider rows as a specification: every row is complete,
 * each provider's base URL and key come from where its row says (given,
 * its environment variables, its default; OLLAMA_HOST as the Ollama CLI
 * reads it), its key goes in its own header, and a response's headers are
 * read by the names its row gives after OpenAI's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmring.h"
#include "provider/provider.h"

/* Every variable a row names, cleared so the machine's own do not leak in. */
static void clear_provider_environment(void)
{
	for (int p = 0; p < PROVIDER_COUNT; p++) {
		const struct provider_row *row = provider_row((enum provider)p);
		if (row->base_env)
			unsetenv(row->base_env);
		if (row->key_env)
			unsetenv(row->key_env);
	}
}

static int setup(void **state)
{
	clear_provider_environment();
	return 0;
}

static void every_row_is_complete(void **state)
{
	for (int p = 0; p < PROVIDER_COUNT; p++) {
		const struct provider_row *row = provider_row((enum provider)p);
		assert_non_null(row->name);
		assert_non_null(row->path);
		if (row->key_form == KEY_HEADER)
			assert_non_null(row->key_header);
		/* Either the body is read raw, or parsed and translated. */
		if (row->parse_body) {
			assert_null(row->build_chat);
		} else {
			assert_non_null(row->build_chat);
			assert_non_null(row->parse_error);
			assert_non_null(row->parse_reply);
		}
	}
}

static void an_unknown_provider_gets_openai_row(void **state)
{
	assert_ptr_equal(provider_row(PROVIDER_COUNT), provider_row(PROVIDER_OPENAI));
}

static void each_model_prefix_routes_to_its_row(void **state)
{
	for (int p = 0; p < PROVIDER_COUNT; p++) {
		char model[64];
		snprintf(model, sizeof(model), "%s/some-model", provider_row((enum provider)p)->name);
		const char *name;
		size_t name_len;
		assert_int_equal(provider_route(model, strlen(model), &name, &name_len), p);
		assert_string_equal(name, "some-model");
	}
}

static void the_default_endpoint_needs_the_key_variable(void **state)
{
	struct provider_endpoint ep;
	char why[200] = "";
	assert_int_equal(provider_endpoint_resolve(PROVIDER_OPENAI, NULL, NULL, &ep, why, sizeof(why)), 0);
	assert_string_equal(ep.base, "https://api.openai.com/v1");
	assert_null(ep.key);
	assert_true(ep.needs_key);
	setenv("OPENAI_API_KEY", "sk-env", 1);
	assert_int_equal(provider_endpoint_resolve(PROVIDER_OPENAI, "", "", &ep, why, sizeof(why)), 0);
	assert_string_equal(ep.key, "sk-env");
	assert_false(ep.needs_key);
	clear_provider_environment();
}

static void a_base_variable_replaces_the_default_and_needs_no_key(void **state)
{
	struct provider_endpoint ep;
	char why[200] = "";
	setenv("ANTHROPIC_BASE_URL", "http://proxy.local:8080", 1);
	assert_int_equal(provider_endpoint_resolve(PROVIDER_ANTHROPIC, NULL, NULL, &ep, why, sizeof(why)), 0);
	assert_string_equal(ep.base, "http://proxy.local:8080");
	assert_false(ep.needs_key); /* may be a local server that takes none */
	clear_provider_environment();
}

static void a_given_base_and_key_apply_to_every_provider(void **state)
{
	struct provider_endpoint ep;
	char why[200] = "";
	setenv("GEMINI_BASE_URL", "http://ignored", 1);
	for (int p = 0; p < PROVIDER_COUNT; p++) {
		assert_int_equal(provider_endpoint_resolve((enum provider)p, "http://given", "k", &ep, why,
		                                           sizeof(why)),
		                 0);
		assert_string_equal(ep.base, "http://given");
		assert_string_equal(ep.key, "k");
		assert_false(ep.needs_key);
	}
	clear_provider_environment();
}

static void under_a_given_base_each_provider_keeps_its_own_key(void **state)
{
	struct provider_endpoint ep;
	char why[200] = "";
	setenv("GEMINI_API_KEY", "g-key", 1);
	assert_int_equal(provider_endpoint_resolve(PROVIDER_GEMINI, "http://given", NULL, &ep, why, sizeof(why)), 0);
	assert_string_equal(ep.key, "g-key");
	assert_int_equal(provider_endpoint_resolve(PROVIDER_OPENAI, "http://given", NULL, &ep, why, sizeof(why)), 0);
	assert_null(ep.key);
	assert_false(ep.needs_key);
	clear_provider_environment();
}

static void mock_needs_a_base_url(void **state)
{
	struct provider_endpoint ep;
	char why[200] = "";
	assert_int_equal(provider_endpoint_resolve(PROVIDER_MOCK, NULL, NULL, &ep, why, sizeof(why)), LR_EINVAL);
	assert_non_null(strstr(why, "LLMRING_MOCK_URL"));
	setenv("LLMRING_MOCK_URL", "http://127.0.0.1:9", 1);
	assert_int_equal(provider_endpoint_resolve(PROVIDER_MOCK, NULL, NULL, &ep, why, sizeof(why)), 0);
	assert_string_equal(ep.base, "http://127.0.0.1:9");
	clear_provider_environment();
}

static void ollama_host_is_read_as_the_ollama_cli_reads_it(void **state)
{
	static const char *const cases[][2] = {
		{"myhost", "http://myhost:11434"},
		{"myhost:1234", "http://myhost:1234"},
		{"0.0.0.0", "http://127.0.0.1:11434"},
		{"0.0.0.0:8000", "http://127.0.0.1:8000"},
		{"https://ollama.example:443", "https://ollama.example:443"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct provider_endpoint ep;
		char why[200] = "";
		setenv("OLLAMA_HOST", cases[i][0], 1);
		assert_int_equal(provider_endpoint_resolve(PROVIDER_OLLAMA, NULL, NULL, &ep, why, sizeof(why)), 0);
		assert_string_equal(ep.base, cases[i][1]);
		assert_false(ep.needs_key);
	}
	clear_provider_environment();
}

/* The headers provider p sends with key, NUL-terminated in out. */
static void auth_headers(enum provider p, const char *key, char *out, size_t cap)
{
	struct buf b = {0};
	assert_int_equal(provider_auth_headers(p, &b, key), 0);
	snprintf(out, cap, "%.*s", (int)b.len, b.data ? b.data : "");
	buf_free(&b);
}

static void each_provider_sends_its_key_in_its_own_header(void **state)
{
	char h[256];
	auth_headers(PROVIDER_OPENAI, "sk", h, sizeof(h));
	assert_string_equal(h, "Authorization: Bearer sk\r\n");
	auth_headers(PROVIDER_ANTHROPIC, "ak", h, sizeof(h));
	assert_string_equal(h, "anthropic-version: 2023-06-01\r\nx-api-key: ak\r\n");
	auth_headers(PROVIDER_GEMINI, "gk", h, sizeof(h));
	assert_string_equal(h, "x-goog-api-key: gk\r\n");
	auth_headers(PROVIDER_OLLAMA, "ok", h, sizeof(h));
	assert_string_equal(h, "Authorization: Bearer ok\r\n");
}

static void fixed_headers_go_without_a_key(void **state)
{
	char h[256];
	auth_headers(PROVIDER_ANTHROPIC, NULL, h, sizeof(h));
	assert_string_equal(h, "anthropic-version: 2023-06-01\r\n");
	auth_headers(PROVIDER_OPENAI, "", h, sizeof(h));
	assert_string_equal(h, "");
}

static enum response_header kind(enum provider p, const char *name, int *rank)
{
	return provider_header_kind(p, name, strlen(name), rank);
}

static void response_headers_are_classified_for_the_provider(void **state)
{
	int rank;
	assert_int_equal(kind(PROVIDER_OPENAI, "X-Request-Id", &rank), RESPONSE_HEADER_REQUEST_ID);
	assert_int_equal(rank, 0);
	assert_int_equal(kind(PROVIDER_ANTHROPIC, "request-id", &rank), RESPONSE_HEADER_REQUEST_ID);
	assert_true(rank > 0);
	assert_int_equal(kind(PROVIDER_GEMINI, "request-id", NULL), RESPONSE_HEADER_OTHER);
	assert_int_equal(kind(PROVIDER_GEMINI, "x-ratelimit-remaining-requests", NULL),
	                 RESPONSE_HEADER_RATELIMIT_REQUESTS);
	assert_int_equal(kind(PROVIDER_ANTHROPIC, "anthropic-ratelimit-requests-remaining", NULL),
	                 RESPONSE_HEADER_RATELIMIT_REQUESTS);
	assert_int_equal(kind(PROVIDER_OPENAI, "anthropic-ratelimit-requests-remaining", NULL),
	                 RESPONSE_HEADER_OTHER);
	int tokens, input_tokens;
	assert_int_equal(kind(PROVIDER_ANTHROPIC, "anthropic-ratelimit-tokens-remaining", &tokens),
	                 RESPONSE_HEADER_RATELIMIT_TOKENS);
	assert_int_equal(kind(PROVIDER_ANTHROPIC, "anthropic-ratelimit-input-tokens-remaining", &input_tokens),
	                 RESPONSE_HEADER_RATELIMIT_TOKENS);
	assert_true(tokens < input_tokens);
	assert_int_equal(kind(PROVIDER_OLLAMA, "Retry-After", NULL), RESPONSE_HEADER_RETRY_AFTER);
	assert_int_equal(kind(PROVIDER_OLLAMA, "retry-after-ms", NULL), RESPONSE_HEADER_RETRY_AFTER_MS);
	assert_int_equal(kind(PROVIDER_OLLAMA, "x-should-retry", NULL), RESPONSE_HEADER_SHOULD_RETRY);
	assert_int_equal(kind(PROVIDER_OLLAMA, "content-type", NULL), RESPONSE_HEADER_CONTENT_TYPE);
	assert_int_equal(kind(PROVIDER_OLLAMA, "content-encoding", NULL), RESPONSE_HEADER_CONTENT_ENCODING);
	assert_int_equal(kind(PROVIDER_OLLAMA, "x-request", NULL), RESPONSE_HEADER_OTHER);
}

static void head_add(struct http_head *h, const char *name, const char *value)
{
	struct http_header *hd = &h->headers[h->num_headers++];
	hd->name = name;
	hd->name_len = strlen(name);
	hd->value = value;
	hd->value_len = strlen(value);
}

static const char *value_of(const struct provider_headers *hs, enum response_header k)
{
	return hs->of[k] ? hs->of[k]->value : NULL;
}

static void openai_names_win_over_the_providers_own(void **state)
{
	struct http_head h = {0};
	head_add(&h, "request-id", "req_own");
	head_add(&h, "anthropic-ratelimit-input-tokens-remaining", "30");
	head_add(&h, "anthropic-ratelimit-tokens-remaining", "20");
	head_add(&h, "anthropic-ratelimit-requests-remaining", "5");
	head_add(&h, "x-request-id", "req_proxy");
	struct provider_headers hs;
	provider_find_headers(PROVIDER_ANTHROPIC, &h, &hs);
	assert_string_equal(value_of(&hs, RESPONSE_HEADER_REQUEST_ID), "req_proxy");
	assert_string_equal(value_of(&hs, RESPONSE_HEADER_RATELIMIT_TOKENS), "20");
	assert_string_equal(value_of(&hs, RESPONSE_HEADER_RATELIMIT_REQUESTS), "5");
	assert_null(value_of(&hs, RESPONSE_HEADER_RETRY_AFTER));
	head_add(&h, "x-ratelimit-remaining-tokens", "100");
	provider_find_headers(PROVIDER_ANTHROPIC, &h, &hs);
	assert_string_equal(value_of(&hs, RESPONSE_HEADER_RATELIMIT_TOKENS), "100");
}

static void of_one_name_the_last_counts(void **state)
{
	struct http_head h = {0};
	head_add(&h, "Retry-After", "1");
	head_add(&h, "retry-after", "2");
	struct provider_headers hs;
	provider_find_headers(PROVIDER_OPENAI, &h, &hs);
	assert_string_equal(value_of(&hs, RESPONSE_HEADER_RETRY_AFTER), "2");
}

static void gemini_reply_id_stands_in_for_a_request_id(void **state)
{
	assert_string_equal(provider_request_id(PROVIDER_GEMINI, "", "resp-1"), "resp-1");
	assert_string_equal(provider_request_id(PROVIDER_GEMINI, "hdr", "resp-1"), "hdr");
	assert_null(provider_request_id(PROVIDER_GEMINI, NULL, ""));
	assert_null(provider_request_id(PROVIDER_OPENAI, "", "chatcmpl-1"));
	assert_string_equal(provider_request_id(PROVIDER_OPENAI, "req", "chatcmpl-1"), "req");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_row_is_complete),
		cmocka_unit_test(an_unknown_provider_gets_openai_row),
		cmocka_unit_test(each_model_prefix_routes_to_its_row),
		cmocka_unit_test(the_default_endpoint_needs_the_key_variable),
		cmocka_unit_test(a_base_variable_replaces_the_default_and_needs_no_key),
		cmocka_unit_test(a_given_base_and_key_apply_to_every_provider),
		cmocka_unit_test(under_a_given_base_each_provider_keeps_its_own_key),
		cmocka_unit_test(mock_needs_a_base_url),
		cmocka_unit_test(ollama_host_is_read_as_the_ollama_cli_reads_it),
		cmocka_unit_test(each_provider_sends_its_key_in_its_own_header),
		cmocka_unit_test(fixed_headers_go_without_a_key),
		cmocka_unit_test(response_headers_are_classified_for_the_provider),
		cmocka_unit_test(openai_names_win_over_the_providers_own),
		cmocka_unit_test(of_one_name_the_last_counts),
		cmocka_unit_test(gemini_reply_id_stands_in_for_a_request_id),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
