/*
 * _core.Engine: one lr_engine. submit() builds the request in C
 * (_core_request.c), submits it with the GIL held (lr_submit never
 * blocks) and registers the C done callback; close() destroys the
 * engine with the GIL released.
 */
#include "_core.h"

#include <stdlib.h>
#include <string.h>

static int closed_error(void)
{
	PyErr_SetString(PyExc_RuntimeError, "pyllmring: this client is closed");
	return -1;
}

/* The engine, or NULL with an exception (closed, or before a fork). */
static lr_engine *engine_of(CoreEngine *e)
{
	if (core_check_fork(e->gen) < 0)
		return NULL;
	if (!e->eng)
		closed_error();
	return e->eng;
}

static int opt_double(PyObject *o, const char *what, double *out)
{
	if (o == Py_None)
		return 0;
	double d = PyFloat_AsDouble(o);
	if (d == -1 && PyErr_Occurred())
		return -1;
	if (d < 0) {
		PyErr_Format(PyExc_ValueError, "pyllmring: %s must not be negative", what);
		return -1;
	}
	*out = d;
	return 0;
}

static int raise_engine_error(const lr_error_info *info, int rc)
{
	const char *msg = info->message[0] ? info->message : lr_strerror(rc);
	PyObject *exc = PyObject_CallFunction(core_engine_error, "ss", lr_error_name(rc), msg);
	if (!exc)
		return -1;
	PyObject *code = PyUnicode_FromString(lr_error_name(rc));
	PyObject *m = PyUnicode_FromString(msg);
	if (code && m && PyObject_SetAttrString(exc, "code", code) == 0 &&
	    PyObject_SetAttrString(exc, "message", m) == 0)
		PyErr_SetObject(core_engine_error, exc);
	Py_XDECREF(code);
	Py_XDECREF(m);
	Py_DECREF(exc);
	return -1;
}

static int Engine_init(CoreEngine *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"base_url", "api_key", "max_in_flight", "max_retries", "timeout",
	                         "connect_timeout", "idle_timeout", "rpm", "tpm", "prices_file",
	                         "ca_file", "insecure", "max_conns_per_origin", "cache_path",
	                         "cache_mode", NULL};
	const char *base_url = NULL, *api_key = NULL, *prices = NULL, *ca = NULL;
	const char *cache_path = NULL;
	int cache_mode = LR_CACHE_READWRITE;
	unsigned int max_in_flight = 64, max_conns = 0;
	int max_retries = 2, insecure = 0;
	PyObject *timeout = Py_None, *ct = Py_None, *it = Py_None, *rpm = Py_None, *tpm = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|$zzIiOOOOOzzpIzi:Engine", kwlist, &base_url,
	                                 &api_key, &max_in_flight, &max_retries, &timeout, &ct, &it,
	                                 &rpm, &tpm, &prices, &ca, &insecure, &max_conns,
	                                 &cache_path, &cache_mode))
		return -1;
	if (cache_mode < LR_CACHE_READWRITE || cache_mode > LR_CACHE_OFF) {
		PyErr_SetString(PyExc_ValueError, "pyllmring: cache_mode must be 0..3 (enum lr_cache_mode)");
		return -1;
	}
	if (core_check_fork(core_fork_gen) < 0)
		return -1;
	if (self->eng) {
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: Engine.__init__ called twice");
		return -1;
	}
	lr_config cfg = lr_config_default();
	cfg.base_url = base_url;
	cfg.api_key = api_key;
	cfg.max_in_flight = max_in_flight;
	cfg.max_conns_per_origin = max_conns;
	cfg.max_retries = max_retries;
	cfg.prices_file = prices;
	cfg.ca_file = ca;
	cfg.insecure = insecure;
	cfg.cache_path = cache_path;
	cfg.cache_mode = cache_mode;
	if (timeout == Py_None)
		cfg.total_timeout_s = 600.0;
	if (opt_double(timeout, "timeout", &cfg.total_timeout_s) < 0 ||
	    opt_double(ct, "connect_timeout", &cfg.connect_timeout_s) < 0 ||
	    opt_double(it, "idle_timeout", &cfg.idle_timeout_s) < 0 ||
	    opt_double(rpm, "rpm", &cfg.requests_per_minute) < 0 ||
	    opt_double(tpm, "tpm", &cfg.tokens_per_minute) < 0)
		return -1;
	lr_error_info info;
	memset(&info, 0, sizeof(info));
	lr_engine *eng = NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = lr_engine_create(&cfg, &eng, &info);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return raise_engine_error(&info, rc);
	self->eng = eng;
	self->gen = core_fork_gen;
	return 0;
}

static void engine_close(CoreEngine *self)
{
	lr_engine *eng = self->eng;
	self->eng = NULL; /* before the GIL goes: no call on eng starts after this */
	if (!eng)
		return;
	Py_BEGIN_ALLOW_THREADS
	lr_engine_destroy(eng);
	Py_END_ALLOW_THREADS
}

static void Engine_dealloc(CoreEngine *self)
{
	/* A forked child has no engine thread to join: the engine leaks. */
	if (self->gen == core_fork_gen)
		engine_close(self);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Engine_close(CoreEngine *self, PyObject *unused)
{
	if (core_check_fork(self->gen) < 0)
		return NULL;
	engine_close(self);
	Py_RETURN_NONE;
}

/* Builds the request of a (checks first, nothing sent on an error),
 * makes its handle and submits it: the handle, or NULL with an exception.
 * delta: streamed, deltas to the channel. window: an EagerWindow (create()'s
 * eager path), which submits it or keeps it until there is room; NULL or
 * None: submitted now. */
static PyObject *build_and_submit(CoreEngine *self, PyObject *channel, PyObject *token,
                                  const struct core_submit_args *a, bool delta,
                                  PyObject *window)
{
	lr_request *rq = core_build_request(a); /* owner: here, then lr_submit */
	if (!rq)
		return NULL;
	CoreHandle *h = core_handle_new((CoreChannel *)channel, token);
	if (!h) {
		lr_request_free(rq);
		return NULL;
	}
	if (delta && lr_request_on_delta(rq, core_on_delta, h) < 0) {
		lr_request_free(rq);
		Py_DECREF(h);
		return PyErr_NoMemory();
	}
	if (!self->eng) { /* json.dumps may have let another thread close it */
		lr_request_free(rq);
		Py_DECREF(h);
		closed_error();
		return NULL;
	}
	if (window && window != Py_None)
		return core_window_submit(window, h, rq);
	return core_handle_start(h, lr_submit(self->eng, rq));
}

static PyObject *Engine_submit(CoreEngine *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"channel", "token", "model", "messages", "params", "endpoint",
	                         "stream", "headers", "max_retries", "timeout", "base_url", "body",
	                         "input", "prompt", "window", NULL};
	PyObject *channel, *token, *window = Py_None;
	struct core_submit_args a = {.params = Py_None, .headers = Py_None, .max_retries = Py_None,
	                             .timeout = Py_None, .base_url = Py_None, .body = Py_None,
	                             .input = Py_None, .prompt = Py_None, .endpoint = "chat"};
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OOO|O$spOOOOOOOO:submit", kwlist,
	                                 &CoreChannel_Type, &channel, &token, &a.model, &a.messages,
	                                 &a.params, &a.endpoint, &a.stream, &a.headers,
	                                 &a.max_retries, &a.timeout, &a.base_url, &a.body, &a.input,
	                                 &a.prompt, &window))
		return NULL;
	if (!engine_of(self) || core_check_fork(((CoreChannel *)channel)->gen) < 0)
		return NULL;
	if (window != Py_None && (a.stream || !PyObject_TypeCheck(window, &CoreWindow_Type))) {
		PyErr_SetString(PyExc_TypeError, "submit: window is an EagerWindow, not for streams");
		return NULL;
	}
	return build_and_submit(self, channel, token, &a, a.stream, window);
}

/* The keys of create's kwargs that are options, not body fields: an item
 * holding one goes through the Python path (which merges headers and
 * extra_body), so the fast path below needs no merging. */
static int item_needs_python(PyObject *key)
{
	static const struct {
		const char *s;
		Py_ssize_t n;
	} option_keys[] = {{"extra_headers", 13}, {"extra_body", 10}, {"extra_query", 11},
	                   {"timeout", 7},        {"max_retries", 11}, {"stream", 6},
	                   {"stream_options", 14}};
	if (!PyUnicode_Check(key))
		return 1; /* the slow path raises the TypeError */
	/* Every item's every key comes here: compare lengths, then the ASCII
	 * bytes in place (no strlen, no conversion). A key that is not ASCII
	 * is no option. */
	Py_ssize_t len = PyUnicode_GET_LENGTH(key);
	if (len < 6 || len > 14 || !PyUnicode_IS_ASCII(key))
		return 0;
	const char *k = (const char *)PyUnicode_DATA(key);
	for (size_t i = 0; i < sizeof(option_keys) / sizeof(option_keys[0]); i++)
		if (option_keys[i].n == len && memcmp(k, option_keys[i].s, (size_t)len) == 0)
			return 1;
	return 0;
}

/* A dict's value for a key named by an interned string (made once, owner:
 * the module): no temporary string per look-up as PyDict_GetItemString
 * makes. Borrowed, NULL when absent (or, rarely, out of memory: the
 * lookup is then skipped, as PyDict_GetItemString does). */
static PyObject *get_interned(PyObject *d, PyObject **key, const char *name)
{
	if (!*key && !(*key = PyUnicode_InternFromString(name))) {
		PyErr_Clear();
		return PyDict_GetItemString(d, name);
	}
	PyObject *v = PyDict_GetItemWithError(d, *key);
	if (!v)
		PyErr_Clear(); /* a key type whose __eq__ raised: as absent */
	return v;
}

static PyObject *k_n, *k_model, *k_messages;

int core_params_need_python(PyObject *params)
{
	Py_ssize_t pos = 0;
	PyObject *k, *v;
	while (PyDict_Next(params, &pos, &k, &v))
		if (item_needs_python(k))
			return 1;
	return 0;
}

/* n of a params dict: its "n" when an int above 1, else 1. 0, or -1. */
static int n_of(PyObject *params, long *n)
{
	PyObject *nv = get_interned(params, &k_n, "n");
	*n = 1;
	if (nv && PyLong_Check(nv) && !PyBool_Check(nv)) {
		long v = PyLong_AsLong(nv);
		if (v == -1 && PyErr_Occurred())
			return -1;
		*n = v < 1 ? 1 : v;
	}
	return 0;
}

int core_submit_item(CoreEngine *self, PyObject *channel, PyObject *token, PyObject *item,
                     PyObject *default_model, PyObject *headers, PyObject *common,
                     struct core_item *out)
{
	struct core_submit_args a = {.model = default_model, .messages = Py_None,
	                             .params = Py_None, .headers = headers,
	                             .max_retries = Py_None, .timeout = Py_None,
	                             .base_url = Py_None, .body = Py_None, .input = Py_None,
	                             .endpoint = "chat"};
	long n = 1;
	PyObject *params = common; /* the dict whose keys are create()'s kwargs */
	if (!common && (PyList_Check(item) || PyTuple_Check(item))) {
		a.messages = item;
	} else if (common || PyDict_Check(item)) {
		if (common) {
			a.messages = item;
		} else if (core_params_need_python(item)) {
			return 0;
		}
		params = common ? common : item;
		PyObject *m = get_interned(params, &k_model, "model");
		if (m && m != Py_None)
			a.model = m;
		if (!common) {
			PyObject *msgs = get_interned(params, &k_messages, "messages");
			a.messages = msgs ? msgs : Py_None;
		}
		if (n_of(params, &n) < 0)
			return -1;
		a.params = params;
		a.params_is_item = 1;
	} else {
		PyErr_Format(PyExc_TypeError,
		             "pyllmring: a batch item must be a dict of create()'s arguments or a "
		             "list of messages, not %.80s", Py_TYPE(item)->tp_name);
		return -1;
	}
	if (!engine_of(self) || core_check_fork(((CoreChannel *)channel)->gen) < 0)
		return -1;
	if (a.messages == Py_None) {
		PyErr_SetString(PyExc_TypeError, "pyllmring: a batch item needs messages");
		return -1;
	}
	/* Response objects among the messages (a reply appended to a history)
	 * become dicts in Python first; so does anything else that is not a
	 * list (the Python path raises its error). */
	if (PyList_Check(a.messages) || PyTuple_Check(a.messages)) {
		Py_ssize_t len = PySequence_Fast_GET_SIZE(a.messages);
		for (Py_ssize_t i = 0; i < len; i++)
			if (!PyDict_CheckExact(PySequence_Fast_GET_ITEM(a.messages, i)))
				return 0;
	} else if (common) {
		return 0;
	}
	PyObject *started = build_and_submit(self, channel, token, &a, false, NULL);
	if (!started)
		return -1;
	out->handle = started;
	out->n = n;
	out->model = a.model;
	return 1;
}

/*
 * submit_item(channel, token, item, default_model, headers): one batch
 * item in one call. item is a list of messages, or create's kwargs as a
 * dict; the dict is read in place (no copy, no pops). Returns (handle, n,
 * model), or NotImplemented when the item sets a per-call option
 * (extra_headers, timeout, ...), which the caller's Python path handles.
 */
static PyObject *Engine_submit_item(CoreEngine *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs != 5 || !PyObject_TypeCheck(args[0], &CoreChannel_Type)) {
		PyErr_SetString(PyExc_TypeError,
		                "submit_item(channel, token, item, default_model, headers)");
		return NULL;
	}
	struct core_item it;
	int rc = core_submit_item(self, args[0], args[1], args[2], args[3], args[4], NULL, &it);
	if (rc < 0)
		return NULL;
	if (rc == 0)
		Py_RETURN_NOTIMPLEMENTED;
	return Py_BuildValue("(NlO)", it.handle, it.n, it.model);
}

/*
 * submit_chat(channel, token, model, messages, params, headers[, window]):
 * create()'s common case in one positional call (no keyword parsing): a
 * chat request, whole, with the client's default headers. params is a dict
 * of body fields or None; window as submit's. Returns the Handle, or
 * NotImplemented when a message is not a plain dict (a response object
 * appended to a history), which the caller converts first.
 */
static PyObject *Engine_submit_chat(CoreEngine *self, PyObject *const *args, Py_ssize_t nargs)
{
	if ((nargs != 6 && nargs != 7) || !PyObject_TypeCheck(args[0], &CoreChannel_Type) ||
	    (nargs == 7 && args[6] != Py_None && !PyObject_TypeCheck(args[6], &CoreWindow_Type))) {
		PyErr_SetString(PyExc_TypeError,
		                "submit_chat(channel, token, model, messages, params, headers[, window])");
		return NULL;
	}
	PyObject *channel = args[0], *token = args[1], *messages = args[3];
	if (PyList_Check(messages) || PyTuple_Check(messages)) {
		Py_ssize_t len = PySequence_Fast_GET_SIZE(messages);
		for (Py_ssize_t i = 0; i < len; i++)
			if (!PyDict_CheckExact(PySequence_Fast_GET_ITEM(messages, i)))
				Py_RETURN_NOTIMPLEMENTED;
	}
	struct core_submit_args a = {.model = args[2], .messages = messages,
	                             .params = args[4] == Py_None || (PyDict_Check(args[4]) &&
	                                                              PyDict_GET_SIZE(args[4]) == 0)
	                                               ? Py_None : args[4],
	                             .headers = args[5], .max_retries = Py_None,
	                             .timeout = Py_None, .base_url = Py_None, .body = Py_None,
	                             .input = Py_None, .endpoint = "chat"};
	if (!engine_of(self) || core_check_fork(((CoreChannel *)channel)->gen) < 0)
		return NULL;
	return build_and_submit(self, channel, token, &a, false, nargs == 7 ? args[6] : NULL);
}

static PyObject *model_usage_dict(const lr_model_usage *m)
{
	return Py_BuildValue("{s:s,s:K,s:L,s:L,s:L,s:d,s:O}", "provider", m->provider, "requests",
	                     (unsigned long long)m->requests, "input_tokens",
	                     (long long)m->input_tokens, "output_tokens", (long long)m->output_tokens,
	                     "cached_input_tokens", (long long)m->cached_input_tokens, "cost_usd",
	                     m->cost_usd, "priced", m->priced ? Py_True : Py_False);
}

static PyObject *usage_dict(const lr_usage_report *t, const lr_model_usage *models, int n)
{
	PyObject *per = PyDict_New();
	for (int i = 0; per && i < n; i++) {
		PyObject *d = model_usage_dict(&models[i]);
		if (!d || PyDict_SetItemString(per, models[i].model, d) < 0)
			Py_CLEAR(per);
		Py_XDECREF(d);
	}
	if (!per)
		return NULL;
	PyObject *r = Py_BuildValue(
	        "{s:K,s:K,s:K,s:K,s:L,s:L,s:L,s:d,s:i,s:N}", "requests",
	        (unsigned long long)t->requests, "succeeded", (unsigned long long)t->succeeded,
	        "failed", (unsigned long long)t->failed, "retries", (unsigned long long)t->retries,
	        "input_tokens", (long long)t->input_tokens, "output_tokens",
	        (long long)t->output_tokens, "cached_input_tokens", (long long)t->cached_input_tokens,
	        "cost_usd", t->cost_usd, "unpriced_models", t->unpriced_models, "models", per);
	return r;
}

/* usage()["cache"]: the response cache's counts (all 0 without one). */
static int add_cache_stats(lr_engine *eng, PyObject *usage)
{
	lr_cache_stats c;
	if (lr_engine_cache_stats(eng, &c) < 0)
		return core_lr_value_error("cache stats", LR_EINVAL);
	PyObject *d = Py_BuildValue("{s:K,s:K,s:K,s:K,s:d}", "lookups", (unsigned long long)c.lookups,
	                            "hits", (unsigned long long)c.hits, "stores",
	                            (unsigned long long)c.stores, "errors",
	                            (unsigned long long)c.errors, "cost_saved_usd", c.cost_saved_usd);
	if (!d)
		return -1;
	int rc = PyDict_SetItemString(usage, "cache", d);
	Py_DECREF(d);
	return rc;
}

static PyObject *Engine_usage(CoreEngine *self, PyObject *unused)
{
	lr_engine *eng = engine_of(self);
	if (!eng)
		return NULL;
	lr_model_usage stack[16];
	lr_model_usage *models = stack; /* owner: here when not stack (freed below) */
	int cap = 16;
	lr_usage_report total;
	for (;;) {
		int n = lr_engine_usage(eng, &total, models, cap);
		if (n < 0) {
			if (models != stack)
				free(models);
			core_lr_value_error("usage", n);
			return NULL;
		}
		if (n <= cap) {
			PyObject *r = usage_dict(&total, models, n);
			if (models != stack)
				free(models);
			return r && add_cache_stats(eng, r) < 0 ? (Py_DECREF(r), NULL) : r;
		}
		if (models != stack)
			free(models);
		cap = n + 16; /* more models came in: room for some more */
		models = malloc((size_t)cap * sizeof(*models));
		if (!models)
			return PyErr_NoMemory();
	}
}

/* price / batch_price: a model's row of the price table, as a tuple. */
static PyObject *price_of(CoreEngine *self, PyObject *arg, const char *what,
                          int (*get)(lr_engine *, const char *, double *, double *, double *))
{
	lr_engine *eng = engine_of(self);
	if (!eng)
		return NULL;
	if (!PyUnicode_Check(arg)) {
		PyErr_Format(PyExc_TypeError, "pyllmring: %s(model) wants a str", what);
		return NULL;
	}
	const char *model = PyUnicode_AsUTF8(arg);
	if (!model)
		return NULL;
	double in, cached, out;
	if (get(eng, model, &in, &cached, &out) < 0)
		Py_RETURN_NONE;
	return Py_BuildValue("(ddd)", in, cached, out);
}

static PyObject *Engine_price(CoreEngine *self, PyObject *arg)
{
	return price_of(self, arg, "price", lr_engine_price);
}

static PyObject *Engine_batch_price(CoreEngine *self, PyObject *arg)
{
	return price_of(self, arg, "batch_price", lr_engine_batch_price);
}

static PyObject *Engine_stats(CoreEngine *self, PyObject *unused)
{
	lr_engine *eng = engine_of(self);
	if (!eng)
		return NULL;
	lr_engine_stats s;
	lr_engine_get_stats(eng, &s);
	return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K}",
	                     "connections_opened", (unsigned long long)s.connections_opened,
	                     "connections_reused", (unsigned long long)s.connections_reused,
	                     "stale_resends", (unsigned long long)s.stale_resends,
	                     "requests_completed", (unsigned long long)s.requests_completed,
	                     "tls_full_handshakes", (unsigned long long)s.tls_full_handshakes,
	                     "tls_resumed_handshakes", (unsigned long long)s.tls_resumed_handshakes,
	                     "retries", (unsigned long long)s.retries);
}

static PyObject *Engine_get_ring_mode(CoreEngine *self, void *c)
{
	lr_engine *eng = engine_of(self);
	return eng ? PyUnicode_FromString(lr_engine_ring_mode(eng)) : NULL;
}

static PyObject *Engine_get_closed(CoreEngine *self, void *c)
{
	return PyBool_FromLong(self->eng == NULL);
}

static PyMethodDef Engine_methods[] = {
	{"submit", (PyCFunction)(void (*)(void))Engine_submit, METH_VARARGS | METH_KEYWORDS,
	 "submit(channel, token, model, messages, params=None, *, endpoint='chat', stream=False, "
	 "headers=None, max_retries=None, timeout=None, base_url=None, body=None, input=None) -> Handle"},
	{"submit_chat", (PyCFunction)(void (*)(void))Engine_submit_chat, METH_FASTCALL,
	 "submit_chat(channel, token, model, messages, params, headers[, window]) -> Handle, or "
	 "NotImplemented when a message is not a plain dict"},
	{"submit_item", (PyCFunction)(void (*)(void))Engine_submit_item, METH_FASTCALL,
	 "submit_item(channel, token, item, default_model, headers) -> (Handle, n, model), or "
	 "NotImplemented when the item sets per-call options"},
	{"usage", (PyCFunction)Engine_usage, METH_NOARGS, "Tokens and USD, in all and per model."},
	{"price", (PyCFunction)Engine_price, METH_O, "price(model) -> (input, cached_input, output) USD per million tokens, or None."},
	{"batch_price", (PyCFunction)Engine_batch_price, METH_O,
	 "batch_price(model) -> (input, cached_input, output) USD per million tokens through the "
	 "provider's batch API, or None (unknown model, or no batch rates)."},
	{"stats", (PyCFunction)Engine_stats, METH_NOARGS, "Connection and request counters."},
	{"close", (PyCFunction)Engine_close, METH_NOARGS, "Cancels what is in flight and frees the engine (idempotent)."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
	{"ring_mode", (getter)Engine_get_ring_mode, NULL, "The io_uring setup the engine got.", NULL},
	{"closed", (getter)Engine_get_closed, NULL, "close() was called.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject CoreEngine_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.Engine",
	.tp_basicsize = sizeof(CoreEngine),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Engine(*, base_url=None, api_key=None, max_in_flight=64, ...): one llmring engine.",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)Engine_init,
	.tp_dealloc = (destructor)Engine_dealloc,
	.tp_methods = Engine_methods,
	.tp_getset = Engine_getset,
};

/* lr_engine for the session file: NULL with an exception. */
lr_engine *core_engine_get(CoreEngine *e)
{
	return engine_of(e);
}
