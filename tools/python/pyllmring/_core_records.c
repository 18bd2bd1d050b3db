/*
 * The response records as C types: every response makes some, so they are
 * made without running Python. Each is a fixed array of object fields
 * (attribute access through member descriptors; an unset field reads as
 * None). _types.py subclasses them to add item access, model_dump() and
 * the rare paths (n > 1 choices, tool calls, the body's fields), which
 * these types call back through hooks registered by set_record_types().
 *
 * ChatCompletionBase and ChunkBase build their choices (and usage) from the
 * handle's lr_result or the delta on first access and keep them. A
 * ChatCompletionBase holds the handle's kept Result (not the handle, nor
 * its token), so a kept response is the record and the result's bytes.
 *
 * GC tracking: a record holding only objects that cannot be part of a
 * cycle (str, int, None, a Result) is not tracked, as CPython does for
 * dicts: kept responses then cost the collector nothing (a full
 * collection visits every tracked object, and a gather of 100k requests
 * ran 13 of them). A record is tracked again as soon as an object that
 * may be tracked is stored in it (the C stores, setattr, or its __dict__
 * being handed out), by the same test CPython's dicts use.
 */
#include <stddef.h>
#include "_core.h"

#include <structmember.h>

/* A record of up to REC_MAX object fields; each type uses its first n. */
enum { REC_MAX = 12 };
typedef struct {
	PyObject_HEAD
	PyObject *f[REC_MAX];     /* strong or NULL */
	PyObject *dict;           /* ChatCompletionBase only: extra attributes */
} Rec;

/* The Python subclasses C makes instances of, and the hooks (strong;
 * set once by set_record_types). */
static PyTypeObject *t_message, *t_choice, *t_usage, *t_details, *t_delta, *t_chunk_choice;
static PyTypeObject *t_chunk;
static PyObject *hook_tool_calls;     /* tool_calls(handle) -> list */
static PyObject *hook_chunk_choices;  /* chunk_choices(delta tuple) -> list */
static PyObject *s_assistant, *s_chat_completion, *s_chunk_object, *s_empty;

static int rec_traverse(Rec *r, visitproc visit, void *arg);

/* Whether v may be part of a cycle (CPython's _PyObject_GC_MAY_BE_TRACKED:
 * a GC object, but an untracked tuple stays untracked). */
static bool may_track(PyObject *v)
{
	return v && PyObject_IS_GC(v) && (!PyTuple_CheckExact(v) || PyObject_GC_IsTracked(v));
}

/* Before v is stored in r: r tracked again when v may be in a cycle. */
static void rec_retrack(Rec *r, PyObject *v)
{
	if (may_track(v) && !PyObject_GC_IsTracked((PyObject *)r))
		PyObject_GC_Track(r);
}

/* Every attribute store: the tracking rule, then the usual store. (A
 * member descriptor's __set__ called directly bypasses this; at worst a
 * cycle built that way is never collected.) */
static int rec_setattro(PyObject *o, PyObject *name, PyObject *v)
{
	rec_retrack((Rec *)o, v);
	return PyObject_GenericSetAttr(o, name, v);
}

/* __dict__ handed out (or replaced) can be filled without setattr:
 * tracked first. */
static PyObject *rec_get_dict(PyObject *o, void *c)
{
	if (!PyObject_GC_IsTracked(o))
		PyObject_GC_Track(o);
	return PyObject_GenericGetDict(o, c);
}

static int rec_set_dict(PyObject *o, PyObject *v, void *c)
{
	if (!PyObject_GC_IsTracked(o))
		PyObject_GC_Track(o);
	return PyObject_GenericSetDict(o, v, c);
}

/* How many fields r's C type has (a Python subclass's own slots are its
 * own to visit), and whether it has the dict. */
static int rec_count(Rec *r, bool *has_dict)
{
	PyTypeObject *t = Py_TYPE(r);
	while (t->tp_traverse != (traverseproc)rec_traverse)
		t = t->tp_base;
	*has_dict = t->tp_basicsize == sizeof(Rec);
	return *has_dict ? REC_MAX : (int)((t->tp_basicsize - offsetof(Rec, f)) / sizeof(PyObject *));
}

/* r is no longer tracked when none of its C fields (nor its dict) may be.
 * Only for a record just made by C, before Python saw it: a subclass's
 * own slots are still empty then. */
static void rec_untrack_if_leaf(Rec *r)
{
	bool has_dict;
	int n = rec_count(r, &has_dict);
	if (has_dict && r->dict)
		return;
	for (int i = 0; i < n; i++)
		if (may_track(r->f[i]))
			return;
	if (PyObject_GC_IsTracked((PyObject *)r))
		PyObject_GC_UnTrack(r);
}

static int rec_traverse(Rec *r, visitproc visit, void *arg)
{
	bool has_dict;
	int n = rec_count(r, &has_dict);
	for (int i = 0; i < n; i++)
		Py_VISIT(r->f[i]);
	if (has_dict)
		Py_VISIT(r->dict);
	return 0;
}

static int rec_clear(Rec *r)
{
	bool has_dict;
	int n = rec_count(r, &has_dict);
	for (int i = 0; i < n; i++)
		Py_CLEAR(r->f[i]);
	if (has_dict)
		Py_CLEAR(r->dict);
	return 0;
}

static void rec_dealloc(Rec *r)
{
	PyObject_GC_UnTrack(r);
	rec_clear(r);
	Py_TYPE(r)->tp_free((PyObject *)r);
}

/* A new instance of t (one of the registered subclasses), fields unset. */
static Rec *rec_new(PyTypeObject *t)
{
	if (!t) {
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: set_record_types was not called");
		return NULL;
	}
	return (Rec *)t->tp_alloc(t, 0);
}

/* Steals v (NULL: an error already set, and the record is dropped). */
static int rec_set(Rec *r, int i, PyObject *v)
{
	if (!v)
		return -1;
	rec_retrack(r, v);
	Py_XSETREF(r->f[i], v);
	return 0;
}

static PyObject *new_ref(PyObject *o)
{
	Py_INCREF(o);
	return o;
}

#define FIELD(name, i) {name, T_OBJECT, offsetof(Rec, f) + (i) * sizeof(PyObject *), 0, NULL}

#define REC_TYPE(var, pyname, doc, members, nfields) \
	static PyTypeObject var = { \
		PyVarObject_HEAD_INIT(NULL, 0) \
		.tp_name = "pyllmring._core." pyname, \
		.tp_basicsize = offsetof(Rec, f) + (nfields) * sizeof(PyObject *), \
		.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, \
		.tp_doc = doc, \
		.tp_dealloc = (destructor)rec_dealloc, \
		.tp_traverse = (traverseproc)rec_traverse, \
		.tp_clear = (inquiry)rec_clear, \
		.tp_setattro = rec_setattro, \
		.tp_new = PyType_GenericNew, \
		.tp_members = members, \
	}

/* ---- the plain records ---------------------------------------------------- */

enum { M_ROLE, M_CONTENT, M_TOOL_CALLS, M_REFUSAL, M_FUNCTION_CALL };
static PyMemberDef message_members[] = {
	FIELD("role", M_ROLE), FIELD("content", M_CONTENT), FIELD("tool_calls", M_TOOL_CALLS),
	FIELD("refusal", M_REFUSAL), FIELD("function_call", M_FUNCTION_CALL),
	{NULL, 0, 0, 0, NULL}};
enum { C_INDEX, C_MESSAGE, C_FINISH, C_LOGPROBS };
static PyMemberDef choice_members[] = {
	FIELD("index", C_INDEX), FIELD("message", C_MESSAGE), FIELD("finish_reason", C_FINISH),
	FIELD("logprobs", C_LOGPROBS), {NULL, 0, 0, 0, NULL}};
enum { U_PROMPT, U_COMPLETION, U_TOTAL, U_DETAILS };
static PyMemberDef usage_members[] = {
	FIELD("prompt_tokens", U_PROMPT), FIELD("completion_tokens", U_COMPLETION),
	FIELD("total_tokens", U_TOTAL), FIELD("prompt_tokens_details", U_DETAILS),
	{NULL, 0, 0, 0, NULL}};
static PyMemberDef details_members[] = {FIELD("cached_tokens", 0), {NULL, 0, 0, 0, NULL}};
enum { D_ROLE, D_CONTENT, D_TOOL_CALLS };
static PyMemberDef delta_members[] = {
	FIELD("role", D_ROLE), FIELD("content", D_CONTENT), FIELD("tool_calls", D_TOOL_CALLS),
	{NULL, 0, 0, 0, NULL}};
enum { K_INDEX, K_DELTA, K_FINISH, K_LOGPROBS };
static PyMemberDef chunk_choice_members[] = {
	FIELD("index", K_INDEX), FIELD("delta", K_DELTA), FIELD("finish_reason", K_FINISH),
	FIELD("logprobs", K_LOGPROBS), {NULL, 0, 0, 0, NULL}};

REC_TYPE(CoreMessage_Type, "MessageBase", "openai-python's ChatCompletionMessage fields.",
         message_members, 5);
REC_TYPE(CoreChoice_Type, "ChoiceBase", "A choice of a chat.completion.", choice_members, 4);
REC_TYPE(CoreUsage_Type, "UsageBase", "Token counts of a response.", usage_members, 4);
REC_TYPE(CoreDetails_Type, "PromptTokensDetailsBase", "usage.prompt_tokens_details.",
         details_members, 1);
REC_TYPE(CoreDelta_Type, "DeltaBase", "A streamed choice's delta.", delta_members, 3);
REC_TYPE(CoreChunkChoice_Type, "ChunkChoiceBase", "A choice of a chat.completion.chunk.",
         chunk_choice_members, 4);

/* Usage(prompt, completion, total, PromptTokensDetails(cached)). */
static PyObject *usage_of(const lr_usage *u)
{
	Rec *d = rec_new(t_details), *r = d ? rec_new(t_usage) : NULL;
	if (!r) {
		Py_XDECREF(d);
		return NULL;
	}
	if (rec_set(d, 0, PyLong_FromLongLong(u->cached_input_tokens)) < 0 ||
	    rec_set(r, U_PROMPT, PyLong_FromLongLong(u->input_tokens)) < 0 ||
	    rec_set(r, U_COMPLETION, PyLong_FromLongLong(u->output_tokens)) < 0 ||
	    rec_set(r, U_TOTAL, PyLong_FromLongLong(u->input_tokens + u->output_tokens)) < 0) {
		Py_DECREF(d);
		Py_DECREF(r);
		return NULL;
	}
	rec_untrack_if_leaf(d);
	r->f[U_DETAILS] = (PyObject *)d;
	return (PyObject *)r;
}

static PyObject *utf8_or_none(const char *s, size_t len)
{
	if (!s)
		Py_RETURN_NONE;
	return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "replace");
}

/* [Choice(0, Message(text, tool_calls), finish_reason)] of handle h. */
static PyObject *choices_of(PyObject *h, const lr_result *res)
{
	Rec *m = rec_new(t_message), *c = m ? rec_new(t_choice) : NULL;
	PyObject *list = c ? PyList_New(1) : NULL;
	if (!list)
		goto fail;
	PyObject *calls = res->tool_call_count > 0 ? PyObject_CallOneArg(hook_tool_calls, h)
	                                            : new_ref(Py_None);
	if (rec_set(m, M_TOOL_CALLS, calls) < 0 ||
	    rec_set(m, M_CONTENT, utf8_or_none(res->text, res->text_len)) < 0 ||
	    rec_set(c, C_FINISH, res->finish_reason ? PyUnicode_FromString(res->finish_reason)
	                                            : new_ref(Py_None)) < 0 ||
	    rec_set(c, C_INDEX, PyLong_FromLong(0)) < 0)
		goto fail;
	m->f[M_ROLE] = new_ref(s_assistant);
	rec_untrack_if_leaf(m);
	c->f[C_MESSAGE] = (PyObject *)m;
	PyList_SET_ITEM(list, 0, (PyObject *)c);
	return list;
fail:
	Py_XDECREF(list);
	Py_XDECREF(c);
	Py_XDECREF(m);
	return NULL;
}

/* ---- ChatCompletionBase ----------------------------------------------------- */

/* The fields: the handle, n and the model asked for (given), then what is
 * built on first access. */
enum { CC_H, CC_N, CC_MODEL_ARG, CC_CHOICES, CC_USAGE, CC_MODEL, CC_OBJECT, CC_ID, CC_CREATED,
       CC_FINGERPRINT, CC_TIER, CC_BODY_DONE };

static const lr_result *cc_result(Rec *r)
{
	PyObject *h = r->f[CC_H];
	const lr_result *res = !h                                  ? NULL
	                       : Py_IS_TYPE(h, &CoreResult_Type) ? ((CoreResult *)h)->res
	                                                          : core_handle_result((CoreHandle *)h);
	if (!res)
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: the request is not complete yet");
	return res;
}

static PyObject *cc_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
	PyObject *h, *n = NULL, *model = Py_None;
	static char *kwlist[] = {"handle", "n", "model", NULL};
	Py_ssize_t nargs = PyTuple_GET_SIZE(args);
	PyObject *a0 = nargs ? PyTuple_GET_ITEM(args, 0) : NULL;
	if (!kw && nargs >= 1 && nargs <= 3 &&
	    (Py_IS_TYPE(a0, &CoreHandle_Type) || Py_IS_TYPE(a0, &CoreResult_Type)) &&
	    (nargs < 2 || PyLong_CheckExact(PyTuple_GET_ITEM(args, 1)))) {
		/* The call every response makes: positional, no parsing. */
		h = a0;
		n = nargs >= 2 ? PyTuple_GET_ITEM(args, 1) : NULL;
		model = nargs == 3 ? PyTuple_GET_ITEM(args, 2) : Py_None;
	} else if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O!O:ChatCompletion", kwlist, &h,
	                                        &PyLong_Type, &n, &model)) {
		return NULL;
	} else if (!Py_IS_TYPE(h, &CoreHandle_Type) && !Py_IS_TYPE(h, &CoreResult_Type)) {
		PyErr_Format(PyExc_TypeError, "ChatCompletion: handle must be a Handle or a Result, not %s",
		             Py_TYPE(h)->tp_name);
		return NULL;
	}
	Rec *r = rec_new(t);
	if (!r)
		return NULL;
	/* A settled handle's Result: the handle (and its token) are not kept. */
	r->f[CC_H] = Py_IS_TYPE(h, &CoreHandle_Type) ? core_handle_keep((CoreHandle *)h) : new_ref(h);
	r->f[CC_N] = n ? new_ref(n) : NULL;
	r->f[CC_MODEL_ARG] = new_ref(model);
	rec_untrack_if_leaf(r);
	return (PyObject *)r;
}

/* choices: n > 1 reads the body (the Python hook _choices_from_body). */
static PyObject *cc_get_choices(Rec *r, void *c)
{
	if (!r->f[CC_CHOICES]) {
		PyObject *v;
		if (r->f[CC_N] && PyLong_AsLong(r->f[CC_N]) > 1) {
			v = PyObject_CallMethod((PyObject *)r, "_choices_from_body", NULL);
		} else {
			const lr_result *res = cc_result(r);
			v = res ? choices_of(r->f[CC_H], res) : NULL;
		}
		if (!v)
			return NULL;
		rec_retrack(r, v);
		r->f[CC_CHOICES] = v;
	}
	return new_ref(r->f[CC_CHOICES]);
}

static PyObject *cc_get_usage(Rec *r, void *c)
{
	if (!r->f[CC_USAGE]) {
		const lr_result *res = cc_result(r);
		PyObject *v = res ? usage_of(&res->usage) : NULL;
		if (!v)
			return NULL;
		rec_retrack(r, v);
		r->f[CC_USAGE] = v;
	}
	return new_ref(r->f[CC_USAGE]);
}

static PyObject *cc_get_model(Rec *r, void *c)
{
	if (!r->f[CC_MODEL]) {
		const lr_result *res = cc_result(r);
		if (!res)
			return NULL;
		PyObject *arg = r->f[CC_MODEL_ARG];
		PyObject *v = res->model && res->model[0] ? PyUnicode_FromString(res->model)
		              : arg && PyUnicode_Check(arg) && PyUnicode_GET_LENGTH(arg) ? new_ref(arg)
		                                                                     : new_ref(s_empty);
		if (!v)
			return NULL;
		r->f[CC_MODEL] = v;
	}
	return new_ref(r->f[CC_MODEL]);
}

static PyObject *cc_get_object(Rec *r, void *c)
{
	return new_ref(r->f[CC_OBJECT] ? r->f[CC_OBJECT] : s_chat_completion);
}

/* id, created, system_fingerprint, service_tier: only the body has them;
 * the hook _body_fields() returns the four. */
static PyObject *cc_get_body_field(Rec *r, void *c)
{
	int i = (int)(intptr_t)c;
	if (!r->f[CC_BODY_DONE] && !r->f[i]) {
		PyObject *t = PyObject_CallMethod((PyObject *)r, "_body_fields", NULL);
		if (!t)
			return NULL;
		if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 4) {
			Py_DECREF(t);
			PyErr_SetString(PyExc_TypeError, "_body_fields must return 4 values");
			return NULL;
		}
		for (int k = 0; k < 4; k++)
			if (!r->f[CC_ID + k]) { /* a field set meanwhile is kept */
				rec_retrack(r, PyTuple_GET_ITEM(t, k));
				r->f[CC_ID + k] = new_ref(PyTuple_GET_ITEM(t, k));
			}
		Py_DECREF(t);
		r->f[CC_BODY_DONE] = new_ref(Py_True);
	}
	return new_ref(r->f[i] ? r->f[i] : Py_None);
}

static int cc_set(Rec *r, PyObject *v, void *c)
{
	int i = (int)(intptr_t)c;
	if (!v) {
		PyErr_SetString(PyExc_AttributeError, "a response field cannot be deleted");
		return -1;
	}
	rec_retrack(r, v);
	Py_INCREF(v);
	Py_XSETREF(r->f[i], v);
	return 0;
}

#define CC_GET(name, fn, i) {name, (getter)fn, (setter)cc_set, NULL, (void *)(intptr_t)(i)}
static PyGetSetDef cc_getset[] = {
	CC_GET("choices", cc_get_choices, CC_CHOICES),
	CC_GET("usage", cc_get_usage, CC_USAGE),
	CC_GET("model", cc_get_model, CC_MODEL),
	CC_GET("object", cc_get_object, CC_OBJECT),
	CC_GET("id", cc_get_body_field, CC_ID),
	CC_GET("created", cc_get_body_field, CC_CREATED),
	CC_GET("system_fingerprint", cc_get_body_field, CC_FINGERPRINT),
	CC_GET("service_tier", cc_get_body_field, CC_TIER),
	{"__dict__", rec_get_dict, rec_set_dict, NULL, NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef cc_members[] = {
	{"_h", T_OBJECT, offsetof(Rec, f) + CC_H * sizeof(PyObject *), READONLY,
	 "The result: the handle's Result once settled (the same attributes), else the handle."},
	{"_n", T_OBJECT, offsetof(Rec, f) + CC_N * sizeof(PyObject *), READONLY, "n asked for."},
	{"_model", T_OBJECT, offsetof(Rec, f) + CC_MODEL_ARG * sizeof(PyObject *), READONLY,
	 "The model asked for."},
	{NULL, 0, 0, 0, NULL},
};

static PyTypeObject CoreChatCompletion_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.ChatCompletionBase",
	.tp_basicsize = sizeof(Rec),
	.tp_dictoffset = offsetof(Rec, dict),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
	.tp_doc = "ChatCompletionBase(handle, n=1, model=None): a chat.completion from a completed "
	          "handle; choices, usage and model made on first access.",
	.tp_dealloc = (destructor)rec_dealloc,
	.tp_traverse = (traverseproc)rec_traverse,
	.tp_clear = (inquiry)rec_clear,
	.tp_setattro = rec_setattro,
	.tp_new = cc_new,
	.tp_getset = cc_getset,
	.tp_members = cc_members,
};

/* ---- ChunkBase: one streamed event ------------------------------------------ */

enum { CH_ID, CH_OBJECT, CH_CREATED, CH_MODEL, CH_CHOICES, CH_USAGE, CH_FINGERPRINT, CH_DELTA };

static PyObject *chunk_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
	PyObject *id, *model, *created, *delta, *usage = Py_None;
	static char *kwlist[] = {"id", "model", "created", "delta", "usage", NULL};
	if (kw || !PyArg_UnpackTuple(args, "ChatCompletionChunk", 4, 5, &id, &model, &created, &delta,
	                             &usage)) {
		PyErr_Clear(); /* the keyword form, or the full message */
		if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO|O:ChatCompletionChunk", kwlist, &id,
		                                 &model, &created, &delta, &usage))
			return NULL;
	}
	Rec *r = rec_new(t);
	if (!r)
		return NULL;
	r->f[CH_ID] = new_ref(id);
	r->f[CH_OBJECT] = new_ref(s_chunk_object);
	r->f[CH_CREATED] = new_ref(created);
	r->f[CH_MODEL] = new_ref(model);
	r->f[CH_USAGE] = new_ref(usage);
	r->f[CH_DELTA] = new_ref(delta);
	return (PyObject *)r;
}

PyObject *core_chunk_new(PyObject *id, PyObject *model, PyObject *created, PyObject *delta)
{
	Rec *r = rec_new(t_chunk);
	if (!r)
		return NULL;
	r->f[CH_ID] = new_ref(id);
	r->f[CH_OBJECT] = new_ref(s_chunk_object);
	r->f[CH_CREATED] = new_ref(created);
	r->f[CH_MODEL] = new_ref(model);
	r->f[CH_USAGE] = new_ref(Py_None);
	r->f[CH_DELTA] = new_ref(delta);
	return (PyObject *)r;
}

/* [] for the usage chunk, [ChunkChoice(0, Delta(text))] for a text delta;
 * a tuple delta (tool calls, finish, other index) goes to the hook. */
static PyObject *chunk_choices(PyObject *delta)
{
	if (delta == Py_None)
		return PyList_New(0);
	if (!PyUnicode_CheckExact(delta))
		return PyObject_CallOneArg(hook_chunk_choices, delta);
	Rec *d = rec_new(t_delta), *c = d ? rec_new(t_chunk_choice) : NULL;
	PyObject *list = c ? PyList_New(1) : NULL;
	PyObject *zero = list ? PyLong_FromLong(0) : NULL;
	if (!zero) {
		Py_XDECREF(list);
		Py_XDECREF(c);
		Py_XDECREF(d);
		return NULL;
	}
	d->f[D_ROLE] = new_ref(s_assistant);
	d->f[D_CONTENT] = new_ref(delta);
	c->f[K_INDEX] = zero;
	c->f[K_DELTA] = (PyObject *)d;
	PyList_SET_ITEM(list, 0, (PyObject *)c);
	return list;
}

static PyObject *chunk_get_choices(Rec *r, void *c)
{
	if (!r->f[CH_CHOICES]) {
		PyObject *v = chunk_choices(r->f[CH_DELTA] ? r->f[CH_DELTA] : Py_None);
		if (!v)
			return NULL;
		r->f[CH_CHOICES] = v;
	}
	return new_ref(r->f[CH_CHOICES]);
}

static PyGetSetDef chunk_getset[] = {
	{"choices", (getter)chunk_get_choices, (setter)cc_set, NULL, (void *)(intptr_t)CH_CHOICES},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef chunk_members[] = {
	FIELD("id", CH_ID), FIELD("object", CH_OBJECT), FIELD("created", CH_CREATED),
	FIELD("model", CH_MODEL), FIELD("usage", CH_USAGE), FIELD("system_fingerprint", CH_FINGERPRINT),
	{"_delta", T_OBJECT, offsetof(Rec, f) + CH_DELTA * sizeof(PyObject *), READONLY, NULL},
	{NULL, 0, 0, 0, NULL},
};

static PyTypeObject CoreChunk_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.ChunkBase",
	.tp_basicsize = offsetof(Rec, f) + (CH_DELTA + 1) * sizeof(PyObject *),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
	.tp_doc = "ChunkBase(id, model, created, delta, usage=None): one streamed event; its "
	          "choices made on first access.",
	.tp_dealloc = (destructor)rec_dealloc,
	.tp_traverse = (traverseproc)rec_traverse,
	.tp_clear = (inquiry)rec_clear,
	.tp_new = chunk_new,
	.tp_getset = chunk_getset,
	.tp_members = chunk_members,
};

/* ---- Ready: an awaitable whose value is there already ------------------------- */

/* What AsyncStream.__anext__ returns while its queue holds events: awaiting
 * it gives the value at once, without a coroutine frame per event. */
typedef struct {
	PyObject_HEAD
	PyObject *value;          /* strong; NULL once given */
} Ready;

static PyObject *ready_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
	PyObject *v;
	if (kw || !PyArg_UnpackTuple(args, "Ready", 1, 1, &v))
		return kw ? PyErr_Format(PyExc_TypeError, "Ready(value) takes no keywords") : NULL;
	Ready *r = (Ready *)t->tp_alloc(t, 0);
	if (r)
		r->value = new_ref(v);
	return (PyObject *)r;
}

static PyTypeObject CoreReady_Type;

PyObject *core_ready_new(PyObject *value)
{
	Ready *r = PyObject_New(Ready, &CoreReady_Type);
	if (r)
		r->value = new_ref(value);
	return (PyObject *)r;
}

static void ready_dealloc(Ready *r)
{
	Py_XDECREF(r->value);
	Py_TYPE(r)->tp_free((PyObject *)r);
}

/* The value, as StopIteration(value): the await ends with it. */
static PyObject *ready_next(Ready *r)
{
	PyObject *v = r->value;
	if (!v)
		return NULL; /* exhausted: plain StopIteration */
	r->value = NULL;
	PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, v);
	Py_DECREF(v);
	if (stop) {
		PyErr_SetObject(PyExc_StopIteration, stop);
		Py_DECREF(stop);
	}
	return NULL;
}

static PyObject *ready_send(Ready *r, PyObject *arg)
{
	return ready_next(r);
}

static PyObject *ready_throw(Ready *r, PyObject *args)
{
	PyObject *type, *val = NULL, *tb = NULL;
	if (!PyArg_UnpackTuple(args, "throw", 1, 3, &type, &val, &tb))
		return NULL;
	Py_CLEAR(r->value);
	if (PyExceptionInstance_Check(type))
		PyErr_SetObject((PyObject *)Py_TYPE(type), type);
	else
		PyErr_SetObject(type, val);
	return NULL;
}

static PyObject *ready_close(Ready *r, PyObject *unused)
{
	Py_CLEAR(r->value);
	Py_RETURN_NONE;
}

static PyObject *ready_await(Ready *r)
{
	return new_ref((PyObject *)r);
}

static PyMethodDef ready_methods[] = {
	{"send", (PyCFunction)ready_send, METH_O, NULL},
	{"throw", (PyCFunction)ready_throw, METH_VARARGS, NULL},
	{"close", (PyCFunction)ready_close, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyAsyncMethods ready_async = {.am_await = (unaryfunc)ready_await};

static PyTypeObject CoreReady_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.Ready",
	.tp_basicsize = sizeof(Ready),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Ready(value): awaiting it gives value at once.",
	.tp_dealloc = (destructor)ready_dealloc,
	.tp_free = PyObject_Free,
	.tp_as_async = &ready_async,
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)ready_next,
	.tp_methods = ready_methods,
	.tp_new = ready_new,
};

/* ---- registration --------------------------------------------------------- */

static int subclass_of(PyObject *o, PyTypeObject *base, PyTypeObject **out)
{
	if (!PyType_Check(o) || !PyType_IsSubtype((PyTypeObject *)o, base) ||
	    ((PyTypeObject *)o)->tp_basicsize != base->tp_basicsize) {
		PyErr_Format(PyExc_TypeError, "set_record_types: a subclass of %s without fields",
		             base->tp_name);
		return -1;
	}
	Py_INCREF(o);
	Py_XSETREF(*out, (PyTypeObject *)o);
	return 0;
}

PyObject *core_set_record_types(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"message", "choice", "usage", "details", "delta", "chunk_choice",
	                         "chunk", "tool_calls", "chunk_choices", NULL};
	PyObject *m, *c, *u, *d, *de, *kc, *ch, *tc, *cc;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "$OOOOOOOOO:set_record_types", kwlist, &m, &c, &u,
	                                 &d, &de, &kc, &ch, &tc, &cc))
		return NULL;
	if (subclass_of(m, &CoreMessage_Type, &t_message) < 0 ||
	    subclass_of(c, &CoreChoice_Type, &t_choice) < 0 ||
	    subclass_of(u, &CoreUsage_Type, &t_usage) < 0 ||
	    subclass_of(d, &CoreDetails_Type, &t_details) < 0 ||
	    subclass_of(de, &CoreDelta_Type, &t_delta) < 0 ||
	    subclass_of(kc, &CoreChunkChoice_Type, &t_chunk_choice) < 0 ||
	    subclass_of(ch, &CoreChunk_Type, &t_chunk) < 0)
		return NULL;
	if (!PyCallable_Check(tc) || !PyCallable_Check(cc)) {
		PyErr_SetString(PyExc_TypeError, "set_record_types: the hooks must be callable");
		return NULL;
	}
	Py_INCREF(tc);
	Py_XSETREF(hook_tool_calls, tc);
	Py_INCREF(cc);
	Py_XSETREF(hook_chunk_choices, cc);
	Py_RETURN_NONE;
}

int core_records_init(PyObject *m)
{
	if (!s_assistant) {
		s_assistant = PyUnicode_InternFromString("assistant");
		s_chat_completion = PyUnicode_InternFromString("chat.completion");
		s_chunk_object = PyUnicode_InternFromString("chat.completion.chunk");
		s_empty = PyUnicode_InternFromString("");
		if (!s_assistant || !s_chat_completion || !s_chunk_object || !s_empty)
			return -1;
	}
	struct {
		PyTypeObject *t;
		const char *name;
	} types[] = {
		{&CoreMessage_Type, "MessageBase"}, {&CoreChoice_Type, "ChoiceBase"},
		{&CoreUsage_Type, "UsageBase"}, {&CoreDetails_Type, "PromptTokensDetailsBase"},
		{&CoreDelta_Type, "DeltaBase"}, {&CoreChunkChoice_Type, "ChunkChoiceBase"},
		{&CoreChatCompletion_Type, "ChatCompletionBase"}, {&CoreChunk_Type, "ChunkBase"},
		{&CoreReady_Type, "Ready"},
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (PyType_Ready(types[i].t) < 0)
			return -1;
		Py_INCREF(types[i].t);
		if (PyModule_AddObject(m, types[i].name, (PyObject *)types[i].t) < 0) {
			Py_DECREF(types[i].t);
			return -1;
		}
	}
	return 0;
}
