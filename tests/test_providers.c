/*
 * The providers layer as a specification: what each provider's request
 * body looks like on the wire (golden files under tests/golden/, written
 * from the providers' documented shapes), how routing picks a provider,
 * how whole responses, error bodies and streams of each provider become
 * the unified reply, and the OpenAI chat.completion written back out.
 *
 * Request bodies are compared after canonicalisation: object keys sorted
 * recursively, strings unescaped and re-escaped one way, no whitespace.
 * A duplicate key anywhere fails the comparison.
 *
 * Streams are fed whole, split in two at every byte and one byte at a
 * time (each piece a fresh allocation of exactly its size, so ASan sees
 * any read past it); all three must give the same reply and deltas.
 *
 * Nothing allocated by the engine survives into an assertion: results are
 * copied into fixed buffers and freed first, so a failed check leaks
 * nothing.
 *
 * Long (over 800 lines) on purpose: one subject's specification, a list of
 * short independent cases sharing one fixture and its helpers; the file is
 * read as a table, and a split would copy the fixture into each part.
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

#include "format/json.h"
#include "llmring.h"
#include "provider/provider.h"
#include "provider/reply.h"
#include "provider/request.h"

#ifndef LLMRING_SOURCE_DIR
#define LLMRING_SOURCE_DIR "."
#endif

/* The base URL paths of the default endpoints, indexed by enum provider. */
static const char *const base_paths[PROVIDER_COUNT] = {"/v1", "", "", "", "/v1"};

/* ---- canonical JSON --------------------------------------------------- */

#define CANON_CAP (64 * 1024)

/* Rotating result buffers: a few canonical texts can be alive at once. */
static char *slot(void)
{
	static char bufs[8][CANON_CAP];
	static int next;
	char *s = bufs[next];
	next = (next + 1) % 8;
	s[0] = '\0';
	return s;
}

struct member {
	const char *key;
	size_t len;
	int k, v;
};

static int member_cmp(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->key, y->key, n);
	if (c)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

static int canon_value(const struct json_doc *d, int i, struct buf *out, const char **err)
{
	const struct json_token *t = &d->tok[i];
	int ret = 0;
	switch (t->type) {
	case JSON_OBJECT: {
		struct member *m = calloc(t->size ? (size_t)t->size : 1, sizeof(*m));
		if (!m)
			return LR_ENOMEM;
		int k = i + 1;
		for (int j = 0; j < t->size; j++) {
			m[j] = (struct member){d->text + d->tok[k].start, (size_t)(d->tok[k].end - d->tok[k].start),
			                      k, k + 1};
			k = json_skip(d, k + 1);
		}
		qsort(m, (size_t)t->size, sizeof(*m), member_cmp);
		ret = buf_append(out, "{", 1);
		for (int j = 0; !ret && j < t->size; j++) {
			if (j && member_cmp(&m[j - 1], &m[j]) == 0) {
				*err = "duplicate key";
				ret = LR_EINVAL;
				break;
			}
			if (j)
				ret = buf_append(out, ",", 1);
			if (!ret)
				ret = canon_value(d, m[j].k, out, err);
			if (!ret)
				ret = buf_append(out, ":", 1);
			if (!ret)
				ret = canon_value(d, m[j].v, out, err);
		}
		free(m);
		return ret ? ret : buf_append(out, "}", 1);
	}
	case JSON_ARRAY: {
		ret = buf_append(out, "[", 1);
		int k = i + 1;
		for (int j = 0; !ret && j < t->size; j++, k = json_skip(d, k)) {
			if (j)
				ret = buf_append(out, ",", 1);
			if (!ret)
				ret = canon_value(d, k, out, err);
		}
		return ret ? ret : buf_append(out, "]", 1);
	}
	case JSON_STRING: {
		struct buf raw = {0}; /* owner: this block */
		ret = json_unescape_append(&raw, d->text + t->start, (size_t)(t->end - t->start));
		if (ret)
			*err = "bad string escape";
		else
			ret = json_append_string(out, raw.data ? raw.data : "", raw.len);
		buf_free(&raw);
		return ret;
	}
	default:
		return buf_append(out, d->text + t->start, (size_t)(t->end - t->start));
	}
}

/* Token of a dotted path ("messages.1.content"); numbers index arrays. */
static int walk(const struct json_doc *d, const char *path)
{
	int i = 0;
	while (*path) {
		char seg[64];
		size_t n = strcspn(path, ".");
		if (n >= sizeof(seg))
			return -1;
		memcpy(seg, path, n);
		seg[n] = '\0';
		path += n + (path[n] == '.');
		if (d->tok[i].type == JSON_ARRAY && seg[0] >= '0' && seg[0] <= '9') {
			int idx = atoi(seg);
			if (idx >= d->tok[i].size)
				return -1;
			int c = i + 1;
			for (int j = 0; j < idx; j++)
				c = json_skip(d, c);
			i = c;
		} else if (d->tok[i].type == JSON_OBJECT) {
			i = json_object_get(d, i, seg);
			if (i < 0)
				return -1;
		} else {
			return -1;
		}
	}
	return i;
}

/* The canonical text of the value at path in text, or "<why>". */
static const char *canon_at(const char *text, size_t len, const char *path)
{
	char *dst = slot();
	if (!text) {
		snprintf(dst, CANON_CAP, "<absent>");
		return dst;
	}
	struct json_doc d = {0};     /* owner: this function */
	struct buf out = {0};   /* owner: this function */
	const char *err = NULL;
	int i = -1;
	if (json_parse(&d, text, len) || d.count == 0)
		err = "not JSON";
	else if ((i = walk(&d, path)) < 0)
		err = "absent";
	else if (canon_value(&d, i, &out, &err) && !err)
		err = "out of memory";
	if (!err && out.len >= CANON_CAP)
		err = "too long";
	if (err && !strcmp(err, "not JSON"))
		snprintf(dst, CANON_CAP, "<not JSON: %.*s>", (int)(len > 2000 ? 2000 : len), text);
	else if (err)
		snprintf(dst, CANON_CAP, "<%s>", err);
	else {
		memcpy(dst, out.data, out.len);
		dst[out.len] = '\0';
	}
	buf_free(&out);
	json_doc_free(&d);
	return dst;
}

/* Canonical form of a literal; NULL stands for a missing value. */
static const char *canon(const char *json)
{
	return json ? canon_at(json, strlen(json), "") : canon_at(NULL, 0, "");
}

static const char *golden(const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/tests/golden/%s.json", LLMRING_SOURCE_DIR, name);
	char *dst = slot();
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(dst, CANON_CAP, "<missing golden file %s>", path);
		return dst;
	}
	static char text[CANON_CAP];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	return canon_at(text, n, "");
}

/* ---- building requests ------------------------------------------------ */

struct built {
	int rc;
	char why[ERROR_MESSAGE_MAX];
	enum provider provider;
	bool stream, body_is_input;
	char path[512];
	char body[CANON_CAP];
	size_t body_len;
};

/* Builds rq against paths, copies the outcome and frees rq. */
static const struct built *build_with(lr_request *rq, const char *const *paths)
{
	static struct built b;
	memset(&b, 0, sizeof(b));
	assert_non_null(rq);
	struct provider_request pr;
	b.rc = provider_build_request(rq, paths, &pr);
	if (b.rc) {
		snprintf(b.why, sizeof(b.why), "%s", pr.err.message);
		lr_request_free(rq);
		return &b;
	}
	b.provider = pr.provider;
	b.stream = pr.stream;
	b.body_is_input = pr.body_is_input;
	snprintf(b.path, sizeof(b.path), "%.*s", (int)pr.path.len, pr.path.data ? pr.path.data : "");
	const char *body = pr.body_is_input ? rq->body.data : pr.body.data;
	size_t len = pr.body_is_input ? rq->body.len : pr.body.len;
	if (len < sizeof(b.body)) {
		if (len)
			memcpy(b.body, body, len);
		b.body_len = len;
	} else {
		b.rc = LR_ETOOLARGE; /* the test's buffer, not the engine */
		snprintf(b.why, sizeof(b.why), "body larger than the test's buffer");
	}
	provider_request_free(&pr);
	lr_request_free(rq);
	return &b;
}

static const struct built *build(lr_request *rq)
{
	return build_with(rq, base_paths);
}

static void expect_built(const struct built *b, enum provider p, const char *path, bool stream)
{
	if (b->rc)
		print_error("build failed: %s (%s)\n", lr_error_name(b->rc), b->why);
	assert_int_equal(b->rc, 0);
	assert_int_equal(b->provider, p);
	assert_string_equal(b->path, path);
	assert_int_equal(b->stream, stream);
}

static void expect_golden(const struct built *b, const char *name)
{
	if (b->rc)
		print_error("build failed: %s (%s)\n", lr_error_name(b->rc), b->why);
	assert_int_equal(b->rc, 0);
	const char *got = canon_at(b->body, b->body_len, "");
	const char *want = golden(name);
	if (strcmp(got, want) != 0)
		print_error("golden %s differs\n", name);
	assert_string_equal(got, want);
}

/* The value at path of the built body, canonical; want NULL: absent. */
static void expect_at(const struct built *b, const char *path, const char *want)
{
	assert_int_equal(b->rc, 0);
	const char *got = canon_at(b->body, b->body_len, path);
	if (strcmp(got, canon(want)) != 0)
		print_error("at \"%s\"\n", path);
	assert_string_equal(got, canon(want));
}

static void expect_rejected(lr_request *rq, int code)
{
	const struct built *b = build(rq);
	if (b->rc != code)
		print_error("want %s, got %s (%s)\n", lr_error_name(code), lr_error_name(b->rc), b->why);
	assert_int_equal(b->rc, code);
	assert_true(b->why[0] != '\0');
}

/* ---- requests used across providers ----------------------------------- */

#define WEATHER_SCHEMA \
	"{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}"
#define CITY_SCHEMA \
	"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}},\"required\":[\"name\"]}"
#define JSON_SCHEMA_FORMAT \
	"{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"city\",\"schema\":" CITY_SCHEMA \
	",\"strict\":true}}"
#define ASSISTANT_TWO_CALLS                                                                        \
	"{\"role\":\"assistant\",\"content\":\"Let me check.\",\"tool_calls\":["                     \
	"{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","           \
	"\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"                                          \
	"{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\","              \
	"\"arguments\":\"\"}}]}"
#define PNG_DATA_URL "data:image/png;base64,iVBORw0KGgo="
#define CAT_URL "https://example.com/cat.jpg"

static lr_request *new_request(const char *model)
{
	lr_request *rq = lr_request_new(model);
	assert_non_null(rq);
	return rq;
}

static lr_request *user_request(const char *model, const char *text)
{
	lr_request *rq = new_request(model);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, text), 0);
	return rq;
}

/* System and user message with the common sampling parameters. */
static lr_request *chat_request(const char *model)
{
	lr_request *rq = new_request(model);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_SYSTEM, "You are terse."), 0);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "Hello"), 0);
	assert_int_equal(lr_request_set_temperature(rq, 0.5), 0);
	assert_int_equal(lr_request_set_seed(rq, 42), 0);
	assert_int_equal(lr_request_set_user(rq, "user-123"), 0);
	assert_int_equal(lr_request_add_stop(rq, "END"), 0);
	assert_int_equal(lr_request_set_max_tokens(rq, 100), 0);
	return rq;
}

static void add_tools(lr_request *rq)
{
	assert_int_equal(lr_request_add_tool(rq, "get_weather", "Current weather for a city", WEATHER_SCHEMA), 0);
	assert_int_equal(lr_request_add_tool(rq, "get_time", NULL, NULL), 0);
}

/* User question, assistant turn with two calls, both results. */
static lr_request *multi_turn_request(const char *model)
{
	lr_request *rq = user_request(model, "Weather and time in Paris?");
	assert_int_equal(lr_request_add_message_json(rq, ASSISTANT_TWO_CALLS), 0);
	assert_int_equal(lr_request_add_tool_result(rq, "call_1", "{\"temp_c\":18}"), 0);
	assert_int_equal(lr_request_add_tool_result(rq, "call_2", "14:05"), 0);
	add_tools(rq);
	return rq;
}

static lr_request *tools_request(const char *model, const char *choice)
{
	lr_request *rq = user_request(model, "Weather in Paris?");
	add_tools(rq);
	if (choice)
		assert_int_equal(lr_request_set_tool_choice(rq, choice), 0);
	return rq;
}

static lr_request *image_request(const char *model, const char *url, const char *detail)
{
	lr_request *rq = new_request(model);
	assert_int_equal(lr_request_add_image(rq, "What is in this image?", url, detail), 0);
	return rq;
}

static lr_request *format_request(const char *model, const char *format)
{
	lr_request *rq = user_request(model, "Name a city.");
	assert_int_equal(lr_request_set_response_format(rq, format), 0);
	return rq;
}

static lr_request *body_request(const char *model, const char *json)
{
	lr_request *rq = new_request(model);
	assert_int_equal(lr_request_set_body(rq, json, strlen(json)), 0);
	return rq;
}

static void ignore_delta(void *user, const lr_delta *d)
{
	(void)user;
	(void)d;
}

static lr_request *streamed(lr_request *rq)
{
	assert_int_equal(lr_request_on_delta(rq, ignore_delta, NULL), 0);
	return rq;
}

/* An OpenAI-shaped body exercising field translation. */
#define FROM_BODY(model, extra)                                                                    \
	"{\"model\":\"" model "\",\"messages\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"  \
	"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}]}],"                    \
	"\"max_tokens\":10,\"max_completion_tokens\":20,\"stop\":\"END\",\"top_p\":0.5,\"n\":1,"     \
	"\"stream\":false" extra "}"
#define BODY_TOOLS                                                                                 \
	",\"parallel_tool_calls\":false,\"tools\":[{\"type\":\"function\",\"function\":{"             \
	"\"name\":\"get_weather\",\"description\":\"Current weather for a city\",\"parameters\":"     \
	WEATHER_SCHEMA "}}],\"tool_choice\":\"required\""

/* ---- 1. request bodies: OpenAI ---------------------------------------- */

static void openai_chat_with_system(void **state)
{
	(void)state;
	const struct built *b = build(chat_request("openai/gpt-4o"));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
	assert_false(b->body_is_input);
	expect_golden(b, "openai_chat");
}

static void openai_multi_turn_with_tool_results(void **state)
{
	(void)state;
	const struct built *b = build(multi_turn_request("openai/gpt-4o"));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
	expect_golden(b, "openai_multi_turn");
}

static void openai_tools_and_tool_choice(void **state)
{
	(void)state;
	const struct built *b = build(tools_request("openai/gpt-4o", "auto"));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
	expect_golden(b, "openai_tools");
	expect_at(build(tools_request("openai/gpt-4o", "required")), "tool_choice", "\"required\"");
	expect_at(build(tools_request("openai/gpt-4o", "none")), "tool_choice", "\"none\"");
	expect_at(build(tools_request("openai/gpt-4o", "get_weather")), "tool_choice",
	          "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}");
}

static void openai_image_parts(void **state)
{
	(void)state;
	lr_request *rq = image_request("openai/gpt-4o", PNG_DATA_URL, "low");
	assert_int_equal(lr_request_add_image(rq, NULL, CAT_URL, NULL), 0);
	const struct built *b = build(rq);
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
	expect_golden(b, "openai_images");
}

static void openai_response_formats(void **state)
{
	(void)state;
	expect_at(build(format_request("openai/gpt-4o", "{\"type\":\"json_object\"}")), "response_format",
	          "{\"type\":\"json_object\"}");
	expect_golden(build(format_request("openai/gpt-4o", JSON_SCHEMA_FORMAT)), "openai_json_schema");
}

static void openai_stream_flags(void **state)
{
	(void)state;
	/* A delta callback asks for a stream with usage. */
	const struct built *b = build(streamed(user_request("openai/gpt-4o", "Hello")));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", true);
	expect_golden(b, "openai_stream");
	/* So does the pull iterator. */
	lr_request *rq = user_request("openai/gpt-4o", "Hello");
	assert_int_equal(lr_request_set_stream(rq, 1), 0);
	b = build(rq);
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", true);
	expect_golden(b, "openai_stream");
	/* A body of the caller's asking for a stream keeps its one "stream". */
	b = build(streamed(body_request("openai/gpt-4o",
	                                "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],"
	                                "\"stream\":true}")));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", true);
	expect_at(b, "stream", "true");
	expect_at(b, "model", "\"gpt-4o\"");
	/* A body without one gets stream and usage, replacing its own options. */
	b = build(streamed(body_request(NULL,
	                                "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],"
	                                "\"stream_options\":{\"include_usage\":false}}")));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", true);
	assert_false(b->body_is_input);
	expect_golden(b, "openai_stream");
}

static void openai_stream_options_param_is_not_duplicated(void **state)
{
	(void)state;
	lr_request *rq = streamed(user_request("openai/gpt-4o", "Hello"));
	int rc = lr_request_set_param(rq, "stream_options", "{\"include_usage\":false}");
	if (rc != 0) {
		/* Refusing the key is as good as merging it. */
		assert_int_equal(rc, LR_EINVAL);
		lr_request_free(rq);
		return;
	}
	const struct built *b = build(rq);
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", true);
	/* "<duplicate key>" when stream_options appears twice. */
	expect_at(b, "", "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],"
	                 "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
}

static void openai_body_with_prefix_is_rewritten(void **state)
{
	(void)state;
	const struct built *b = build(body_request(NULL, FROM_BODY("openai/gpt-4o", "")));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
	assert_false(b->body_is_input);
	expect_golden(b, "openai_from_body");
}

/* ---- 1. request bodies: Anthropic ------------------------------------- */

#define CLAUDE "anthropic/claude-haiku-4-5"

static void anthropic_chat_with_system(void **state)
{
	(void)state;
	const struct built *b = build(chat_request(CLAUDE));
	expect_built(b, PROVIDER_ANTHROPIC, "/v1/messages", false);
	expect_golden(b, "anthropic_chat");
}

static void anthropic_max_tokens_default_and_preference(void **state)
{
	(void)state;
	/* Anthropic requires max_tokens: 4096 when the caller gave none. */
	expect_at(build(user_request(CLAUDE, "Hello")), "max_tokens", "4096");
	/* max_completion_tokens wins over max_tokens. */
	lr_request *rq = user_request(CLAUDE, "Hello");
	assert_int_equal(lr_request_set_max_tokens(rq, 100), 0);
	assert_int_equal(lr_request_set_param(rq, "max_completion_tokens", "300"), 0);
	const struct built *b = build(rq);
	expect_at(b, "max_tokens", "300");
	expect_at(b, "max_completion_tokens", NULL);
}

static void anthropic_multi_turn_with_tool_results(void **state)
{
	(void)state;
	const struct built *b = build(multi_turn_request(CLAUDE));
	expect_built(b, PROVIDER_ANTHROPIC, "/v1/messages", false);
	expect_golden(b, "anthropic_multi_turn");
}

static void anthropic_tool_call_without_text(void **state)
{
	(void)state;
	lr_request *rq = user_request(CLAUDE, "Weather in Paris?");
	assert_int_equal(lr_request_add_message_json(
	                     rq, "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_1\","
	                         "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
	                         "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]}"),
	                 0);
	assert_int_equal(lr_request_add_tool_result(rq, "call_1", "{\"temp_c\":18}"), 0);
	expect_golden(build(rq), "anthropic_tool_call_without_text");
}

static void anthropic_tools_and_tool_choice(void **state)
{
	(void)state;
	const struct built *b = build(tools_request(CLAUDE, "auto"));
	expect_built(b, PROVIDER_ANTHROPIC, "/v1/messages", false);
	expect_golden(b, "anthropic_tools");
	expect_at(build(tools_request(CLAUDE, "required")), "tool_choice", "{\"type\":\"any\"}");
	expect_at(build(tools_request(CLAUDE, "none")), "tool_choice", "{\"type\":\"none\"}");
	expect_at(build(tools_request(CLAUDE, "get_weather")), "tool_choice",
	          "{\"type\":\"tool\",\"name\":\"get_weather\"}");
	/* Without a tool_choice the field is left to its default. */
	expect_at(build(tools_request(CLAUDE, NULL)), "tool_choice", NULL);
}

static void anthropic_image_parts(void **state)
{
	(void)state;
	lr_request *rq = image_request(CLAUDE, PNG_DATA_URL, "low");
	assert_int_equal(lr_request_add_image(rq, NULL, CAT_URL, NULL), 0);
	const struct built *b = build(rq);
	expect_built(b, PROVIDER_ANTHROPIC, "/v1/messages", false);
	expect_golden(b, "anthropic_images");
}

/* The Messages API has no response_format: as LiteLLM does, the schema
 * becomes one tool the model is made to call (json_tool_call), whose
 * input comes back as the reply text (see the response and stream tests). */
static void anthropic_response_format_becomes_a_forced_tool(void **state)
{
	(void)state;
	const struct built *b = build(format_request(CLAUDE, JSON_SCHEMA_FORMAT));
	expect_built(b, PROVIDER_ANTHROPIC, "/v1/messages", false);
	expect_golden(b, "anthropic_json_schema");
	b = build(format_request(CLAUDE, "{\"type\":\"json_object\"}"));
	expect_at(b, "tools", "[{\"name\":\"json_tool_call\",\"description\":\"Respond with JSON\","
	                      "\"input_schema\":{\"type\":\"object\"}}]");
	expect_at(b, "tool_choice", "{\"type\":\"tool\",\"name\":\"json_tool_call\"}");
	expect_at(b, "response_format", NULL);
	/* With tools of the caller's, the JSON tool is added and forced. */
	lr_request *rq = tools_request(CLAUDE, "auto");
	assert_int_equal(lr_request_set_response_format(rq, JSON_SCHEMA_FORMAT), 0);
	b = build(rq);
	expect_at(b, "tools.0.name", "\"get_weather\"");
	expect_at(b, "tools.2.name", "\"json_tool_call\"");
	expect_at(b, "tools.3", NULL);
	expect_at(b, "tool_choice", "{\"type\":\"tool\",\"name\":\"json_tool_call\"}");
	/* "text" is the default; anything else is not a format. */
	expect_at(build(format_request(CLAUDE, "{\"type\":\"text\"}")), "tools", NULL);
	expect_rejected(format_request(CLAUDE, "{\"type\":\"xml\"}"), LR_EINVAL);
	expect_rejected(format_request(CLAUDE, "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}"),
	                LR_EINVAL);
}

static void anthropic_stream_flag(void **state)
{
	(void)state;
	const struct built *b = build(streamed(user_request(CLAUDE, "Hello")));
	expect_built(b, PROVIDER_ANTHROPIC, "/v1/messages", true);
	expect_golden(b, "anthropic_stream");
}

static void anthropic_from_body(void **state)
{
	(void)state;
	const struct built *b = build(body_request(NULL, FROM_BODY(CLAUDE, BODY_TOOLS)));
	expect_built(b, PROVIDER_ANTHROPIC, "/v1/messages", false);
	expect_golden(b, "anthropic_from_body");
}

/* ---- 1. request bodies: Ollama ---------------------------------------- */

#define QWEN "ollama/qwen3:4b"

static void ollama_chat_with_system(void **state)
{
	(void)state;
	const struct built *b = build(chat_request(QWEN));
	expect_built(b, PROVIDER_OLLAMA, "/api/chat", false);
	expect_golden(b, "ollama_chat");
}

static void ollama_multi_turn_with_tool_results(void **state)
{
	(void)state;
	const struct built *b = build(multi_turn_request(QWEN));
	expect_built(b, PROVIDER_OLLAMA, "/api/chat", false);
	expect_golden(b, "ollama_multi_turn");
}

static void ollama_tools_and_tool_choice(void **state)
{
	(void)state;
	const struct built *b = build(tools_request(QWEN, "auto"));
	expect_built(b, PROVIDER_OLLAMA, "/api/chat", false);
	expect_golden(b, "ollama_tools");
	/* Ollama cannot force a call. */
	expect_rejected(tools_request(QWEN, "required"), LR_EUNSUPPORTED);
	expect_rejected(tools_request(QWEN, "get_weather"), LR_EUNSUPPORTED);
	/* "none": the tools are not offered at all. */
	b = build(tools_request(QWEN, "none"));
	expect_at(b, "tools", NULL);
	expect_at(b, "tool_choice", NULL);
}

static void ollama_image_parts(void **state)
{
	(void)state;
	const struct built *b = build(image_request(QWEN, PNG_DATA_URL, NULL));
	expect_built(b, PROVIDER_OLLAMA, "/api/chat", false);
	expect_golden(b, "ollama_images");
	expect_rejected(image_request(QWEN, CAT_URL, NULL), LR_EUNSUPPORTED);
}

static void ollama_response_formats(void **state)
{
	(void)state;
	const struct built *b = build(format_request(QWEN, "{\"type\":\"json_object\"}"));
	expect_at(b, "format", "\"json\"");
	expect_at(b, "response_format", NULL);
	expect_golden(build(format_request(QWEN, JSON_SCHEMA_FORMAT)), "ollama_json_schema");
}

static void ollama_stream_flag_is_always_explicit(void **state)
{
	(void)state;
	const struct built *b = build(user_request(QWEN, "Hello"));
	expect_built(b, PROVIDER_OLLAMA, "/api/chat", false);
	expect_at(b, "stream", "false");
	b = build(streamed(user_request(QWEN, "Hello")));
	expect_built(b, PROVIDER_OLLAMA, "/api/chat", true);
	expect_golden(b, "ollama_stream");
}

static void ollama_from_body(void **state)
{
	(void)state;
	const struct built *b = build(body_request(NULL, FROM_BODY(QWEN, "")));
	expect_built(b, PROVIDER_OLLAMA, "/api/chat", false);
	expect_golden(b, "ollama_from_body");
	/* The same preference from the C calls. */
	lr_request *rq = user_request(QWEN, "Hello");
	assert_int_equal(lr_request_set_max_tokens(rq, 100), 0);
	assert_int_equal(lr_request_set_param(rq, "max_completion_tokens", "300"), 0);
	expect_at(build(rq), "options", "{\"num_predict\":300}");
}

/* ---- 1. request bodies: Gemini ---------------------------------------- */

#define FLASH "gemini/gemini-2.0-flash"
#define FLASH_PATH "/v1beta/models/gemini-2.0-flash:generateContent"
#define FLASH_STREAM_PATH "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"

static void gemini_chat_with_system(void **state)
{
	(void)state;
	const struct built *b = build(chat_request(FLASH));
	expect_built(b, PROVIDER_GEMINI, FLASH_PATH, false);
	expect_golden(b, "gemini_chat");
}

static void gemini_multi_turn_with_tool_results(void **state)
{
	(void)state;
	const struct built *b = build(multi_turn_request(FLASH));
	expect_built(b, PROVIDER_GEMINI, FLASH_PATH, false);
	expect_golden(b, "gemini_multi_turn");
}

/* Gemini rejects empty text parts ("Unable to submit request because it
 * has an empty text parameter"): an assistant turn with "" content and a
 * call is the call alone. */
static void gemini_tool_call_without_text(void **state)
{
	(void)state;
	lr_request *rq = user_request(FLASH, "Weather in Paris?");
	assert_int_equal(lr_request_add_message_json(
	                     rq, "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_1\","
	                         "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
	                         "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]}"),
	                 0);
	assert_int_equal(lr_request_add_tool_result(rq, "call_1", "{\"temp_c\":18}"), 0);
	expect_golden(build(rq), "gemini_tool_call_without_text");
}

static void gemini_tools_and_tool_choice(void **state)
{
	(void)state;
	const struct built *b = build(tools_request(FLASH, "auto"));
	expect_built(b, PROVIDER_GEMINI, FLASH_PATH, false);
	expect_golden(b, "gemini_tools");
	expect_at(build(tools_request(FLASH, "required")), "toolConfig",
	          "{\"functionCallingConfig\":{\"mode\":\"ANY\"}}");
	expect_at(build(tools_request(FLASH, "none")), "toolConfig",
	          "{\"functionCallingConfig\":{\"mode\":\"NONE\"}}");
	expect_at(build(tools_request(FLASH, "get_weather")), "toolConfig",
	          "{\"functionCallingConfig\":{\"mode\":\"ANY\",\"allowedFunctionNames\":[\"get_weather\"]}}");
}

static void gemini_image_parts(void **state)
{
	(void)state;
	const struct built *b = build(image_request(FLASH, PNG_DATA_URL, NULL));
	expect_built(b, PROVIDER_GEMINI, FLASH_PATH, false);
	expect_golden(b, "gemini_images");
	expect_rejected(image_request(FLASH, CAT_URL, NULL), LR_EUNSUPPORTED);
}

static void gemini_response_formats(void **state)
{
	(void)state;
	expect_at(build(format_request(FLASH, "{\"type\":\"json_object\"}")), "generationConfig",
	          "{\"responseMimeType\":\"application/json\"}");
	expect_golden(build(format_request(FLASH, JSON_SCHEMA_FORMAT)), "gemini_json_schema");
}

static void gemini_stream_changes_the_path(void **state)
{
	(void)state;
	const struct built *b = build(streamed(user_request(FLASH, "Hello")));
	expect_built(b, PROVIDER_GEMINI, FLASH_STREAM_PATH, true);
	expect_golden(b, "gemini_stream");
	/* A body's own "stream":true does the same. */
	b = build(body_request(NULL, "{\"model\":\"" FLASH "\",\"messages\":[{\"role\":\"user\","
	                             "\"content\":\"Hello\"}],\"stream\":true}"));
	expect_built(b, PROVIDER_GEMINI, FLASH_STREAM_PATH, true);
	expect_golden(b, "gemini_stream");
}

static void gemini_from_body(void **state)
{
	(void)state;
	const struct built *b = build(body_request(NULL, FROM_BODY(FLASH, BODY_TOOLS)));
	expect_built(b, PROVIDER_GEMINI, FLASH_PATH, false);
	expect_golden(b, "gemini_from_body");
	lr_request *rq = user_request(FLASH, "Hello");
	assert_int_equal(lr_request_set_max_tokens(rq, 100), 0);
	assert_int_equal(lr_request_set_param(rq, "max_completion_tokens", "300"), 0);
	expect_at(build(rq), "generationConfig", "{\"maxOutputTokens\":300}");
}

/* ---- 1. routing ------------------------------------------------------- */

static void routing_bare_and_unknown_prefixes_go_to_openai(void **state)
{
	(void)state;
	const struct built *b = build(user_request("gpt-4o", "Hi"));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
	expect_at(b, "model", "\"gpt-4o\"");
	b = build(user_request("meta-llama/Llama-3.1-8B-Instruct", "Hi"));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
	expect_at(b, "model", "\"meta-llama/Llama-3.1-8B-Instruct\"");
	b = build(user_request("openai/gpt-4o", "Hi"));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
	expect_at(b, "model", "\"gpt-4o\"");
	/* mock speaks the OpenAI dialect at its own base URL */
	b = build(user_request("mock/any", "Hi"));
	expect_built(b, PROVIDER_MOCK, "/v1/chat/completions", false);
	expect_at(b, "model", "\"any\"");
}

static void routing_body_model_names_the_provider(void **state)
{
	(void)state;
	const struct built *b = build(body_request(
	    NULL, "{\"model\":\"anthropic/claude-haiku-4-5\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}"));
	expect_built(b, PROVIDER_ANTHROPIC, "/v1/messages", false);
	expect_at(b, "model", "\"claude-haiku-4-5\"");
	expect_at(b, "max_tokens", "4096");
	b = build(body_request(NULL, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}], \"model\" : \"" QWEN "\"}"));
	expect_built(b, PROVIDER_OLLAMA, "/api/chat", false);
	expect_at(b, "model", "\"qwen3:4b\"");
}

static void routing_body_without_a_known_prefix_goes_as_it_is(void **state)
{
	(void)state;
	static const char *const bodies[] = {
		"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
		"{\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"messages\":[]}",
		/* a provider name inside a string is not the model */
		("{\"messages\":[{\"role\":\"user\",\"content\":\"say \\\"model\\\":\\\"anthropic/x\\\"\"}],"
		 "\"model\":\"gpt-4o\"}"),
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		const struct built *b = build(body_request(NULL, bodies[i]));
		expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
		assert_true(b->body_is_input);
		assert_int_equal(b->body_len, strlen(bodies[i]));
		assert_memory_equal(b->body, bodies[i], b->body_len);
	}
}

static void routing_request_model_replaces_the_body_model(void **state)
{
	(void)state;
	const struct built *b = build(body_request(
	    CLAUDE, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}"));
	expect_built(b, PROVIDER_ANTHROPIC, "/v1/messages", false);
	expect_at(b, "model", "\"claude-haiku-4-5\"");
	b = build(body_request("gpt-4o-mini", "{\"model\":\"gpt-4o\",\"messages\":[]}"));
	expect_built(b, PROVIDER_OPENAI, "/v1/chat/completions", false);
	assert_false(b->body_is_input);
	expect_at(b, "", "{\"model\":\"gpt-4o-mini\",\"messages\":[]}");
}

static void routing_lr_model_provider(void **state)
{
	(void)state;
	static const struct {
		const char *model, *provider, *sent;
	} cases[] = {
		{"gpt-4o", "openai", "gpt-4o"},
		{"openai/gpt-4o", "openai", "gpt-4o"},
		{"anthropic/claude-haiku-4-5", "anthropic", "claude-haiku-4-5"},
		{"ollama/qwen3:4b", "ollama", "qwen3:4b"},
		{"gemini/gemini-2.0-flash", "gemini", "gemini-2.0-flash"},
		{"mock/any", "mock", "any"},
		{"meta-llama/Llama-3.1-8B-Instruct", "openai", "meta-llama/Llama-3.1-8B-Instruct"},
		{"Anthropic/claude", "openai", "Anthropic/claude"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *sent = NULL;
		const char *p = lr_model_provider(cases[i].model, &sent);
		assert_non_null(p);
		assert_string_equal(p, cases[i].provider);
		assert_string_equal(sent, cases[i].sent);
	}
	assert_string_equal(lr_model_provider("ollama/x", NULL), "ollama");
	assert_null(lr_model_provider(NULL, NULL));
}

static void routing_base_path_version_is_not_doubled(void **state)
{
	(void)state;
	static const char *const versioned[PROVIDER_COUNT] = {"/v1", "/v1", "/api", "/v1beta", "/v1"};
	expect_built(build_with(user_request(CLAUDE, "Hi"), versioned), PROVIDER_ANTHROPIC, "/v1/messages", false);
	expect_built(build_with(user_request(QWEN, "Hi"), versioned), PROVIDER_OLLAMA, "/api/chat", false);
	expect_built(build_with(user_request(FLASH, "Hi"), versioned), PROVIDER_GEMINI, FLASH_PATH, false);
	static const char *const proxied[PROVIDER_COUNT] = {"/proxy/v1", "/proxy", "/proxy", "/proxy", "/v1"};
	expect_built(build_with(user_request(CLAUDE, "Hi"), proxied), PROVIDER_ANTHROPIC, "/proxy/v1/messages", false);
	expect_built(build_with(user_request("gpt-4o", "Hi"), proxied), PROVIDER_OPENAI,
	             "/proxy/v1/chat/completions", false);
	/* "models/" before a Gemini model is Gemini's own resource prefix. */
	expect_built(build(user_request("gemini/models/gemini-2.0-flash", "Hi")), PROVIDER_GEMINI, FLASH_PATH, false);
}

/* ---- 1. embeddings ---------------------------------------------------- */

static lr_request *embed_request(const char *model)
{
	lr_request *rq = new_request(model);
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS), 0);
	assert_int_equal(lr_request_add_input(rq, "first text"), 0);
	assert_int_equal(lr_request_add_input(rq, "second text"), 0);
	return rq;
}

static void embeddings_openai(void **state)
{
	(void)state;
	static const char body[] = "{\"model\":\"text-embedding-3-small\",\"input\":\"hello\"}";
	lr_request *rq = body_request(NULL, body);
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS), 0);
	const struct built *b = build(rq);
	expect_built(b, PROVIDER_OPENAI, "/v1/embeddings", false);
	assert_true(b->body_is_input);
	assert_int_equal(b->body_len, strlen(body));
	assert_memory_equal(b->body, body, b->body_len);

	b = build(embed_request("openai/text-embedding-3-small"));
	expect_built(b, PROVIDER_OPENAI, "/v1/embeddings", false);
	expect_at(b, "", "{\"model\":\"text-embedding-3-small\",\"input\":[\"first text\",\"second text\"]}");
}

static void embeddings_ollama(void **state)
{
	(void)state;
	const struct built *b = build(embed_request("ollama/nomic-embed-text"));
	expect_built(b, PROVIDER_OLLAMA, "/api/embed", false);
	expect_golden(b, "ollama_embed");
	/* A callback does not make an embeddings request a stream. */
	b = build(streamed(embed_request("ollama/nomic-embed-text")));
	expect_built(b, PROVIDER_OLLAMA, "/api/embed", false);
	expect_golden(b, "ollama_embed");
}

static void embeddings_anthropic_and_gemini_are_unsupported(void **state)
{
	(void)state;
	expect_rejected(embed_request("anthropic/claude-haiku-4-5"), LR_EUNSUPPORTED);
	expect_rejected(embed_request("gemini/text-embedding-004"), LR_EUNSUPPORTED);
	lr_request *rq = new_request("openai/text-embedding-3-small");
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS), 0);
	expect_rejected(rq, LR_EINVAL); /* no input */
}

/* ---- 1. text completions ---------------------------------------------- */

static lr_request *completion_request(const char *model, const char *prompt)
{
	lr_request *rq = new_request(model);
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_COMPLETIONS), 0);
	assert_int_equal(lr_request_set_prompt(rq, prompt), 0);
	return rq;
}

static void completions_openai_body_from_calls(void **state)
{
	(void)state;
	/* The bytes themselves: the builder's order, what vLLM's benchmark sends. */
	lr_request *rq = completion_request("openai/gpt-3.5-turbo-instruct", "Say \"hi\"\n");
	assert_int_equal(lr_request_set_max_tokens(rq, 16), 0);
	const struct built *b = build(rq);
	expect_built(b, PROVIDER_OPENAI, "/v1/completions", false);
	static const char want[] = "{\"model\":\"gpt-3.5-turbo-instruct\",\"prompt\":\"Say \\\"hi\\\"\\n\","
	                           "\"max_tokens\":16}";
	assert_int_equal(b->body_len, strlen(want));
	assert_memory_equal(b->body, want, b->body_len);
	/* Every parameter, streamed: stop and max_tokens as chat puts them,
	 * stream with usage, the others as set. */
	rq = streamed(completion_request("openai/gpt-3.5-turbo-instruct", "Once upon a time"));
	assert_int_equal(lr_request_set_max_tokens(rq, 100), 0);
	assert_int_equal(lr_request_set_temperature(rq, 0.5), 0);
	assert_int_equal(lr_request_set_top_p(rq, 0.9), 0);
	assert_int_equal(lr_request_set_seed(rq, 42), 0);
	assert_int_equal(lr_request_add_stop(rq, "END"), 0);
	assert_int_equal(lr_request_set_n(rq, 2), 0);
	assert_int_equal(lr_request_set_param(rq, "ignore_eos", "true"), 0);
	b = build(rq);
	expect_built(b, PROVIDER_OPENAI, "/v1/completions", true);
	expect_at(b, "", "{\"model\":\"gpt-3.5-turbo-instruct\",\"prompt\":\"Once upon a time\","
	                 "\"stop\":[\"END\"],\"max_tokens\":100,\"stream\":true,"
	                 "\"stream_options\":{\"include_usage\":true},\"temperature\":0.5,\"top_p\":0.9,"
	                 "\"seed\":42,\"n\":2,\"ignore_eos\":true}");
	/* Any OpenAI-compatible server: an unknown prefix, mock/, a proxy path. */
	b = build(completion_request("meta-llama/Llama-3.1-8B", "x"));
	expect_built(b, PROVIDER_OPENAI, "/v1/completions", false);
	expect_at(b, "model", "\"meta-llama/Llama-3.1-8B\"");
	expect_built(build(completion_request("mock/any", "x")), PROVIDER_MOCK, "/v1/completions", false);
	static const char *const proxied[PROVIDER_COUNT] = {"/proxy/v1", "/proxy", "/proxy", "/proxy", "/v1"};
	expect_built(build_with(completion_request("gpt-3.5-turbo-instruct", "x"), proxied), PROVIDER_OPENAI,
	             "/proxy/v1/completions", false);
}

static void completions_openai_body_of_the_callers(void **state)
{
	(void)state;
	/* Sent as it is, to the completions path. */
	static const char body[] = "{\"model\":\"gpt-3.5-turbo-instruct\",\"prompt\":[\"a\",\"b\"]}";
	lr_request *rq = body_request(NULL, body);
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_COMPLETIONS), 0);
	const struct built *b = build(rq);
	expect_built(b, PROVIDER_OPENAI, "/v1/completions", false);
	assert_true(b->body_is_input);
	assert_memory_equal(b->body, body, strlen(body));
	/* Streamed: the stream and its usage put in, the model replaced. */
	rq = streamed(body_request("openai/m", "{\"model\":\"x\",\"prompt\":\"p\",\"stream\":false}"));
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_COMPLETIONS), 0);
	b = build(rq);
	expect_built(b, PROVIDER_OPENAI, "/v1/completions", true);
	expect_at(b, "", "{\"model\":\"m\",\"prompt\":\"p\",\"stream\":true,"
	                 "\"stream_options\":{\"include_usage\":true}}");
}

static void completions_are_unsupported_by_the_other_dialects(void **state)
{
	(void)state;
	static const char *const models[] = {CLAUDE, QWEN, FLASH};
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		const struct built *b = build(completion_request(models[i], "Once upon a time"));
		if (b->rc != LR_EUNSUPPORTED || !strstr(b->why, "text-completions"))
			fail_msg("%s: got %s \"%s\"", models[i], lr_error_name(b->rc), b->why);
		b = build(streamed(completion_request(models[i], "Once upon a time")));
		assert_int_equal(b->rc, LR_EUNSUPPORTED);
	}
}

static void completions_prompt_belongs_to_its_endpoint(void **state)
{
	(void)state;
	/* Refused at once on a chat or embeddings request, and NULL. */
	lr_request *rq = new_request("gpt-3.5-turbo-instruct");
	assert_int_equal(lr_request_set_prompt(rq, "x"), LR_EINVAL);
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS), 0);
	assert_int_equal(lr_request_set_prompt(rq, "x"), LR_EINVAL);
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_COMPLETIONS), 0);
	assert_int_equal(lr_request_set_prompt(rq, NULL), LR_EINVAL);
	assert_int_equal(lr_request_set_prompt(NULL, "x"), LR_EINVAL);
	assert_int_equal(lr_request_set_endpoint(rq, (enum lr_endpoint)3), LR_EINVAL);
	/* A second prompt replaces the first. */
	assert_int_equal(lr_request_set_prompt(rq, "first"), 0);
	assert_int_equal(lr_request_set_prompt(rq, "second"), 0);
	/* "prompt" is the builder's key, not a parameter. */
	assert_int_equal(lr_request_set_param(rq, "prompt", "\"third\""), LR_EINVAL);
	expect_at(build(rq), "prompt", "\"second\"");
	/* At submission: no prompt; messages, tools or inputs; a prompt left
	 * on a request switched back to chat; a body beside the prompt. */
	rq = new_request("gpt-3.5-turbo-instruct");
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_COMPLETIONS), 0);
	expect_rejected(rq, LR_EINVAL);
	rq = completion_request("gpt-3.5-turbo-instruct", "x");
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "Hi"), 0);
	expect_rejected(rq, LR_EINVAL);
	rq = completion_request("gpt-3.5-turbo-instruct", "x");
	add_tools(rq);
	expect_rejected(rq, LR_EINVAL);
	rq = completion_request("gpt-3.5-turbo-instruct", "x");
	assert_int_equal(lr_request_add_input(rq, "text"), 0);
	expect_rejected(rq, LR_EINVAL);
	rq = completion_request("gpt-3.5-turbo-instruct", "x");
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "Hi"), 0);
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_CHAT), 0);
	const struct built *b = build(rq);
	assert_int_equal(b->rc, LR_EINVAL);
	assert_non_null(strstr(b->why, "prompt"));
	static const char body[] = "{\"model\":\"m\",\"prompt\":\"y\"}";
	rq = completion_request(NULL, "x");
	assert_int_equal(lr_request_set_body(rq, body, strlen(body)), 0);
	expect_rejected(rq, LR_EINVAL);
}

/* ---- 1. invalid requests ---------------------------------------------- */

static void invalid_body_with_message_calls(void **state)
{
	(void)state;
	lr_request *rq = body_request(NULL, "{\"model\":\"gpt-4o\",\"messages\":[]}");
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "Hi"), 0);
	expect_rejected(rq, LR_EINVAL);
	rq = body_request(CLAUDE, "{\"messages\":[]}");
	assert_int_equal(lr_request_set_temperature(rq, 0.5), 0);
	expect_rejected(rq, LR_EINVAL);
}

static void invalid_without_messages(void **state)
{
	(void)state;
	static const char *const models[] = {"openai/gpt-4o", CLAUDE, QWEN, FLASH};
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		lr_request *rq = new_request(models[i]);
		assert_int_equal(lr_request_set_temperature(rq, 0.5), 0);
		expect_rejected(rq, LR_EINVAL);
	}
	expect_rejected(body_request(NULL, "{\"model\":\"" CLAUDE "\"}"), LR_EINVAL);
	expect_rejected(body_request(NULL, "{\"model\":\"" QWEN "\"}"), LR_EINVAL);
	expect_rejected(body_request(NULL, "{\"model\":\"" FLASH "\"}"), LR_EINVAL);
}

static void invalid_models(void **state)
{
	(void)state;
	expect_rejected(user_request(NULL, "Hi"), LR_EINVAL);          /* neither model nor body */
	expect_rejected(user_request("anthropic/", "Hi"), LR_EINVAL);  /* empty after the prefix */
	expect_rejected(user_request("gemini/gemini 2?x", "Hi"), LR_EINVAL); /* not path-safe */
	expect_rejected(body_request(CLAUDE, "[1,2]"), LR_EINVAL);     /* not an object */
}

static void invalid_gemini_tool_result_without_its_call(void **state)
{
	(void)state;
	lr_request *rq = user_request(FLASH, "Weather in Paris?");
	assert_int_equal(lr_request_add_tool_result(rq, "call_9", "18C"), 0);
	expect_rejected(rq, LR_EINVAL);
	/* The answer to a different call does not name this one. */
	rq = user_request(FLASH, "Weather in Paris?");
	assert_int_equal(lr_request_add_message_json(rq, ASSISTANT_TWO_CALLS), 0);
	assert_int_equal(lr_request_add_tool_result(rq, "call_3", "18C"), 0);
	expect_rejected(rq, LR_EINVAL);
	/* A tool message that names its function is enough. */
	rq = user_request(FLASH, "Weather in Paris?");
	assert_int_equal(lr_request_add_message_json(
	                     rq, "{\"role\":\"tool\",\"tool_call_id\":\"call_9\",\"name\":\"get_weather\","
	                         "\"content\":\"18C\"}"),
	                 0);
	expect_at(build(rq), "contents.1", "{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":"
	                                   "\"get_weather\",\"response\":{\"content\":\"18C\"}}}]}");
}

static lr_request *bad_arguments_request(const char *model, const char *args_json_string)
{
	char msg[512];
	snprintf(msg, sizeof(msg),
	         "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
	         "\"function\":{\"name\":\"get_weather\",\"arguments\":%s}}]}",
	         args_json_string);
	lr_request *rq = user_request(model, "Weather in Paris?");
	assert_int_equal(lr_request_add_message_json(rq, msg), 0);
	assert_int_equal(lr_request_add_tool_result(rq, "call_1", "18C"), 0);
	return rq;
}

static void invalid_tool_call_arguments(void **state)
{
	(void)state;
	static const char *const models[] = {CLAUDE, QWEN, FLASH};
	static const char *const args[] = {"\"{city: Paris\"", "\"[1,2]\"", "\"{\\\"city\\\":\""};
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		for (size_t j = 0; j < sizeof(args) / sizeof(args[0]); j++)
			expect_rejected(bad_arguments_request(models[i], args[j]), LR_EINVAL);
	/* Arguments sent as an object (some clients do) are taken as they are. */
	expect_at(build(bad_arguments_request(CLAUDE, "{\"city\":\"Paris\"}")), "messages.1.content.0.input",
	          "{\"city\":\"Paris\"}");
}

/* ---- reply snapshots -------------------------------------------------- */

#define MAX_CALLS 4

/* What the delta callback saw. */
struct rec {
	int text_deltas, tool_deltas, finish_deltas, empty_deltas, all_deltas, bad;
	char text[2048];
	size_t text_len;
	char finish[32];
	struct {
		char id[96], name[64], args[512];
		size_t args_len;
	} tools[MAX_CALLS];
};

static void append_to(char *dst, size_t *len, size_t cap, const char *s, size_t n, int *bad)
{
	if (*len + n >= cap) {
		(*bad)++;
		return;
	}
	memcpy(dst + *len, s, n);
	*len += n;
	dst[*len] = '\0';
}

static void record_delta(void *user, const lr_delta *d)
{
	struct rec *rc = user;
	rc->all_deltas++; /* one event's text and finish reason come as one delta */
	if (!d->text) {
		rc->bad++;
		return;
	}
	if (d->tool_index >= 0) {
		if (d->tool_index >= MAX_CALLS || d->text_len || d->finish_reason) {
			rc->bad++;
			return;
		}
		rc->tool_deltas++;
		__typeof__(&rc->tools[0]) t = &rc->tools[d->tool_index];
		if (d->tool_id)
			snprintf(t->id, sizeof(t->id), "%s", d->tool_id);
		if (d->tool_name)
			snprintf(t->name, sizeof(t->name), "%s", d->tool_name);
		if (d->tool_arguments_len && !d->tool_arguments)
			rc->bad++;
		else
			append_to(t->args, &t->args_len, sizeof(t->args), d->tool_arguments, d->tool_arguments_len,
			          &rc->bad);
		return;
	}
	if (d->finish_reason) {
		rc->finish_deltas++;
		snprintf(rc->finish, sizeof(rc->finish), "%s", d->finish_reason);
	}
	if (d->text_len) {
		if (d->choice == 0)
			append_to(rc->text, &rc->text_len, sizeof(rc->text), d->text, d->text_len, &rc->bad);
		rc->text_deltas++;
	}
	if (!d->finish_reason && !d->text_len)
		rc->empty_deltas++; /* an event with a choice and nothing new (a role-only chunk) */
}

struct snap {
	int error;
	char message[400];
	char text[2048];
	size_t text_len;
	char finish[32], model[128], id[128];
	lr_usage usage;
	unsigned long events, deltas;
	bool done;
	unsigned ncalls;
	struct {
		int index;
		char id[96], name[64], args[512];
	} calls[MAX_CALLS];
	struct rec rec;
	/* streams */
	int feed_rc, finish_rc;
	bool fatal;
	/* whole responses */
	bool body_is_json, rewritten;
	char normalized[8192];
	size_t normalized_len;
	char openai_body[8192];      /* reply_openai_body of the reply */
	size_t openai_body_len;
	char completion_body[8192];  /* reply_text_completion_body of the reply */
};

static void copy_buf(char *dst, size_t cap, const struct buf *b)
{
	size_t n = b->len < cap - 1 ? b->len : cap - 1;
	if (n)
		memcpy(dst, b->data, n);
	dst[n] = '\0';
}

static void snapshot(const struct reply *r, struct snap *s)
{
	s->error = r->err.code;
	snprintf(s->message, sizeof(s->message), "%s", r->err.message);
	copy_buf(s->text, sizeof(s->text), &r->text);
	s->text_len = r->text.len;
	snprintf(s->finish, sizeof(s->finish), "%s", r->finish_reason);
	snprintf(s->model, sizeof(s->model), "%s", r->model);
	snprintf(s->id, sizeof(s->id), "%s", r->id);
	s->usage = r->usage;
	s->events = r->events;
	s->deltas = r->deltas;
	s->done = r->done;
	s->ncalls = r->ncalls;
	for (unsigned i = 0; i < r->ncalls && i < MAX_CALLS; i++) {
		s->calls[i].index = r->calls[i].index;
		copy_buf(s->calls[i].id, sizeof(s->calls[i].id), &r->calls[i].id);
		copy_buf(s->calls[i].name, sizeof(s->calls[i].name), &r->calls[i].name);
		copy_buf(s->calls[i].args, sizeof(s->calls[i].args), &r->calls[i].args);
	}
	struct buf body = {0}; /* owner: this function */
	if (reply_openai_body(r, &body) == 0) {
		copy_buf(s->openai_body, sizeof(s->openai_body), &body);
		s->openai_body_len = strlen(s->openai_body);
	}
	buf_clear(&body);
	if (reply_text_completion_body(r, &body) == 0)
		copy_buf(s->completion_body, sizeof(s->completion_body), &body);
	buf_free(&body);
}

/* A whole response through provider_parse_response. */
static const struct snap *parse(enum provider p, enum lr_endpoint ep, int status, const char *body)
{
	static struct snap s;
	memset(&s, 0, sizeof(s));
	struct reply r;
	reply_init(&r, record_delta, &s.rec);
	struct json_doc doc = {0};      /* owner: this function */
	struct buf norm = {0};     /* owner: this function */
	provider_parse_response(p, ep, &doc, status, body, strlen(body), &r, &s.body_is_json, &norm, &s.rewritten);
	snapshot(&r, &s);
	copy_buf(s.normalized, sizeof(s.normalized), &norm);
	s.normalized_len = strlen(s.normalized);
	buf_free(&norm);
	json_doc_free(&doc);
	reply_free(&r);
	return &s;
}

static void expect_call(const struct snap *s, unsigned i, const char *id, const char *name, const char *args)
{
	assert_true(i < s->ncalls);
	assert_string_equal(s->calls[i].id, id);
	assert_string_equal(s->calls[i].name, name);
	assert_string_equal(s->calls[i].args, args);
}

static void expect_usage(const lr_usage *u, int64_t in, int64_t out, int64_t cached)
{
	assert_int_equal(u->input_tokens, in);
	assert_int_equal(u->output_tokens, out);
	assert_int_equal(u->cached_input_tokens, cached);
}

/* The value at path of an OpenAI-shaped body text (canonical). */
static void expect_json(const char *text, const char *path, const char *want)
{
	const char *got = canon_at(text, strlen(text), path);
	if (strcmp(got, canon(want)) != 0)
		print_error("at \"%s\" of %s\n", path, text);
	assert_string_equal(got, canon(want));
}

/* A whole success: no error, no deltas fired, normalized (when rewritten)
 * a chat.completion. */
static void expect_success(const struct snap *s, bool rewritten)
{
	if (s->error)
		print_error("error %s: %s\n", lr_error_name(s->error), s->message);
	assert_int_equal(s->error, 0);
	assert_true(s->body_is_json);
	assert_int_equal(s->rewritten, rewritten);
	assert_int_equal(s->deltas, 0);
	assert_int_equal(s->rec.text_deltas + s->rec.tool_deltas + s->rec.finish_deltas, 0);
	if (rewritten) {
		expect_json(s->normalized, "object", "\"chat.completion\"");
		expect_json(s->normalized, "choices.0.index", "0");
		expect_json(s->normalized, "choices.0.message.role", "\"assistant\"");
	} else {
		assert_int_equal(s->normalized_len, 0);
	}
}

/* ---- 2. whole responses ----------------------------------------------- */

static void response_openai_text_and_cached_usage(void **state)
{
	(void)state;
	const struct snap *s = parse(
	    PROVIDER_OPENAI, LR_ENDPOINT_CHAT, 200,
	    "{\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion\",\"created\":1741570283,"
	    "\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
	    "\"content\":\"Hello! \\\"Quoted\\\"\\nline two \\u00e9\",\"refusal\":null,\"annotations\":[]},"
	    "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1117,"
	    "\"completion_tokens\":46,\"total_tokens\":1163,\"prompt_tokens_details\":{\"cached_tokens\":1024,"
	    "\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
	    "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},\"service_tier\":\"default\","
	    "\"system_fingerprint\":\"fp_fc9f1d7035\"}");
	expect_success(s, false);
	assert_string_equal(s->text, "Hello! \"Quoted\"\nline two \xc3\xa9");
	assert_string_equal(s->finish, "stop");
	assert_string_equal(s->model, "gpt-4o-2024-08-06");
	assert_string_equal(s->id, "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
	assert_int_equal(s->ncalls, 0);
	expect_usage(&s->usage, 1117, 46, 1024);
}

static void response_openai_tool_calls(void **state)
{
	(void)state;
	const struct snap *s = parse(
	    PROVIDER_OPENAI, LR_ENDPOINT_CHAT, 200,
	    "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o\","
	    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
	    "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
	    "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
	    "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}],"
	    "\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
	    "\"usage\":{\"prompt_tokens\":82,\"completion_tokens\":40,\"total_tokens\":122}}");
	expect_success(s, false);
	assert_string_equal(s->text, "");
	assert_string_equal(s->finish, "tool_calls");
	assert_int_equal(s->ncalls, 2);
	expect_call(s, 0, "call_1", "get_weather", "{\"city\":\"Paris\"}");
	expect_call(s, 1, "call_2", "get_time", "{}");
	expect_usage(&s->usage, 82, 40, 0);
	/* Written back out, the same tool calls. */
	expect_json(s->openai_body, "choices.0.message.content", "null");
	expect_json(s->openai_body, "choices.0.message.tool_calls.0.function.arguments",
	            "\"{\\\"city\\\":\\\"Paris\\\"}\"");
	expect_json(s->openai_body, "choices.0.message.tool_calls.1.id", "\"call_2\"");
}

static void response_anthropic_tool_use_and_cache_usage(void **state)
{
	(void)state;
	const struct snap *s = parse(
	    PROVIDER_ANTHROPIC, LR_ENDPOINT_CHAT, 200,
	    "{\"id\":\"msg_01Aq9w938a90dw8q\",\"type\":\"message\",\"role\":\"assistant\","
	    "\"model\":\"claude-haiku-4-5-20251001\",\"content\":[{\"type\":\"text\",\"text\":\"I'll check the "
	    "\\\"weather\\\".\"},{\"type\":\"tool_use\",\"id\":\"toolu_01A09q90qw90lq917835lq9\","
	    "\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\",\"unit\":\"celsius\"}}],"
	    "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,"
	    "\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2048,\"output_tokens\":89,"
	    "\"service_tier\":\"standard\"}}");
	expect_success(s, true);
	assert_string_equal(s->text, "I'll check the \"weather\".");
	assert_string_equal(s->finish, "tool_calls");
	assert_string_equal(s->model, "claude-haiku-4-5-20251001");
	assert_string_equal(s->id, "msg_01Aq9w938a90dw8q");
	assert_int_equal(s->ncalls, 1);
	expect_call(s, 0, "toolu_01A09q90qw90lq917835lq9", "get_weather", "{\"city\":\"Paris\",\"unit\":\"celsius\"}");
	/* input = input_tokens + cache reads + cache writes; cached = reads */
	expect_usage(&s->usage, 2620, 89, 2048);
	const char *n = s->normalized;
	expect_json(n, "id", "\"msg_01Aq9w938a90dw8q\"");
	expect_json(n, "model", "\"claude-haiku-4-5-20251001\"");
	expect_json(n, "choices.0.message.content", "\"I'll check the \\\"weather\\\".\"");
	expect_json(n, "choices.0.message.tool_calls.0",
	            "{\"id\":\"toolu_01A09q90qw90lq917835lq9\",\"type\":\"function\",\"function\":{"
	            "\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\",\\\"unit\\\":\\\"celsius\\\"}\"}}");
	expect_json(n, "choices.0.finish_reason", "\"tool_calls\"");
	expect_json(n, "usage", "{\"prompt_tokens\":2620,\"completion_tokens\":89,\"total_tokens\":2709,"
	                        "\"prompt_tokens_details\":{\"cached_tokens\":2048}}");
}

static void response_anthropic_finish_reasons(void **state)
{
	(void)state;
	static const struct {
		const char *anthropic, *openai;
	} map[] = {
		{"end_turn", "stop"},           {"stop_sequence", "stop"},   {"max_tokens", "length"},
		{"tool_use", "tool_calls"},     {"refusal", "content_filter"}, {"pause_turn", "stop"},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		char body[512];
		snprintf(body, sizeof(body),
		         "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\","
		         "\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}],\"stop_reason\":\"%s\",\"stop_sequence\":null,"
		         "\"usage\":{\"input_tokens\":12,\"output_tokens\":3}}",
		         map[i].anthropic);
		const struct snap *s = parse(PROVIDER_ANTHROPIC, LR_ENDPOINT_CHAT, 200, body);
		expect_success(s, true);
		assert_string_equal(s->finish, map[i].openai);
		assert_string_equal(s->text, "Hi");
		expect_usage(&s->usage, 12, 3, 0);
		char want[64];
		snprintf(want, sizeof(want), "\"%s\"", map[i].openai);
		expect_json(s->normalized, "choices.0.finish_reason", want);
	}
}

/* response_format's forced tool: its input is the reply text. */
static void response_anthropic_json_tool_is_the_text(void **state)
{
	(void)state;
	const struct snap *s = parse(
	    PROVIDER_ANTHROPIC, LR_ENDPOINT_CHAT, 200,
	    "{\"id\":\"msg_json\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5-20251001\","
	    "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_json\",\"name\":\"json_tool_call\","
	    "\"input\":{\"name\":\"Paris\"}}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
	    "\"usage\":{\"input_tokens\":40,\"output_tokens\":12}}");
	expect_success(s, true);
	assert_string_equal(s->text, "{\"name\":\"Paris\"}");
	assert_int_equal(s->ncalls, 0);
	assert_string_equal(s->finish, "stop");
	expect_json(s->normalized, "choices.0.message.content", "\"{\\\"name\\\":\\\"Paris\\\"}\"");
	expect_json(s->normalized, "choices.0.message.tool_calls", NULL);
	expect_json(s->normalized, "choices.0.finish_reason", "\"stop\"");
}

static void response_ollama_tool_calls(void **state)
{
	(void)state;
	const struct snap *s = parse(
	    PROVIDER_OLLAMA, LR_ENDPOINT_CHAT, 200,
	    "{\"model\":\"qwen3:4b\",\"created_at\":\"2025-06-01T10:00:00.000000Z\",\"message\":{\"role\":\"assistant\","
	    "\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}},"
	    "{\"function\":{\"name\":\"get_time\",\"arguments\":{}}}]},\"done_reason\":\"stop\",\"done\":true,"
	    "\"total_duration\":885095291,\"load_duration\":3753500,\"prompt_eval_count\":26,"
	    "\"prompt_eval_duration\":250000000,\"eval_count\":21,\"eval_duration\":631000000}");
	expect_success(s, true);
	assert_string_equal(s->text, "");
	assert_string_equal(s->finish, "tool_calls");
	assert_string_equal(s->model, "qwen3:4b");
	assert_int_equal(s->ncalls, 2);
	expect_call(s, 0, "call_0", "get_weather", "{\"city\":\"Paris\"}");
	expect_call(s, 1, "call_1", "get_time", "{}");
	expect_usage(&s->usage, 26, 21, 0);
	const char *n = s->normalized;
	expect_json(n, "choices.0.message.content", "null");
	expect_json(n, "choices.0.message.tool_calls.1.function",
	            "{\"name\":\"get_time\",\"arguments\":\"{}\"}");
	expect_json(n, "choices.0.finish_reason", "\"tool_calls\"");
	expect_json(n, "usage.prompt_tokens", "26");
	expect_json(n, "usage.completion_tokens", "21");
	expect_json(n, "usage.total_tokens", "47");
}

static void response_ollama_text_and_length(void **state)
{
	(void)state;
	const struct snap *s = parse(
	    PROVIDER_OLLAMA, LR_ENDPOINT_CHAT, 200,
	    "{\"model\":\"qwen3:4b\",\"created_at\":\"2025-06-01T10:00:00Z\",\"message\":{\"role\":\"assistant\","
	    "\"content\":\"Once upon a \\\"time\\\"\\n\"},\"done_reason\":\"length\",\"done\":true,"
	    "\"prompt_eval_count\":5,\"eval_count\":16}");
	expect_success(s, true);
	assert_string_equal(s->text, "Once upon a \"time\"\n");
	assert_string_equal(s->finish, "length");
	expect_usage(&s->usage, 5, 16, 0);
	expect_json(s->normalized, "choices.0.message.content", "\"Once upon a \\\"time\\\"\\n\"");
	expect_json(s->normalized, "choices.0.message.tool_calls", NULL);
	expect_json(s->normalized, "choices.0.finish_reason", "\"length\"");
	expect_json(s->normalized, "model", "\"qwen3:4b\"");
	s = parse(PROVIDER_OLLAMA, LR_ENDPOINT_CHAT, 200,
	          "{\"model\":\"qwen3:4b\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
	          "\"done_reason\":\"stop\",\"done\":true,\"prompt_eval_count\":5,\"eval_count\":1}");
	expect_success(s, true);
	assert_string_equal(s->finish, "stop");
}

static void response_gemini_function_call_and_cache(void **state)
{
	(void)state;
	const struct snap *s = parse(
	    PROVIDER_GEMINI, LR_ENDPOINT_CHAT, 200,
	    "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Let me look that up.\"},{\"functionCall\":{"
	    "\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}}],\"role\":\"model\"},\"finishReason\":\"STOP\","
	    "\"index\":0,\"safetyRatings\":[{\"category\":\"HARM_CATEGORY_HARASSMENT\",\"probability\":\"NEGLIGIBLE\"}]}],"
	    "\"usageMetadata\":{\"promptTokenCount\":1200,\"candidatesTokenCount\":25,\"totalTokenCount\":1225,"
	    "\"cachedContentTokenCount\":1024,\"promptTokensDetails\":[{\"modality\":\"TEXT\",\"tokenCount\":1200}]},"
	    "\"modelVersion\":\"gemini-2.0-flash\",\"responseId\":\"mU2JaOHqNf2\"}");
	expect_success(s, true);
	assert_string_equal(s->text, "Let me look that up.");
	assert_string_equal(s->finish, "tool_calls");
	assert_string_equal(s->model, "gemini-2.0-flash");
	assert_string_equal(s->id, "mU2JaOHqNf2");
	assert_int_equal(s->ncalls, 1);
	expect_call(s, 0, "call_0", "get_weather", "{\"city\":\"Paris\"}");
	expect_usage(&s->usage, 1200, 25, 1024);
	const char *n = s->normalized;
	expect_json(n, "choices.0.message.content", "\"Let me look that up.\"");
	expect_json(n, "choices.0.message.tool_calls.0.function.name", "\"get_weather\"");
	expect_json(n, "choices.0.finish_reason", "\"tool_calls\"");
	expect_json(n, "usage.prompt_tokens_details.cached_tokens", "1024");
}

static void response_gemini_finish_reasons_and_thoughts(void **state)
{
	(void)state;
	static const struct {
		const char *gemini, *openai;
	} map[] = {
		{"STOP", "stop"}, {"MAX_TOKENS", "length"}, {"SAFETY", "content_filter"},
		{"RECITATION", "content_filter"}, {"PROHIBITED_CONTENT", "content_filter"},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		char body[512];
		snprintf(body, sizeof(body),
		         "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"},"
		         "\"finishReason\":\"%s\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,"
		         "\"candidatesTokenCount\":1,\"totalTokenCount\":5},\"modelVersion\":\"gemini-2.0-flash\"}",
		         map[i].gemini);
		const struct snap *s = parse(PROVIDER_GEMINI, LR_ENDPOINT_CHAT, 200, body);
		expect_success(s, true);
		if (strcmp(s->finish, map[i].openai) != 0)
			print_error("finishReason %s\n", map[i].gemini);
		assert_string_equal(s->finish, map[i].openai);
	}
	/* A blocked prompt: no candidates, promptFeedback. */
	const struct snap *s = parse(PROVIDER_GEMINI, LR_ENDPOINT_CHAT, 200,
	                             "{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":"
	                             "{\"promptTokenCount\":7,\"totalTokenCount\":7},\"modelVersion\":\"gemini-2.0-flash\"}");
	expect_success(s, true);
	assert_string_equal(s->finish, "content_filter");
	assert_string_equal(s->text, "");
	/* Thought parts are not the reply; thinking is billed as output. */
	s = parse(PROVIDER_GEMINI, LR_ENDPOINT_CHAT, 200,
	          "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Pondering...\",\"thought\":true},"
	          "{\"text\":\"42\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],"
	          "\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":2,\"thoughtsTokenCount\":30,"
	          "\"totalTokenCount\":42},\"modelVersion\":\"gemini-2.5-flash\"}");
	expect_success(s, true);
	assert_string_equal(s->text, "42");
	expect_usage(&s->usage, 10, 32, 0);
}

static void response_ollama_embeddings_become_an_openai_list(void **state)
{
	(void)state;
	const struct snap *s = parse(
	    PROVIDER_OLLAMA, LR_ENDPOINT_EMBEDDINGS, 200,
	    "{\"model\":\"nomic-embed-text\",\"embeddings\":[[0.1,-0.2,0.3],[0.4,0.5,-0.6]],"
	    "\"total_duration\":14143917,\"load_duration\":1019500,\"prompt_eval_count\":8}");
	assert_int_equal(s->error, 0);
	assert_true(s->rewritten);
	assert_true(s->body_is_json);
	assert_string_equal(canon_at(s->normalized, s->normalized_len, ""), golden("ollama_embeddings_normalized"));
	expect_usage(&s->usage, 8, 0, 0);
	/* A body without embeddings is a protocol error. */
	s = parse(PROVIDER_OLLAMA, LR_ENDPOINT_EMBEDDINGS, 200, "{\"model\":\"nomic-embed-text\"}");
	assert_int_equal(s->error, LR_EPROTO);
	assert_false(s->rewritten);
}

static void response_success_that_is_not_json(void **state)
{
	(void)state;
	static const enum provider ps[] = {PROVIDER_OPENAI, PROVIDER_ANTHROPIC, PROVIDER_OLLAMA, PROVIDER_GEMINI};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		const struct snap *s = parse(ps[i], LR_ENDPOINT_CHAT, 200, "<html>gateway</html>");
		assert_int_equal(s->error, LR_EPROTO);
		assert_false(s->body_is_json);
		assert_false(s->rewritten);
	}
}

/* OpenAI's text_completion: choices[0].text, as chat's message.content. */
static void response_openai_text_completion(void **state)
{
	(void)state;
	const struct snap *s = parse(
	    PROVIDER_OPENAI, LR_ENDPOINT_COMPLETIONS, 200,
	    "{\"id\":\"cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7\",\"object\":\"text_completion\",\"created\":1589478378,"
	    "\"model\":\"gpt-3.5-turbo-instruct\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":["
	    "{\"text\":\"\\n\\nThis is indeed a \\\"test\\\"\",\"index\":0,\"logprobs\":null,"
	    "\"finish_reason\":\"length\"},"
	    "{\"text\":\"another choice\",\"index\":1,\"logprobs\":null,\"finish_reason\":\"stop\"}],"
	    "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}");
	expect_success(s, false);
	assert_string_equal(s->text, "\n\nThis is indeed a \"test\"");
	assert_string_equal(s->finish, "length");
	assert_string_equal(s->model, "gpt-3.5-turbo-instruct");
	assert_string_equal(s->id, "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7");
	expect_usage(&s->usage, 5, 7, 0);
	assert_int_equal(s->ncalls, 0);
	/* vLLM's, with its extra fields and a prompt_logprobs null. */
	s = parse(PROVIDER_OPENAI, LR_ENDPOINT_COMPLETIONS, 200,
	          "{\"id\":\"cmpl-8d1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\","
	          "\"choices\":[{\"index\":0,\"text\":\" Paris.\",\"logprobs\":null,\"finish_reason\":\"stop\","
	          "\"stop_reason\":null,\"prompt_logprobs\":null}],\"usage\":{\"prompt_tokens\":6,"
	          "\"total_tokens\":9,\"completion_tokens\":3,\"prompt_tokens_details\":null}}");
	expect_success(s, false);
	assert_string_equal(s->text, " Paris.");
	assert_string_equal(s->finish, "stop");
	expect_usage(&s->usage, 6, 3, 0);
}

/* ---- 3. error bodies -------------------------------------------------- */

struct err_case {
	int status;
	const char *body;
	int code;
	const char *needle; /* in reply.message */
};

static void check_errors(enum provider p, const struct err_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct snap *s = parse(p, LR_ENDPOINT_CHAT, c[i].status, c[i].body);
		if (s->error != c[i].code || !strstr(s->message, c[i].needle) || s->rewritten) {
			fail_msg("%s HTTP %d %s: got %s \"%s\", want %s with \"%s\"", provider_row(p)->name, c[i].status,
			         c[i].body, lr_error_name(s->error), s->message, lr_error_name(c[i].code), c[i].needle);
		}
	}
}

static void errors_openai(void **state)
{
	(void)state;
	static const struct err_case cases[] = {
		{429, "{\"error\":{\"message\":\"You exceeded your current quota, please check your plan and billing "
		      "details.\",\"type\":\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}",
		 LR_EQUOTA, "You exceeded your current quota"},
		{429, "{\"error\":{\"message\":\"Rate limit reached for gpt-4o in organization org-x on requests per min "
		      "(RPM): Limit 500, Used 500, Requested 1.\",\"type\":\"requests\",\"param\":null,"
		      "\"code\":\"rate_limit_exceeded\"}}",
		 LR_ERATELIMIT, "Rate limit reached for gpt-4o"},
		{400, "{\"error\":{\"message\":\"This model's maximum context length is 128000 tokens. However, your "
		      "messages resulted in 130000 tokens.\",\"type\":\"invalid_request_error\",\"param\":\"messages\","
		      "\"code\":\"context_length_exceeded\"}}",
		 LR_ECONTEXT, "maximum context length is 128000"},
		{400, "{\"error\":{\"message\":\"Invalid value for 'temperature'.\",\"type\":\"invalid_request_error\","
		      "\"param\":\"temperature\",\"code\":null}}",
		 LR_EBADREQUEST, "Invalid value for 'temperature'."},
		/* vLLM: the message at the top, no context code. */
		{400, "{\"object\":\"error\",\"message\":\"This model's maximum context length is 8192 tokens. "
		      "However, you requested 9000 tokens.\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}",
		 LR_ECONTEXT, "maximum context length is 8192"},
		/* llama.cpp-style plain string error. */
		{404, "{\"error\":\"model not loaded\"}", LR_ENOTFOUND, "model not loaded"},
		{401, "{\"error\":{\"message\":\"Incorrect API key provided: sk-abc.\",\"type\":\"invalid_request_error\","
		      "\"param\":null,\"code\":\"invalid_api_key\"}}",
		 LR_EAUTH, "Incorrect API key provided"},
		{403, "{\"error\":{\"message\":\"Country, region, or territory not supported\",\"type\":\"request_forbidden\","
		      "\"param\":null,\"code\":\"unsupported_country_region_territory\"}}",
		 LR_EPERMISSION, "Country, region, or territory not supported"},
		{404, "{\"error\":{\"message\":\"The model `gpt-9` does not exist or you do not have access to it.\","
		      "\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}",
		 LR_ENOTFOUND, "The model `gpt-9` does not exist"},
		{500, "{\"error\":{\"message\":\"The server had an error while processing your request.\","
		      "\"type\":\"server_error\",\"param\":null,\"code\":null}}",
		 LR_ESERVER, "The server had an error"},
		{503, "{\"error\":{\"message\":\"The engine is currently overloaded, please try again later.\","
		      "\"type\":\"server_error\",\"param\":null,\"code\":null}}",
		 LR_EOVERLOADED, "currently overloaded"},
	};
	check_errors(PROVIDER_OPENAI, cases, sizeof(cases) / sizeof(cases[0]));
}

/* The completions endpoint's errors are chat's: one error mapping. */
static void errors_openai_completions(void **state)
{
	(void)state;
	static const struct err_case cases[] = {
		{400, "{\"error\":{\"message\":\"This model's maximum context length is 4097 tokens, however you "
		      "requested 5000 tokens (4000 in your prompt; 1000 for the completion).\","
		      "\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"context_length_exceeded\"}}",
		 LR_ECONTEXT, "maximum context length is 4097 tokens"},
		{400, "{\"error\":{\"message\":\"'prompt' is a required property\",\"type\":"
		      "\"invalid_request_error\",\"param\":null,\"code\":null}}",
		 LR_EBADREQUEST, "'prompt' is a required property"},
		{404, "{\"error\":{\"message\":\"This is a chat model and not supported in the v1/completions "
		      "endpoint. Did you mean to use v1/chat/completions?\",\"type\":\"invalid_request_error\","
		      "\"param\":\"model\",\"code\":null}}",
		 LR_ENOTFOUND, "not supported in the v1/completions endpoint"},
		{429, "{\"error\":{\"message\":\"You exceeded your current quota.\",\"type\":\"insufficient_quota\","
		      "\"param\":null,\"code\":\"insufficient_quota\"}}",
		 LR_EQUOTA, "You exceeded your current quota"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct snap *s = parse(PROVIDER_OPENAI, LR_ENDPOINT_COMPLETIONS, cases[i].status, cases[i].body);
		const struct snap *chat = NULL;
		int code = s->error;
		bool found = strstr(s->message, cases[i].needle) != NULL, rewritten = s->rewritten;
		chat = parse(PROVIDER_OPENAI, LR_ENDPOINT_CHAT, cases[i].status, cases[i].body);
		if (code != cases[i].code || !found || rewritten || chat->error != code)
			fail_msg("HTTP %d %s: got %s (chat %s), want %s with \"%s\"", cases[i].status, cases[i].body,
			         lr_error_name(code), lr_error_name(chat->error), lr_error_name(cases[i].code),
			         cases[i].needle);
	}
}

static void errors_anthropic(void **state)
{
	(void)state;
	static const struct err_case cases[] = {
		{529, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"},"
		      "\"request_id\":\"req_011CSHoEeqs5C35K2UUqR7Fy\"}",
		 LR_EOVERLOADED, "Overloaded"},
		{400, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"prompt is too long: "
		      "215000 tokens > 200000 maximum\"},\"request_id\":\"req_1\"}",
		 LR_ECONTEXT, "prompt is too long: 215000 tokens > 200000 maximum"},
		{400, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"messages: at least "
		      "one message is required\"}}",
		 LR_EBADREQUEST, "at least one message is required"},
		{401, "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"},"
		      "\"request_id\":\"req_2\"}",
		 LR_EAUTH, "invalid x-api-key"},
		{403, "{\"type\":\"error\",\"error\":{\"type\":\"permission_error\",\"message\":\"Your API key does not have "
		      "permission to use the specified resource.\"}}",
		 LR_EPERMISSION, "does not have permission"},
		{404, "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":\"model: claude-9\"}}",
		 LR_ENOTFOUND, "model: claude-9"},
		{429, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"This request would exceed "
		      "the rate limit for your organization of 50 requests per minute.\"}}",
		 LR_ERATELIMIT, "would exceed the rate limit"},
		{500, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}",
		 LR_ESERVER, "Internal server error"},
	};
	check_errors(PROVIDER_ANTHROPIC, cases, sizeof(cases) / sizeof(cases[0]));
}

static void errors_gemini(void **state)
{
	(void)state;
	static const struct err_case cases[] = {
		{429, "{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check quota).\","
		      "\"status\":\"RESOURCE_EXHAUSTED\"}}",
		 LR_ERATELIMIT, "Resource has been exhausted"},
		{400, "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\","
		      "\"status\":\"INVALID_ARGUMENT\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\","
		      "\"reason\":\"API_KEY_INVALID\",\"domain\":\"googleapis.com\"}]}}",
		 LR_EAUTH, "API key not valid"},
		{400, "{\"error\":{\"code\":400,\"message\":\"The input token count (1200000) exceeds the maximum number of "
		      "tokens allowed (1048576).\",\"status\":\"INVALID_ARGUMENT\"}}",
		 LR_ECONTEXT, "exceeds the maximum number of tokens"},
		{400, "{\"error\":{\"code\":400,\"message\":\"Invalid JSON payload received.\",\"status\":\"INVALID_ARGUMENT\"}}",
		 LR_EBADREQUEST, "Invalid JSON payload"},
		{503, "{\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\","
		      "\"status\":\"UNAVAILABLE\"}}",
		 LR_EOVERLOADED, "The model is overloaded"},
		{403, "{\"error\":{\"code\":403,\"message\":\"Method doesn't allow unregistered callers.\","
		      "\"status\":\"PERMISSION_DENIED\"}}",
		 LR_EPERMISSION, "unregistered callers"},
		{404, "{\"error\":{\"code\":404,\"message\":\"models/gemini-9 is not found for API version v1beta\","
		      "\"status\":\"NOT_FOUND\"}}",
		 LR_ENOTFOUND, "models/gemini-9 is not found"},
		{500, "{\"error\":{\"code\":500,\"message\":\"An internal error has occurred.\",\"status\":\"INTERNAL\"}}",
		 LR_ESERVER, "An internal error has occurred."},
		/* the array form some endpoints send */
		{429, "[{\"error\":{\"code\":429,\"message\":\"Quota exceeded.\",\"status\":\"RESOURCE_EXHAUSTED\"}}]",
		 LR_ERATELIMIT, "HTTP 429"},
	};
	check_errors(PROVIDER_GEMINI, cases, sizeof(cases) / sizeof(cases[0]));
}

static void errors_ollama(void **state)
{
	(void)state;
	static const struct err_case cases[] = {
		{404, "{\"error\":\"model \\\"llama9\\\" not found, try pulling it first\"}", LR_ENOTFOUND,
		 "model \"llama9\" not found, try pulling it first"},
		{400, "{\"error\":\"invalid options: foo\"}", LR_EBADREQUEST, "invalid options: foo"},
		{500, "{\"error\":\"llama runner process has terminated: exit status 2\"}", LR_ESERVER,
		 "llama runner process has terminated"},
	};
	check_errors(PROVIDER_OLLAMA, cases, sizeof(cases) / sizeof(cases[0]));
}

static void errors_without_a_json_body_use_the_status(void **state)
{
	(void)state;
	static const struct {
		enum provider p;
		struct err_case c;
	} cases[] = {
		{PROVIDER_OPENAI, {502, "<html><body>Bad gateway</body></html>", LR_ESERVER, "HTTP 502"}},
		{PROVIDER_OPENAI, {503, "upstream connect error", LR_EOVERLOADED, "HTTP 503"}},
		{PROVIDER_OPENAI, {429, "Too Many Requests", LR_ERATELIMIT, "HTTP 429"}},
		{PROVIDER_OPENAI, {401, "", LR_EAUTH, "HTTP 401"}},
		{PROVIDER_OPENAI, {418, "teapot", LR_EHTTP, "HTTP 418"}},
		{PROVIDER_ANTHROPIC, {529, "overloaded", LR_EOVERLOADED, "HTTP 529"}},
		{PROVIDER_ANTHROPIC, {413, "<html>Request Entity Too Large</html>", LR_EBADREQUEST, "HTTP 413"}},
		{PROVIDER_GEMINI, {500, "Internal Server Error", LR_ESERVER, "HTTP 500"}},
		{PROVIDER_GEMINI, {404, "<!DOCTYPE html><p>Not Found</p>", LR_ENOTFOUND, "HTTP 404"}},
		{PROVIDER_OLLAMA, {404, "404 page not found", LR_ENOTFOUND, "HTTP 404"}},
		{PROVIDER_OLLAMA, {502, "", LR_ESERVER, "HTTP 502"}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		check_errors(cases[i].p, &cases[i].c, 1);
		const struct snap *s = parse(cases[i].p, LR_ENDPOINT_CHAT, cases[i].c.status, cases[i].c.body);
		assert_false(s->body_is_json);
	}
}

/* ---- 4. streams ------------------------------------------------------- */

enum mode { WHOLE, SPLIT, BYTES };
static const char *const mode_names[] = {"whole", "split in two", "byte by byte"};

/* Feeds a private copy of exactly n bytes. */
static int feed_copy(struct stream_decoder *sd, const char *src, size_t n)
{
	char *copy = NULL;
	if (n) {
		copy = malloc(n);
		if (!copy)
			return LR_ENOMEM;
		memcpy(copy, src, n);
	}
	int rc = stream_decoder_feed(sd, copy, n);
	free(copy);
	return rc;
}

/* One run of the decoder over in[0..len) as the engine drives it: feeds
 * until a fatal error, then finishes. */
static void run_stream(enum provider p, bool ndjson, const char *in, size_t len, enum mode m, size_t at,
                       struct snap *s)
{
	memset(s, 0, sizeof(*s));
	struct reply r;
	reply_init(&r, record_delta, &s->rec);
	struct stream_decoder *sd = stream_decoder_new(p, ndjson, &r);
	if (!sd) {
		s->feed_rc = LR_ENOMEM;
		reply_free(&r);
		return;
	}
	size_t pos = 0;
	while (pos < len && !stream_decoder_fatal(sd)) {
		size_t n = len - pos;
		if (m == BYTES)
			n = 1;
		else if (m == SPLIT && pos < at)
			n = at - pos;
		int rc = feed_copy(sd, in + pos, n);
		if (rc && !s->feed_rc)
			s->feed_rc = rc;
		pos += n;
	}
	s->finish_rc = stream_decoder_finish(sd);
	s->fatal = stream_decoder_fatal(sd);
	snapshot(&r, s);
	stream_decoder_free(sd);
	reply_free(&r);
}

/* First difference between two runs, or NULL. */
static const char *snap_diff(const struct snap *a, const struct snap *b)
{
	if (a->feed_rc != b->feed_rc) return "feed result";
	if (a->finish_rc != b->finish_rc) return "finish result";
	if (a->fatal != b->fatal) return "fatal";
	if (a->error != b->error) return "reply error";
	if (strcmp(a->message, b->message)) return "error message";
	if (a->text_len != b->text_len || strcmp(a->text, b->text)) return "text";
	if (strcmp(a->finish, b->finish)) return "finish reason";
	if (strcmp(a->model, b->model)) return "model";
	if (strcmp(a->id, b->id)) return "id";
	if (memcmp(&a->usage, &b->usage, sizeof(a->usage))) return "usage";
	if (a->events != b->events) return "events";
	if (a->deltas != b->deltas) return "delta count";
	if (a->done != b->done) return "done";
	if (a->ncalls != b->ncalls) return "tool call count";
	for (unsigned i = 0; i < a->ncalls && i < MAX_CALLS; i++)
		if (a->calls[i].index != b->calls[i].index || strcmp(a->calls[i].id, b->calls[i].id) ||
		    strcmp(a->calls[i].name, b->calls[i].name) || strcmp(a->calls[i].args, b->calls[i].args))
			return "tool call";
	if (memcmp(&a->rec, &b->rec, sizeof(a->rec))) return "callback deltas";
	if (strcmp(a->openai_body, b->openai_body)) return "chat.completion body";
	if (strcmp(a->completion_body, b->completion_body)) return "text_completion body";
	return NULL;
}

/* Runs in whole, split at every byte and byte by byte; the whole run is
 * the reference the others must equal. */
static const struct snap *stream_all_ways(enum provider p, bool ndjson, const char *in, size_t len)
{
	static struct snap ref, other;
	run_stream(p, ndjson, in, len, WHOLE, 0, &ref);
	for (int m = SPLIT; m <= BYTES; m++) {
		for (size_t at = 0; at <= (m == SPLIT ? len : 0); at++) {
			run_stream(p, ndjson, in, len, (enum mode)m, at, &other);
			const char *diff = snap_diff(&ref, &other);
			if (diff)
				fail_msg("%s stream fed %s (at %zu): %s differs from the whole feed", provider_row(p)->name,
				         mode_names[m], at, diff);
		}
	}
	return &ref;
}

/* Everything before the first occurrence of marker. */
static size_t cut_before(const char *in, const char *marker)
{
	const char *p = strstr(in, marker);
	assert_non_null(p);
	return (size_t)(p - in);
}

static void expect_clean_stream(const struct snap *s)
{
	if (s->feed_rc || s->finish_rc)
		print_error("feed %s, finish %s: %s\n", lr_error_name(s->feed_rc), lr_error_name(s->finish_rc), s->message);
	assert_int_equal(s->feed_rc, 0);
	assert_int_equal(s->finish_rc, 0);
	assert_int_equal(s->error, 0);
	assert_false(s->fatal);
	assert_int_equal(s->rec.bad, 0);
}

/* The callback saw what the reply holds. */
static void expect_deltas_match_reply(const struct snap *s)
{
	assert_string_equal(s->rec.text, s->text);
	assert_string_equal(s->rec.finish, s->finish);
	for (unsigned i = 0; i < s->ncalls && i < MAX_CALLS; i++) {
		int idx = s->calls[i].index;
		assert_true(idx >= 0 && idx < MAX_CALLS);
		assert_string_equal(s->rec.tools[idx].id, s->calls[i].id);
		assert_string_equal(s->rec.tools[idx].name, s->calls[i].name);
		assert_string_equal(s->rec.tools[idx].args, s->calls[i].args);
	}
	assert_int_equal(s->deltas, (unsigned long)s->rec.all_deltas);
}

/* OpenAI: chat.completion.chunk events, a call whose arguments arrive in
 * three fragments, a second call, the usage chunk, [DONE]. */
#define OA_CHUNK(choices)                                                                          \
	"data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,"  \
	"\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_1\",\"choices\":[" choices        \
	"],\"usage\":null}\n\n"
#define OA_DELTA(delta, finish) \
	"{\"index\":0,\"delta\":" delta ",\"logprobs\":null,\"finish_reason\":" finish "}"
#define OA_TOOL(call) OA_CHUNK(OA_DELTA("{\"tool_calls\":[" call "]}", "null"))

static const char openai_transcript[] =
	OA_CHUNK(OA_DELTA("{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}", "null"))
	OA_CHUNK(OA_DELTA("{\"content\":\"Sure, \"}", "null"))
	OA_CHUNK(OA_DELTA("{\"content\":\"checking \\u00e9t\\u00e9\\n\"}", "null"))
	OA_TOOL("{\"index\":0,\"id\":\"call_A\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
	        "\"arguments\":\"\"}}")
	OA_TOOL("{\"index\":0,\"function\":{\"arguments\":\"{\\\"ci\"}}")
	OA_TOOL("{\"index\":0,\"function\":{\"arguments\":\"ty\\\": \\\"Pa\"}}")
	OA_TOOL("{\"index\":0,\"function\":{\"arguments\":\"ris\\\"}\"}}")
	OA_TOOL("{\"index\":1,\"id\":\"call_B\",\"type\":\"function\",\"function\":{\"name\":\"get_time\","
	        "\"arguments\":\"\"}}")
	OA_TOOL("{\"index\":1,\"function\":{\"arguments\":\"{\\\"tz\\\":\"}}")
	OA_TOOL("{\"index\":1,\"function\":{\"arguments\":\"\\\"CET\\\"}\"}}")
	OA_CHUNK(OA_DELTA("{}", "\"tool_calls\""))
	"data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,"
	"\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_1\",\"choices\":[],\"usage\":{"
	"\"prompt_tokens\":57,\"completion_tokens\":31,\"total_tokens\":88,\"prompt_tokens_details\":"
	"{\"cached_tokens\":32,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n"
	"data: [DONE]\n\n";

static void stream_openai_transcript(void **state)
{
	(void)state;
	const struct snap *s = stream_all_ways(PROVIDER_OPENAI, false, openai_transcript, strlen(openai_transcript));
	expect_clean_stream(s);
	assert_string_equal(s->text, "Sure, checking \xc3\xa9t\xc3\xa9\n");
	assert_string_equal(s->finish, "tool_calls");
	assert_string_equal(s->model, "gpt-4o-2024-08-06");
	assert_string_equal(s->id, "chatcmpl-9x");
	assert_true(s->done);
	assert_int_equal(s->ncalls, 2);
	expect_call(s, 0, "call_A", "get_weather", "{\"city\": \"Paris\"}");
	expect_call(s, 1, "call_B", "get_time", "{\"tz\":\"CET\"}");
	expect_usage(&s->usage, 57, 31, 32);
	assert_int_equal(s->events, 13);
	assert_int_equal(s->rec.text_deltas, 2);
	assert_int_equal(s->rec.tool_deltas, 7);
	assert_int_equal(s->rec.finish_deltas, 1);
	/* The role-only first chunk reaches the callback too, as an empty
	 * delta (a load generator's time to first token starts there). */
	assert_int_equal(s->rec.empty_deltas, 1);
	expect_deltas_match_reply(s);
	/* The assembled body is a chat.completion with both calls. */
	expect_json(s->openai_body, "choices.0.message.tool_calls.0.function.arguments",
	            "\"{\\\"city\\\": \\\"Paris\\\"}\"");
	expect_json(s->openai_body, "usage.total_tokens", "88");
}

/* Anthropic: message_start ... message_stop with pings, a text block and
 * a tool_use block whose input arrives as input_json_delta fragments. */
#define AN_EVENT(type, data) "event: " type "\ndata: " data "\n\n"
#define AN_PING AN_EVENT("ping", "{\"type\": \"ping\"}")
#define AN_DELTA(index, delta) \
	AN_EVENT("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":" index ",\"delta\":" delta "}")

static const char anthropic_transcript[] =
	AN_EVENT("message_start",
	         "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\","
	         "\"role\":\"assistant\",\"model\":\"claude-haiku-4-5-20251001\",\"content\":[],\"stop_reason\":null,"
	         "\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":5,"
	         "\"cache_read_input_tokens\":15,\"output_tokens\":1}}}")
	AN_EVENT("content_block_start",
	         "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}")
	AN_PING
	AN_DELTA("0", "{\"type\":\"text_delta\",\"text\":\"Let me \\\"check\\\"\"}")
	AN_DELTA("0", "{\"type\":\"text_delta\",\"text\":\" Paris.\"}")
	AN_EVENT("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
	AN_EVENT("content_block_start",
	         "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
	         "\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}")
	AN_DELTA("1", "{\"type\":\"input_json_delta\",\"partial_json\":\"\"}")
	AN_DELTA("1", "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}")
	AN_PING
	AN_DELTA("1", "{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"Pa\"}")
	AN_DELTA("1", "{\"type\":\"input_json_delta\",\"partial_json\":\"ris\\\"}\"}")
	AN_EVENT("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":1}")
	AN_EVENT("message_delta",
	         "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},"
	         "\"usage\":{\"output_tokens\":42}}")
	AN_EVENT("message_stop", "{\"type\":\"message_stop\"}");

static void stream_anthropic_transcript(void **state)
{
	(void)state;
	const struct snap *s =
	    stream_all_ways(PROVIDER_ANTHROPIC, false, anthropic_transcript, strlen(anthropic_transcript));
	expect_clean_stream(s);
	assert_string_equal(s->text, "Let me \"check\" Paris.");
	assert_string_equal(s->finish, "tool_calls");
	assert_string_equal(s->model, "claude-haiku-4-5-20251001");
	assert_string_equal(s->id, "msg_014p7gG3wDgGV9EUtLvnow3U");
	assert_true(s->done);
	assert_int_equal(s->ncalls, 1);
	expect_call(s, 0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", "{\"city\": \"Paris\"}");
	expect_usage(&s->usage, 45, 42, 15);
	assert_int_equal(s->events, 13); /* the two pings are not progress */
	assert_int_equal(s->rec.text_deltas, 2);
	assert_int_equal(s->rec.tool_deltas, 5);
	assert_int_equal(s->rec.finish_deltas, 1);
	expect_deltas_match_reply(s);
}

/* response_format's forced tool streamed: its input_json_delta
 * fragments are the text. */
static void stream_anthropic_json_tool_is_the_text(void **state)
{
	(void)state;
	static const char in[] =
		AN_EVENT("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_json\",\"type\":"
		                          "\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[],"
		                          "\"usage\":{\"input_tokens\":40,\"output_tokens\":1}}}")
		AN_EVENT("content_block_start",
		         "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\","
		         "\"id\":\"toolu_json\",\"name\":\"json_tool_call\",\"input\":{}}}")
		AN_DELTA("0", "{\"type\":\"input_json_delta\",\"partial_json\":\"\"}")
		AN_DELTA("0", "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"name\\\":\"}")
		AN_PING
		AN_DELTA("0", "{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"Paris\\\"}\"}")
		AN_EVENT("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
		AN_EVENT("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
		                          "\"stop_sequence\":null},\"usage\":{\"output_tokens\":12}}")
		AN_EVENT("message_stop", "{\"type\":\"message_stop\"}");
	const struct snap *s = stream_all_ways(PROVIDER_ANTHROPIC, false, in, strlen(in));
	expect_clean_stream(s);
	assert_string_equal(s->text, "{\"name\": \"Paris\"}");
	assert_int_equal(s->ncalls, 0);
	assert_string_equal(s->finish, "stop");
	expect_usage(&s->usage, 40, 12, 0);
	assert_int_equal(s->rec.text_deltas, 2);
	assert_int_equal(s->rec.tool_deltas, 0);
	expect_deltas_match_reply(s);
}

/* Extended thinking: the thinking block is not the reply. */
static void stream_anthropic_thinking_is_not_text(void **state)
{
	(void)state;
	static const char in[] =
		AN_EVENT("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_t\",\"type\":"
		                          "\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],"
		                          "\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}")
		AN_EVENT("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
		                                "{\"type\":\"thinking\",\"thinking\":\"\"}}")
		AN_DELTA("0", "{\"type\":\"thinking_delta\",\"thinking\":\"Let me think.\"}")
		AN_DELTA("0", "{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM1gbcDa9GJwZA\"}")
		AN_EVENT("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
		AN_EVENT("content_block_start", "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
		                                "{\"type\":\"text\",\"text\":\"\"}}")
		AN_DELTA("1", "{\"type\":\"text_delta\",\"text\":\"Hi\"}")
		AN_EVENT("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":1}")
		AN_EVENT("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
		                          "\"stop_sequence\":null},\"usage\":{\"output_tokens\":30}}")
		AN_EVENT("message_stop", "{\"type\":\"message_stop\"}");
	const struct snap *s = stream_all_ways(PROVIDER_ANTHROPIC, false, in, strlen(in));
	expect_clean_stream(s);
	assert_string_equal(s->text, "Hi");
	assert_string_equal(s->finish, "stop");
	assert_int_equal(s->rec.text_deltas, 1);
	assert_int_equal(s->ncalls, 0);
	expect_usage(&s->usage, 9, 30, 0);
}

/* Ollama: NDJSON lines, the call in its own line, a final done line. */
#define OL_LINE(message, tail)                                                                     \
	"{\"model\":\"qwen3:4b\",\"created_at\":\"2025-06-01T10:00:00.000000Z\",\"message\":" message \
	"," tail "}\n"

static const char ollama_transcript[] =
	OL_LINE("{\"role\":\"assistant\",\"content\":\"Checking\"}", "\"done\":false")
	OL_LINE("{\"role\":\"assistant\",\"content\":\" the \\\"weather\\\".\"}", "\"done\":false")
	OL_LINE("{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\","
	        "\"arguments\":{\"city\":\"Paris\"}}}]}", "\"done\":false")
	OL_LINE("{\"role\":\"assistant\",\"content\":\"\"}",
	        "\"done_reason\":\"stop\",\"done\":true,\"total_duration\":4883583458,\"load_duration\":1334875,"
	        "\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,\"eval_count\":12,"
	        "\"eval_duration\":4535599000");

static void stream_ollama_transcript(void **state)
{
	(void)state;
	const struct snap *s = stream_all_ways(PROVIDER_OLLAMA, true, ollama_transcript, strlen(ollama_transcript));
	expect_clean_stream(s);
	assert_string_equal(s->text, "Checking the \"weather\".");
	assert_string_equal(s->finish, "tool_calls");
	assert_string_equal(s->model, "qwen3:4b");
	assert_true(s->done);
	assert_int_equal(s->ncalls, 1);
	expect_call(s, 0, "call_0", "get_weather", "{\"city\":\"Paris\"}");
	expect_usage(&s->usage, 26, 12, 0);
	assert_int_equal(s->events, 4);
	assert_int_equal(s->rec.text_deltas, 2);
	assert_int_equal(s->rec.finish_deltas, 1);
	assert_true(s->rec.tool_deltas >= 1);
	expect_deltas_match_reply(s);
	/* The last line may lack its LF. */
	s = stream_all_ways(PROVIDER_OLLAMA, true, ollama_transcript, strlen(ollama_transcript) - 1);
	expect_clean_stream(s);
	assert_string_equal(s->finish, "tool_calls");
}

/* Gemini: streamGenerateContent?alt=sse chunks, CRLF-framed. */
#define GE_CHUNK(json) "data: " json "\r\n\r\n"
#define GE_TAIL "\"modelVersion\":\"gemini-2.0-flash\",\"responseId\":\"resp-1\"}"

static const char gemini_transcript[] =
	GE_CHUNK("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Checking\"}],\"role\":\"model\"},\"index\":0}],"
	         "\"usageMetadata\":{\"promptTokenCount\":31,\"totalTokenCount\":31}," GE_TAIL)
	GE_CHUNK("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" the \\\"weather\\\".\"}],\"role\":\"model\"},"
	         "\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":31,\"totalTokenCount\":31}," GE_TAIL)
	GE_CHUNK("{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":"
	         "{\"city\":\"Paris\"}}}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],"
	         "\"usageMetadata\":{\"promptTokenCount\":31,\"candidatesTokenCount\":9,\"totalTokenCount\":40,"
	         "\"cachedContentTokenCount\":16}," GE_TAIL);

static void stream_gemini_transcript(void **state)
{
	(void)state;
	const struct snap *s = stream_all_ways(PROVIDER_GEMINI, false, gemini_transcript, strlen(gemini_transcript));
	expect_clean_stream(s);
	assert_string_equal(s->text, "Checking the \"weather\".");
	assert_string_equal(s->finish, "tool_calls");
	assert_string_equal(s->model, "gemini-2.0-flash");
	assert_string_equal(s->id, "resp-1");
	assert_int_equal(s->ncalls, 1);
	expect_call(s, 0, "call_0", "get_weather", "{\"city\":\"Paris\"}");
	expect_usage(&s->usage, 31, 9, 16);
	assert_int_equal(s->events, 3);
	assert_int_equal(s->rec.text_deltas, 2);
	assert_int_equal(s->rec.finish_deltas, 1);
	assert_true(s->rec.tool_deltas >= 1);
	expect_deltas_match_reply(s);
}

/* OpenAI's text_completion chunks (vLLM's shape: stop_reason beside
 * finish_reason), the finish on the last text chunk, the usage chunk with
 * empty choices, [DONE]. */
#define TC_CHUNK(choice)                                                                           \
	"data: {\"id\":\"cmpl-7f2\",\"object\":\"text_completion\",\"created\":1730000000,"           \
	"\"model\":\"meta-llama/Llama-3.1-8B\",\"choices\":[" choice "],\"usage\":null}\n\n"
#define TC_TEXT(text, finish) \
	"{\"index\":0,\"text\":\"" text "\",\"logprobs\":null,\"finish_reason\":" finish ",\"stop_reason\":null}"

static const char completions_transcript[] =
	TC_CHUNK(TC_TEXT(" Once", "null"))
	TC_CHUNK(TC_TEXT(" upon", "null"))
	TC_CHUNK(TC_TEXT("", "null"))
	TC_CHUNK(TC_TEXT(" a \\\"t\\u00efme\\\"\\n", "null"))
	TC_CHUNK(TC_TEXT(" there", "\"length\""))
	"data: {\"id\":\"cmpl-7f2\",\"object\":\"text_completion\",\"created\":1730000000,"
	"\"model\":\"meta-llama/Llama-3.1-8B\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
	"\"total_tokens\":9,\"completion_tokens\":5}}\n\n"
	"data: [DONE]\n\n";

static void stream_openai_completions_transcript(void **state)
{
	(void)state;
	const struct snap *s =
	    stream_all_ways(PROVIDER_OPENAI, false, completions_transcript, strlen(completions_transcript));
	expect_clean_stream(s);
	assert_string_equal(s->text, " Once upon a \"t\xc3\xafme\"\n there");
	assert_string_equal(s->finish, "length");
	assert_string_equal(s->model, "meta-llama/Llama-3.1-8B");
	assert_string_equal(s->id, "cmpl-7f2");
	assert_true(s->done);
	assert_int_equal(s->ncalls, 0);
	expect_usage(&s->usage, 4, 5, 0);
	assert_int_equal(s->events, 7);
	/* One delta per text event (the empty one gives none), the finish on
	 * the last, which also carries text. */
	assert_int_equal(s->rec.text_deltas, 4);
	assert_int_equal(s->rec.finish_deltas, 1);
	expect_deltas_match_reply(s);
	/* The body a stream leaves is the text_completion it makes. */
	expect_json(s->completion_body, "", "{\"id\":\"cmpl-7f2\",\"object\":\"text_completion\","
	                                    "\"model\":\"meta-llama/Llama-3.1-8B\",\"choices\":[{\"index\":0,"
	                                    "\"text\":\" Once upon a \\\"t\\u00efme\\\"\\n there\","
	                                    "\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":"
	                                    "{\"prompt_tokens\":4,\"completion_tokens\":5,\"total_tokens\":9,"
	                                    "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
}

/* A provider's error event: its code, the message kept, not fatal. */
static void expect_stream_error(const struct snap *s, int code, const char *needle)
{
	if (s->feed_rc != code || !strstr(s->message, needle))
		print_error("feed %s: \"%s\"\n", lr_error_name(s->feed_rc), s->message);
	assert_int_equal(s->feed_rc, code);
	assert_int_equal(s->finish_rc, code);
	assert_int_equal(s->error, code);
	assert_non_null(strstr(s->message, needle));
	assert_false(s->fatal);
}

static void stream_openai_error_event(void **state)
{
	(void)state;
	static const char in[] =
		OA_CHUNK(OA_DELTA("{\"content\":\"Hel\"}", "null"))
		"data: {\"error\":{\"message\":\"The server had an error while processing your request.\","
		"\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n"
		OA_CHUNK(OA_DELTA("{\"content\":\"ignored\"}", "null"));
	const struct snap *s = stream_all_ways(PROVIDER_OPENAI, false, in, strlen(in));
	expect_stream_error(s, LR_ESERVER, "The server had an error while processing your request.");
	assert_string_equal(s->text, "Hel");
}

static void stream_anthropic_error_event(void **state)
{
	(void)state;
	static const char in[] =
		AN_EVENT("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
		                          "\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[],"
		                          "\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}")
		AN_PING
		AN_EVENT("error", "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}");
	const struct snap *s = stream_all_ways(PROVIDER_ANTHROPIC, false, in, strlen(in));
	expect_stream_error(s, LR_EOVERLOADED, "Overloaded");
	assert_int_equal(s->events, 2);
}

/* A stream cut by num_predict: the plain lines take the scanned path
 * (one pass, no tokens), and its finish, usage and escapes must be what
 * the token path gives. A line that is not an object (a bare array) is
 * refused as not JSON by the token path. */
static void stream_ollama_length_and_escapes(void **state)
{
	(void)state;
	static const char in[] =
		OL_LINE("{\"role\":\"assistant\",\"content\":\"a\\u00e9\\n\"}", "\"done\":false")
		OL_LINE("{\"role\":\"assistant\",\"content\":\"\"}",
		        "\"done_reason\":\"length\",\"done\":true,\"prompt_eval_count\":7,\"eval_count\":2");
	const struct snap *s = stream_all_ways(PROVIDER_OLLAMA, true, in, strlen(in));
	expect_clean_stream(s);
	assert_string_equal(s->text, "a\xc3\xa9\n");
	assert_string_equal(s->finish, "length");
	assert_string_equal(s->model, "qwen3:4b");
	expect_usage(&s->usage, 7, 2, 0);
	assert_int_equal(s->events, 2);
	expect_deltas_match_reply(s);
	static const char not_object[] = "[1,2]\n";
	s = stream_all_ways(PROVIDER_OLLAMA, true, not_object, strlen(not_object));
	assert_int_not_equal(s->error, 0);
}

static void stream_ollama_error_line(void **state)
{
	(void)state;
	static const char in[] =
		OL_LINE("{\"role\":\"assistant\",\"content\":\"Hel\"}", "\"done\":false")
		"{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n";
	const struct snap *s = stream_all_ways(PROVIDER_OLLAMA, true, in, strlen(in));
	expect_stream_error(s, LR_ESERVER, "an error was encountered while running the model");
	assert_string_equal(s->text, "Hel");
}

static void stream_gemini_error_chunk(void **state)
{
	(void)state;
	static const char in[] =
		GE_CHUNK("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},\"index\":0}],"
		         GE_TAIL)
		GE_CHUNK("{\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\","
		         "\"status\":\"UNAVAILABLE\"}}");
	const struct snap *s = stream_all_ways(PROVIDER_GEMINI, false, in, strlen(in));
	expect_stream_error(s, LR_EOVERLOADED, "The model is overloaded.");
	assert_string_equal(s->text, "Hel");
}

static void stream_malformed_event_is_fatal(void **state)
{
	(void)state;
	static const struct {
		enum provider p;
		bool ndjson;
		const char *in;
	} cases[] = {
		{PROVIDER_OPENAI, false,
		 OA_CHUNK(OA_DELTA("{\"content\":\"Hel\"}", "null")) "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}]\n\n"
		 "data: [DONE]\n\n"},
		{PROVIDER_ANTHROPIC, false,
		 AN_EVENT("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
		                                 "\"text_delta\",\"text\":\"x\"}")
		 AN_EVENT("message_stop", "{\"type\":\"message_stop\"}")},
		{PROVIDER_OLLAMA, true,
		 "{\"model\":\"qwen3:4b\",\"message\":{\"content\":\"x\"}\n{\"model\":\"qwen3:4b\",\"done\":true}\n"},
		{PROVIDER_GEMINI, false,
		 GE_CHUNK("{\"candidates\":[") GE_CHUNK("{\"candidates\":[],\"promptFeedback\":{}}")},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct snap *s = stream_all_ways(cases[i].p, cases[i].ndjson, cases[i].in, strlen(cases[i].in));
		if (s->feed_rc != LR_EPROTO || !s->fatal)
			print_error("%s: feed %s fatal %d\n", provider_row(cases[i].p)->name, lr_error_name(s->feed_rc),
			            s->fatal);
		assert_int_equal(s->feed_rc, LR_EPROTO);
		assert_int_equal(s->finish_rc, LR_EPROTO);
		assert_true(s->fatal);
		assert_false(s->done);
	}
}

/* Cut off before the event that completes it: the stream is truncated. */
static void expect_truncated(enum provider p, bool ndjson, const char *in, const char *cut_at)
{
	const struct snap *s = stream_all_ways(p, ndjson, in, cut_before(in, cut_at));
	if (s->finish_rc != LR_EPROTO)
		print_error("%s stream cut before \"%.40s\": finish %s\n", provider_row(p)->name, cut_at,
		            lr_error_name(s->finish_rc));
	assert_int_equal(s->feed_rc, 0);
	assert_int_equal(s->finish_rc, LR_EPROTO);
	assert_false(s->done);
}

static void stream_truncated_mid_reply(void **state)
{
	(void)state;
	expect_truncated(PROVIDER_OPENAI, false, openai_transcript, "data: {\"id\":\"chatcmpl-9x\",\"object\":"
	                                                            "\"chat.completion.chunk\",\"created\":1730000000,"
	                                                            "\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":"
	                                                            "\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{},");
	expect_truncated(PROVIDER_ANTHROPIC, false, anthropic_transcript, "event: message_delta");
	expect_truncated(PROVIDER_OLLAMA, true, ollama_transcript, "{\"model\":\"qwen3:4b\",\"created_at\":"
	                                                          "\"2025-06-01T10:00:00.000000Z\",\"message\":"
	                                                          "{\"role\":\"assistant\",\"content\":\"\"},\"done_reason");
	expect_truncated(PROVIDER_GEMINI, false, gemini_transcript, "data: {\"candidates\":[{\"content\":{\"parts\":"
	                                                            "[{\"functionCall\"");
	/* A cut inside the last event is the same. */
	size_t len = strlen(gemini_transcript) - 10;
	const struct snap *s = stream_all_ways(PROVIDER_GEMINI, false, gemini_transcript, len);
	assert_int_equal(s->finish_rc, LR_EPROTO);
}

/* The finish reason is not the end: OpenAI's usage chunk and [DONE]
 * follow it (stream_options.include_usage), and a stream cut there lost
 * the usage. */
static void stream_openai_without_done_is_truncated(void **state)
{
	(void)state;
	expect_truncated(PROVIDER_OPENAI, false, openai_transcript, "data: [DONE]");
}

/* Anthropic's stream is complete at message_stop, not at message_delta. */
static void stream_anthropic_without_message_stop_is_truncated(void **state)
{
	(void)state;
	expect_truncated(PROVIDER_ANTHROPIC, false, anthropic_transcript, "event: message_stop");
}

/* The usage chunk and [DONE] follow the finish; a stream cut before
 * either lost something. An error event mid-stream is chat's. */
static void stream_openai_completions_cut_or_failed(void **state)
{
	(void)state;
	expect_truncated(PROVIDER_OPENAI, false, completions_transcript, "data: [DONE]");
	expect_truncated(PROVIDER_OPENAI, false, completions_transcript, "data: {\"id\":\"cmpl-7f2\","
	                 "\"object\":\"text_completion\",\"created\":1730000000,\"model\":"
	                 "\"meta-llama/Llama-3.1-8B\",\"choices\":[],");
	static const char in[] =
		TC_CHUNK(TC_TEXT(" Once", "null"))
		"data: {\"error\":{\"message\":\"the engine died\",\"type\":\"server_error\"}}\n\n"
		TC_CHUNK(TC_TEXT(" ignored", "null"));
	const struct snap *s = stream_all_ways(PROVIDER_OPENAI, false, in, strlen(in));
	expect_stream_error(s, LR_ESERVER, "the engine died");
	assert_string_equal(s->text, " Once");
}

/* ---- 5. the chat.completion written back ------------------------------ */

static void reply_body_with_tool_calls_only_has_null_content(void **state)
{
	(void)state;
	struct reply r;
	reply_init(&r, NULL, NULL);
	snprintf(r.id, sizeof(r.id), "msg_1");
	snprintf(r.model, sizeof(r.model), "claude-haiku-4-5");
	reply_tool(&r, 0, "call_1", 6, "get_weather", 11, "{\"city\":", 8, false);
	reply_tool(&r, 0, NULL, 0, NULL, 0, "\"Paris\"}", 8, false);
	reply_tool(&r, 1, "call_2", 6, "get_time", 8, "{\\\"tz\\\":\\\"CET\\\"}", 16, true);
	reply_finish(&r, 0, "tool_calls");
	r.usage = (lr_usage){.input_tokens = 10, .output_tokens = 5, .cached_input_tokens = 2};
	struct snap *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	snapshot(&r, s);
	int publish = reply_publish_calls(&r);
	bool published = publish == 0 && r.public_calls && !strcmp(r.public_calls[1].arguments, "{\"tz\":\"CET\"}") &&
	                 r.public_calls[1].arguments_len == 12 && !strcmp(r.public_calls[0].id, "call_1");
	reply_free(&r);
	static char body[8192];
	snprintf(body, sizeof(body), "%s", s->openai_body);
	free(s);
	assert_true(published);
	expect_json(body, "", "{\"id\":\"msg_1\",\"object\":\"chat.completion\",\"model\":\"claude-haiku-4-5\","
	                      "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
	                      "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
	                      "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
	                      "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\","
	                      "\"arguments\":\"{\\\"tz\\\":\\\"CET\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}],"
	                      "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15,"
	                      "\"prompt_tokens_details\":{\"cached_tokens\":2}}}");
}

static void reply_body_with_text_and_calls(void **state)
{
	(void)state;
	struct reply r;
	reply_init(&r, NULL, NULL);
	reply_text(&r, 0, "Line \\\"one\\\"\\n", 14, true);
	reply_tool(&r, 0, "c0", 2, "a", 1, "{}", 2, false);
	reply_tool(&r, 1, "c1", 2, "b", 1, "{\"x\":[1,2]}", 11, false);
	static struct snap s;
	memset(&s, 0, sizeof(s));
	snapshot(&r, &s);
	reply_free(&r);
	expect_json(s.openai_body, "choices.0.message.content", "\"Line \\\"one\\\"\\n\"");
	expect_json(s.openai_body, "choices.0.message.tool_calls.1.function.arguments", "\"{\\\"x\\\":[1,2]}\"");
	expect_json(s.openai_body, "choices.0.finish_reason", "null");
	expect_json(s.openai_body, "id", "\"\"");
	/* Nothing at all: empty text, no tool_calls key. */
	reply_init(&r, NULL, NULL);
	memset(&s, 0, sizeof(s));
	snapshot(&r, &s);
	reply_free(&r);
	expect_json(s.openai_body, "choices.0.message.content", "\"\"");
	expect_json(s.openai_body, "choices.0.message.tool_calls", NULL);
}

static void reply_text_completion_body_shape(void **state)
{
	(void)state;
	struct reply r;
	reply_init(&r, NULL, NULL);
	snprintf(r.id, sizeof(r.id), "cmpl-1");
	snprintf(r.model, sizeof(r.model), "gpt-3.5-turbo-instruct");
	reply_text(&r, 0, "Line \\\"one\\\"\\n", 14, true);
	r.usage = (lr_usage){.input_tokens = 3, .output_tokens = 4};
	static struct snap s;
	memset(&s, 0, sizeof(s));
	snapshot(&r, &s);
	reply_free(&r);
	expect_json(s.completion_body, "", "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"model\":"
	                                   "\"gpt-3.5-turbo-instruct\",\"choices\":[{\"index\":0,\"text\":"
	                                   "\"Line \\\"one\\\"\\n\",\"logprobs\":null,\"finish_reason\":null}],"
	                                   "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7,"
	                                   "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
	/* Nothing at all: empty text. */
	reply_init(&r, NULL, NULL);
	memset(&s, 0, sizeof(s));
	snapshot(&r, &s);
	reply_free(&r);
	expect_json(s.completion_body, "choices.0.text", "\"\"");
	expect_json(s.completion_body, "id", "\"\"");
}

/* An OpenAI stream of n tool calls, each as its own chunk with two
 * argument fragments (how models stream parallel calls). */
static char *many_tool_call_stream(unsigned n, size_t *len)
{
	size_t cap = (size_t)n * 400 + 256, at = 0;
	char *buf = malloc(cap);
	assert_non_null(buf);
	for (unsigned i = 0; i < n; i++) {
		at += (size_t)snprintf(buf + at, cap - at,
		                       "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%u,"
		                       "\"id\":\"call_%u\",\"type\":\"function\",\"function\":{\"name\":\"f\","
		                       "\"arguments\":\"{\\\"i\\\":\"}}]}}]}\n\n"
		                       "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%u,"
		                       "\"function\":{\"arguments\":\"%u}\"}}]}}]}\n\n",
		                       i, i, i, i);
	}
	at += (size_t)snprintf(buf + at, cap - at,
	                       "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
	                       "data: [DONE]\n\n");
	*len = at;
	return buf;
}

static void stream_many_tool_calls_take_linear_work(void **state)
{
	(void)state;
	const unsigned n = REPLY_MAX_TOOL_CALLS;
	size_t len;
	char *in = many_tool_call_stream(n, &len);
	struct reply r;
	reply_init(&r, NULL, NULL);
	struct stream_decoder *sd = stream_decoder_new(PROVIDER_OPENAI, false, &r);
	assert_non_null(sd);
	int feed = stream_decoder_feed(sd, in, len);
	int finish = stream_decoder_finish(sd);
	stream_decoder_free(sd);
	free(in);
	unsigned ncalls = r.ncalls;
	unsigned long probes = r.call_probes;
	bool last_ok = ncalls == n && r.calls[n - 1].index == (int)n - 1 && r.calls[n - 1].args.len == 10 + 0 &&
	               !memcmp(r.calls[n - 1].args.data, "{\"i\":4095}", 10);
	int error = r.err.code;
	reply_free(&r);
	assert_int_equal(feed, 0);
	assert_int_equal(finish, 0);
	assert_int_equal(error, 0);
	assert_int_equal(ncalls, n);
	assert_true(last_ok);
	/* A scan per new call examined n^2/2 (8 million) entries; the hash
	 * takes a few per delta. */
	assert_true(probes < 8ul * n);
}

static void stream_tool_calls_past_the_cap_fail_too_large(void **state)
{
	(void)state;
	size_t len;
	char *in = many_tool_call_stream(REPLY_MAX_TOOL_CALLS + 1, &len);
	struct reply r;
	reply_init(&r, NULL, NULL);
	struct stream_decoder *sd = stream_decoder_new(PROVIDER_OPENAI, false, &r);
	assert_non_null(sd);
	(void)stream_decoder_feed(sd, in, len);
	(void)stream_decoder_finish(sd);
	stream_decoder_free(sd);
	free(in);
	int error = r.err.code;
	unsigned ncalls = r.ncalls;
	char message[sizeof(r.err.message)];
	memcpy(message, r.err.message, sizeof(message));
	reply_free(&r);
	assert_int_equal(error, LR_ETOOLARGE);
	assert_int_equal(ncalls, REPLY_MAX_TOOL_CALLS);
	assert_non_null(strstr(message, "more than 4096 tool calls"));
}

static void reply_tool_calls_in_any_index_order(void **state)
{
	(void)state;
	struct reply r;
	reply_init(&r, NULL, NULL);
	/* Sparse and revisited indices (Anthropic numbers content blocks). */
	static const int order[] = {7, 3, 1000000, -2, 3, 7, 1000000, -2, 5};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		assert_int_equal(reply_tool(&r, order[i], NULL, 0, NULL, 0, "x", 1, false), 0);
	unsigned ncalls = r.ncalls;
	size_t lens[5];
	for (unsigned i = 0; i < 5 && i < ncalls; i++)
		lens[i] = r.calls[i].args.len;
	reply_free(&r);
	assert_int_equal(ncalls, 5);
	assert_int_equal(lens[0], 2);
	assert_int_equal(lens[1], 2);
	assert_int_equal(lens[2], 2);
	assert_int_equal(lens[3], 2);
	assert_int_equal(lens[4], 1);
}

/* ---- reused requests ---- */

static void freed_request_comes_back_empty_with_its_body_memory(void **state)
{
	(void)state;
	/* Held to the end, so this thread's slot is empty whatever ran before. */
	lr_request *holder = lr_request_new(NULL);
	assert_non_null(holder);
	lr_request *first = lr_request_new("gpt-4o-mini");
	assert_non_null(first);
	assert_int_equal(lr_request_add_message(first, LR_ROLE_USER, "hi"), 0);
	assert_int_equal(lr_request_set_body(first, "{\"model\":\"x\"}", 13), 0);
	assert_int_equal(lr_request_set_base_url(first, "http://127.0.0.1:1/v1"), 0);
	assert_int_equal(lr_request_add_header(first, "X-Trace", "1"), 0);
	assert_int_equal(lr_request_set_param(first, "seed", "7"), 0);
	assert_int_equal(lr_request_add_stop(first, "END"), 0);
	assert_int_equal(lr_request_set_max_tokens(first, 9), 0);
	assert_int_equal(lr_request_set_stream(first, 1), 0);
	assert_int_equal(lr_request_set_timeouts(first, 1, 2, 3), 0);
	lr_request_set_user_data(first, first);
	lr_request_free(first);

	lr_request *second = lr_request_new(NULL);
	/* Same thread, one freed before: the kept request is the one under test. */
	assert_ptr_equal(second, first);
	assert_null(second->model);
	assert_null(second->base_url);
	assert_false(request_has_parts(second));
	assert_int_equal(second->body.len, 0);
	assert_non_null(second->body.data); /* the memory kept */
	assert_int_equal(second->headers.len, 0);
	assert_int_equal(second->max_tokens, -1);
	assert_int_equal(second->max_retries, -1);
	assert_false(second->stream);
	assert_true(second->connect_s == 0 && second->idle_s == 0 && second->total_s == 0);
	assert_null(second->user_data);
	assert_null(second->on_delta);
	assert_null(second->call);
	/* Two at once: the second free has no slot and frees for real. */
	lr_request *third = lr_request_new("m");
	assert_ptr_not_equal(third, second);
	lr_request_free(second);
	lr_request_free(third);
	lr_request_free(holder);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* 1. request bodies */
		cmocka_unit_test(freed_request_comes_back_empty_with_its_body_memory),
		cmocka_unit_test(openai_chat_with_system),
		cmocka_unit_test(openai_multi_turn_with_tool_results),
		cmocka_unit_test(openai_tools_and_tool_choice),
		cmocka_unit_test(openai_image_parts),
		cmocka_unit_test(openai_response_formats),
		cmocka_unit_test(openai_stream_flags),
		cmocka_unit_test(openai_stream_options_param_is_not_duplicated),
		cmocka_unit_test(openai_body_with_prefix_is_rewritten),
		cmocka_unit_test(anthropic_chat_with_system),
		cmocka_unit_test(anthropic_max_tokens_default_and_preference),
		cmocka_unit_test(anthropic_multi_turn_with_tool_results),
		cmocka_unit_test(anthropic_tool_call_without_text),
		cmocka_unit_test(anthropic_tools_and_tool_choice),
		cmocka_unit_test(anthropic_image_parts),
		cmocka_unit_test(anthropic_response_format_becomes_a_forced_tool),
		cmocka_unit_test(anthropic_stream_flag),
		cmocka_unit_test(anthropic_from_body),
		cmocka_unit_test(ollama_chat_with_system),
		cmocka_unit_test(ollama_multi_turn_with_tool_results),
		cmocka_unit_test(ollama_tools_and_tool_choice),
		cmocka_unit_test(ollama_image_parts),
		cmocka_unit_test(ollama_response_formats),
		cmocka_unit_test(ollama_stream_flag_is_always_explicit),
		cmocka_unit_test(ollama_from_body),
		cmocka_unit_test(gemini_chat_with_system),
		cmocka_unit_test(gemini_multi_turn_with_tool_results),
		cmocka_unit_test(gemini_tool_call_without_text),
		cmocka_unit_test(gemini_tools_and_tool_choice),
		cmocka_unit_test(gemini_image_parts),
		cmocka_unit_test(gemini_response_formats),
		cmocka_unit_test(gemini_stream_changes_the_path),
		cmocka_unit_test(gemini_from_body),
		cmocka_unit_test(routing_bare_and_unknown_prefixes_go_to_openai),
		cmocka_unit_test(routing_body_model_names_the_provider),
		cmocka_unit_test(routing_body_without_a_known_prefix_goes_as_it_is),
		cmocka_unit_test(routing_request_model_replaces_the_body_model),
		cmocka_unit_test(routing_lr_model_provider),
		cmocka_unit_test(routing_base_path_version_is_not_doubled),
		cmocka_unit_test(embeddings_openai),
		cmocka_unit_test(embeddings_ollama),
		cmocka_unit_test(embeddings_anthropic_and_gemini_are_unsupported),
		cmocka_unit_test(completions_openai_body_from_calls),
		cmocka_unit_test(completions_openai_body_of_the_callers),
		cmocka_unit_test(completions_are_unsupported_by_the_other_dialects),
		cmocka_unit_test(completions_prompt_belongs_to_its_endpoint),
		cmocka_unit_test(invalid_body_with_message_calls),
		cmocka_unit_test(invalid_without_messages),
		cmocka_unit_test(invalid_models),
		cmocka_unit_test(invalid_gemini_tool_result_without_its_call),
		cmocka_unit_test(invalid_tool_call_arguments),
		/* 2. whole responses */
		cmocka_unit_test(response_openai_text_and_cached_usage),
		cmocka_unit_test(response_openai_tool_calls),
		cmocka_unit_test(response_anthropic_tool_use_and_cache_usage),
		cmocka_unit_test(response_anthropic_finish_reasons),
		cmocka_unit_test(response_anthropic_json_tool_is_the_text),
		cmocka_unit_test(response_ollama_tool_calls),
		cmocka_unit_test(response_ollama_text_and_length),
		cmocka_unit_test(response_gemini_function_call_and_cache),
		cmocka_unit_test(response_gemini_finish_reasons_and_thoughts),
		cmocka_unit_test(response_ollama_embeddings_become_an_openai_list),
		cmocka_unit_test(response_success_that_is_not_json),
		cmocka_unit_test(response_openai_text_completion),
		/* 3. error bodies */
		cmocka_unit_test(errors_openai),
		cmocka_unit_test(errors_openai_completions),
		cmocka_unit_test(errors_anthropic),
		cmocka_unit_test(errors_gemini),
		cmocka_unit_test(errors_ollama),
		cmocka_unit_test(errors_without_a_json_body_use_the_status),
		/* 4. streams */
		cmocka_unit_test(stream_openai_transcript),
		cmocka_unit_test(stream_openai_completions_transcript),
		cmocka_unit_test(stream_openai_completions_cut_or_failed),
		cmocka_unit_test(stream_anthropic_transcript),
		cmocka_unit_test(stream_anthropic_json_tool_is_the_text),
		cmocka_unit_test(stream_anthropic_thinking_is_not_text),
		cmocka_unit_test(stream_ollama_transcript),
		cmocka_unit_test(stream_gemini_transcript),
		cmocka_unit_test(stream_openai_error_event),
		cmocka_unit_test(stream_anthropic_error_event),
		cmocka_unit_test(stream_ollama_error_line),
		cmocka_unit_test(stream_ollama_length_and_escapes),
		cmocka_unit_test(stream_gemini_error_chunk),
		cmocka_unit_test(stream_malformed_event_is_fatal),
		cmocka_unit_test(stream_truncated_mid_reply),
		cmocka_unit_test(stream_openai_without_done_is_truncated),
		cmocka_unit_test(stream_anthropic_without_message_stop_is_truncated),
		/* 5. the chat.completion written back */
		cmocka_unit_test(reply_body_with_tool_calls_only_has_null_content),
		cmocka_unit_test(reply_body_with_text_and_calls),
		cmocka_unit_test(reply_text_completion_body_shape),
		cmocka_unit_test(reply_tool_calls_in_any_index_order),
		cmocka_unit_test(stream_many_tool_calls_take_linear_work),
		cmocka_unit_test(stream_tool_calls_past_the_cap_fail_too_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
