/*
 * Engine.submit's arguments to an lr_request, in C: a message dict of
 * only a role and a str content (or a tool result) goes through
 * lr_request_add_message without JSON; json.dumps serves the rest.
 * Every check happens before lr_submit: a bad argument raises
 * TypeError or ValueError and nothing is sent.
 */
#include "_core.h"

#include <string.h>

int core_lr_value_error(const char *what, int rc)
{
	if (rc == LR_ENOMEM)
		PyErr_NoMemory();
	else
		PyErr_Format(PyExc_ValueError, "pyllmring: %s: %s", what, lr_strerror(rc));
	return -1;
}

/* UTF-8 of a str without embedded NUL, or NULL (TypeError/ValueError). */
static const char *utf8_of(PyObject *o, const char *what)
{
	if (!PyUnicode_Check(o)) {
		PyErr_Format(PyExc_TypeError, "pyllmring: %s must be a str, not %.80s", what,
		             Py_TYPE(o)->tp_name);
		return NULL;
	}
	Py_ssize_t n;
	const char *s = PyUnicode_AsUTF8AndSize(o, &n);
	if (s && strlen(s) != (size_t)n) {
		PyErr_Format(PyExc_ValueError, "pyllmring: %s holds a NUL character", what);
		return NULL;
	}
	return s;
}

/* json.dumps(o) as a new bytes object, or NULL. */
static PyObject *dumps(PyObject *o)
{
	PyObject *s = PyObject_CallOneArg(core_json_dumps, o);
	if (!s)
		return NULL;
	PyObject *b = PyUnicode_AsUTF8String(s);
	Py_DECREF(s);
	return b;
}

static int check(int rc, const char *what)
{
	return rc < 0 ? core_lr_value_error(what, rc) : 0;
}

/* The role of a plain message, or -1 when it is not one of ours. */
static int plain_role(const char *r)
{
	if (strcmp(r, "user") == 0)
		return LR_ROLE_USER;
	if (strcmp(r, "assistant") == 0)
		return LR_ROLE_ASSISTANT;
	if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0)
		return LR_ROLE_SYSTEM;
	return -1;
}

/* The message keys, interned once (owner: this file, kept for good). */
static PyObject *key_role, *key_content, *key_tool_call_id;

static int intern_keys(void)
{
	if (key_role)
		return 0;
	key_role = PyUnicode_InternFromString("role");
	key_content = PyUnicode_InternFromString("content");
	key_tool_call_id = PyUnicode_InternFromString("tool_call_id");
	return key_role && key_content && key_tool_call_id ? 0 : -1;
}

/* The fast paths: 1 when msg was added, 0 when it needs JSON, -1 on error. */
static int add_plain_message(lr_request *rq, PyObject *msg)
{
	Py_ssize_t size = PyDict_GET_SIZE(msg);
	if (size != 2 && size != 3)
		return 0;
	PyObject *role = PyDict_GetItemWithError(msg, key_role);
	PyObject *content = role ? PyDict_GetItemWithError(msg, key_content) : NULL;
	if (PyErr_Occurred())
		return -1;
	if (!role || !content || !PyUnicode_Check(role) || !PyUnicode_Check(content))
		return 0;
	Py_ssize_t rl, cl;
	const char *r = PyUnicode_AsUTF8AndSize(role, &rl);
	const char *c = PyUnicode_AsUTF8AndSize(content, &cl);
	if (!r || !c)
		return -1;
	if (strlen(c) != (size_t)cl || strlen(r) != (size_t)rl)
		return 0; /* a NUL inside: JSON escapes it */
	if (size == 3) {
		PyObject *id = PyDict_GetItemWithError(msg, key_tool_call_id);
		if (!id && PyErr_Occurred())
			return -1;
		if (!id || !PyUnicode_Check(id) || strcmp(r, "tool") != 0)
			return 0;
		const char *ids = utf8_of(id, "tool_call_id");
		if (!ids)
			return -1;
		return check(lr_request_add_tool_result(rq, ids, c), "tool message") < 0 ? -1 : 1;
	}
	int lr_role = plain_role(r);
	if (lr_role < 0)
		return 0;
	return check(lr_request_add_message(rq, (enum lr_role)lr_role, c), "message") < 0 ? -1 : 1;
}

static int add_messages(lr_request *rq, PyObject *messages)
{
	if (!PyList_Check(messages) && !PyTuple_Check(messages)) {
		PyErr_SetString(PyExc_TypeError, "pyllmring: messages must be a list of dicts");
		return -1;
	}
	PyObject *seq = intern_keys() == 0 ? PySequence_Fast(messages, "messages") : NULL;
	if (!seq)
		return -1;
	int rc = 0;
	for (Py_ssize_t i = 0; !rc && i < PySequence_Fast_GET_SIZE(seq); i++) {
		PyObject *m = PySequence_Fast_GET_ITEM(seq, i);
		if (!PyDict_Check(m)) {
			PyErr_Format(PyExc_TypeError, "pyllmring: messages[%zd] must be a dict, not %.80s",
			             i, Py_TYPE(m)->tp_name);
			rc = -1;
			break;
		}
		int fast = add_plain_message(rq, m);
		if (fast < 0) {
			rc = -1;
		} else if (fast == 0) {
			PyObject *b = dumps(m);
			rc = b ? check(lr_request_add_message_json(rq, PyBytes_AS_STRING(b)), "message") : -1;
			Py_XDECREF(b);
		}
	}
	Py_DECREF(seq);
	return rc;
}

/* One string or a list of strings, each given to add. */
static int add_strings(lr_request *rq, PyObject *v, const char *what,
                       int (*add)(lr_request *, const char *))
{
	if (PyUnicode_Check(v)) {
		const char *s = utf8_of(v, what);
		return s ? check(add(rq, s), what) : -1;
	}
	if (!PyList_Check(v) && !PyTuple_Check(v)) {
		PyErr_Format(PyExc_TypeError, "pyllmring: %s must be a str or a list of str", what);
		return -1;
	}
	for (Py_ssize_t i = 0; i < PySequence_Size(v); i++) {
		PyObject *item = PySequence_GetItem(v, i);
		const char *s = item ? utf8_of(item, what) : NULL;
		int rc = s ? check(add(rq, s), what) : -1;
		Py_XDECREF(item);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* OpenAI tools: [{"type":"function","function":{"name","description","parameters"}}]. */
static int add_tools(lr_request *rq, PyObject *tools)
{
	if (!PyList_Check(tools)) {
		PyErr_SetString(PyExc_TypeError, "pyllmring: tools must be a list of dicts");
		return -1;
	}
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tools); i++) {
		PyObject *t = PyList_GET_ITEM(tools, i);
		PyObject *fn = PyDict_Check(t) ? PyDict_GetItemString(t, "function") : NULL;
		PyObject *name = fn && PyDict_Check(fn) ? PyDict_GetItemString(fn, "name") : NULL;
		if (!name) {
			PyErr_Format(PyExc_ValueError,
			             "pyllmring: tools[%zd] must be {\"type\": \"function\", \"function\": "
			             "{\"name\": ...}}", i);
			return -1;
		}
		PyObject *desc = PyDict_GetItemString(fn, "description");
		PyObject *params = PyDict_GetItemString(fn, "parameters");
		const char *n = utf8_of(name, "tool name");
		const char *d = desc && desc != Py_None ? utf8_of(desc, "tool description") : NULL;
		if (!n || (desc && desc != Py_None && !d))
			return -1;
		PyObject *pj = params && params != Py_None ? dumps(params) : NULL;
		if (params && params != Py_None && !pj)
			return -1;
		int rc = check(lr_request_add_tool(rq, n, d, pj ? PyBytes_AS_STRING(pj) : NULL), "tools");
		Py_XDECREF(pj);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int set_tool_choice(lr_request *rq, PyObject *v)
{
	if (PyDict_Check(v)) {
		PyObject *fn = PyDict_GetItemString(v, "function");
		v = fn && PyDict_Check(fn) ? PyDict_GetItemString(fn, "name") : NULL;
		if (!v) {
			PyErr_SetString(PyExc_ValueError, "pyllmring: tool_choice must be a str or "
			                "{\"type\": \"function\", \"function\": {\"name\": ...}}");
			return -1;
		}
	}
	const char *s = utf8_of(v, "tool_choice");
	return s ? check(lr_request_set_tool_choice(rq, s), "tool_choice") : -1;
}

/* An int parameter in [lo, hi]. */
static int int_param(PyObject *v, const char *what, long long lo, long long hi, long long *out)
{
	if (!PyLong_Check(v) || PyBool_Check(v)) {
		PyErr_Format(PyExc_TypeError, "pyllmring: %s must be an int", what);
		return -1;
	}
	*out = PyLong_AsLongLong(v);
	if (*out == -1 && PyErr_Occurred())
		return -1;
	if (*out < lo || *out > hi) {
		PyErr_Format(PyExc_ValueError, "pyllmring: %s out of range", what);
		return -1;
	}
	return 0;
}

static int float_param(PyObject *v, const char *what, double *out)
{
	if (!PyFloat_Check(v) && !(PyLong_Check(v) && !PyBool_Check(v))) {
		PyErr_Format(PyExc_TypeError, "pyllmring: %s must be a number", what);
		return -1;
	}
	*out = PyFloat_AsDouble(v);
	return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int add_param(lr_request *rq, const char *k, PyObject *v)
{
	long long i;
	double d;
	if (strcmp(k, "max_tokens") == 0 || strcmp(k, "max_completion_tokens") == 0)
		return int_param(v, k, 0, INT32_MAX, &i) < 0 ? -1
		       : check(lr_request_set_max_tokens(rq, (int)i), k);
	if (strcmp(k, "temperature") == 0)
		return float_param(v, k, &d) < 0 ? -1 : check(lr_request_set_temperature(rq, d), k);
	if (strcmp(k, "top_p") == 0)
		return float_param(v, k, &d) < 0 ? -1 : check(lr_request_set_top_p(rq, d), k);
	if (strcmp(k, "seed") == 0)
		return int_param(v, k, INT64_MIN, INT64_MAX, &i) < 0 ? -1
		       : check(lr_request_set_seed(rq, (int64_t)i), k);
	if (strcmp(k, "n") == 0)
		return int_param(v, k, 1, INT32_MAX, &i) < 0 ? -1 : check(lr_request_set_n(rq, (int)i), k);
	if (strcmp(k, "stop") == 0)
		return add_strings(rq, v, "stop", lr_request_add_stop);
	if (strcmp(k, "user") == 0) {
		const char *s = utf8_of(v, "user");
		return s ? check(lr_request_set_user(rq, s), k) : -1;
	}
	if (strcmp(k, "tools") == 0)
		return add_tools(rq, v);
	if (strcmp(k, "tool_choice") == 0)
		return set_tool_choice(rq, v);
	PyObject *b = dumps(v);
	if (!b)
		return -1;
	int rc = strcmp(k, "response_format") == 0
	             ? check(lr_request_set_response_format(rq, PyBytes_AS_STRING(b)), k)
	             : check(lr_request_set_param(rq, k, PyBytes_AS_STRING(b)), k);
	Py_DECREF(b);
	return rc;
}

static int add_params(lr_request *rq, PyObject *params, int params_is_item)
{
	if (!PyDict_Check(params)) {
		PyErr_SetString(PyExc_TypeError, "pyllmring: params must be a dict");
		return -1;
	}
	Py_ssize_t pos = 0;
	PyObject *k, *v;
	while (PyDict_Next(params, &pos, &k, &v)) {
		if (v == Py_None)
			continue;
		const char *ks = utf8_of(k, "a params key");
		if (!ks)
			return -1;
		if (params_is_item && (strcmp(ks, "model") == 0 || strcmp(ks, "messages") == 0))
			continue;
		if (add_param(rq, ks, v) < 0)
			return -1;
	}
	return 0;
}

static int add_header_pair(lr_request *rq, PyObject *name, PyObject *value)
{
	const char *n = utf8_of(name, "header name");
	const char *v = n ? utf8_of(value, "header value") : NULL;
	return v ? check(lr_request_add_header(rq, n, v), "header") : -1;
}

static int add_headers(lr_request *rq, PyObject *headers)
{
	PyObject *k, *v;
	if (PyDict_Check(headers)) {
		Py_ssize_t pos = 0;
		while (PyDict_Next(headers, &pos, &k, &v))
			if (add_header_pair(rq, k, v) < 0)
				return -1;
		return 0;
	}
	if (!PyList_Check(headers) && !PyTuple_Check(headers)) {
		PyErr_SetString(PyExc_TypeError, "pyllmring: headers must be a dict or a list of pairs");
		return -1;
	}
	for (Py_ssize_t i = 0; i < PySequence_Size(headers); i++) {
		PyObject *pair = PySequence_GetItem(headers, i);
		int rc = -1;
		if (pair && (PyTuple_Check(pair) || PyList_Check(pair)) && PySequence_Fast_GET_SIZE(pair) == 2)
			rc = add_header_pair(rq, PySequence_Fast_GET_ITEM(pair, 0),
			                     PySequence_Fast_GET_ITEM(pair, 1));
		else if (pair)
			PyErr_SetString(PyExc_TypeError, "pyllmring: each header must be a (name, value) pair");
		Py_XDECREF(pair);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int set_body(lr_request *rq, PyObject *body)
{
	if (PyBytes_Check(body))
		return check(lr_request_set_body(rq, PyBytes_AS_STRING(body), (size_t)PyBytes_GET_SIZE(body)), "body");
	if (!PyUnicode_Check(body)) {
		PyErr_SetString(PyExc_TypeError, "pyllmring: body must be bytes or str");
		return -1;
	}
	Py_ssize_t n;
	const char *s = PyUnicode_AsUTF8AndSize(body, &n);
	return s ? check(lr_request_set_body(rq, s, (size_t)n), "body") : -1;
}

/* The options that are not part of the body. */
static int set_options(lr_request *rq, const struct core_submit_args *a)
{
	long long i;
	double d;
	if (a->max_retries != Py_None &&
	    (int_param(a->max_retries, "max_retries", 0, INT32_MAX, &i) < 0 ||
	     check(lr_request_set_max_retries(rq, (int)i), "max_retries") < 0))
		return -1;
	if (a->timeout != Py_None &&
	    (float_param(a->timeout, "timeout", &d) < 0 ||
	     check(lr_request_set_timeouts(rq, 0, 0, d), "timeout") < 0))
		return -1;
	if (a->base_url != Py_None) {
		const char *s = utf8_of(a->base_url, "base_url");
		if (!s || check(lr_request_set_base_url(rq, s), "base_url") < 0)
			return -1;
	}
	if (a->headers != Py_None && add_headers(rq, a->headers) < 0)
		return -1;
	return 0;
}

lr_request *core_build_request(const struct core_submit_args *a)
{
	int embeddings = strcmp(a->endpoint, "embeddings") == 0;
	int completions = strcmp(a->endpoint, "completions") == 0;
	if (!embeddings && !completions && strcmp(a->endpoint, "chat") != 0) {
		PyErr_Format(PyExc_ValueError,
		             "pyllmring: endpoint must be \"chat\", \"embeddings\" or \"completions\", not %.80s",
		             a->endpoint);
		return NULL;
	}
	int has_prompt = a->prompt && a->prompt != Py_None;
	if (completions && (!has_prompt || a->messages != Py_None)) {
		PyErr_SetString(PyExc_ValueError,
		                "pyllmring: the completions endpoint takes a prompt and no messages");
		return NULL;
	}
	if (!completions && has_prompt) {
		PyErr_SetString(PyExc_ValueError, "pyllmring: a prompt is for the completions endpoint");
		return NULL;
	}
	const char *model = NULL;
	if (a->model != Py_None && !(model = utf8_of(a->model, "model")))
		return NULL;
	if (!model && a->body == Py_None) {
		PyErr_SetString(PyExc_ValueError, "pyllmring: a model is needed (or a body that names one)");
		return NULL;
	}
	lr_request *rq = lr_request_new(model); /* owner: the caller (lr_submit or freed here) */
	if (!rq) {
		PyErr_NoMemory();
		return NULL;
	}
	int rc = 0;
	if (embeddings)
		rc = check(lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS), "endpoint");
	if (completions)
		rc = check(lr_request_set_endpoint(rq, LR_ENDPOINT_COMPLETIONS), "endpoint");
	if (!rc && has_prompt) {
		const char *p = utf8_of(a->prompt, "prompt");
		rc = p ? check(lr_request_set_prompt(rq, p), "prompt") : -1;
	}
	if (!rc && a->body != Py_None)
		rc = set_body(rq, a->body);
	if (!rc && a->messages != Py_None)
		rc = add_messages(rq, a->messages);
	if (!rc && a->input != Py_None)
		rc = add_strings(rq, a->input, "input", lr_request_add_input);
	if (!rc && a->params != Py_None)
		rc = add_params(rq, a->params, a->params_is_item);
	if (!rc)
		rc = set_options(rq, a);
	if (rc) {
		lr_request_free(rq);
		return NULL;
	}
	return rq;
}
