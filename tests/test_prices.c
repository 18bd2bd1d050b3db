/*
 * prices.c: the compiled-in table, name matching, cost arithmetic and
 * replacement tables from files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmring.h"
#include "core/prices.h"

static struct price_table *load_builtin(void)
{
	unsetenv("LLMRING_PRICES");
	struct price_table *t = NULL;
	struct error_info why = {0};
	int rc = price_table_load(&t, NULL, &why);
	if (rc != 0)
		fail_msg("built-in table failed (%d): %s", rc, why.message);
	assert_non_null(t);
	return t;
}

static bool lookup(const struct price_table *t, const char *model, struct price *p)
{
	return price_lookup(t, model, strlen(model), p);
}

static void assert_price(const struct price *p, double in, double cached, double out)
{
	assert_float_equal(p->input, in, 1e-12);
	assert_float_equal(p->cached_input, cached, 1e-12);
	assert_float_equal(p->output, out, 1e-12);
}

/* Writes text to a new temporary file; its path goes into path. */
static void write_temp(char path[64], const char *text)
{
	snprintf(path, 64, "/tmp/llmring-prices-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static void expect_invalid(const char *text, const char *word1, const char *word2);

/* Loads text from a temporary file; the file is removed again. */
static int load_text(const char *text, struct price_table **t, struct error_info *why,
                     char path[64])
{
	write_temp(path, text);
	int rc = price_table_load(t, path, why);
	unlink(path);
	return rc;
}

/* ---- the compiled-in table --------------------------------------------- */

static const char *const expected_models[] = {
	"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3",
	"o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "text-embedding-3-small",
	"text-embedding-3-large",
	"claude-opus-4-1", "claude-opus-4", "claude-sonnet-4-5", "claude-sonnet-4",
	"claude-3-7-sonnet", "claude-haiku-4-5", "claude-3-5-haiku", "claude-3-haiku",
	"gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash",
	"gemini-2.0-flash-lite",
};

static void test_builtin_table_has_common_models(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	size_t n = sizeof expected_models / sizeof expected_models[0];
	assert_true(price_table_count(t) >= n);
	for (size_t i = 0; i < n; i++) {
		struct price p = {-1, -1, -1};
		if (!lookup(t, expected_models[i], &p))
			fail_msg("built-in table lacks %s", expected_models[i]);
		assert_true(p.input > 0);
		assert_true(p.output >= 0);
		assert_true(p.cached_input >= 0 && p.cached_input <= p.input);
	}
	price_table_free(t);
}

static void test_builtin_prices_match_published_ones(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	assert_true(lookup(t, "gpt-4o-mini", &p));
	assert_price(&p, 0.15, 0.075, 0.60);
	assert_true(lookup(t, "claude-sonnet-4-5", &p));
	assert_price(&p, 3.00, 0.30, 15.00);
	assert_true(lookup(t, "gemini-2.0-flash", &p));
	assert_price(&p, 0.10, 0.025, 0.40);
	assert_true(lookup(t, "text-embedding-3-small", &p));
	assert_price(&p, 0.02, 0.02, 0);
	price_table_free(t);
}

/* The batch APIs' published rates: half the standard ones, cache reads
 * included; dated and prefixed names find them as they find the others. */
static void test_builtin_batch_rates_are_half_the_standard_ones(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	assert_true(price_lookup_batch(t, "gpt-4o-mini", 11, &p));
	assert_price(&p, 0.075, 0.0375, 0.30);
	const char *dated = "anthropic/claude-haiku-4-5-20251001";
	assert_true(price_lookup_batch(t, dated, strlen(dated), &p));
	assert_price(&p, 0.50, 0.05, 2.50);
	assert_true(price_lookup_batch(t, "gemini-2.5-flash", 16, &p));
	assert_price(&p, 0.15, 0.015, 1.25);
	/* No cached price: batch cache reads cost the batch input price. */
	assert_true(price_lookup_batch(t, "gpt-5-pro", 9, &p));
	assert_price(&p, 7.50, 7.50, 60.00);
	price_table_free(t);
}

/* Every model with batch rates has them at or below its standard ones. */
static void test_builtin_batch_rates_never_exceed_standard_ones(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	size_t n = sizeof expected_models / sizeof expected_models[0];
	size_t with_batch = 0;
	for (size_t i = 0; i < n; i++) {
		struct price std, batch;
		const char *m = expected_models[i];
		assert_true(lookup(t, m, &std));
		if (!price_lookup_batch(t, m, strlen(m), &batch))
			continue;
		with_batch++;
		if (batch.input > std.input || batch.output > std.output ||
		    batch.cached_input > std.cached_input || batch.cached_input > batch.input)
			fail_msg("%s: batch rates above the standard ones", m);
	}
	assert_true(with_batch > 0);
	price_table_free(t);
}

/* A model without a batch API has no batch rates, and that is not the
 * same as an unknown model: its standard price is still there. */
static void test_model_without_batch_api_has_no_batch_rates(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p = {-1, -1, -1};
	assert_false(price_lookup_batch(t, "chatgpt-4o-latest", 17, &p));
	assert_float_equal(p.input, -1, 0);
	assert_true(lookup(t, "chatgpt-4o-latest", &p));
	assert_false(price_lookup_batch(t, "no-such-model", 13, &p));
	assert_false(price_lookup_batch(NULL, "gpt-4o", 6, &p));
	assert_false(price_lookup_batch(t, NULL, 0, &p));
	price_table_free(t);
}

static void test_batch_rates_from_a_file(void **state)
{
	(void)state;
	char path[64];
	struct error_info why = {0};
	struct price_table *t = NULL;
	assert_int_equal(load_text("{\"prices\":{"
	                           "\"a\":{\"input\":1,\"output\":2,\"batch_input\":0.3,"
	                           "\"batch_cached_input\":0.1,\"batch_output\":0.6},"
	                           "\"b\":{\"input\":1,\"output\":2,\"batch_output\":0,"
	                           "\"batch_input\":0},"
	                           "\"c\":{\"input\":1,\"output\":2}}}",
	                           &t, &why, path), 0);
	struct price p;
	assert_true(price_lookup_batch(t, "a", 1, &p));
	assert_price(&p, 0.3, 0.1, 0.6);
	assert_true(lookup(t, "a", &p)); /* the standard rates stay as they were */
	assert_price(&p, 1, 1, 2);
	assert_true(price_lookup_batch(t, "b", 1, &p)); /* free is a rate */
	assert_price(&p, 0, 0, 0);
	assert_false(price_lookup_batch(t, "c", 1, &p));
	price_table_free(t);
}

static void test_half_a_batch_rate_is_invalid(void **state)
{
	(void)state;
	expect_invalid("{\"prices\":{\"m\":{\"input\":1,\"output\":1,\"batch_input\":0.5}}}",
	               "\"m\"", "batch_output");
	expect_invalid("{\"prices\":{\"m\":{\"input\":1,\"output\":1,\"batch_output\":0.5}}}",
	               "\"m\"", "\"batch_input\"");
	expect_invalid("{\"prices\":{\"m\":{\"input\":1,\"output\":1,"
	               "\"batch_cached_input\":0.5}}}", "batch_cached_input", "\"batch_input\"");
}

static void test_bad_batch_rate_is_invalid(void **state)
{
	(void)state;
	expect_invalid("{\"prices\":{\"m\":{\"input\":1,\"output\":1,\"batch_input\":-1,"
	               "\"batch_output\":1}}}", "\"m\"", "batch_input");
	expect_invalid("{\"prices\":{\"m\":{\"input\":1,\"output\":1,\"batch_input\":1,"
	               "\"batch_output\":\"0.5\"}}}", "\"m\"", "batch_output");
	expect_invalid("{\"prices\":{\"m\":{\"input\":1,\"output\":1,\"batch_input\":1,"
	               "\"batch_output\":1,\"batch_cached_input\":1e999}}}", "\"m\"",
	               "batch_cached_input");
}

static void test_empty_environment_variable_means_builtin(void **state)
{
	(void)state;
	setenv("LLMRING_PRICES", "", 1);
	struct price_table *t = NULL;
	assert_int_equal(price_table_load(&t, NULL, NULL), 0);
	struct price p;
	assert_true(lookup(t, "gpt-4o", &p));
	price_table_free(t);
	unsetenv("LLMRING_PRICES");
}

/* ---- lookup ------------------------------------------------------------ */

static void test_exact_name_matches(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	assert_true(lookup(t, "o3-mini", &p));
	assert_price(&p, 1.10, 0.55, 4.40);
	price_table_free(t);
}

static void test_provider_prefix_is_ignored(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p, q;
	assert_true(lookup(t, "gpt-4o-mini", &q));
	assert_true(lookup(t, "openai/gpt-4o-mini", &p));
	assert_memory_equal(&p, &q, sizeof p);
	assert_true(lookup(t, "mock/gpt-4o-mini", &p));
	assert_memory_equal(&p, &q, sizeof p);
	assert_true(lookup(t, "ollama/gpt-4o-mini", &p));
	assert_memory_equal(&p, &q, sizeof p);
	assert_true(lookup(t, "anthropic/claude-haiku-4-5", &p));
	assert_price(&p, 1.00, 0.10, 5.00);
	assert_true(lookup(t, "gemini/gemini-2.5-flash", &p));
	assert_price(&p, 0.30, 0.03, 2.50);
	assert_false(lookup(t, "other/gpt-4o-mini", &p));
	price_table_free(t);
}

static void test_dated_name_matches_base_entry(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	assert_true(lookup(t, "gpt-4o-mini-2024-07-18", &p));
	assert_price(&p, 0.15, 0.075, 0.60);
	assert_true(lookup(t, "gpt-4o-2024-08-06", &p));
	assert_price(&p, 2.50, 1.25, 10.00);
	assert_true(lookup(t, "o3-2025-04-16", &p));
	assert_true(lookup(t, "openai/gpt-4.1-nano-2025-04-14", &p));
	assert_price(&p, 0.10, 0.025, 0.40);
	price_table_free(t);
}

static void test_compact_dated_name_matches_base_entry(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	assert_true(lookup(t, "claude-3-5-haiku-20241022", &p));
	assert_price(&p, 0.80, 0.08, 4.00);
	assert_true(lookup(t, "claude-sonnet-4-5-20250929", &p));
	assert_price(&p, 3.00, 0.30, 15.00);
	assert_true(lookup(t, "anthropic/claude-opus-4-1-20250805", &p));
	assert_price(&p, 15.00, 1.50, 75.00);
	assert_true(lookup(t, "claude-3-haiku-20240307", &p));
	assert_price(&p, 0.25, 0.03, 1.25);
	price_table_free(t);
}

static void test_latest_suffix_matches_base_entry(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	assert_true(lookup(t, "claude-3-5-haiku-latest", &p));
	assert_price(&p, 0.80, 0.08, 4.00);
	assert_true(lookup(t, "anthropic/claude-3-7-sonnet-latest", &p));
	assert_price(&p, 3.00, 0.30, 15.00);
	/* An entry of its own wins over stripping. */
	assert_true(lookup(t, "chatgpt-4o-latest", &p));
	assert_price(&p, 5.00, 5.00, 15.00);
	price_table_free(t);
}

static void test_gemini_version_suffix_and_models_prefix(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	assert_true(lookup(t, "gemini-2.0-flash-001", &p));
	assert_price(&p, 0.10, 0.025, 0.40);
	assert_true(lookup(t, "models/gemini-2.0-flash-001", &p));
	assert_price(&p, 0.10, 0.025, 0.40);
	assert_true(lookup(t, "gemini/models/gemini-2.0-flash-lite-001", &p));
	assert_price(&p, 0.075, 0.075, 0.30);
	assert_true(lookup(t, "models/gemini-2.5-pro", &p));
	assert_price(&p, 1.25, 0.125, 10.00);
	price_table_free(t);
}

static void test_unknown_model_is_not_found(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p = {7, 8, 9};
	static const char *const unknown[] = {
		"", "openai/", "models/", "no-such-model", "GPT-4o-mini", "gpt-4o-mini ",
		"gpt-4o-min", "gpt-4o-mini-0718", "gpt-4o-2024-08-6", "gpt-4o-2024_08_06",
		"claude-3-5-haiku-2024102", "-latest", "llama3.2", "ollama/llama3.2:1b",
		"gpt-4o/openai",
	};
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		if (lookup(t, unknown[i], &p))
			fail_msg("\"%s\" was found", unknown[i]);
	}
	assert_price(&p, 7, 8, 9);
	assert_false(price_lookup(NULL, "gpt-4o", 6, &p));
	price_table_free(t);
}

static void test_lookup_reads_only_len_bytes(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	const char *s = "gpt-4o-mini-2024-07-18\"}";
	assert_true(price_lookup(t, s, strlen("gpt-4o-mini-2024-07-18"), &p));
	assert_price(&p, 0.15, 0.075, 0.60);
	assert_true(price_lookup(t, "gpt-4o-mini-tts", 6, &p));
	assert_price(&p, 2.50, 1.25, 10.00);
	price_table_free(t);
}

static void test_exact_entry_wins_over_stripped_name(void **state)
{
	(void)state;
	char path[64];
	struct error_info why = {0};
	struct price_table *t = NULL;
	assert_int_equal(load_text("{\"version\":1,\"prices\":{"
	                           "\"m\":{\"input\":1,\"output\":2},"
	                           "\"m-2025-01-01\":{\"input\":3,\"output\":4},"
	                           "\"openai/m\":{\"input\":5,\"output\":6}}}",
	                           &t, &why, path), 0);
	struct price p;
	assert_true(lookup(t, "m-2025-01-01", &p));
	assert_price(&p, 3, 3, 4);
	assert_true(lookup(t, "openai/m", &p));
	assert_price(&p, 5, 5, 6);
	assert_true(lookup(t, "openai/m-2025-01-02", &p));
	assert_price(&p, 1, 1, 2);
	assert_true(lookup(t, "m-latest", &p));
	assert_price(&p, 1, 1, 2);
	price_table_free(t);
}

/* ---- cost -------------------------------------------------------------- */

static void test_cost_counts_cached_tokens_at_cached_price(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	assert_true(lookup(t, "gpt-4o-mini", &p));
	/* 1000 input of which 400 cached, 500 output. */
	double want = (600 * 0.15 + 400 * 0.075 + 500 * 0.60) / 1e6;
	assert_float_equal(price_cost(&p, 1000, 400, 500), want, 1e-15);
	assert_float_equal(price_cost(&p, 1000000, 0, 1000000), 0.75, 1e-12);
	assert_float_equal(price_cost(&p, 1000000, 1000000, 0), 0.075, 1e-12);
	assert_float_equal(price_cost(&p, 0, 0, 0), 0, 0);
	price_table_free(t);
}

static void test_cost_without_cached_price_uses_input_price(void **state)
{
	(void)state;
	struct price_table *t = load_builtin();
	struct price p;
	assert_true(lookup(t, "gemini-2.0-flash-lite", &p));
	assert_float_equal(p.cached_input, p.input, 0);
	assert_float_equal(price_cost(&p, 2000000, 1500000, 1000000), 2 * 0.075 + 0.30, 1e-12);
	price_table_free(t);
}

static void test_cost_clamps_negative_and_excess_cached_counts(void **state)
{
	(void)state;
	struct price p = {.input = 2, .cached_input = 1, .output = 10};
	assert_float_equal(price_cost(&p, -5, -5, -5), 0, 0);
	/* Cached beyond input: all input counts as cached. */
	assert_float_equal(price_cost(&p, 100, 300, 0), 100 * 1 / 1e6, 1e-15);
	assert_float_equal(price_cost(&p, 100, 0, 10), (200 + 100) / 1e6, 1e-15);
}

/* ---- replacement tables ------------------------------------------------ */

static const char *const custom_table =
	"{\"version\":1,\"_comment\":\"test\",\"prices\":{"
	"\"my-model\":{\"input\":1.5,\"cached_input\":0.5,\"output\":4,\"note\":[1,{}]},"
	"\"caf\\u00e9\":{\"input\":0,\"output\":1e-1}}}";

static void test_environment_variable_replaces_table(void **state)
{
	(void)state;
	char path[64];
	struct error_info why = {0};
	write_temp(path, custom_table);
	setenv("LLMRING_PRICES", path, 1);
	struct price_table *t = NULL;
	int rc = price_table_load(&t, NULL, &why);
	unsetenv("LLMRING_PRICES");
	unlink(path);
	if (rc != 0)
		fail_msg("load failed (%d): %s", rc, why.message);
	assert_int_equal(price_table_count(t), 2);
	struct price p;
	assert_true(lookup(t, "my-model", &p));
	assert_price(&p, 1.5, 0.5, 4);
	assert_true(lookup(t, "openai/my-model-20250101", &p));
	assert_true(lookup(t, "caf\xc3\xa9", &p));
	assert_price(&p, 0, 0, 0.1);
	assert_false(lookup(t, "gpt-4o-mini", &p));
	assert_false(lookup(t, "claude-3-haiku", &p));
	price_table_free(t);
}

static void test_path_argument_wins_over_environment(void **state)
{
	(void)state;
	char path[64];
	struct error_info why = {0};
	write_temp(path, custom_table);
	setenv("LLMRING_PRICES", "/nonexistent/llmring-prices.json", 1);
	struct price_table *t = NULL;
	int rc = price_table_load(&t, path, &why);
	unsetenv("LLMRING_PRICES");
	unlink(path);
	if (rc != 0)
		fail_msg("load failed (%d): %s", rc, why.message);
	struct price p;
	assert_true(lookup(t, "my-model", &p));
	price_table_free(t);
}

static void test_bad_environment_file_is_an_error(void **state)
{
	(void)state;
	struct error_info why = {0};
	setenv("LLMRING_PRICES", "/nonexistent/llmring-prices.json", 1);
	struct price_table *t = (struct price_table *)1;
	assert_int_equal(price_table_load(&t, NULL, &why), LR_EIO);
	unsetenv("LLMRING_PRICES");
	assert_null(t);
	assert_non_null(strstr(why.message, "/nonexistent/llmring-prices.json"));
}

static void test_missing_file_is_an_io_error_naming_it(void **state)
{
	(void)state;
	struct error_info why = {0};
	struct price_table *t = NULL;
	assert_int_equal(price_table_load(&t, "/nonexistent/prices.json", &why), LR_EIO);
	assert_null(t);
	assert_non_null(strstr(why.message, "/nonexistent/prices.json"));
	assert_null(strchr(why.message, '\n'));
	/* A directory opens but cannot be read. */
	assert_int_equal(price_table_load(&t, "/tmp", &why), LR_EIO);
	assert_non_null(strstr(why.message, "/tmp"));
	/* No room for a reason is fine. */
	assert_int_equal(price_table_load(&t, "/nonexistent/prices.json", NULL), LR_EIO);
}

/* Expects text to be refused with LR_EINVAL and a reason naming the file
 * and containing each of the given words. */
static void expect_invalid(const char *text, const char *word1, const char *word2)
{
	char path[64];
	struct error_info why = {0};
	struct price_table *t = (struct price_table *)1;
	int rc = load_text(text, &t, &why, path);
	if (rc != LR_EINVAL)
		fail_msg("rc %d for %s (%s)", rc, text, why.message);
	assert_null(t);
	if (!strstr(why.message, path))
		fail_msg("reason does not name the file: %s", why.message);
	if (word1 && !strstr(why.message, word1))
		fail_msg("reason lacks \"%s\": %s", word1, why.message);
	if (word2 && !strstr(why.message, word2))
		fail_msg("reason lacks \"%s\": %s", word2, why.message);
	assert_null(strchr(why.message, '\n'));
}

static void test_file_that_is_not_json_is_invalid(void **state)
{
	(void)state;
	expect_invalid("", "JSON", NULL);
	expect_invalid("{\"version\":1,\"prices\":{", "JSON", NULL);
	expect_invalid("prices: none", "JSON", NULL);
	expect_invalid("[1,2]", "object", NULL);
}

static void test_negative_price_is_invalid(void **state)
{
	(void)state;
	expect_invalid("{\"prices\":{\"cheap\":{\"input\":-0.5,\"output\":1}}}", "cheap", "input");
	expect_invalid("{\"prices\":{\"cheap\":{\"input\":1,\"cached_input\":-1,\"output\":1}}}",
	               "cheap", "cached_input");
}

static void test_missing_output_is_invalid(void **state)
{
	(void)state;
	expect_invalid("{\"prices\":{\"a\":{\"input\":1,\"output\":1},"
	               "\"half-priced\":{\"input\":1}}}", "half-priced", "output");
	expect_invalid("{\"prices\":{\"no-input\":{\"output\":1}}}", "no-input", "input");
}

static void test_malformed_tables_are_invalid(void **state)
{
	(void)state;
	expect_invalid("{\"version\":1}", "prices", NULL);
	expect_invalid("{\"prices\":[]}", "prices", NULL);
	expect_invalid("{\"version\":2,\"prices\":{}}", "version", NULL);
	expect_invalid("{\"prices\":{\"m\":1}}", "\"m\"", NULL);
	expect_invalid("{\"prices\":{\"m\":{\"input\":\"1\",\"output\":1}}}", "\"m\"", "input");
	expect_invalid("{\"prices\":{\"m\":{\"input\":true,\"output\":1}}}", "\"m\"", "input");
	expect_invalid("{\"prices\":{\"m\":{\"input\":null,\"output\":1}}}", "\"m\"", "input");
	expect_invalid("{\"prices\":{\"m\":{\"input\":1,\"output\":1e999}}}", "\"m\"", "output");
	expect_invalid("{\"prices\":{\"\":{\"input\":1,\"output\":1}}}", "empty", NULL);
	expect_invalid("{\"prices\":{\"m\":{\"input\":1,\"output\":1},"
	               "\"m\":{\"input\":2,\"output\":2}}}", "\"m\"", "twice");
}

static void test_minimal_and_empty_tables_load(void **state)
{
	(void)state;
	char path[64];
	struct error_info why = {0};
	struct price_table *t = NULL;
	assert_int_equal(load_text("{\"prices\":{}}", &t, &why, path), 0);
	assert_int_equal(price_table_count(t), 0);
	struct price p;
	assert_false(lookup(t, "gpt-4o", &p));
	price_table_free(t);
	assert_int_equal(load_text(" {\"prices\":{\"z\":{\"output\":0,\"input\":-0}}}\n", &t, &why,
	                           path), 0);
	assert_true(lookup(t, "z", &p));
	assert_price(&p, 0, 0, 0);
	price_table_free(t);
	price_table_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtin_table_has_common_models),
		cmocka_unit_test(test_builtin_prices_match_published_ones),
		cmocka_unit_test(test_builtin_batch_rates_are_half_the_standard_ones),
		cmocka_unit_test(test_builtin_batch_rates_never_exceed_standard_ones),
		cmocka_unit_test(test_model_without_batch_api_has_no_batch_rates),
		cmocka_unit_test(test_batch_rates_from_a_file),
		cmocka_unit_test(test_half_a_batch_rate_is_invalid),
		cmocka_unit_test(test_bad_batch_rate_is_invalid),
		cmocka_unit_test(test_empty_environment_variable_means_builtin),
		cmocka_unit_test(test_exact_name_matches),
		cmocka_unit_test(test_provider_prefix_is_ignored),
		cmocka_unit_test(test_dated_name_matches_base_entry),
		cmocka_unit_test(test_compact_dated_name_matches_base_entry),
		cmocka_unit_test(test_latest_suffix_matches_base_entry),
		cmocka_unit_test(test_gemini_version_suffix_and_models_prefix),
		cmocka_unit_test(test_unknown_model_is_not_found),
		cmocka_unit_test(test_lookup_reads_only_len_bytes),
		cmocka_unit_test(test_exact_entry_wins_over_stripped_name),
		cmocka_unit_test(test_cost_counts_cached_tokens_at_cached_price),
		cmocka_unit_test(test_cost_without_cached_price_uses_input_price),
		cmocka_unit_test(test_cost_clamps_negative_and_excess_cached_counts),
		cmocka_unit_test(test_environment_variable_replaces_table),
		cmocka_unit_test(test_path_argument_wins_over_environment),
		cmocka_unit_test(test_bad_environment_file_is_an_error),
		cmocka_unit_test(test_missing_file_is_an_io_error_naming_it),
		cmocka_unit_test(test_file_that_is_not_json_is_invalid),
		cmocka_unit_test(test_negative_price_is_invalid),
		cmocka_unit_test(test_missing_output_is_invalid),
		cmocka_unit_test(test_malformed_tables_are_invalid),
		cmocka_unit_test(test_minimal_and_empty_tables_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
