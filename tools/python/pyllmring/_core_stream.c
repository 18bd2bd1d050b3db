/*
 * _core.AsyncStreamBase: the per-event part of pyllmring.AsyncStream in C.
 * The reaper hands each delta to _delta (queue it, wake the waiter) and
 * `async for` calls __anext__, which returns the next chunk in a Ready
 * awaitable while the queue holds one: no Python frame per event. With the
 * queue empty it defers to the subclass's _next_slow() coroutine (waits,
 * the tail, the end), which is also where everything else lives.
 */
#include <stddef.h>
#include "_core.h"

#include <structmember.h>

typedef struct {
	PyObject_HEAD
	PyObject *q;              /* strong: a collections.deque of deltas, or NULL */
	PyObject *waiter;         /* strong: the future _wait awaits, or NULL / None */
	PyObject *id, *model, *created; /* strong: the chunks' fields */
	PyObject *weakrefs;       /* the subclass's weak references */
} StreamBase;

static PyObject *s_append, *s_popleft, *s_next_slow, *s_done, *s_set_result;

static int stream_traverse(StreamBase *s, visitproc visit, void *arg)
{
	Py_VISIT(s->q);
	Py_VISIT(s->waiter);
	Py_VISIT(s->id);
	Py_VISIT(s->model);
	Py_VISIT(s->created);
	return 0;
}

static int stream_clear(StreamBase *s)
{
	Py_CLEAR(s->q);
	Py_CLEAR(s->waiter);
	Py_CLEAR(s->id);
	Py_CLEAR(s->model);
	Py_CLEAR(s->created);
	return 0;
}

static void stream_dealloc(StreamBase *s)
{
	PyObject_GC_UnTrack(s);
	if (s->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)s);
	stream_clear(s);
	Py_TYPE(s)->tp_free((PyObject *)s);
}

/* Resolves the waiter, if any (the loop's thread, under the GIL). */
static int wake(StreamBase *s)
{
	PyObject *w = s->waiter;
	if (!w || w == Py_None)
		return 0;
	s->waiter = NULL; /* our reference, dropped below */
	PyObject *done = PyObject_CallMethodNoArgs(w, s_done);
	int rc = done ? 0 : -1;
	if (done == Py_False) {
		PyObject *r = PyObject_CallMethodOneArg(w, s_set_result, Py_None);
		rc = r ? 0 : -1;
		Py_XDECREF(r);
	}
	Py_XDECREF(done);
	Py_DECREF(w);
	return rc;
}

static PyObject *stream_delta(StreamBase *s, PyObject *d)
{
	if (!s->q) {
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: the stream has no queue");
		return NULL;
	}
	PyObject *r = PyObject_CallMethodOneArg(s->q, s_append, d);
	if (!r)
		return NULL;
	Py_DECREF(r);
	if (wake(s) < 0)
		return NULL;
	Py_RETURN_NONE;
}

PyObject *core_stream_delta(PyObject *stream, PyObject *d)
{
	return stream_delta((StreamBase *)stream, d);
}

static PyObject *stream_wake(StreamBase *s, PyObject *unused)
{
	if (wake(s) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *stream_anext(StreamBase *s)
{
	Py_ssize_t n = s->q ? PyObject_Size(s->q) : 0;
	if (n < 0)
		return NULL;
	if (n == 0)
		return PyObject_CallMethodNoArgs((PyObject *)s, s_next_slow);
	PyObject *d = PyObject_CallMethodNoArgs(s->q, s_popleft);
	if (!d)
		return NULL;
	PyObject *chunk = core_chunk_new(s->id ? s->id : Py_None, s->model ? s->model : Py_None,
	                                 s->created ? s->created : Py_None, d);
	Py_DECREF(d);
	if (!chunk)
		return NULL;
	PyObject *ready = core_ready_new(chunk);
	Py_DECREF(chunk);
	return ready;
}

static PyObject *stream_aiter(PyObject *s)
{
	Py_INCREF(s);
	return s;
}

#define MEMBER(name, field) {name, T_OBJECT, offsetof(StreamBase, field), 0, NULL}
static PyMemberDef stream_members[] = {
	MEMBER("_q", q), MEMBER("_waiter", waiter), MEMBER("_id", id), MEMBER("_model", model),
	MEMBER("_created", created), {NULL, 0, 0, 0, NULL},
};

static PyMethodDef stream_methods[] = {
	{"_delta", (PyCFunction)stream_delta, METH_O, "_delta(d): queues d, wakes the waiter."},
	{"_wake", (PyCFunction)stream_wake, METH_NOARGS, "Resolves the waiter, if any."},
	{NULL, NULL, 0, NULL},
};

static PyAsyncMethods stream_async = {
	.am_aiter = (unaryfunc)stream_aiter,
	.am_anext = (unaryfunc)stream_anext,
};

PyTypeObject CoreStream_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.AsyncStreamBase",
	.tp_basicsize = sizeof(StreamBase),
	.tp_weaklistoffset = offsetof(StreamBase, weakrefs),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
	.tp_doc = "The per-event part of AsyncStream: _delta, __aiter__, __anext__.",
	.tp_dealloc = (destructor)stream_dealloc,
	.tp_traverse = (traverseproc)stream_traverse,
	.tp_clear = (inquiry)stream_clear,
	.tp_as_async = &stream_async,
	.tp_new = PyType_GenericNew,
	.tp_members = stream_members,
	.tp_methods = stream_methods,
};

int core_stream_init(PyObject *m)
{
	if (!s_append) {
		s_append = PyUnicode_InternFromString("append");
		s_popleft = PyUnicode_InternFromString("popleft");
		s_next_slow = PyUnicode_InternFromString("_next_slow");
		s_done = PyUnicode_InternFromString("done");
		s_set_result = PyUnicode_InternFromString("set_result");
		if (!s_append || !s_popleft || !s_next_slow || !s_done || !s_set_result)
			return -1;
	}
	if (PyType_Ready(&CoreStream_Type) < 0)
		return -1;
	Py_INCREF(&CoreStream_Type);
	if (PyModule_AddObject(m, "AsyncStreamBase", (PyObject *)&CoreStream_Type) < 0) {
		Py_DECREF(&CoreStream_Type);
		return -1;
	}
	return 0;
}
