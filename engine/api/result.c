/*
 * Kept results (lr_result_copy): a result and everything it points to in
 * one allocation, so a caller that keeps many results (a binding's
 * response objects, a batch's outcomes) can release each future as soon
 * as it completes. A future is a few KiB with its request, response and
 * text buffers and goes back to the engine's pool when released; a copy
 * is the result's own bytes.
 *
 * Layout: the struct, then the tool-call array, then the bytes of every
 * string, each NUL-terminated (body, text and arguments by their lengths,
 * so embedded NULs survive).
 */
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmring.h"

/* total += n (+1 for the NUL when s is set); false on overflow. */
static bool room_for(size_t *total, const char *s, size_t n)
{
	if (!s)
		return true;
	if (n > SIZE_MAX - 1 - *total)
		return false;
	*total += n + 1;
	return true;
}

static size_t len_of(const char *s)
{
	return s ? strlen(s) : 0;
}

/* Copies n bytes of s (NULL stays NULL) at *p, NUL-terminated. */
static const char *put(char **p, const char *s, size_t n)
{
	if (!s)
		return NULL;
	char *d = *p;
	if (n)
		memcpy(d, s, n);
	d[n] = '\0';
	*p = d + n + 1;
	return d;
}

/* The bytes the copy needs (0 on overflow). */
static size_t copy_size(const lr_result *r, int ncalls)
{
	size_t total = sizeof(lr_result) + (size_t)ncalls * sizeof(lr_tool_call);
	bool ok = room_for(&total, r->error_message, len_of(r->error_message)) &&
	          room_for(&total, r->body, r->body_len) && room_for(&total, r->text, r->text_len) &&
	          room_for(&total, r->finish_reason, len_of(r->finish_reason)) &&
	          room_for(&total, r->request_id, len_of(r->request_id)) &&
	          room_for(&total, r->model, len_of(r->model)) &&
	          room_for(&total, r->provider, len_of(r->provider));
	for (int i = 0; ok && i < ncalls; i++) {
		const lr_tool_call *tc = &r->tool_calls[i];
		ok = room_for(&total, tc->id, len_of(tc->id)) &&
		     room_for(&total, tc->name, len_of(tc->name)) &&
		     room_for(&total, tc->arguments, tc->arguments_len);
	}
	return ok ? total : 0;
}

LR_API lr_result *lr_result_copy(const lr_result *res)
{
	_Static_assert(sizeof(lr_result) % alignof(lr_tool_call) == 0,
	               "the tool calls follow the struct");
	if (!res)
		return NULL;
	int ncalls = res->tool_calls && res->tool_call_count > 0 ? res->tool_call_count : 0;
	size_t size = copy_size(res, ncalls);
	lr_result *c = size ? malloc(size) : NULL; /* owner: the caller (lr_result_free) */
	if (!c)
		return NULL;
	*c = *res;
	lr_tool_call *calls = (lr_tool_call *)(c + 1);
	char *p = (char *)(calls + ncalls);
	c->error_message = put(&p, res->error_message, len_of(res->error_message));
	c->body = put(&p, res->body, res->body_len);
	c->body_len = res->body ? res->body_len : 0;
	c->text = put(&p, res->text, res->text_len);
	c->text_len = res->text ? res->text_len : 0;
	c->finish_reason = put(&p, res->finish_reason, len_of(res->finish_reason));
	c->request_id = put(&p, res->request_id, len_of(res->request_id));
	c->model = put(&p, res->model, len_of(res->model));
	c->provider = put(&p, res->provider, len_of(res->provider));
	for (int i = 0; i < ncalls; i++) {
		const lr_tool_call *tc = &res->tool_calls[i];
		calls[i].id = put(&p, tc->id, len_of(tc->id));
		calls[i].name = put(&p, tc->name, len_of(tc->name));
		calls[i].arguments = put(&p, tc->arguments, tc->arguments_len);
		calls[i].arguments_len = tc->arguments ? tc->arguments_len : 0;
	}
	c->tool_calls = ncalls ? calls : NULL;
	c->tool_call_count = ncalls;
	return c;
}

LR_API void lr_result_free(lr_result *res)
{
	free(res);
}
