#include "provider/reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "format/json.h"

void reply_init(struct reply *r, lr_delta_fn fn, void *user)
{
	memset(r, 0, sizeof(*r));
	r->fn = fn;
	r->user = user;
}

static void calls_free(struct reply *r)
{
	for (unsigned i = 0; i < r->ncalls; i++) {
		buf_free(&r->calls[i].id);
		buf_free(&r->calls[i].name);
		buf_free(&r->calls[i].args);
	}
	free(r->calls);
	free(r->public_calls);
	free(r->slots);
	r->calls = NULL;
	r->public_calls = NULL;
	r->slots = NULL;
	r->ncalls = r->cap = r->nslots = 0;
}

void reply_reset(struct reply *r)
{
	struct buf text = r->text, scratch = r->scratch, spare = r->spare_text;
	lr_delta_fn fn = r->fn;
	void *user = r->user;
	calls_free(r);
	memset(r, 0, sizeof(*r));
	buf_clear(&text);
	buf_clear(&scratch);
	r->text = text;
	r->scratch = scratch;
	r->spare_text = spare;
	r->fn = fn;
	r->user = user;
}

void reply_free(struct reply *r)
{
	calls_free(r);
	buf_free(&r->text);
	buf_free(&r->scratch);
	buf_free(&r->spare_text);
}

void reply_recycle(struct reply *r, size_t keep_cap)
{
	calls_free(r);
	if (r->text.data && !r->spare_text.data && r->text.cap <= keep_cap) {
		r->spare_text = r->text;
		r->text = (struct buf){0};
	}
	buf_free(&r->text);
	buf_clear(&r->spare_text);
	if (r->scratch.cap > keep_cap)
		buf_free(&r->scratch);
	buf_clear(&r->scratch);
}

int reply_fail(struct reply *r, int err, const char *fmt, ...)
{
	if (!r->err.code) {
		va_list ap;
		va_start(ap, fmt);
		error_vset(&r->err, err, 0, fmt, ap);
		va_end(ap);
	}
	return r->err.code;
}

void reply_copy_field(char *dst, size_t cap, const char *v, size_t len)
{
	/* A stream repeats its model and id in every chunk: equal bytes (no
	 * NUL in v, a JSON string has none raw) need neither the scan for a
	 * backslash nor the copy. */
	if (len < cap && dst[len] == '\0' && memcmp(dst, v, len) == 0)
		return;
	if (len < cap && !memchr(v, '\\', len)) {
		memcpy(dst, v, len);
		dst[len] = '\0';
	}
}

static int decode(struct reply *r, const char *v, size_t len, bool escaped)
{
	buf_clear(&r->scratch);
	if (!len)
		return 0;
	if (!escaped || !memchr(v, '\\', len))
		return buf_append(&r->scratch, v, len);
	return json_unescape_append(&r->scratch, v, len);
}

int reply_text_finish(struct reply *r, int choice, const char *v, size_t len, bool escaped,
                      const char *reason)
{
	if (!len)
		return reply_finish(r, choice, reason);
	if (!r->first_token_ns)
		r->first_token_ns = clock_now_ns();
	int ret = decode(r, v, len, escaped);
	if (ret)
		return reply_fail(r, ret, "a stream event's text could not be decoded");
	if (choice == 0 && buf_append(reply_text_buf(r, r->scratch.len), r->scratch.data, r->scratch.len))
		return reply_fail(r, LR_ENOMEM, "out of memory");
	bool finish = reason && reason[0];
	if (finish && choice == 0)
		snprintf(r->finish_reason, sizeof(r->finish_reason), "%s", reason);
	if (r->fn) {
		lr_delta d = {
			.text = r->scratch.data,
			.text_len = r->scratch.len,
			.choice = choice,
			.finish_reason = finish ? reason : NULL,
			.tool_index = -1,
		};
		r->deltas++;
		r->fn(r->user, &d);
	}
	return 0;
}

int reply_text(struct reply *r, int choice, const char *v, size_t len, bool escaped)
{
	return reply_text_finish(r, choice, v, len, escaped, NULL);
}

static unsigned slot_hash(int index, unsigned nslots)
{
	return ((unsigned)index * 2654435761u) & (nslots - 1);
}

/* Rebuilds the index hash at twice the call array's capacity, so it stays
 * at most half full and a lookup takes a probe or two. */
static int slots_grow(struct reply *r, unsigned cap)
{
	unsigned n = cap * 2;
	unsigned *s = calloc(n, sizeof(*s));
	if (!s)
		return LR_ENOMEM;
	for (unsigned i = 0; i < r->ncalls; i++) {
		unsigned h = slot_hash(r->calls[i].index, n);
		while (s[h])
			h = (h + 1) & (n - 1);
		s[h] = i + 1;
	}
	free(r->slots);
	r->slots = s;
	r->nslots = n;
	return 0;
}

/* The call with the provider's index, added when new. Deltas name calls
 * by index in any order, so this is a hash lookup: a scan per delta was
 * quadratic in the number of calls. NULL with *err set on failure. */
static struct reply_tool_call *call_at(struct reply *r, int index, int *err)
{
	/* Most deltas continue the latest call. */
	if (r->ncalls && r->calls[r->ncalls - 1].index == index) {
		r->call_probes++;
		return &r->calls[r->ncalls - 1];
	}
	unsigned h = 0;
	if (r->nslots) {
		for (h = slot_hash(index, r->nslots); r->slots[h]; h = (h + 1) & (r->nslots - 1)) {
			r->call_probes++;
			if (r->calls[r->slots[h] - 1].index == index)
				return &r->calls[r->slots[h] - 1];
		}
	}
	if (r->ncalls >= REPLY_MAX_TOOL_CALLS) {
		*err = LR_ETOOLARGE;
		return NULL;
	}
	if (r->ncalls == r->cap) {
		unsigned cap = r->cap ? r->cap * 2 : 4;
		struct reply_tool_call *c = realloc(r->calls, cap * sizeof(*c));
		if (c)
			r->calls = c;
		if (!c || slots_grow(r, cap)) {
			*err = LR_ENOMEM;
			return NULL;
		}
		r->cap = cap;
		for (h = slot_hash(index, r->nslots); r->slots[h]; h = (h + 1) & (r->nslots - 1))
			;
	}
	r->slots[h] = r->ncalls + 1;
	struct reply_tool_call *c = &r->calls[r->ncalls++];
	memset(c, 0, sizeof(*c));
	c->index = index;
	return c;
}

/* Ids, names and short arguments are a few bytes: an exact first
 * allocation instead of the buffers' 512-byte minimum keeps many calls
 * from costing 1.5 KiB each. Unescaping never lengthens a value. */
static int small_append(struct buf *b, const char *v, size_t len, bool escaped)
{
	if (!b->cap && len) {
		size_t cap = (len + 16) & ~(size_t)15;
		b->data = malloc(cap);
		if (!b->data)
			return LR_ENOMEM;
		b->cap = cap;
	}
	return escaped ? json_unescape_append(b, v, len) : buf_append(b, v, len);
}

int reply_tool(struct reply *r, int index, const char *id, size_t id_len, const char *name,
               size_t name_len, const char *args, size_t args_len, bool escaped)
{
	int err = 0;
	struct reply_tool_call *c = call_at(r, index, &err);
	if (!c && err == LR_ETOOLARGE)
		return reply_fail(r, err, "the reply has more than %d tool calls", REPLY_MAX_TOOL_CALLS);
	if (!c)
		return reply_fail(r, LR_ENOMEM, "out of memory");
	if (!r->first_token_ns)
		r->first_token_ns = clock_now_ns();
	int ret = 0;
	/* Ids and names arrive whole in every provider's stream; arguments
	 * arrive in fragments that concatenate. */
	if (id && id_len) {
		buf_clear(&c->id);
		ret = small_append(&c->id, id, id_len, escaped);
	}
	if (!ret && name && name_len) {
		buf_clear(&c->name);
		ret = small_append(&c->name, name, name_len, escaped);
	}
	if (!ret)
		ret = decode(r, args, args ? args_len : 0, escaped);
	if (!ret && r->scratch.len)
		ret = small_append(&c->args, r->scratch.data, r->scratch.len, false);
	if (ret)
		return reply_fail(r, ret == LR_ENOMEM ? ret : LR_EPROTO, "a tool call could not be decoded");
	if (r->fn) {
		/* NUL-terminated views for the callback. */
		if (buf_reserve(&c->id, 1) || buf_reserve(&c->name, 1))
			return reply_fail(r, LR_ENOMEM, "out of memory");
		c->id.data[c->id.len] = '\0';
		c->name.data[c->name.len] = '\0';
		lr_delta d = {
			.text = "",
			.choice = 0,
			.tool_index = index,
			.tool_id = c->id.len ? c->id.data : NULL,
			.tool_name = c->name.len ? c->name.data : NULL,
			.tool_arguments = r->scratch.len ? r->scratch.data : "",
			.tool_arguments_len = r->scratch.len,
		};
		r->deltas++;
		r->fn(r->user, &d);
	}
	return 0;
}

int reply_finish(struct reply *r, int choice, const char *reason)
{
	if (!reason || !reason[0])
		return 0;
	if (choice == 0)
		snprintf(r->finish_reason, sizeof(r->finish_reason), "%s", reason);
	if (r->fn) {
		lr_delta d = {.text = "", .choice = choice, .finish_reason = reason, .tool_index = -1};
		r->deltas++;
		r->fn(r->user, &d);
	}
	return 0;
}

void reply_empty_event(struct reply *r, int choice)
{
	if (!r->fn)
		return;
	lr_delta d = {.text = "", .choice = choice, .tool_index = -1};
	r->deltas++;
	r->fn(r->user, &d);
}

static int append_cstr(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

static int append_finish(const struct reply *r, struct buf *out)
{
	return r->finish_reason[0] ? json_append_string(out, r->finish_reason, strlen(r->finish_reason))
	                           : append_cstr(out, "null");
}

/* Closes choices[0] and the choices, then the usage and the body. */
static int append_usage_end(const struct reply *r, struct buf *out)
{
	char num[224];
	int n = snprintf(num, sizeof(num),
	                 "}],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
	                 "\"total_tokens\":%lld,\"prompt_tokens_details\":{\"cached_tokens\":%lld}}}",
	                 (long long)r->usage.input_tokens, (long long)r->usage.output_tokens,
	                 (long long)(r->usage.input_tokens + r->usage.output_tokens),
	                 (long long)r->usage.cached_input_tokens);
	return buf_append(out, num, (size_t)n);
}

int reply_openai_body(const struct reply *r, struct buf *out)
{
	int ret = append_cstr(out, "{\"id\":");
	if (!ret)
		ret = json_append_string(out, r->id, strlen(r->id));
	if (!ret)
		ret = append_cstr(out, ",\"object\":\"chat.completion\",\"model\":");
	if (!ret)
		ret = json_append_string(out, r->model, strlen(r->model));
	if (!ret)
		ret = append_cstr(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
	if (!ret) {
		/* OpenAI sends null content for a reply that is only tool calls. */
		if (r->text.len || !r->ncalls)
			ret = json_append_string(out, r->text.data ? r->text.data : "", r->text.len);
		else
			ret = append_cstr(out, "null");
	}
	for (unsigned i = 0; !ret && i < r->ncalls; i++) {
		const struct reply_tool_call *c = &r->calls[i];
		ret = append_cstr(out, i ? ",{\"id\":" : ",\"tool_calls\":[{\"id\":");
		if (!ret)
			ret = json_append_string(out, c->id.data ? c->id.data : "", c->id.len);
		if (!ret)
			ret = append_cstr(out, ",\"type\":\"function\",\"function\":{\"name\":");
		if (!ret)
			ret = json_append_string(out, c->name.data ? c->name.data : "", c->name.len);
		if (!ret)
			ret = append_cstr(out, ",\"arguments\":");
		if (!ret)
			ret = json_append_string(out, c->args.data ? c->args.data : "", c->args.len);
		if (!ret)
			ret = append_cstr(out, i + 1 == r->ncalls ? "}}]" : "}}");
	}
	if (!ret)
		ret = append_cstr(out, "},\"finish_reason\":");
	if (!ret)
		ret = append_finish(r, out);
	return ret ? ret : append_usage_end(r, out);
}

int reply_text_completion_body(const struct reply *r, struct buf *out)
{
	int ret = append_cstr(out, "{\"id\":");
	if (!ret)
		ret = json_append_string(out, r->id, strlen(r->id));
	if (!ret)
		ret = append_cstr(out, ",\"object\":\"text_completion\",\"model\":");
	if (!ret)
		ret = json_append_string(out, r->model, strlen(r->model));
	if (!ret)
		ret = append_cstr(out, ",\"choices\":[{\"index\":0,\"text\":");
	if (!ret)
		ret = json_append_string(out, r->text.data ? r->text.data : "", r->text.len);
	if (!ret)
		ret = append_cstr(out, ",\"logprobs\":null,\"finish_reason\":");
	if (!ret)
		ret = append_finish(r, out);
	return ret ? ret : append_usage_end(r, out);
}

static int terminate(struct buf *b)
{
	if (buf_reserve(b, 1))
		return LR_ENOMEM;
	b->data[b->len] = '\0';
	return 0;
}

int reply_publish_calls(struct reply *r)
{
	if (!r->ncalls)
		return 0;
	free(r->public_calls);
	r->public_calls = calloc(r->ncalls, sizeof(*r->public_calls));
	if (!r->public_calls)
		return LR_ENOMEM;
	for (unsigned i = 0; i < r->ncalls; i++) {
		struct reply_tool_call *c = &r->calls[i];
		if (terminate(&c->id) || terminate(&c->name) || terminate(&c->args))
			return LR_ENOMEM;
		r->public_calls[i] = (lr_tool_call){
			.id = c->id.data,
			.name = c->name.data,
			.arguments = c->args.data,
			.arguments_len = c->args.len,
		};
	}
	return 0;
}
