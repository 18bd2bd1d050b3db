/*
 * Sessions: conversation history kept per session, on top of the public
 * API (lr_submit, lr_future_then). The history lives as OpenAI message
 * objects; each turn sends all of it plus the new user message, and the
 * reply is appended from the completion callback (the engine's thread),
 * so the caller's thread never has to come back for it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_reader.h"
#include "format/json.h"
#include "llmring.h"
#include "core/engine_session.h"

struct lr_session {
	pthread_mutex_t lock;          /* guards everything below */
	_Atomic int refs;              /* the caller's, plus one per turn in flight */
	lr_engine *eng;                /* borrowed */
	char *model;                   /* owner: session */
	char *system;                  /* owner: session; a JSON message, or NULL */
	char **msgs;                   /* owner: session; JSON message objects, nmsgs used */
	int nmsgs, cap;
	char *pending;                 /* owner: session; the user message of the turn in flight */
	int turns;
	bool busy;
	void *user_data;               /* the caller's, never touched */
};

static void session_unref(struct lr_session *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (int i = 0; i < s->nmsgs; i++)
		free(s->msgs[i]);
	free(s->msgs);
	free(s->pending);
	free(s->model);
	free(s->system);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* A message object as a malloc'd string: {"role":ROLE,"content":TEXT}. */
static char *message_json(const char *role, const char *text, size_t len)
{
	struct buf b = {0}; /* owner: this function until returned */
	int ret = buf_append(&b, "{\"role\":\"", 9);
	if (!ret)
		ret = buf_append(&b, role, strlen(role));
	if (!ret)
		ret = buf_append(&b, "\",\"content\":", 12);
	if (!ret)
		ret = json_append_string(&b, text, len);
	if (!ret)
		ret = buf_append(&b, "}", 2); /* with the NUL */
	if (ret) {
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

/* The assistant turn of a result: text and tool calls, OpenAI's shape. */
static char *assistant_json(const lr_result *r)
{
	struct buf b = {0}; /* owner: this function until returned */
	int ret = buf_append(&b, "{\"role\":\"assistant\",\"content\":", 30);
	if (!ret)
		ret = r->text_len || !r->tool_call_count ? json_append_string(&b, r->text ? r->text : "", r->text_len)
		                                         : buf_append(&b, "null", 4);
	for (int i = 0; !ret && i < r->tool_call_count; i++) {
		const lr_tool_call *c = &r->tool_calls[i];
		ret = buf_append(&b, i ? ",{\"id\":" : ",\"tool_calls\":[{\"id\":", i ? 7 : 21);
		if (!ret)
			ret = json_append_string(&b, c->id, strlen(c->id));
		if (!ret)
			ret = buf_append(&b, ",\"type\":\"function\",\"function\":{\"name\":", 38);
		if (!ret)
			ret = json_append_string(&b, c->name, strlen(c->name));
		if (!ret)
			ret = buf_append(&b, ",\"arguments\":", 13);
		if (!ret)
			ret = json_append_string(&b, c->arguments, c->arguments_len);
		if (!ret)
			ret = buf_append(&b, i + 1 == r->tool_call_count ? "}}]" : "}}", i + 1 == r->tool_call_count ? 3 : 2);
	}
	if (!ret)
		ret = buf_append(&b, "}", 2);
	if (ret) {
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

static bool push_msg(struct lr_session *s, char *m)
{
	if (!m)
		return false;
	if (s->nmsgs == s->cap) {
		int cap = s->cap ? s->cap * 2 : 8;
		char **n = realloc(s->msgs, (size_t)cap * sizeof(*n));
		if (!n)
			return false;
		s->msgs = n;
		s->cap = cap;
	}
	s->msgs[s->nmsgs++] = m;
	return true;
}

LR_API lr_session *lr_session_new(lr_engine *eng, const char *model, const char *system)
{
	if (!eng || !model || !model[0])
		return NULL;
	struct lr_session *s = calloc(1, sizeof(*s)); /* owner: the caller (lr_session_free) */
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->refs, 1);
	s->eng = eng;
	s->model = strdup(model);
	if (system)
		s->system = message_json("system", system, strlen(system));
	if (!s->model || (system && !s->system)) {
		session_unref(s);
		return NULL;
	}
	return s;
}

/* The turn ended (engine thread, or here when it failed at once). */
static void turn_done(void *user, lr_future *f)
{
	struct lr_session *s = user;
	const lr_result *r = lr_future_result(f);
	pthread_mutex_lock(&s->lock);
	if (r && r->error == LR_OK && s->pending) {
		char *reply = assistant_json(r);
		/* Both or neither: a history never ends in an unanswered turn. */
		if (reply && push_msg(s, s->pending)) {
			s->pending = NULL;
			if (push_msg(s, reply)) {
				s->turns++;
				reply = NULL;
			} else {
				s->pending = s->msgs[--s->nmsgs];
			}
		}
		if (reply || s->pending) {
			/* A turn that succeeded but is not in the history would
			 * be lost without a word: it fails instead. */
			engine_future_refail(f, LR_ENOMEM, "out of memory adding the reply to the session's history");
		}
		free(reply);
	}
	free(s->pending);
	s->pending = NULL;
	s->busy = false;
	pthread_mutex_unlock(&s->lock);
	session_unref(s);
}

LR_API lr_future *lr_session_send(lr_session *s, const char *text)
{
	if (!s || !text)
		return NULL;
	pthread_mutex_lock(&s->lock);
	if (s->busy) {
		pthread_mutex_unlock(&s->lock);
		return engine_failed_future(s->eng, LR_EINVAL, "the session has a turn in flight; "
		                                               "send one message at a time");
	}
	lr_request *rq = lr_request_new(s->model); /* owner: here until lr_submit */
	char *user = message_json("user", text, strlen(text));
	int ret = rq && user ? 0 : LR_ENOMEM;
	if (!ret && s->system)
		ret = lr_request_add_message_json(rq, s->system);
	for (int i = 0; !ret && i < s->nmsgs; i++)
		ret = lr_request_add_message_json(rq, s->msgs[i]);
	if (!ret)
		ret = lr_request_add_message_json(rq, user);
	if (ret) {
		pthread_mutex_unlock(&s->lock);
		lr_request_free(rq);
		free(user);
		return engine_failed_future(s->eng, ret, "could not build the session's request");
	}
	s->pending = user;
	s->busy = true;
	atomic_fetch_add(&s->refs, 1); /* held by the turn */
	pthread_mutex_unlock(&s->lock);
	lr_future *f = lr_submit(s->eng, rq);
	if (!f) {
		turn_done(s, NULL);
		return NULL;
	}
	lr_future_then(f, turn_done, s);
	return f;
}

LR_API char *lr_session_history(lr_session *s)
{
	if (!s)
		return NULL;
	struct buf b = {0}; /* owner: this function until returned */
	pthread_mutex_lock(&s->lock);
	int ret = buf_append(&b, "[", 1);
	if (!ret && s->system)
		ret = buf_append(&b, s->system, strlen(s->system));
	for (int i = 0; !ret && i < s->nmsgs; i++) {
		if ((i || s->system) && buf_append(&b, ",", 1))
			ret = LR_ENOMEM;
		if (!ret)
			ret = buf_append(&b, s->msgs[i], strlen(s->msgs[i]));
	}
	pthread_mutex_unlock(&s->lock);
	if (!ret)
		ret = buf_append(&b, "]", 2);
	if (ret) {
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

LR_API int lr_session_turns(lr_session *s)
{
	if (!s)
		return LR_EINVAL;
	pthread_mutex_lock(&s->lock);
	int n = s->turns;
	pthread_mutex_unlock(&s->lock);
	return n;
}

LR_API void lr_session_free(lr_session *s)
{
	if (s)
		session_unref(s);
}

LR_API void lr_session_set_user_data(lr_session *s, void *user_data)
{
	if (s)
		s->user_data = user_data;
}

LR_API void *lr_session_user_data(const lr_session *s)
{
	return s ? s->user_data : NULL;
}
