/*
 * create()'s eager path: inside a running loop AsyncCompletions.create()
 * submits at once and returns an asyncio future (a Python subclass of
 * asyncio.Future, _client._Eager) that the reaper resolves here with the
 * final response object, so gather, wait_for and ensure_future take it
 * without a Task and no Python frame runs per request once it completes.
 *
 * GC: the future and its handle reference each other while the request
 * is in flight (the future's _h, to cancel it; the handle's token, to
 * resolve it), and the engine holds the handle until its done event is
 * handed out. So both are alive until then whatever the collector
 * finds, and untracking them loses nothing: everything they reference
 * is alive through them anyway. They are not traversed while pending
 * (gather over N calls keeps N of them).
 *
 * When the request completes the cycle is broken (_h and the token
 * cleared). A future resolved with an exception, or cancelled, is tracked
 * again: the exception's traceback can reach frames that hold the future.
 * One resolved with a response is left out: it then references only its
 * loop and the response (its callbacks are gone once scheduled), neither
 * of which references it, so it can be in no cycle, and gather's N
 * finished futures cost full collections nothing. Storing anything on it
 * (_Eager.__setattr__) tracks it again. What is not covered: a cycle made
 * through the future's __dict__ without setattr, or by storing the future
 * on its own response; such a cycle is freed only by reference counts.
 */
#include "_core.h"

struct CoreWindow {
	PyObject_HEAD
	CoreEngine *engine;       /* strong */
	Py_ssize_t limit;         /* this window's requests in the engine at most */
	Py_ssize_t in_engine;     /* submitted, done event not handed out yet */
	Py_ssize_t waiting;
	/* FIFO of the handles waiting for room, linked by eager_next; each
	 * holds one reference (the FIFO's) and its built request. */
	CoreHandle *head, **tail;
};
typedef struct CoreWindow CoreWindow;

/* Set once by set_eager_hooks (strong, kept for good). */
static PyObject *eager_type;      /* _client._Eager */
static PyObject *hook_fail;       /* fail(future, core, handle): sets the exception */
static PyObject *hook_closed;     /* closed(future): ClientClosedError, for one never sent */
static PyObject *hook_outcome[4]; /* by CORE_EAGER_*: (handle, n, model) -> response */

static PyObject *s_h, *s_done, *s_set_result, *s_set_exception;
/* _Eager._h, the slot's descriptor: set through it, not setattr, which
 * _Eager overrides (a store on the future tracks it again). */
static PyObject *h_slot;

static int set_h(PyObject *fut, PyObject *v)
{
	return Py_TYPE(h_slot)->tp_descr_set(h_slot, fut, v);
}

static void track(PyObject *o)
{
	if (!PyObject_GC_IsTracked(o))
		PyObject_GC_Track(o);
}

static int intern_names(void)
{
	if (s_h)
		return 0;
	s_h = PyUnicode_InternFromString("_h");
	s_done = PyUnicode_InternFromString("done");
	s_set_result = PyUnicode_InternFromString("set_result");
	s_set_exception = PyUnicode_InternFromString("set_exception");
	return s_h && s_done && s_set_result && s_set_exception ? 0 : -1;
}

PyObject *core_set_eager_hooks(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"future_type", "fail", "closed", "chat", "completion", "embedding",
	                         NULL};
	PyObject *ft, *fail, *closed, *o[3];
	if (!PyArg_ParseTupleAndKeywords(args, kw, "$OOOOOO:set_eager_hooks", kwlist, &ft, &fail,
	                                 &closed, &o[0], &o[1], &o[2]))
		return NULL;
	if (!PyType_Check(ft) || !PyCallable_Check(fail) || !PyCallable_Check(closed) ||
	    !PyCallable_Check(o[0]) ||
	    !PyCallable_Check(o[1]) || !PyCallable_Check(o[2])) {
		PyErr_SetString(PyExc_TypeError, "set_eager_hooks: a type and callables");
		return NULL;
	}
	if (intern_names() < 0)
		return NULL;
	PyObject *slot = PyObject_GetAttr(ft, s_h);
	if (!slot)
		return NULL;
	if (!Py_TYPE(slot)->tp_descr_set) {
		Py_DECREF(slot);
		PyErr_SetString(PyExc_TypeError, "set_eager_hooks: future_type._h is a slot");
		return NULL;
	}
	Py_XSETREF(h_slot, slot);
	Py_XSETREF(eager_type, Py_NewRef(ft));
	Py_XSETREF(hook_fail, Py_NewRef(fail));
	Py_XSETREF(hook_closed, Py_NewRef(closed));
	for (int i = 0; i < 3; i++)
		Py_XSETREF(hook_outcome[CORE_EAGER_CHAT + i], Py_NewRef(o[i]));
	Py_RETURN_NONE;
}

/* eager(future, handle, core, kind, n, model) -> future: the handle just
 * submitted with the future as its token becomes the future's request.
 * Called before the loop gets a turn, so before its done event can be
 * handed out. */
PyObject *core_eager(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs != 6 || !eager_type || !Py_IS_TYPE(args[0], (PyTypeObject *)eager_type) ||
	    !PyObject_TypeCheck(args[1], &CoreHandle_Type) || !PyLong_Check(args[3]) ||
	    !PyLong_Check(args[4])) {
		PyErr_SetString(PyExc_TypeError, "eager(future, handle, core, kind, n, model)");
		return NULL;
	}
	PyObject *fut = args[0];
	CoreHandle *h = (CoreHandle *)args[1];
	long kind = PyLong_AsLong(args[3]), n = PyLong_AsLong(args[4]);
	if (kind < CORE_EAGER_CHAT || kind > CORE_EAGER_EMBEDDING || h->token != fut) {
		PyErr_SetString(PyExc_ValueError, "eager: a handle submitted with this future as token");
		return NULL;
	}
	if (set_h(fut, (PyObject *)h) < 0)
		return NULL;
	h->eager_kind = (int)kind;
	h->eager_n = n;
	Py_XSETREF(h->eager_core, Py_NewRef(args[2]));
	Py_XSETREF(h->eager_model, Py_NewRef(args[5]));
	/* Both alive through the engine's reference to h until the done
	 * event: see the file's comment. */
	PyObject_GC_UnTrack(fut);
	PyObject_GC_UnTrack(h);
	return Py_NewRef(fut);
}

/* The cycle future <-> handle broken (the caller clears _h): from here on
 * nothing keeps the future alive but its users, so it is tracked again
 * unless the caller resolves it with a response (see the file's comment). */
static void let_go(CoreHandle *h, PyObject *fut, bool tracked)
{
	if (tracked)
		track(fut);
	h->eager_kind = 0;
	Py_CLEAR(h->token);
	Py_CLEAR(h->eager_core);
	Py_CLEAR(h->eager_model);
	Py_CLEAR(h->eager_window);
}

void core_eager_discard(CoreHandle *h)
{
	if (h->eager_kind && h->token)
		let_go(h, h->token, true);
}

/* The outcome, or NULL with its exception set. */
static PyObject *outcome(CoreHandle *h, int kind, long n, PyObject *model)
{
	PyObject *nn = PyLong_FromLong(n);
	if (!nn)
		return NULL;
	PyObject *a[3] = {(PyObject *)h, nn, model};
	PyObject *r = PyObject_Vectorcall(hook_outcome[kind], a, 3, NULL);
	Py_DECREF(nn);
	return r;
}

static void window_refill(CoreWindow *w);

int core_eager_done(CoreHandle *h, PyObject *fut)
{
	int kind = h->eager_kind;
	long n = h->eager_n;
	PyObject *core = h->eager_core, *model = h->eager_model; /* owned here from let_go */
	CoreWindow *w = h->eager_window;                          /* the same */
	h->eager_core = h->eager_model = NULL;
	h->eager_window = NULL;
	let_go(h, fut, false);
	int rc = -1;
	bool untracked = false; /* resolved with a response: left out of the GC */
	PyObject *r = NULL;
	if (set_h(fut, Py_None) < 0)
		goto out;
	PyObject *done = PyObject_CallMethodNoArgs(fut, s_done);
	if (done != Py_False) {
		rc = done ? 0 : -1; /* cancelled by its user meanwhile: nothing to say */
		Py_XDECREF(done);
		goto out;
	}
	Py_DECREF(done);
	const lr_result *res = core_handle_result(h);
	if (!res || res->error) {
		PyObject *a[3] = {fut, core, (PyObject *)h};
		r = PyObject_Vectorcall(hook_fail, a, 3, NULL);
	} else {
		PyObject *o = outcome(h, kind, n, model);
		if (o) {
			r = PyObject_CallMethodOneArg(fut, s_set_result, o);
			untracked = r != NULL;
			Py_DECREF(o);
		} else if (PyErr_ExceptionMatches(PyExc_Exception)) {
			/* Making the response failed (a bug, or out of memory): its
			 * awaiter gets the exception rather than the loop. */
			PyObject *et, *ev, *tb;
			PyErr_Fetch(&et, &ev, &tb);
			PyErr_NormalizeException(&et, &ev, &tb);
			if (tb && ev)
				PyException_SetTraceback(ev, tb);
			r = ev ? PyObject_CallMethodOneArg(fut, s_set_exception, ev) : NULL;
			Py_XDECREF(et);
			Py_XDECREF(ev);
			Py_XDECREF(tb);
		}
	}
	rc = r ? 0 : -1;
	Py_XDECREF(r);
out:
	if (!untracked)
		track(fut);
	if (w) {
		/* Room for the next waiting request, sent now: after the future
		 * is resolved, so its callbacks come first in the loop's queue. */
		w->in_engine--;
		PyObject *et, *ev, *tb;
		PyErr_Fetch(&et, &ev, &tb);
		window_refill(w);
		PyErr_Restore(et, ev, tb);
		Py_DECREF(w);
	}
	Py_XDECREF(core);
	Py_XDECREF(model);
	return rc;
}

/* track(future): a resolved future left out of the GC is tracked again
 * (_Eager.__setattr__: something is stored on it, which could make a cycle). */
PyObject *core_eager_track(PyObject *self, PyObject *o)
{
	if (PyObject_IS_GC(o))
		track(o);
	Py_RETURN_NONE;
}

/* ---- the window ----------------------------------------------------------- */

PyObject *core_window_submit(PyObject *wo, CoreHandle *h, lr_request *rq)
{
	CoreWindow *w = (CoreWindow *)wo;
	Py_INCREF(w);
	Py_XSETREF(h->eager_window, w);
	if (w->in_engine < w->limit && !w->head) {
		w->in_engine++;
		Py_INCREF(w); /* h may go with a failed start */
		PyObject *r = core_handle_start(h, lr_submit(w->engine->eng, rq));
		if (!r)
			w->in_engine--;
		Py_DECREF(w);
		return r;
	}
	/* Built now (what create() was given is what is sent), submitted when
	 * a done event makes room. */
	h->eager_rq = rq;
	h->eager_next = NULL;
	*w->tail = h;
	w->tail = &h->eager_next;
	w->waiting++;
	Py_INCREF(h); /* owner: the FIFO */
	return (PyObject *)h;
}

static CoreHandle *window_pop(CoreWindow *w)
{
	CoreHandle *h = w->head;
	w->head = h->eager_next;
	if (!w->head)
		w->tail = &w->head;
	h->eager_next = NULL;
	w->waiting--;
	return h;
}

/* A waiting handle that will not be sent: its future resolved with
 * ClientClosedError unless done already (cancelled), then let go. */
static int waiting_done(CoreHandle *h);

static void window_drop(CoreHandle *h, bool closed)
{
	if (closed && waiting_done(h))
		closed = false; /* cancelled while it waited: nothing to say */
	lr_request_free(h->eager_rq);
	h->eager_rq = NULL;
	PyObject *fut = h->token ? Py_NewRef(h->token) : NULL;
	if (fut && h->eager_kind) {
		let_go(h, fut, true);
		if (set_h(fut, Py_None) < 0)
			PyErr_Clear();
		if (closed) {
			PyObject *r = PyObject_CallOneArg(hook_closed, fut);
			if (!r)
				PyErr_WriteUnraisable(fut);
			Py_XDECREF(r);
		}
	}
	Py_XDECREF(fut);
	Py_DECREF(h); /* the FIFO's */
}

/* 1 when the future of a waiting handle is done (cancelled while it waited). */
static int waiting_done(CoreHandle *h)
{
	if (!h->token)
		return 1;
	PyObject *d = PyObject_CallMethodNoArgs(h->token, s_done);
	int r = d != Py_False;
	if (!d)
		PyErr_Clear();
	Py_XDECREF(d);
	return r;
}

/* Sends waiting requests while there is room; the engine closed, they
 * fail with ClientClosedError. Under the GIL, no exception set. */
static void window_refill(CoreWindow *w)
{
	while (w->head && w->in_engine < w->limit) {
		CoreHandle *h = window_pop(w);
		if (waiting_done(h)) {
			window_drop(h, false);
			continue;
		}
		if (!w->engine->eng || w->engine->gen != core_fork_gen) {
			window_drop(h, true);
			continue;
		}
		lr_request *rq = h->eager_rq;
		h->eager_rq = NULL;
		w->in_engine++;
		Py_INCREF(h); /* the start takes the FIFO's on failure */
		PyObject *r = core_handle_start(h, lr_submit(w->engine->eng, rq));
		if (r) {
			Py_DECREF(r); /* the FIFO's: the engine holds its own now */
		} else {
			/* Out of memory: its awaiter gets the exception. */
			w->in_engine--;
			PyObject *et, *ev, *tb;
			PyErr_Fetch(&et, &ev, &tb);
			PyErr_NormalizeException(&et, &ev, &tb);
			PyObject *fut = h->token ? Py_NewRef(h->token) : NULL;
			if (fut && h->eager_kind) {
				let_go(h, fut, true);
				if (set_h(fut, Py_None) < 0)
					PyErr_Clear();
				PyObject *x = ev ? PyObject_CallMethodOneArg(fut, s_set_exception, ev) : NULL;
				if (!x)
					PyErr_Clear();
				Py_XDECREF(x);
			}
			Py_XDECREF(fut);
			Py_XDECREF(et);
			Py_XDECREF(ev);
			Py_XDECREF(tb);
		}
		Py_DECREF(h);
	}
}

static PyObject *Window_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"engine", "limit", NULL};
	PyObject *eng;
	Py_ssize_t limit;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O!n:EagerWindow", kwlist, &CoreEngine_Type, &eng,
	                                 &limit))
		return NULL;
	if (limit < 1) {
		PyErr_SetString(PyExc_ValueError, "EagerWindow: limit must be at least 1");
		return NULL;
	}
	if (intern_names() < 0)
		return NULL;
	CoreWindow *w = (CoreWindow *)type->tp_alloc(type, 0);
	if (!w)
		return NULL;
	w->engine = (CoreEngine *)Py_NewRef(eng);
	w->limit = limit;
	w->tail = &w->head;
	return (PyObject *)w;
}

/* close(): every waiting request fails with ClientClosedError (after
 * client.close(), whose cancels may not all reach this window's loop). */
static PyObject *Window_close(CoreWindow *w, PyObject *unused)
{
	while (w->head)
		window_drop(window_pop(w), true);
	Py_RETURN_NONE;
}

static void Window_dealloc(CoreWindow *w)
{
	/* Only when nothing refers to it: no handle waits (each holds it). */
	while (w->head)
		window_drop(window_pop(w), false);
	Py_XDECREF(w->engine);
	Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *Window_get_in_engine(CoreWindow *w, void *c)
{
	return PyLong_FromSsize_t(w->in_engine);
}

static PyObject *Window_get_waiting(CoreWindow *w, void *c)
{
	return PyLong_FromSsize_t(w->waiting);
}

static PyMethodDef Window_methods[] = {
	{"close", (PyCFunction)Window_close, METH_NOARGS,
	 "Every waiting request fails with ClientClosedError (its future resolved)."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef Window_getset[] = {
	{"in_engine", (getter)Window_get_in_engine, NULL, "Requests submitted, not handed out yet.", NULL},
	{"waiting", (getter)Window_get_waiting, NULL, "Requests built, waiting for room.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject CoreWindow_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.EagerWindow",
	.tp_basicsize = sizeof(CoreWindow),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "EagerWindow(engine, limit): at most limit of a reaper's create() requests in the "
	          "engine at once; the others wait, built, and are sent as done events make room.",
	.tp_new = Window_new,
	.tp_dealloc = (destructor)Window_dealloc,
	.tp_methods = Window_methods,
	.tp_getset = Window_getset,
};

int core_eager_init(PyObject *m)
{
	if (PyType_Ready(&CoreWindow_Type) < 0)
		return -1;
	Py_INCREF(&CoreWindow_Type);
	if (PyModule_AddObject(m, "EagerWindow", (PyObject *)&CoreWindow_Type) < 0) {
		Py_DECREF(&CoreWindow_Type);
		return -1;
	}
	return 0;
}
