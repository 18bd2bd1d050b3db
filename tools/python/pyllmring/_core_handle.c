/*
 * _core.Handle: one submitted request. It owns its lr_future, references
 * its token and its channel, and carries its own done event (queued by
 * core_on_done). Result attributes are computed on each access and raise
 * RuntimeError before the request is complete.
 *
 * A completed handle keeps its result, not its future: when its done
 * event is handed out (drain, dispatch) the result is copied
 * (lr_result_copy, one allocation of the result's own bytes) and the
 * future released, so it goes back to the engine's slab for the next request instead of
 * living, a few KiB with its buffers, as long as the response object.
 * The copy becomes a _core.Result (the same result attributes, no future,
 * no token, not GC-tracked), which the response records hold instead of
 * the handle.
 */
#include "_core.h"


CoreHandle *core_handle_new(CoreChannel *ch, PyObject *token)
{
	CoreHandle *h = PyObject_GC_New(CoreHandle, &CoreHandle_Type);
	if (!h)
		return NULL;
	h->future = NULL;
	h->copy = NULL;
	h->kept = NULL;
	Py_INCREF(token);
	h->token = token;
	Py_INCREF(ch);
	h->channel = ch;
	h->session = NULL;
	h->eager_kind = 0;
	h->eager_n = 0;
	h->eager_core = h->eager_model = NULL;
	h->eager_window = NULL;
	h->eager_rq = NULL;
	h->eager_next = NULL;
	h->gen = core_fork_gen;
	PyObject_GC_Track(h);
	return h;
}

PyObject *core_handle_start(CoreHandle *h, lr_future *f)
{
	if (!f) {
		Py_DECREF(h);
		return PyErr_NoMemory();
	}
	h->future = f;
	Py_INCREF(h); /* owner: the engine until core_on_done, then the channel's FIFO */
	if (lr_future_then(f, core_on_done, h) < 0) {
		Py_DECREF(h);
		Py_DECREF(h);
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: lr_future_then refused the future");
		return NULL;
	}
	return (PyObject *)h;
}

static int Handle_traverse(CoreHandle *h, visitproc visit, void *arg)
{
	Py_VISIT(h->token);
	Py_VISIT(h->channel);
	Py_VISIT(h->session);
	Py_VISIT(h->eager_core);
	Py_VISIT(h->eager_model);
	return 0;
}

static int Handle_clear(CoreHandle *h)
{
	Py_CLEAR(h->token);
	Py_CLEAR(h->channel);
	Py_CLEAR(h->session);
	Py_CLEAR(h->eager_core);
	Py_CLEAR(h->eager_model);
	Py_CLEAR(h->eager_window);
	return 0;
}

static void Handle_dealloc(CoreHandle *h)
{
	PyObject_GC_UnTrack(h);
	/* In a forked child the engine's locks may be held by a thread that
	 * no longer exists: leave the future alone. */
	if (h->future && h->gen == core_fork_gen)
		lr_future_release(h->future);
	lr_result_free(h->copy);
	lr_request_free(h->eager_rq); /* never submitted */
	Py_XDECREF(h->kept);
	Handle_clear(h);
	PyObject_GC_Del(h);
}

const lr_result *core_handle_result(CoreHandle *h)
{
	if (h->kept)
		return h->kept->res;
	if (h->copy)
		return h->copy;
	return h->future ? lr_future_result(h->future) : NULL;
}

void core_handle_settle(CoreHandle *h)
{
	/* In a forked child the engine is gone: the future stays (dealloc
	 * leaves it alone too). */
	if (!h->future || h->gen != core_fork_gen)
		return;
	/* Out of memory the future stays and is read instead: nothing is lost. */
	lr_result *c = lr_result_copy(lr_future_result(h->future));
	if (!c)
		return;
	CoreResult *k = PyObject_New(CoreResult, &CoreResult_Type);
	if (!k) {
		PyErr_Clear(); /* the copy stays with the handle; records hold the handle */
		h->copy = c;
	} else {
		k->res = c;
		h->kept = k;
	}
	lr_future_release(h->future);
	h->future = NULL;
}

PyObject *core_handle_keep(CoreHandle *h)
{
	PyObject *o = h->kept ? (PyObject *)h->kept : (PyObject *)h;
	Py_INCREF(o);
	return o;
}

/* The result, or NULL with RuntimeError when not complete yet. */
static const lr_result *result_of(CoreHandle *h)
{
	const lr_result *r = core_handle_result(h);
	if (!r)
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: the request is not complete yet");
	return r;
}

static PyObject *cstr(const char *s)
{
	if (!s)
		Py_RETURN_NONE;
	return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

/* A settled handle has no future: it is complete, nothing to cancel. */
static PyObject *Handle_cancel(CoreHandle *h, PyObject *unused)
{
	if (core_check_fork(h->gen) < 0)
		return NULL;
	if (h->future)
		lr_future_cancel(h->future);
	Py_RETURN_NONE;
}

/* The result, not lr_future_done: the done event is queued from the
 * then-callback, before the engine publishes completion, and drain may
 * hand it out first; the result is readable from then on. */
static PyObject *Handle_done(CoreHandle *h, PyObject *unused)
{
	return PyBool_FromLong(core_handle_result(h) != NULL);
}

static PyObject *Handle_get_token(CoreHandle *h, void *c)
{
	PyObject *t = h->token ? h->token : Py_None;
	Py_INCREF(t);
	return t;
}

/* One getter per lr_result field, for both types: RESULT_GETTER(name,
 * expression of r) makes field_NAME(r), Handle_get_NAME and Result_get_NAME. */
#define RESULT_GETTER(name, expr) \
	static PyObject *field_##name(const lr_result *r) \
	{ \
		return (expr); \
	} \
	static PyObject *Handle_get_##name(CoreHandle *h, void *c) \
	{ \
		const lr_result *r = result_of(h); \
		return r ? field_##name(r) : NULL; \
	} \
	static PyObject *Result_get_##name(CoreResult *k, void *c) \
	{ \
		return field_##name(k->res); \
	}

/* [(id, name, arguments)] of choice 0. */
static PyObject *tool_call_list(const lr_result *r)
{
	PyObject *list = PyList_New(r->tool_call_count > 0 ? r->tool_call_count : 0);
	for (int i = 0; list && i < r->tool_call_count; i++) {
		const lr_tool_call *tc = &r->tool_calls[i];
		PyObject *args = PyUnicode_DecodeUTF8(tc->arguments ? tc->arguments : "",
		                                      (Py_ssize_t)(tc->arguments ? tc->arguments_len : 0),
		                                      "replace");
		PyObject *id = cstr(tc->id), *name = cstr(tc->name);
		PyObject *t = args && id && name ? PyTuple_Pack(3, id, name, args) : NULL;
		Py_XDECREF(args);
		Py_XDECREF(id);
		Py_XDECREF(name);
		if (!t)
			Py_CLEAR(list);
		else
			PyList_SET_ITEM(list, i, t);
	}
	return list;
}

RESULT_GETTER(error, PyLong_FromLong(r->error))
RESULT_GETTER(error_name, r->error ? cstr(lr_error_name(r->error)) : cstr(NULL))
RESULT_GETTER(error_message, cstr(r->error_message))
RESULT_GETTER(http_status, PyLong_FromLong(r->http_status))
RESULT_GETTER(body, r->body ? PyUnicode_DecodeUTF8(r->body, (Py_ssize_t)r->body_len, "replace")
                            : cstr(NULL))
RESULT_GETTER(body_is_json, PyBool_FromLong(r->body_is_json))
RESULT_GETTER(text, r->text ? PyUnicode_DecodeUTF8(r->text, (Py_ssize_t)r->text_len, "replace")
                            : cstr(NULL))
RESULT_GETTER(finish_reason, cstr(r->finish_reason))
RESULT_GETTER(streamed, PyBool_FromLong(r->streamed))
RESULT_GETTER(request_id, cstr(r->request_id))
RESULT_GETTER(model, cstr(r->model))
RESULT_GETTER(provider, cstr(r->provider))
RESULT_GETTER(usage, Py_BuildValue("(LLL)", (long long)r->usage.input_tokens,
                                   (long long)r->usage.output_tokens,
                                   (long long)r->usage.cached_input_tokens))
RESULT_GETTER(timings, Py_BuildValue("(dddd)", r->timings.queued_ms, r->timings.ttfb_ms,
                                     r->timings.total_ms, r->timings.ttft_ms))
RESULT_GETTER(attempts, PyLong_FromLong(r->attempts))
RESULT_GETTER(retry_after, r->retry_after_s < 0 ? cstr(NULL) : PyFloat_FromDouble(r->retry_after_s))
RESULT_GETTER(cost_usd, r->cost_usd < 0 ? cstr(NULL) : PyFloat_FromDouble(r->cost_usd))
RESULT_GETTER(cached, PyBool_FromLong(r->cached))
RESULT_GETTER(cost_saved_usd, r->cost_saved_usd < 0 ? cstr(NULL) : PyFloat_FromDouble(r->cost_saved_usd))
RESULT_GETTER(tool_calls, tool_call_list(r))

/* The settled result (a Result, the same attributes without the future),
 * or None while the handle has not been handed out by drain/dispatch. */
static PyObject *Handle_get_result(CoreHandle *h, void *c)
{
	PyObject *o = h->kept ? (PyObject *)h->kept : Py_None;
	Py_INCREF(o);
	return o;
}

/* The result fields: RESULT_FIELDS(X) calls X(name, doc) for each. */
#define RESULT_FIELDS(X) \
	X(error, "0, or the LR_E* code.") \
	X(error_name, "The stable error name, None when ok.") \
	X(error_message, "What went wrong, or None.") \
	X(http_status, "The HTTP status, 0 when no response arrived.") \
	X(body, "The raw response body (UTF-8, errors replaced), or None.") \
	X(body_is_json, "The body parsed as one JSON object.") \
	X(text, "The reply text of choice 0, or None.") \
	X(finish_reason, "Why the reply ended, or None.") \
	X(streamed, "The reply came as a stream.") \
	X(request_id, "The provider's request id, or None.") \
	X(model, "The model the response names, or None.") \
	X(provider, "The provider that served it.") \
	X(usage, "(input, output, cached_input) tokens.") \
	X(timings, "(queued_ms, ttfb_ms, total_ms, ttft_ms).") \
	X(attempts, "Attempts made.") \
	X(retry_after, "Retry-After in seconds, or None.") \
	X(tool_calls, "[(id, name, arguments)] of choice 0.") \
	X(cost_usd, "USD of this request, None when the model is unpriced.") \
	X(cached, "Answered from the response cache (cache_path) without a request.") \
	X(cost_saved_usd, "What a cache hit would have cost (0 when not cached), None when unpriced.")

#define HANDLE_GET(name, doc) {#name, (getter)Handle_get_##name, NULL, doc, NULL},
#define RESULT_GET(name, doc) {#name, (getter)Result_get_##name, NULL, doc, NULL},
static PyGetSetDef Handle_getset[] = {
	HANDLE_GET(token, "The object given to submit.")
	HANDLE_GET(result, "The kept result (a Result: these attributes without the future) once "
	                   "drain/dispatch handed the handle out, else None.")
	RESULT_FIELDS(HANDLE_GET)
	{NULL, NULL, NULL, NULL, NULL},
};
static PyGetSetDef Result_getset[] = {
	RESULT_FIELDS(RESULT_GET)
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Handle_methods[] = {
	{"cancel", (PyCFunction)Handle_cancel, METH_NOARGS, "Ends the request with 'cancelled' (no effect once complete)."},
	{"done", (PyCFunction)Handle_done, METH_NOARGS, "True once the request is complete."},
	{NULL, NULL, 0, NULL},
};

PyTypeObject CoreHandle_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.Handle",
	.tp_basicsize = sizeof(CoreHandle),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_doc = "A submitted request (made by Engine.submit and Session.send).",
	.tp_dealloc = (destructor)Handle_dealloc,
	.tp_traverse = (traverseproc)Handle_traverse,
	.tp_clear = (inquiry)Handle_clear,
	.tp_methods = Handle_methods,
	.tp_getset = Handle_getset,
};

static void Result_dealloc(CoreResult *k)
{
	lr_result_free(k->res);
	PyObject_Free(k);
}

PyTypeObject CoreResult_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.Result",
	.tp_basicsize = sizeof(CoreResult),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A completed request's result, kept without its future (Handle.result): the "
	          "handle's result attributes.",
	.tp_dealloc = (destructor)Result_dealloc,
	.tp_getset = Result_getset,
};
