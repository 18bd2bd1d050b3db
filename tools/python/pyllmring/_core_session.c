/*
 * _core.Session: a conversation on one Engine, which it keeps alive.
 * lr_session would take each future's one then-callback (the channel
 * needs it), so the history lives here as message dicts, under the GIL:
 * send() submits the system message, the history and the new user
 * message; when drain hands out the turn's done event and the reply
 * succeeded, the user message and the reply (text and tool calls) join
 * the history (a failed turn leaves it as it was). One turn at a time.
 */
#include "_core.h"

static int Session_init(CoreSession *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"engine", "model", "system", NULL};
	PyObject *engine, *model, *system = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O!U|O:Session", kwlist, &CoreEngine_Type,
	                                 &engine, &model, &system))
		return -1;
	if (system != Py_None && !PyUnicode_Check(system)) {
		PyErr_SetString(PyExc_TypeError, "pyllmring: system must be a str or None");
		return -1;
	}
	if (!core_engine_get((CoreEngine *)engine))
		return -1;
	PyObject *history = PyList_New(0);
	if (!history)
		return -1;
	if (system != Py_None) {
		PyObject *m = Py_BuildValue("{s:s,s:O}", "role", "system", "content", system);
		if (!m || PyList_Append(history, m) < 0) {
			Py_XDECREF(m);
			Py_DECREF(history);
			return -1;
		}
		Py_DECREF(m);
	}
	Py_INCREF(engine);
	Py_XSETREF(self->engine, (CoreEngine *)engine);
	Py_INCREF(model);
	Py_XSETREF(self->model, model);
	Py_XSETREF(self->history, history);
	self->turns = 0;
	self->busy = false;
	self->gen = core_fork_gen;
	return 0;
}

static void Session_dealloc(CoreSession *self)
{
	Py_XDECREF(self->engine);
	Py_XDECREF(self->model);
	Py_XDECREF(self->history);
	Py_XDECREF(self->pending);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int session_ready(CoreSession *self)
{
	if (core_check_fork(self->gen) < 0)
		return -1;
	if (!self->history) {
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: Session.__init__ was not called");
		return -1;
	}
	return 0;
}

/* The reply as an assistant message dict, or NULL. */
static PyObject *assistant_message(const lr_result *r)
{
	PyObject *text = r->text ? PyUnicode_DecodeUTF8(r->text, (Py_ssize_t)r->text_len, "replace")
	                         : (Py_INCREF(Py_None), Py_None);
	PyObject *m = text ? Py_BuildValue("{s:s,s:N}", "role", "assistant", "content", text) : NULL;
	if (!m || r->tool_call_count <= 0)
		return m;
	PyObject *calls = PyList_New(0);
	for (int i = 0; calls && i < r->tool_call_count; i++) {
		const lr_tool_call *tc = &r->tool_calls[i];
		PyObject *c = Py_BuildValue("{s:s,s:s,s:{s:s,s:s#}}", "id", tc->id ? tc->id : "", "type",
		                            "function", "function", "name", tc->name ? tc->name : "",
		                            "arguments", tc->arguments ? tc->arguments : "",
		                            (Py_ssize_t)(tc->arguments ? tc->arguments_len : 0));
		if (!c || PyList_Append(calls, c) < 0)
			Py_CLEAR(calls);
		Py_XDECREF(c);
	}
	if (!calls || PyDict_SetItemString(m, "tool_calls", calls) < 0)
		Py_CLEAR(m);
	Py_XDECREF(calls);
	return m;
}

int core_session_turn_done(CoreHandle *h)
{
	CoreSession *self = (CoreSession *)h->session;
	h->session = NULL; /* its reference is released below */
	self->busy = false;
	const lr_result *r = core_handle_result(h);
	int rc = 0;
	PyObject *user = self->pending; /* its reference is released below */
	self->pending = NULL;
	if (user && r && r->error == LR_OK) {
		PyObject *reply = assistant_message(r);
		if (!reply || PyList_Append(self->history, user) < 0 ||
		    PyList_Append(self->history, reply) < 0)
			rc = -1;
		else
			self->turns++;
		Py_XDECREF(reply);
	}
	Py_XDECREF(user);
	Py_DECREF(self);
	return rc;
}

static PyObject *Session_send(CoreSession *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"channel", "token", "text", NULL};
	PyObject *channel, *token, *text;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OU:send", kwlist, &CoreChannel_Type, &channel,
	                                 &token, &text))
		return NULL;
	if (session_ready(self) < 0 || core_check_fork(((CoreChannel *)channel)->gen) < 0)
		return NULL;
	lr_engine *eng = core_engine_get(self->engine);
	if (!eng)
		return NULL;
	if (self->busy) {
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: the session has a turn in flight; "
		                                    "send one message at a time");
		return NULL;
	}
	PyObject *user = Py_BuildValue("{s:s,s:O}", "role", "user", "content", text);
	PyObject *msgs = user ? PySequence_List(self->history) : NULL;
	if (!msgs || PyList_Append(msgs, user) < 0) {
		Py_XDECREF(msgs);
		Py_XDECREF(user);
		return NULL;
	}
	struct core_submit_args a = {.model = self->model, .messages = msgs, .params = Py_None,
	                             .headers = Py_None, .max_retries = Py_None, .timeout = Py_None,
	                             .base_url = Py_None, .body = Py_None, .input = Py_None,
	                             .endpoint = "chat"};
	lr_request *rq = core_build_request(&a); /* owner: here, then lr_submit */
	Py_DECREF(msgs);
	CoreHandle *h = rq ? core_handle_new((CoreChannel *)channel, token) : NULL;
	if (!h || !self->engine->eng) {
		if (h) {
			Py_DECREF(h);
			PyErr_SetString(PyExc_RuntimeError, "pyllmring: this client is closed");
		}
		lr_request_free(rq);
		Py_DECREF(user);
		return NULL;
	}
	Py_INCREF(self);
	h->session = (PyObject *)self;
	Py_XSETREF(self->pending, user);
	self->busy = true;
	PyObject *r = core_handle_start(h, lr_submit(self->engine->eng, rq));
	if (!r) {
		self->busy = false;
		Py_CLEAR(self->pending);
	}
	return r;
}

static PyObject *Session_history(CoreSession *self, PyObject *unused)
{
	if (session_ready(self) < 0)
		return NULL;
	return PyObject_CallOneArg(core_json_dumps, self->history);
}

static PyObject *Session_get_turns(CoreSession *self, void *c)
{
	if (session_ready(self) < 0)
		return NULL;
	return PyLong_FromLong(self->turns);
}

static PyMethodDef Session_methods[] = {
	{"send", (PyCFunction)(void (*)(void))Session_send, METH_VARARGS | METH_KEYWORDS,
	 "send(channel, token, text) -> Handle: one turn (one at a time per session)."},
	{"history", (PyCFunction)Session_history, METH_NOARGS,
	 "The history as a JSON array of messages (a turn joins it when drain hands out its done event)."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef Session_getset[] = {
	{"turns", (getter)Session_get_turns, NULL, "Completed turns.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject CoreSession_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.Session",
	.tp_basicsize = sizeof(CoreSession),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Session(engine, model, system=None): a conversation with history.",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)Session_init,
	.tp_dealloc = (destructor)Session_dealloc,
	.tp_methods = Session_methods,
	.tp_getset = Session_getset,
};
