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
 * (gather over N calls keeps N of them), and the future is tracked again
 * when it is resolved, once the cycle is broken (_h and the token
 * cleared), from which point it may take part in a user's garbage cycle
 * (a result or an exception with its traceback).
 */
#include "_core.h"

/* Set once by set_eager_hooks (strong, kept for good). */
static PyObject *eager_type;      /* _client._Eager */
static PyObject *hook_fail;       /* fail(future, core, handle): sets the exception */
static PyObject *hook_outcome[4]; /* by CORE_EAGER_*: (handle, n, model) -> response */

static PyObject *s_h, *s_done, *s_set_result, *s_set_exception;

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
	static char *kwlist[] = {"future_type", "fail", "chat", "completion", "embedding", NULL};
	PyObject *ft, *fail, *o[3];
	if (!PyArg_ParseTupleAndKeywords(args, kw, "$OOOOO:set_eager_hooks", kwlist, &ft, &fail,
	                                 &o[0], &o[1], &o[2]))
		return NULL;
	if (!PyType_Check(ft) || !PyCallable_Check(fail) || !PyCallable_Check(o[0]) ||
	    !PyCallable_Check(o[1]) || !PyCallable_Check(o[2])) {
		PyErr_SetString(PyExc_TypeError, "set_eager_hooks: a type and callables");
		return NULL;
	}
	if (intern_names() < 0)
		return NULL;
	Py_XSETREF(eager_type, Py_NewRef(ft));
	Py_XSETREF(hook_fail, Py_NewRef(fail));
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
	if (PyObject_SetAttr(fut, s_h, (PyObject *)h) < 0)
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

/* The cycle future <-> handle broken and the future tracked again: from
 * here on nothing keeps it alive but its users. */
static void let_go(CoreHandle *h, PyObject *fut)
{
	if (!PyObject_GC_IsTracked(fut))
		PyObject_GC_Track(fut);
	h->eager_kind = 0;
	Py_CLEAR(h->token);
	Py_CLEAR(h->eager_core);
	Py_CLEAR(h->eager_model);
}

void core_eager_discard(CoreHandle *h)
{
	if (h->eager_kind && h->token)
		let_go(h, h->token);
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

int core_eager_done(CoreHandle *h, PyObject *fut)
{
	int kind = h->eager_kind;
	long n = h->eager_n;
	PyObject *core = h->eager_core, *model = h->eager_model; /* owned here from let_go */
	h->eager_core = h->eager_model = NULL;
	let_go(h, fut);
	int rc = -1;
	PyObject *r = NULL;
	if (PyObject_SetAttr(fut, s_h, Py_None) < 0)
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
	Py_XDECREF(core);
	Py_XDECREF(model);
	return rc;
}
