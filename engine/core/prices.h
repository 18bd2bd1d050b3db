/*
 * Model prices for cost accounting: USD per million tokens, looked up by
 * the model name a response reports.
 *
 * The table is compiled in from engine/core/prices.json (tools/gen-prices.py);
 * a JSON file of the same format named by LLMRING_PRICES replaces it:
 *
 *   {"version":1,"prices":{"gpt-4o-mini":{"input":0.15,"cached_input":0.075,
 *                                         "output":0.60}, ...}}
 *
 * Keys are model names without a provider prefix. "cached_input" may be
 * absent (cached tokens then cost the input price). The rates of the
 * providers' batch APIs, "batch_input" and "batch_output" (both or
 * neither) and "batch_cached_input" (absent: batch_input), are absent
 * for a model without one. Other fields are ignored. A table is immutable once loaded, so lookups from any number of
 * threads need no lock.
 */
#ifndef LR_PRICES_H
#define LR_PRICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/errors.h"

struct price {
	double input, cached_input, output; /* USD per 1M tokens */
};

struct price_table;

/*
 * Loads a table into *out (owner: the caller, released with
 * price_table_free). path NULL: the file named by LLMRING_PRICES when that
 * is set and non-empty, else the compiled-in table. Returns 0; LR_EIO when
 * the file cannot be read; LR_EINVAL when it is not a valid prices file;
 * LR_ENOMEM. On failure *out is NULL and *why (when not NULL) holds the
 * code and one line naming the file and the problem.
 */
int price_table_load(struct price_table **out, const char *path, struct error_info *why);
void price_table_free(struct price_table *t);

/* Number of models in the table. */
size_t price_table_count(const struct price_table *t);

/*
 * Finds the price of model[0..len) (not NUL-terminated; case-sensitive).
 * The exact name is tried first, then the name with a provider prefix
 * ("openai/", "anthropic/", "gemini/", "ollama/", "mock/") and Gemini's
 * "models/" removed, then, one at a time from the end, with a trailing
 * "-latest", date ("-YYYY-MM-DD", "-YYYYMMDD") or version ("-001") removed:
 * "openai/gpt-4o-mini-2024-07-18" finds "gpt-4o-mini". No allocation.
 * False (and *out untouched) when nothing matches.
 */
bool price_lookup(const struct price_table *t, const char *model, size_t len,
                  struct price *out);

/*
 * The same lookup for the model's batch rates (struct price's fields at
 * the batch API's prices). False (and *out untouched) when nothing
 * matches or the entry found has no batch rates.
 */
bool price_lookup_batch(const struct price_table *t, const char *model, size_t len,
                        struct price *out);

/*
 * USD for one request. input_tokens includes the cached ones (OpenAI's
 * convention): ((input - cached) * p->input + cached * p->cached_input +
 * output * p->output) / 1e6. Negative counts count as 0, and cached beyond
 * input as input.
 */
double price_cost(const struct price *p, int64_t input_tokens, int64_t cached_input_tokens,
                  int64_t output_tokens);

#endif
