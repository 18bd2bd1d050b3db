/*
 * _core.AsyncStreamBase: the per-event part of pyllmring.AsyncStream in C.
 * The reaper hands each delta to core_stream_delta (queue it in the
 * stream's ring, wake the waiter). `async for` calls __anext__, which
 * returns the stream's one StreamNext awaitable: while the queue holds a delta, awaiting it gives
 * the chunk at once (am_send, no exception, no frame, no allocation but the
 * chunk); with the queue empty it yields a StreamWaiter to the task and
 * tries again when resumed; once the request ended it calls the subclass's
 * _end() (the usage chunk, the error, StopAsyncIteration).
 *
 * The StreamWaiter is in _core_waiter.c.
 */
#include <stddef.h>
#include "_core_waiter.h"

#include <structmember.h>

static PyObject *s_end, *s_done, *s_set_result, *s_cancel_req;

static PyObject *self_ref(PyObject *o)
{
	Py_INCREF(o);
	return o;
}

/* ---- AsyncStreamBase -------------------------------------------------------------- */

typedef struct {
	PyObject_HEAD
	/* The deltas not yet read, a ring: owner the stream (PyMem), items
	 * strong; rlen of them from rhead on, rcap slots. */
	PyObject **ring;
	Py_ssize_t rhead, rlen, rcap;
	PyObject *waiter;         /* strong: what the task waits on, or NULL / None */
	PyObject *id, *model, *created; /* strong: the chunks' fields */
	PyObject *loop;           /* strong: the loop the stream's reaper runs on */
	PyObject *handle;         /* strong: the completed request's handle, or NULL / None */
	PyObject *closed;         /* strong: close() was called (a bool), or NULL */
	PyObject *next;           /* strong: the StreamNext __anext__ gives, made once */
	PyObject *weakrefs;       /* the subclass's weak references */
} StreamBase;

typedef struct {
	PyObject_HEAD
	StreamBase *s;            /* strong */
} StreamNext;

static PyTypeObject StreamNext_Type;

static int stream_traverse(StreamBase *s, visitproc visit, void *arg)
{
	for (Py_ssize_t i = 0; i < s->rlen; i++)
		Py_VISIT(s->ring[(s->rhead + i) % s->rcap]);
	Py_VISIT(s->waiter);
	Py_VISIT(s->id);
	Py_VISIT(s->model);
	Py_VISIT(s->created);
	Py_VISIT(s->loop);
	Py_VISIT(s->handle);
	Py_VISIT(s->closed);
	Py_VISIT(s->next);
	return 0;
}

/* Drops every queued delta (the ring's slots kept). */
static void ring_clear(StreamBase *s)
{
	while (s->rlen > 0) {
		PyObject *d = s->ring[s->rhead];
		s->rhead = (s->rhead + 1) % s->rcap;
		s->rlen--;
		Py_DECREF(d);
	}
	s->rhead = 0;
}

static int ring_push(StreamBase *s, PyObject *d)
{
	if (s->rlen == s->rcap) {
		Py_ssize_t cap = s->rcap ? s->rcap * 2 : 8;
		PyObject **r = PyMem_New(PyObject *, cap);
		if (!r) {
			PyErr_NoMemory();
			return -1;
		}
		for (Py_ssize_t i = 0; i < s->rlen; i++)
			r[i] = s->ring[(s->rhead + i) % s->rcap];
		PyMem_Free(s->ring);
		s->ring = r;
		s->rcap = cap;
		s->rhead = 0;
	}
	Py_INCREF(d);
	s->ring[(s->rhead + s->rlen) % s->rcap] = d;
	s->rlen++;
	return 0;
}

/* The oldest delta (a new reference); the ring is not empty. */
static PyObject *ring_pop(StreamBase *s)
{
	PyObject *d = s->ring[s->rhead];
	s->rhead = (s->rhead + 1) % s->rcap;
	s->rlen--;
	return d;
}

static int stream_clear(StreamBase *s)
{
	ring_clear(s);
	Py_CLEAR(s->waiter);
	Py_CLEAR(s->id);
	Py_CLEAR(s->model);
	Py_CLEAR(s->created);
	Py_CLEAR(s->loop);
	Py_CLEAR(s->handle);
	Py_CLEAR(s->closed);
	Py_CLEAR(s->next);
	return 0;
}

static void stream_dealloc(StreamBase *s)
{
	PyObject_GC_UnTrack(s);
	if (s->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)s);
	stream_clear(s);
	PyMem_Free(s->ring);
	Py_TYPE(s)->tp_free((PyObject *)s);
}

/* Resolves the waiter, if any (the loop's thread, under the GIL): a
 * StreamWaiter is marked done and its task resumed by the reap (woken) or
 * scheduled; any other future gets set_result(None). */
static int wake(StreamBase *s, PyObject *woken)
{
	PyObject *w = s->waiter;
	if (!w || w == Py_None)
		return 0;
	s->waiter = NULL; /* our reference, dropped below */
	int rc = 0;
	if (Py_IS_TYPE(w, &CoreWaiter_Type)) {
		Waiter *sw = (Waiter *)w;
		if (sw->state == W_PENDING) {
			sw->state = W_DONE;
			if (!sw->cb && !sw->more)
				rc = 0; /* nobody awaits it yet */
			else if (woken)
				rc = PyList_Append(woken, w);
			else
				rc = core_waiter_schedule(sw);
		}
	} else {
		PyObject *done = PyObject_CallMethodNoArgs(w, s_done);
		rc = done ? 0 : -1;
		if (done == Py_False) {
			PyObject *r = PyObject_CallMethodOneArg(w, s_set_result, Py_None);
			rc = r ? 0 : -1;
			Py_XDECREF(r);
		}
		Py_XDECREF(done);
	}
	Py_DECREF(w);
	return rc;
}

int core_stream_delta(PyObject *stream, PyObject *d, PyObject *woken)
{
	StreamBase *s = (StreamBase *)stream;
	if (ring_push(s, d) < 0)
		return -1;
	return wake(s, woken);
}

int core_stream_wake(PyObject *stream, PyObject *woken)
{
	return wake((StreamBase *)stream, woken);
}

static PyObject *stream_delta_m(StreamBase *s, PyObject *d)
{
	if (core_stream_delta((PyObject *)s, d, NULL) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *stream_wake_m(StreamBase *s, PyObject *unused)
{
	if (wake(s, NULL) < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* A new waiter, kept as the stream's (what the reaper wakes). */
static PyObject *stream_new_waiter(StreamBase *s)
{
	if (!s->loop || s->loop == Py_None) {
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: the stream has no loop");
		return NULL;
	}
	Waiter *w = core_waiter_new(s->loop);
	if (!w)
		return NULL;
	Py_INCREF(w);
	Py_XSETREF(s->waiter, (PyObject *)w);
	return (PyObject *)w;
}

static PyObject *stream_new_waiter_m(StreamBase *s, PyObject *unused)
{
	return stream_new_waiter(s);
}

static PyObject *stream_queued(StreamBase *s, void *c)
{
	return PyLong_FromSsize_t(s->rlen);
}

static PyObject *stream_clear_queue_m(StreamBase *s, PyObject *unused)
{
	ring_clear(s);
	Py_RETURN_NONE;
}

/* close(): the StreamNext is let go (it references the stream). */
static PyObject *stream_release_m(StreamBase *s, PyObject *unused)
{
	Py_CLEAR(s->next);
	Py_RETURN_NONE;
}

static PyObject *stream_anext(StreamBase *s)
{
	if (!s->next) {
		StreamNext *n = PyObject_GC_New(StreamNext, &StreamNext_Type);
		if (!n)
			return NULL;
		Py_INCREF(s);
		n->s = s;
		PyObject_GC_Track(n);
		s->next = (PyObject *)n;
	}
	Py_INCREF(s->next);
	return s->next;
}

static PyObject *stream_aiter(PyObject *s)
{
	Py_INCREF(s);
	return s;
}

/* ---- StreamNext: awaiting the next chunk ------------------------------------------- */

static int next_traverse(StreamNext *n, visitproc visit, void *arg)
{
	Py_VISIT(n->s);
	return 0;
}

static int next_clear(StreamNext *n)
{
	Py_CLEAR(n->s);
	return 0;
}

static void next_dealloc(StreamNext *n)
{
	PyObject_GC_UnTrack(n);
	next_clear(n);
	PyObject_GC_Del(n);
}

/* The queued delta's chunk, the end (_end(): the tail chunk or an
 * exception), or a waiter yielded to the task (resumed: tried again). */
static PySendResult next_am_send(StreamNext *n, PyObject *arg, PyObject **result)
{
	StreamBase *s = n->s;
	*result = NULL;
	if (!s)
		return PYGEN_ERROR; /* cleared by the GC */
	if (s->rlen > 0) {
		PyObject *d = ring_pop(s);
		*result = core_chunk_new(s->id ? s->id : Py_None, s->model ? s->model : Py_None,
		                         s->created ? s->created : Py_None, d);
		Py_DECREF(d);
		return *result ? PYGEN_RETURN : PYGEN_ERROR;
	}
	if ((s->handle && s->handle != Py_None) || s->closed == Py_True) {
		*result = PyObject_CallMethodNoArgs((PyObject *)s, s_end);
		if (!*result)
			Py_CLEAR(s->next); /* the end: the stream lets go of n (no cycle) */
		return *result ? PYGEN_RETURN : PYGEN_ERROR;
	}
	PyObject *w = stream_new_waiter(s);
	if (!w)
		return PYGEN_ERROR;
	((Waiter *)w)->blocking = 1;
	*result = w;
	return PYGEN_NEXT;
}

static PyObject *next_iternext(StreamNext *n)
{
	PyObject *r;
	PySendResult st = next_am_send(n, Py_None, &r);
	if (st == PYGEN_RETURN) {
		_PyGen_SetStopIterationValue(r);
		Py_DECREF(r);
		return NULL;
	}
	return st == PYGEN_NEXT ? r : NULL;
}

static PyObject *next_send(StreamNext *n, PyObject *arg)
{
	return next_iternext(n);
}

/* An exception thrown in while waiting is raised on; the task cancelled
 * (CancelledError) also drops the waiter and cancels the request
 * (_cancel), as cancelling mid-stream does. */
static PyObject *next_throw(StreamNext *n, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs < 1 || nargs > 3) {
		PyErr_SetString(PyExc_TypeError, "throw(type[, value[, traceback]])");
		return NULL;
	}
	PyObject *typ = args[0], *val = nargs > 1 ? args[1] : NULL, *tb = nargs > 2 ? args[2] : NULL;
	StreamBase *s = n->s;
	if (s && PyErr_GivenExceptionMatches(typ, core_cancelled_error)) {
		Py_CLEAR(s->waiter);
		PyObject *r = PyObject_CallMethodNoArgs((PyObject *)s, s_cancel_req);
		if (!r)
			return NULL;
		Py_DECREF(r);
	}
	if (PyExceptionInstance_Check(typ)) {
		PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
	} else if (PyExceptionClass_Check(typ)) {
		PyErr_SetObject(typ, val && val != Py_None ? val : NULL);
	} else {
		PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
		return NULL;
	}
	if (tb && tb != Py_None && PyTraceBack_Check(tb)) {
		PyObject *et, *ev, *etb;
		PyErr_Fetch(&et, &ev, &etb);
		Py_XDECREF(etb);
		Py_INCREF(tb);
		PyErr_Restore(et, ev, tb);
	}
	return NULL;
}

/* The awaiting coroutine was closed: the waiter is dropped. */
static PyObject *next_close(StreamNext *n, PyObject *unused)
{
	if (n->s)
		Py_CLEAR(n->s->waiter);
	Py_RETURN_NONE;
}

static PyMethodDef next_methods[] = {
	{"send", (PyCFunction)next_send, METH_O, NULL},
	{"throw", (PyCFunction)(void (*)(void))next_throw, METH_FASTCALL, NULL},
	{"close", (PyCFunction)next_close, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyAsyncMethods next_async = {
	.am_await = (unaryfunc)self_ref,
	.am_send = (sendfunc)next_am_send,
};

static PyTypeObject StreamNext_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.StreamNext",
	.tp_basicsize = sizeof(StreamNext),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_doc = "What AsyncStreamBase.__anext__ returns: awaiting it gives the next chunk.",
	.tp_dealloc = (destructor)next_dealloc,
	.tp_traverse = (traverseproc)next_traverse,
	.tp_clear = (inquiry)next_clear,
	.tp_as_async = &next_async,
	.tp_iter = self_ref,
	.tp_iternext = (iternextfunc)next_iternext,
	.tp_methods = next_methods,
};

#define MEMBER(name, field) {name, T_OBJECT, offsetof(StreamBase, field), 0, NULL}
static PyMemberDef stream_members[] = {
	MEMBER("_waiter", waiter), MEMBER("_id", id), MEMBER("_model", model),
	MEMBER("_created", created), MEMBER("_loop", loop), MEMBER("_handle", handle),
	MEMBER("_closed", closed), {NULL, 0, 0, 0, NULL},
};

static PyMethodDef stream_methods[] = {
	{"_delta", (PyCFunction)stream_delta_m, METH_O, "_delta(d): queues d, wakes the waiter."},
	{"_wake", (PyCFunction)stream_wake_m, METH_NOARGS, "Resolves the waiter, if any."},
	{"_new_waiter", (PyCFunction)stream_new_waiter_m, METH_NOARGS,
	 "A new waiter on the stream's loop, kept as the one the reaper wakes."},
	{"_clear_queue", (PyCFunction)stream_clear_queue_m, METH_NOARGS, "Drops the queued deltas."},
	{"_release", (PyCFunction)stream_release_m, METH_NOARGS,
	 "Lets go of the awaitable __anext__ gives (a reference cycle otherwise)."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef stream_getset[] = {
	{"_queued", (getter)stream_queued, NULL, "How many deltas are queued.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
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
	.tp_getset = stream_getset,
};

static int intern_all(void)
{
	struct {
		PyObject **p;
		const char *s;
	} names[] = {
		{&s_end, "_end"}, {&s_done, "done"}, {&s_set_result, "set_result"},
		{&s_cancel_req, "_cancel"},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!*names[i].p && !(*names[i].p = PyUnicode_InternFromString(names[i].s)))
			return -1;
	return 0;
}

int core_stream_init(PyObject *m)
{
	if (intern_all() < 0 || core_waiter_init(m) < 0)
		return -1;
	if (PyType_Ready(&StreamNext_Type) < 0 || PyType_Ready(&CoreStream_Type) < 0)
		return -1;
	Py_INCREF(&CoreStream_Type);
	if (PyModule_AddObject(m, "AsyncStreamBase", (PyObject *)&CoreStream_Type) < 0) {
		Py_DECREF(&CoreStream_Type);
		return -1;
	}
	return 0;
}
