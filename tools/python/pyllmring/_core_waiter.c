/*
 * _core.StreamWaiter: what a stream's task waits on while its queue is
 * empty (_core_stream.c). It is the smallest future asyncio's Task accepts
 * (the `_asyncio_future_blocking` protocol: get_loop, add_done_callback,
 * result, cancel). Channel.reap resumes the tasks of the waiters a round
 * woke right after the round (core_stream_run_woken), instead of one
 * loop.call_soon and one loop turn per waiter; elsewhere (dispatch from
 * inside a task, cancel, a callback added once done) the callbacks go
 * through loop.call_soon as a Future's do.
 */
#include "_core_waiter.h"

static PyObject *s_call_soon, *s_context, *s_kwnames_context;
PyObject *core_cancelled_error;
static PyObject *invalid_state_error; /* strong: asyncio's */

Waiter *core_waiter_new(PyObject *loop)
{
	Waiter *w = PyObject_GC_New(Waiter, &CoreWaiter_Type);
	if (!w)
		return NULL;
	Py_INCREF(loop);
	w->loop = loop;
	w->cb = w->ctx = w->more = w->cancel_msg = NULL;
	w->state = W_PENDING;
	w->blocking = 0;
	PyObject_GC_Track(w);
	return w;
}

static int waiter_traverse(Waiter *w, visitproc visit, void *arg)
{
	Py_VISIT(w->loop);
	Py_VISIT(w->cb);
	Py_VISIT(w->ctx);
	Py_VISIT(w->more);
	Py_VISIT(w->cancel_msg);
	return 0;
}

static int waiter_clear(Waiter *w)
{
	Py_CLEAR(w->loop);
	Py_CLEAR(w->cb);
	Py_CLEAR(w->ctx);
	Py_CLEAR(w->more);
	Py_CLEAR(w->cancel_msg);
	return 0;
}

static void waiter_dealloc(Waiter *w)
{
	PyObject_GC_UnTrack(w);
	waiter_clear(w);
	PyObject_GC_Del(w);
}

/* loop.call_soon(cb, w, context=ctx). */
static int schedule_one(Waiter *w, PyObject *cb, PyObject *ctx)
{
	PyObject *args[4] = {w->loop, cb, (PyObject *)w, ctx ? ctx : Py_None};
	PyObject *r = PyObject_VectorcallMethod(s_call_soon, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
	                                        s_kwnames_context);
	Py_XDECREF(r);
	return r ? 0 : -1;
}

/* Takes the callbacks out of w (done or cancelled): *cb and *ctx (new
 * references or NULL) and *more (a list or NULL). */
static void waiter_take_callbacks(Waiter *w, PyObject **cb, PyObject **ctx, PyObject **more)
{
	*cb = w->cb;
	*ctx = w->ctx;
	*more = w->more;
	w->cb = w->ctx = w->more = NULL;
}

/* Schedules every callback (Future semantics). 0 or -1. */
int core_waiter_schedule(Waiter *w)
{
	PyObject *cb, *ctx, *more;
	waiter_take_callbacks(w, &cb, &ctx, &more);
	int rc = 0;
	if (cb && schedule_one(w, cb, ctx) < 0)
		rc = -1;
	for (Py_ssize_t i = 0; more && i < PyList_GET_SIZE(more); i++) {
		PyObject *t = PyList_GET_ITEM(more, i);
		if (schedule_one(w, PyTuple_GET_ITEM(t, 0), PyTuple_GET_ITEM(t, 1)) < 0)
			rc = -1;
	}
	Py_XDECREF(cb);
	Py_XDECREF(ctx);
	Py_XDECREF(more);
	return rc;
}

/* cb(w) in ctx, now; a context already entered (two tasks sharing one)
 * falls back to call_soon. */
static int run_one(Waiter *w, PyObject *cb, PyObject *ctx)
{
	if (ctx && ctx != Py_None) {
		if (PyContext_Enter(ctx) < 0) {
			PyErr_Clear();
			return schedule_one(w, cb, ctx);
		}
	}
	PyObject *r = PyObject_CallOneArg(cb, (PyObject *)w);
	if (ctx && ctx != Py_None && PyContext_Exit(ctx) < 0 && r) {
		Py_DECREF(r);
		r = NULL;
	}
	Py_XDECREF(r);
	return r ? 0 : -1;
}

/* Runs every callback of w now (reap). 0, or -1 with the first error. */
static int waiter_run(Waiter *w)
{
	PyObject *cb, *ctx, *more;
	waiter_take_callbacks(w, &cb, &ctx, &more);
	PyObject *et = NULL, *ev = NULL, *tb = NULL;
	if (cb && run_one(w, cb, ctx) < 0)
		PyErr_Fetch(&et, &ev, &tb);
	for (Py_ssize_t i = 0; more && i < PyList_GET_SIZE(more); i++) {
		PyObject *t = PyList_GET_ITEM(more, i);
		if (run_one(w, PyTuple_GET_ITEM(t, 0), PyTuple_GET_ITEM(t, 1)) < 0) {
			if (!et)
				PyErr_Fetch(&et, &ev, &tb);
			else
				PyErr_Clear();
		}
	}
	Py_XDECREF(cb);
	Py_XDECREF(ctx);
	Py_XDECREF(more);
	if (et) {
		PyErr_Restore(et, ev, tb);
		return -1;
	}
	return 0;
}

int core_stream_run_woken(PyObject *woken)
{
	PyObject *et = NULL, *ev = NULL, *tb = NULL;
	/* A task's step may wake more (a stream it closes): they are appended
	 * and run in this same pass. */
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(woken); i++) {
		PyObject *w = PyList_GET_ITEM(woken, i);
		Py_INCREF(w);
		if (waiter_run((Waiter *)w) < 0) {
			if (!et)
				PyErr_Fetch(&et, &ev, &tb);
			else
				PyErr_Clear();
		}
		Py_DECREF(w);
	}
	if (PyList_SetSlice(woken, 0, PyList_GET_SIZE(woken), NULL) < 0 && !et)
		PyErr_Fetch(&et, &ev, &tb);
	if (et) {
		PyErr_Restore(et, ev, tb);
		return -1;
	}
	return 0;
}

static PyObject *waiter_get_loop(Waiter *w, PyObject *unused)
{
	Py_INCREF(w->loop);
	return w->loop;
}

static PyObject *waiter_done(Waiter *w, PyObject *unused)
{
	return PyBool_FromLong(w->state != W_PENDING);
}

static PyObject *waiter_cancelled(Waiter *w, PyObject *unused)
{
	return PyBool_FromLong(w->state == W_CANCELLED);
}

static PyObject *raise_cancelled(Waiter *w)
{
	if (w->cancel_msg)
		PyErr_SetObject(core_cancelled_error, w->cancel_msg);
	else
		PyErr_SetNone(core_cancelled_error);
	return NULL;
}

static PyObject *waiter_result(Waiter *w, PyObject *unused)
{
	if (w->state == W_CANCELLED)
		return raise_cancelled(w);
	if (w->state == W_PENDING) {
		PyErr_SetString(invalid_state_error, "Result is not ready.");
		return NULL;
	}
	Py_RETURN_NONE;
}

static PyObject *waiter_exception(Waiter *w, PyObject *unused)
{
	if (w->state == W_DONE)
		Py_RETURN_NONE;
	return waiter_result(w, NULL);
}

static PyObject *waiter_add_done_callback(Waiter *w, PyObject *const *args, Py_ssize_t nargs,
                                          PyObject *kwnames)
{
	PyObject *ctx = Py_None;
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
	if (nargs != 1 || nkw > 1 ||
	    (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "context"))) {
		PyErr_SetString(PyExc_TypeError, "add_done_callback(fn, *, context=None)");
		return NULL;
	}
	if (nkw)
		ctx = args[1];
	if (ctx == Py_None) {
		ctx = PyContext_CopyCurrent();
		if (!ctx)
			return NULL;
	} else {
		Py_INCREF(ctx);
	}
	if (w->state != W_PENDING) {
		int rc = schedule_one(w, args[0], ctx);
		Py_DECREF(ctx);
		if (rc < 0)
			return NULL;
		Py_RETURN_NONE;
	}
	if (!w->cb) {
		Py_INCREF(args[0]);
		w->cb = args[0];
		w->ctx = ctx;
		Py_RETURN_NONE;
	}
	PyObject *t = PyTuple_Pack(2, args[0], ctx);
	Py_DECREF(ctx);
	if (!t)
		return NULL;
	if (!w->more && !(w->more = PyList_New(0))) {
		Py_DECREF(t);
		return NULL;
	}
	int rc = PyList_Append(w->more, t);
	Py_DECREF(t);
	if (rc < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *waiter_remove_done_callback(Waiter *w, PyObject *fn)
{
	Py_ssize_t n = 0;
	if (w->cb) {
		int eq = PyObject_RichCompareBool(w->cb, fn, Py_EQ);
		if (eq < 0)
			return NULL;
		if (eq) {
			Py_CLEAR(w->cb);
			Py_CLEAR(w->ctx);
			n++;
		}
	}
	for (Py_ssize_t i = w->more ? PyList_GET_SIZE(w->more) - 1 : -1; i >= 0; i--) {
		int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(PyList_GET_ITEM(w->more, i), 0), fn,
		                                  Py_EQ);
		if (eq < 0 || (eq && PySequence_DelItem(w->more, i) < 0))
			return NULL;
		n += eq;
	}
	return PyLong_FromSsize_t(n);
}

static PyObject *waiter_cancel(Waiter *w, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"msg", NULL};
	PyObject *msg = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:cancel", kwlist, &msg))
		return NULL;
	if (w->state != W_PENDING)
		Py_RETURN_FALSE;
	w->state = W_CANCELLED;
	if (msg != Py_None) {
		Py_INCREF(msg);
		w->cancel_msg = msg;
	}
	if (core_waiter_schedule(w) < 0)
		return NULL;
	Py_RETURN_TRUE;
}

/* Awaiting it: yields itself while pending (as Future.__await__), then
 * gives None or raises CancelledError. */
static PySendResult waiter_am_send(Waiter *w, PyObject *arg, PyObject **result)
{
	if (w->state == W_PENDING) {
		w->blocking = 1;
		Py_INCREF(w);
		*result = (PyObject *)w;
		return PYGEN_NEXT;
	}
	*result = waiter_result(w, NULL);
	return *result ? PYGEN_RETURN : PYGEN_ERROR;
}

static PyObject *waiter_iternext(Waiter *w)
{
	PyObject *r;
	PySendResult s = waiter_am_send(w, Py_None, &r);
	if (s == PYGEN_RETURN) {
		_PyGen_SetStopIterationValue(r);
		Py_DECREF(r);
		return NULL;
	}
	return s == PYGEN_NEXT ? r : NULL;
}

static PyObject *waiter_send(Waiter *w, PyObject *arg)
{
	return waiter_iternext(w);
}

static PyObject *waiter_self(PyObject *o)
{
	Py_INCREF(o);
	return o;
}

static PyObject *waiter_get_blocking(Waiter *w, void *c)
{
	return PyBool_FromLong(w->blocking);
}

static int waiter_set_blocking(Waiter *w, PyObject *v, void *c)
{
	int b = v ? PyObject_IsTrue(v) : 0;
	if (b < 0)
		return -1;
	w->blocking = b;
	return 0;
}

static PyGetSetDef waiter_getset[] = {
	{"_asyncio_future_blocking", (getter)waiter_get_blocking, (setter)waiter_set_blocking, NULL,
	 NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef waiter_methods[] = {
	{"get_loop", (PyCFunction)waiter_get_loop, METH_NOARGS, NULL},
	{"done", (PyCFunction)waiter_done, METH_NOARGS, NULL},
	{"cancelled", (PyCFunction)waiter_cancelled, METH_NOARGS, NULL},
	{"result", (PyCFunction)waiter_result, METH_NOARGS, NULL},
	{"exception", (PyCFunction)waiter_exception, METH_NOARGS, NULL},
	{"add_done_callback", (PyCFunction)(void (*)(void))waiter_add_done_callback,
	 METH_FASTCALL | METH_KEYWORDS, NULL},
	{"remove_done_callback", (PyCFunction)waiter_remove_done_callback, METH_O, NULL},
	{"cancel", (PyCFunction)(void (*)(void))waiter_cancel, METH_VARARGS | METH_KEYWORDS, NULL},
	{"send", (PyCFunction)waiter_send, METH_O, NULL},
	{NULL, NULL, 0, NULL},
};

static PyAsyncMethods waiter_async = {
	.am_await = (unaryfunc)waiter_self,
	.am_send = (sendfunc)waiter_am_send,
};

PyTypeObject CoreWaiter_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.StreamWaiter",
	.tp_basicsize = sizeof(Waiter),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_doc = "What a stream's task waits on: a minimal asyncio future, done by the reaper.",
	.tp_dealloc = (destructor)waiter_dealloc,
	.tp_traverse = (traverseproc)waiter_traverse,
	.tp_clear = (inquiry)waiter_clear,
	.tp_as_async = &waiter_async,
	.tp_iter = waiter_self,
	.tp_iternext = (iternextfunc)waiter_iternext,
	.tp_methods = waiter_methods,
	.tp_getset = waiter_getset,
};

int core_waiter_init(PyObject *m)
{
	if (!s_call_soon) {
		s_call_soon = PyUnicode_InternFromString("call_soon");
		s_context = PyUnicode_InternFromString("context");
		if (!s_call_soon || !s_context || !(s_kwnames_context = PyTuple_Pack(1, s_context)))
			return -1;
	}
	if (!core_cancelled_error) {
		PyObject *exc = PyImport_ImportModule("asyncio.exceptions");
		if (!exc)
			return -1;
		core_cancelled_error = PyObject_GetAttrString(exc, "CancelledError");
		invalid_state_error = PyObject_GetAttrString(exc, "InvalidStateError");
		Py_DECREF(exc);
		if (!core_cancelled_error || !invalid_state_error)
			return -1;
	}
	if (PyType_Ready(&CoreWaiter_Type) < 0)
		return -1;
	Py_INCREF(&CoreWaiter_Type);
	if (PyModule_AddObject(m, "StreamWaiter", (PyObject *)&CoreWaiter_Type) < 0) {
		Py_DECREF(&CoreWaiter_Type);
		return -1;
	}
	return 0;
}
