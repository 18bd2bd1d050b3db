/*
 * The prompts of `llmring bench`.
 *
 *   random        --prompt-tokens words per prompt, drawn from a fixed
 *                 list of common English words with the run's seed; each
 *                 prompt starts with its own number, so no two share a
 *                 prefix (a server's prefix cache would otherwise make
 *                 every prompt after the first cheap). A common English
 *                 word is one token in the GPT and Llama tokenizers, so
 *                 the prompt is about --prompt-tokens tokens plus a few for
 *                 the chat template; the server's usage.prompt_tokens is
 *                 what the figures count when it reports one. With
 *                 --random-range-ratio R each prompt's words and max_tokens
 *                 are drawn uniformly from [int(X (1 - R)), int(X (1 + R))]
 *                 (at least 1), as vLLM's random dataset draws them; varied
 *                 lengths also keep a closed loop's requests from ending,
 *                 and so arriving, in lock-step waves.
 *   sharegpt:FILE ShareGPT JSON (an array of {"conversations": [{"from",
 *                 "value"}, ...]}), as vLLM reads it: conversations of at
 *                 least two turns; the first turn is the prompt and the
 *                 second's length (in words, our token estimate) is the
 *                 request's max_tokens.
 *   jsonl:FILE    one OpenAI chat body per line, or a batch input line
 *                 ({"custom_id", "method", "url", "body"}); the body is
 *                 sent as it is, with the run's model and stream settings.
 * Files are used in turn when the run needs more requests than they hold.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_arrivals.h"
#include "format/json.h"
#include "util/buf.h"

static const char *const words[] = {
	"the", "of", "and", "to", "in", "is", "was", "for", "that", "with", "as", "on", "by",
	"at", "from", "his", "her", "they", "this", "which", "be", "are", "or", "an", "had",
	"not", "but", "first", "one", "new", "also", "after", "were", "who", "its", "two",
	"time", "year", "city", "world", "state", "water", "house", "school", "family", "life",
	"music", "river", "road", "light", "night", "small", "large", "long", "great", "old",
	"high", "early", "open", "common", "part", "place", "case", "week", "work", "number",
	"group", "problem", "fact", "book", "story", "point", "game", "line", "end", "side",
	"kind", "head", "team", "name", "hand", "idea", "body", "market", "field", "power",
};
#define WORD_COUNT (sizeof(words) / sizeof(words[0]))

void bench_dataset_free(struct bench_dataset *d)
{
	for (size_t i = 0; i < d->count; i++) {
		free(d->prompts[i].text);
		free(d->prompts[i].body);
	}
	free(d->prompts);
	d->prompts = NULL;
	d->count = 0;
}

/* A length drawn uniformly from [int(x (1 - r)), int(x (1 + r))], at least
 * 1 (vLLM's RandomDataset bounds; the modulo bias of a 64-bit draw is
 * negligible). */
static long ranged_length(struct bench_rng *rng, long x, double r)
{
	if (r <= 0)
		return x;
	long lo = (long)((double)x * (1 - r)), hi = (long)((double)x * (1 + r));
	if (lo < 1)
		lo = 1;
	if (hi < lo)
		hi = lo;
	return lo + (long)(bench_rng_next(rng) % (uint64_t)(hi - lo + 1));
}

static int random_prompts(const struct bench_options *o, size_t need, struct bench_dataset *d)
{
	d->prompts = calloc(need ? need : 1, sizeof(*d->prompts));
	if (!d->prompts)
		goto oom;
	struct bench_rng rng;
	bench_rng_seed(&rng, o->seed ^ 0x9e3779b97f4a7c15ull);
	for (size_t i = 0; i < need; i++) {
		struct buf b = {0}; /* owner: here until moved into the prompt */
		long prompt_words = ranged_length(&rng, o->prompt_tokens, o->range_ratio);
		long max_tokens = ranged_length(&rng, o->max_tokens, o->range_ratio);
		buf_printf(&b, "%zu:", i);
		for (long w = 1; w < prompt_words; w++) {
			const char *word = words[bench_rng_next(&rng) % WORD_COUNT];
			buf_append(&b, " ", 1);
			buf_puts(&b, word);
		}
		buf_append(&b, "", 1); /* the NUL */
		if (buf_error(&b)) {
			buf_free(&b);
			goto oom;
		}
		d->prompts[i].text = b.data;
		d->prompts[i].prompt_tokens = (int32_t)prompt_words;
		/* 0 keeps --max-tokens, as for files without a length. */
		d->prompts[i].max_tokens = o->range_ratio > 0 ? (int32_t)max_tokens : 0;
		d->count++;
	}
	return 0;
oom:
	fprintf(stderr, "llmring bench: out of memory making %zu prompts\n", need);
	bench_dataset_free(d);
	return -1;
}

static char *read_whole_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "llmring bench: cannot open %s: %s\n", path, strerror(errno));
		return NULL;
	}
	struct buf b = {0}; /* owner: here, then the caller */
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	bool bad = ferror(f);
	fclose(f);
	if (!bad)
		buf_append(&b, "", 1); /* the NUL */
	if (bad || buf_error(&b)) {
		fprintf(stderr, "llmring bench: cannot read %s: %s\n", path,
		        bad ? "read error" : "out of memory");
		buf_free(&b);
		return NULL;
	}
	*len = b.len - 1;
	return b.data;
}

/* Words in s: our token estimate, as for random prompts. */
static int32_t count_words(const char *s)
{
	int32_t n = 0;
	bool in_word = false;
	for (; *s; s++) {
		bool space = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';
		if (!space && !in_word)
			n++;
		in_word = !space;
	}
	return n;
}

static int add_prompt(struct bench_dataset *d, size_t *cap, struct bench_prompt p)
{
	if (d->count == *cap) {
		size_t ncap = *cap ? *cap * 2 : 1024;
		struct bench_prompt *np = realloc(d->prompts, ncap * sizeof(*np));
		if (!np)
			return -1;
		d->prompts = np;
		*cap = ncap;
	}
	d->prompts[d->count++] = p;
	return 0;
}

static int sharegpt_prompts(const char *path, struct bench_dataset *d)
{
	size_t len, cap = 0;
	char *text = read_whole_file(path, &len); /* owner: here */
	if (!text)
		return -1;
	struct json_doc doc = {0};
	int rc = json_parse(&doc, text, len);
	if (rc || doc.count == 0 || doc.tok[0].type != JSON_ARRAY) {
		fprintf(stderr, "llmring bench: %s is not a ShareGPT JSON array\n", path);
		json_doc_free(&doc);
		free(text);
		return -1;
	}
	int items = doc.tok[0].size;
	for (int k = 0, i = 1; k < items; k++, i = json_skip(&doc, i)) {
		int conv = json_object_get(&doc, i, "conversations");
		if (conv < 0 || doc.tok[conv].type != JSON_ARRAY || doc.tok[conv].size < 2)
			continue; /* as vLLM: fewer than two turns are left out */
		int first = conv + 1, second = json_skip(&doc, first);
		int v1 = json_object_get(&doc, first, "value");
		int v2 = json_object_get(&doc, second, "value");
		if (v1 < 0 || v2 < 0)
			continue;
		struct bench_prompt p = {.text = json_dup_string(&doc, v1)};
		char *reply = json_dup_string(&doc, v2); /* owner: here */
		if (!p.text || !reply || !p.text[0]) {
			free(p.text);
			free(reply);
			continue;
		}
		p.prompt_tokens = count_words(p.text);
		p.max_tokens = count_words(reply);
		free(reply);
		if (p.max_tokens < 1)
			p.max_tokens = 1;
		if (add_prompt(d, &cap, p)) {
			free(p.text);
			rc = -1;
			break;
		}
	}
	json_doc_free(&doc);
	free(text);
	if (rc) {
		fprintf(stderr, "llmring bench: out of memory reading %s\n", path);
		bench_dataset_free(d);
		return -1;
	}
	if (!d->count) {
		fprintf(stderr, "llmring bench: %s holds no conversation of two turns or more\n", path);
		return -1;
	}
	return 0;
}

/* One JSONL line: the body (a batch line's "body", or the line itself). */
static int jsonl_line(const struct bench_options *o, const char *path, long line_no,
                      const char *line, size_t len, struct json_doc *doc, struct bench_dataset *d,
                      size_t *cap)
{
	if (json_parse(doc, line, len) || doc->count == 0 || doc->tok[0].type != JSON_OBJECT) {
		fprintf(stderr, "llmring bench: %s:%ld: not a JSON object\n", path, line_no);
		return -1;
	}
	int body = json_object_get(doc, 0, "body");
	if (body < 0)
		body = 0;
	if (doc->tok[body].type != JSON_OBJECT || json_object_get(doc, body, "messages") < 0) {
		fprintf(stderr, "llmring bench: %s:%ld: no chat body with messages\n", path, line_no);
		return -1;
	}
	const char *start;
	size_t blen;
	json_span(doc, body, &start, &blen);
	/* The run's settings join the body unless it has its own: a stream
	 * with the usage chunk (the figures need both), vLLM's ignore_eos. */
	struct buf b = {0}; /* owner: here, then the prompt */
	buf_append(&b, start, blen - 1); /* without the closing brace */
	bool empty = doc->tok[body].size == 0;
	if (o->stream && json_object_get(doc, body, "stream") < 0) {
		buf_puts(&b, empty ? "" : ",");
		buf_puts(&b, "\"stream\":true,\"stream_options\":{\"include_usage\":true}");
		empty = false;
	}
	if (o->ignore_eos && json_object_get(doc, body, "ignore_eos") < 0) {
		buf_puts(&b, empty ? "" : ",");
		buf_puts(&b, "\"ignore_eos\":true");
	}
	buf_append(&b, "}", 2); /* and the NUL */
	if (buf_error(&b)) {
		buf_free(&b);
		return -1;
	}
	struct bench_prompt p = {.body = b.data, .body_len = b.len - 1};
	int64_t mt;
	int mti = json_object_get(doc, body, "max_tokens");
	if (mti >= 0 && json_get_int(doc, mti, &mt) && mt > 0 && mt < 0x7fffffff)
		p.max_tokens = (int32_t)mt;
	/* The prompt's size: its bytes / 4, the usual estimate for English. */
	p.prompt_tokens = (int32_t)(blen / 4);
	if (add_prompt(d, cap, p)) {
		fprintf(stderr, "llmring bench: out of memory reading %s\n", path);
		free(p.body);
		return -1;
	}
	return 0;
}

static int jsonl_prompts(const struct bench_options *o, const char *path, struct bench_dataset *d)
{
	size_t len, cap = 0;
	char *text = read_whole_file(path, &len); /* owner: here */
	if (!text)
		return -1;
	struct json_doc doc = {0};
	long line_no = 0;
	int rc = 0;
	for (char *p = text, *end = text + len; p < end && !rc;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *stop = nl ? nl : end;
		line_no++;
		size_t n = (size_t)(stop - p);
		while (n && (p[n - 1] == '\r' || p[n - 1] == ' '))
			n--;
		if (n)
			rc = jsonl_line(o, path, line_no, p, n, &doc, d, &cap);
		p = stop + 1;
	}
	json_doc_free(&doc);
	free(text);
	if (rc) {
		bench_dataset_free(d);
		return -1;
	}
	if (!d->count) {
		fprintf(stderr, "llmring bench: %s holds no request\n", path);
		return -1;
	}
	return 0;
}

int bench_dataset_load(const struct bench_options *o, size_t need, struct bench_dataset *d)
{
	memset(d, 0, sizeof(*d));
	switch (o->dataset) {
	case BENCH_DATASET_SHAREGPT:
		return sharegpt_prompts(o->dataset_path, d);
	case BENCH_DATASET_JSONL:
		return jsonl_prompts(o, o->dataset_path, d);
	case BENCH_DATASET_RANDOM:
	default:
		return random_prompts(o, need, d);
	}
}
