/* A hit, answered on the engine's thread (cache.h: cache_take): the
 * stored body parsed as the reply, replayed as deltas to a stream. */
#include <stdatomic.h>
#include <string.h>

#include "core/cache.h"
#include "core/cache_internal.h"
#include "core/engine_internal.h"
#include "provider/provider.h"
#include "util/clock.h"

/* The stored reply as a stream's deltas: its text, each tool call whole,
 * then the finish reason, so a streamed request sees what it would have. */
static void replay_deltas(struct reply *r)
{
	if (r->text.len) {
		lr_delta d = {.text = r->text.data, .text_len = r->text.len, .tool_index = -1};
		r->deltas++;
		r->fn(r->user, &d);
	}
	for (unsigned i = 0; i < r->ncalls; i++) {
		struct reply_tool_call *tc = &r->calls[i];
		lr_delta d = {
			.text = "",
			.tool_index = (int)i,
			.tool_id = tc->id.len ? tc->id.data : NULL,
			.tool_name = tc->name.len ? tc->name.data : NULL,
			.tool_arguments = tc->args.data ? tc->args.data : "",
			.tool_arguments_len = tc->args.len,
		};
		r->deltas++;
		r->fn(r->user, &d);
	}
	lr_delta end = {.text = "", .finish_reason = r->finish_reason[0] ? r->finish_reason : "stop",
	                .tool_index = -1};
	r->deltas++;
	r->fn(r->user, &end);
}

/* NUL-terminates a call's id and name for the deltas (reply_publish_calls
 * does the same later). */
static int terminate_calls(struct reply *r)
{
	for (unsigned i = 0; i < r->ncalls; i++) {
		struct buf *parts[3] = {&r->calls[i].id, &r->calls[i].name, &r->calls[i].args};
		for (int k = 0; k < 3; k++) {
			if (buf_reserve(parts[k], 1))
				return LR_ENOMEM;
			parts[k]->data[parts[k]->len] = '\0';
		}
	}
	return 0;
}

/* A miss of a lookup that must not be sent (lr_request_set_cache_only)
 * ends here; true when it did. */
static bool cache_only_missed(struct lr_future *f)
{
	if (!f->cache_only)
		return false;
	future_complete(f, LR_ENOTCACHED, "not in the response cache");
	return true;
}

bool cache_take(struct lr_engine *e, struct lr_future *f)
{
	if (atomic_load_explicit(&f->cancel_pushed, memory_order_acquire)) {
		/* Cancelled while on the cache's queue, where the cancel found nothing. */
		future_complete(f, LR_ECANCELLED, "cancelled by the caller");
		return true;
	}
	if (f->cache_state != CACHE_HIT)
		return cache_only_missed(f);
	struct buf unused = {0}; /* owner: this function; OpenAI's parser never rewrites */
	bool is_json = false, rewritten = false;
	/* Stored bodies are OpenAI-shaped whatever the provider (as batch output is). */
	provider_parse_response(PROVIDER_OPENAI, f->endpoint, &e->doc, f->result.http_status,
	                        f->resp_body.data, f->resp_body.len, &f->reply, &is_json, &unused,
	                        &rewritten);
	buf_free(&unused);
	if (f->reply.err.code || !is_json || (f->reply.fn && terminate_calls(&f->reply))) {
		/* An entry that does not read back: asked again, and replaced. */
		reply_reset(&f->reply);
		buf_clear(&f->resp_body);
		f->request_id[0] = '\0';
		f->result.http_status = 0;
		f->cache_state = CACHE_MISS;
		return cache_only_missed(f);
	}
	f->result.body_is_json = 1;
	f->result.cached = 1;
	f->reply.first_token_ns = clock_now_ns();
	if (f->reply.fn)
		replay_deltas(&f->reply);
	cache_count_hit(e->cache);
	future_complete(f, 0, NULL);
	return true;
}

