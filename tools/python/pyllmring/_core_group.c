/*
 * _core.BatchGroup and _core.BatchSlot: client.batch, as_completed and
 * batch_completion without a Python frame per item. The group takes items
 * from their iterable as room frees up (at most `window` in the engine at
 * once, so memory follows the window, not the input) and keeps each
 * outcome at its index (batch) or in a FIFO of (index, outcome) pairs
 * (as_completed). A slot is one item's token: the channel's dispatch
 * calls its _done (C), which stores the outcome, refills the window in
 * steps and wakes the group's waiter. Python runs only for what the C
 * path hands over: an item with per-call options (the submit_python
 * hook) and a failed request's exception (from_handle).
 *
 * Why this file is long: the two types share the group's private struct
 * and its live list, and a paced group sets its channel's want (pace);
 * splitting them would put that struct in a header for one other file.
 */
#include "_core.h"

#include <stdlib.h>
#include <string.h>

typedef struct CoreSlot CoreSlot;

typedef struct {
	PyObject_HEAD
	PyObject *core;           /* strong: the _client._Core (its .closed) */
	CoreEngine *engine;       /* strong */
	CoreChannel *chan;        /* strong */
	PyObject *iter;           /* strong: the items' iterator, kept till the end */
	PyObject *default_model;  /* strong */
	PyObject *headers;        /* strong: the client's default headers, or None */
	PyObject *common;         /* strong, or NULL: batch_completion's kwargs, items are messages */
	int common_fast;          /* common holds no per-call option */
	int as_completed;         /* outcomes go to the FIFO, not to results */
	PyObject *results;        /* strong list, by index (batch mode) */
	struct {                  /* as_completed: outcomes not yet taken */
		Py_ssize_t *index;    /* owner: the group */
		PyObject **outcome;   /* owner: the group; strong references */
		Py_ssize_t head, count, cap;
	} fifo;
	CoreSlot *live;           /* the slots in the engine: a list holding a reference to each */
	Py_ssize_t nlive, next_index, window, step;
	int exhausted;            /* no item left to take */
	Py_ssize_t pace;          /* pace()'s in_flight, or 0: the channel's want left alone */
	PyObject *failure;        /* strong: the exception the iterator raised, or NULL */
	PyObject *waiter;         /* strong: the future to wake, or NULL */
	unsigned gen;
} CoreGroup;

struct CoreSlot {
	PyObject_HEAD
	CoreGroup *group;         /* strong while in the group's live list, else NULL */
	PyObject *handle;         /* strong while live (the handle holds the slot: broken at done) */
	PyObject *model;          /* strong while live */
	CoreSlot *prev, *next;    /* the live list (the group's reference) */
	Py_ssize_t index;
	long n;
};

static PyTypeObject CoreGroup_Type, CoreSlot_Type;

/* set_batch_hooks(): owner: the module, each kept until replaced. */
static PyObject *hook_submit_python, *hook_from_handle, *hook_closed_error, *hook_chat;

static PyObject *s_closed, *s_error, *s_cancel, *s_done, *s_set_result;

static int intern_names(void)
{
	if (s_closed)
		return 0;
	s_closed = PyUnicode_InternFromString("closed");
	s_error = PyUnicode_InternFromString("error");
	s_cancel = PyUnicode_InternFromString("cancel");
	s_done = PyUnicode_InternFromString("done");
	s_set_result = PyUnicode_InternFromString("set_result");
	return s_closed && s_error && s_cancel && s_done && s_set_result ? 0 : -1;
}

/* ---- the live list ------------------------------------------------------ */

static void live_link(CoreGroup *g, CoreSlot *s)
{
	Py_INCREF(s); /* the list's */
	Py_INCREF(g);
	s->group = g;
	s->prev = NULL;
	s->next = g->live;
	if (g->live)
		g->live->prev = s;
	g->live = s;
	g->nlive++;
}

/* Takes s off the list; the list's reference is the caller's to drop,
 * and so is the slot's reference to the group (returned). */
static CoreGroup *live_unlink(CoreSlot *s)
{
	CoreGroup *g = s->group;
	if (s->prev)
		s->prev->next = s->next;
	else
		g->live = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	s->group = NULL;
	g->nlive--;
	return g;
}

/* ---- the as_completed FIFO ---------------------------------------------- */

/* Steals outcome. 0, or -1 with MemoryError (outcome dropped). */
static int fifo_push(CoreGroup *g, Py_ssize_t i, PyObject *outcome)
{
	if (g->fifo.count == g->fifo.cap) {
		Py_ssize_t cap = g->fifo.cap ? 2 * g->fifo.cap : 64;
		Py_ssize_t *ix = malloc((size_t)cap * sizeof(*ix));     /* owner: the group */
		PyObject **oc = malloc((size_t)cap * sizeof(*oc));      /* owner: the group */
		if (!ix || !oc) {
			free(ix);
			free(oc);
			Py_DECREF(outcome);
			PyErr_NoMemory();
			return -1;
		}
		for (Py_ssize_t k = 0; k < g->fifo.count; k++) {
			Py_ssize_t at = (g->fifo.head + k) % g->fifo.cap;
			ix[k] = g->fifo.index[at];
			oc[k] = g->fifo.outcome[at];
		}
		free(g->fifo.index);
		free(g->fifo.outcome);
		g->fifo.index = ix;
		g->fifo.outcome = oc;
		g->fifo.head = 0;
		g->fifo.cap = cap;
	}
	Py_ssize_t at = (g->fifo.head + g->fifo.count) % g->fifo.cap;
	g->fifo.index[at] = i;
	g->fifo.outcome[at] = outcome;
	g->fifo.count++;
	return 0;
}

/* The outcome of item i, stolen: at its index, or queued. 0 or -1. */
static int place(CoreGroup *g, Py_ssize_t i, PyObject *outcome)
{
	if (g->as_completed)
		return fifo_push(g, i, outcome);
	if (!g->results) { /* cleared by the collector meanwhile */
		Py_DECREF(outcome);
		return 0;
	}
	PyObject *old = PyList_GET_ITEM(g->results, i); /* None, from fill */
	PyList_SET_ITEM(g->results, i, outcome);
	Py_DECREF(old);
	return 0;
}

/* ---- submitting one item ------------------------------------------------- */

static int core_closed(CoreGroup *g)
{
	if (!g->core)
		return 1; /* cleared by the collector */
	PyObject *c = PyObject_GetAttr(g->core, s_closed);
	if (!c)
		return -1;
	int r = PyObject_IsTrue(c);
	Py_DECREF(c);
	return r;
}

static PyObject *closed_error(void)
{
	PyObject *args = Py_BuildValue("(s)", "the client is closed");
	PyObject *kw = Py_BuildValue("{s:s}", "code", "cancelled");
	PyObject *e = args && kw ? PyObject_Call(hook_closed_error, args, kw) : NULL;
	Py_XDECREF(args);
	Py_XDECREF(kw);
	return e;
}

/* Submits item as the slot's request: the C path, or the submit_python
 * hook for what it declines. 0 with out's handle and model new
 * references, or -1 with an exception set. */
static int submit_slot(CoreGroup *g, CoreSlot *s, PyObject *item, struct core_item *out)
{
	PyObject *own = NULL; /* owner: this function: batch_completion's item as a dict */
	int rc = 0;
	if (g->common && g->common_fast)
		rc = core_submit_item(g->engine, (PyObject *)g->chan, (PyObject *)s, item,
		                      g->default_model, g->headers, g->common, out);
	if (rc == 0 && g->common) {
		/* dict(common, messages=item), as LiteLLM's loop makes it. */
		own = PyDict_Copy(g->common);
		if (!own || PyDict_SetItemString(own, "messages", item) < 0) {
			Py_XDECREF(own);
			return -1;
		}
		item = own;
	}
	if (rc == 0)
		rc = core_submit_item(g->engine, (PyObject *)g->chan, (PyObject *)s, item,
		                      g->default_model, g->headers, NULL, out);
	if (rc > 0) {
		Py_INCREF(out->model); /* borrowed from the item or the group */
	} else if (rc == 0) {
		PyObject *r = PyObject_CallFunctionObjArgs(hook_submit_python, (PyObject *)g,
		                                           (PyObject *)s, item, NULL);
		rc = -1;
		if (r && (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 3)) {
			PyErr_SetString(PyExc_TypeError, "submit_python must return (handle, n, model)");
		} else if (r) {
			out->n = PyLong_AsLong(PyTuple_GET_ITEM(r, 1));
			if (!(out->n == -1 && PyErr_Occurred())) {
				out->handle = Py_NewRef(PyTuple_GET_ITEM(r, 0));
				out->model = Py_NewRef(PyTuple_GET_ITEM(r, 2));
				rc = 1;
			}
		}
		Py_XDECREF(r);
	}
	Py_XDECREF(own);
	return rc < 0 ? -1 : 0;
}

/* A refused item's exception, in place: TypeError, ValueError,
 * ClientClosedError and RuntimeError's subclasses; a bare RuntimeError only
 * once the client is closed (another thread closed it meanwhile). 0 when
 * placed, -1 to propagate the exception. */
static int refuse_in_place(CoreGroup *g, Py_ssize_t i)
{
	if (!PyErr_ExceptionMatches(PyExc_TypeError) && !PyErr_ExceptionMatches(PyExc_ValueError) &&
	    !PyErr_ExceptionMatches(PyExc_RuntimeError) &&
	    !PyErr_ExceptionMatches(hook_closed_error))
		return -1;
	PyObject *t, *v, *tb;
	PyErr_Fetch(&t, &v, &tb);
	PyErr_NormalizeException(&t, &v, &tb);
	if (tb && v)
		PyException_SetTraceback(v, tb);
	if (v && Py_IS_TYPE(v, (PyTypeObject *)PyExc_RuntimeError)) {
		int closed = core_closed(g);
		if (closed <= 0) {
			if (closed == 0)
				PyErr_Restore(t, v, tb);
			else {
				Py_XDECREF(t);
				Py_XDECREF(v);
				Py_XDECREF(tb);
			}
			return -1;
		}
		Py_DECREF(v);
		v = closed_error();
		if (!v) {
			Py_XDECREF(t);
			Py_XDECREF(tb);
			return -1;
		}
	}
	Py_XDECREF(t);
	Py_XDECREF(tb);
	if (!v) {
		PyErr_SetString(PyExc_SystemError, "pyllmring: an exception without a value");
		return -1;
	}
	return place(g, i, v);
}

/* Item i: submitted and linked, or refused in place. 0, or -1. */
static int take_item(CoreGroup *g, Py_ssize_t i, PyObject *item)
{
	int closed = core_closed(g);
	if (closed < 0)
		return -1;
	if (closed) {
		PyObject *e = closed_error();
		return e ? place(g, i, e) : -1;
	}
	CoreSlot *s = PyObject_GC_New(CoreSlot, &CoreSlot_Type); /* owner: this function */
	if (!s)
		return -1;
	s->group = NULL;
	s->handle = s->model = NULL;
	s->prev = s->next = NULL;
	s->index = i;
	s->n = 1;
	PyObject_GC_Track(s);
	struct core_item out;
	int rc = submit_slot(g, s, item, &out);
	if (rc < 0) {
		Py_DECREF(s);
		return refuse_in_place(g, i);
	}
	s->handle = out.handle;
	s->model = out.model;
	s->n = out.n;
	live_link(g, s);
	Py_DECREF(s);
	return 0;
}

static void group_cancel_all(CoreGroup *g);

/* Takes items while the window has room. 0, or -1 with an exception set
 * (what the iterator raised beyond Exception, or a failed submission that
 * is not the item's fault). */
static int group_fill(CoreGroup *g)
{
	if (!g->iter)
		return 0; /* cleared by the collector (a Python callback ran it) */
	Py_ssize_t room = g->window - g->nlive - g->fifo.count;
	while (room > 0 && !g->exhausted) {
		room--;
		PyObject *item = PyIter_Next(g->iter);
		if (!item) {
			if (!PyErr_Occurred()) {
				g->exhausted = 1;
				break;
			}
			if (!PyErr_ExceptionMatches(PyExc_Exception))
				return -1;
			/* The caller's iterator failed: that ends the batch. */
			PyObject *t, *v, *tb;
			PyErr_Fetch(&t, &v, &tb);
			PyErr_NormalizeException(&t, &v, &tb);
			if (tb && v)
				PyException_SetTraceback(v, tb);
			Py_XDECREF(t);
			Py_XDECREF(tb);
			Py_XSETREF(g->failure, v);
			group_cancel_all(g);
			break;
		}
		Py_ssize_t i = g->next_index++;
		if (!g->as_completed && PyList_Append(g->results, Py_None) < 0) {
			Py_DECREF(item);
			return -1;
		}
		int rc = take_item(g, i, item);
		Py_DECREF(item);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* No more items are taken; what is in the engine is cancelled (each still
 * completes, as cancelled). Errors from cancel() are dropped. */
static void group_cancel_all(CoreGroup *g)
{
	g->exhausted = 1;
	if (!g->nlive)
		return;
	PyObject *hs = PyList_New(0); /* owner: this function: a snapshot */
	if (!hs) {
		PyErr_Clear();
		return;
	}
	for (CoreSlot *s = g->live; s; s = s->next)
		if (s->handle && PyList_Append(hs, s->handle) < 0)
			PyErr_Clear();
	for (Py_ssize_t k = 0; k < PyList_GET_SIZE(hs); k++) {
		PyObject *r = PyObject_CallMethodNoArgs(PyList_GET_ITEM(hs, k), s_cancel);
		if (!r)
			PyErr_Clear();
		Py_XDECREF(r);
	}
	Py_DECREF(hs);
}

/* Wakes the waiter (once): with as_completed at each outcome, with batch
 * when the last item is done. */
static int group_wake(CoreGroup *g)
{
	if (!g->waiter || !(g->as_completed || (g->exhausted && !g->nlive)))
		return 0;
	PyObject *w = g->waiter; /* owner: this function */
	g->waiter = NULL;
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

/* ---- BatchSlot ------------------------------------------------------------ */

/* The outcome of a done handle: its response, or its exception (also when
 * making the response fails). A new reference, NULL only without memory. */
static PyObject *outcome_of(CoreGroup *g, PyObject *h, long n, PyObject *model)
{
	PyObject *err = PyObject_GetAttr(h, s_error);
	int failed = err ? PyObject_IsTrue(err) : -1;
	Py_XDECREF(err);
	PyObject *r = NULL;
	if (failed > 0) {
		int closed = core_closed(g);
		if (closed >= 0)
			r = PyObject_CallFunctionObjArgs(hook_from_handle, h,
			                                 closed ? Py_True : Py_False, NULL);
	} else if (failed == 0) {
		PyObject *nn = PyLong_FromLong(n);
		if (nn) {
			PyObject *args[] = {h, nn, model ? model : Py_None};
			r = PyObject_Vectorcall(hook_chat, args, 3, NULL);
			Py_DECREF(nn);
		}
	}
	if (r)
		return r;
	/* The exception itself, in the item's place. */
	PyObject *t, *v, *tb;
	PyErr_Fetch(&t, &v, &tb);
	PyErr_NormalizeException(&t, &v, &tb);
	if (tb && v)
		PyException_SetTraceback(v, tb);
	Py_XDECREF(t);
	Py_XDECREF(tb);
	return v;
}

/* How many completions a paced group's waiter sleeps for (the channel's
 * want) with conc requests on the wire at most. Before the
 * last item is taken: a refill's step, but no more than wait behind the
 * wire in the engine's queue, so the wire keeps busy while the waiter
 * sleeps; after it: all that are left (one wake-up at the end). */
static Py_ssize_t want_of(CoreGroup *g, Py_ssize_t conc)
{
	Py_ssize_t w = g->nlive;
	if (!g->exhausted) {
		Py_ssize_t queued = g->nlive - conc;
		w = queued < g->step ? queued : g->step;
	}
	return w < 1 ? 1 : w;
}

/* _done(handle): the group's completion step, once per request. */
static PyObject *Slot_done(CoreSlot *s, PyObject *h)
{
	if (!s->group)
		Py_RETURN_NONE; /* not live (done twice, or the group went away) */
	PyObject *model = s->model;  /* owner: this function */
	PyObject *handle = s->handle; /* owner: this function */
	s->model = s->handle = NULL;
	/* Off the list: the handle references this slot (its token), and the
	 * slot no longer references the group, so no cycle is left. */
	CoreGroup *g = live_unlink(s); /* owner: this function */
	Py_DECREF(s);                  /* the list's; dispatch holds the token */
	PyObject *r = outcome_of(g, h, s->n, model);
	Py_XDECREF(model);
	Py_XDECREF(handle); /* h, the argument, is the same handle */
	int rc = r ? place(g, s->index, r) : -1;
	if (!rc && !g->exhausted) {
		Py_ssize_t room = g->window - g->nlive - g->fifo.count;
		if (room >= g->step || !g->nlive)
			rc = group_fill(g);
	}
	if (!rc && g->pace && g->chan)
		core_channel_set_want(g->chan, g->exhausted && !g->nlive ? 1 : want_of(g, g->pace));
	if (!rc)
		rc = group_wake(g);
	Py_DECREF(g);
	if (rc < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *Slot_delta(CoreSlot *s, PyObject *d)
{
	Py_RETURN_NONE; /* batch requests do not stream */
}

static int Slot_traverse(CoreSlot *s, visitproc visit, void *arg)
{
	Py_VISIT(s->group);
	Py_VISIT(s->handle);
	Py_VISIT(s->model);
	return 0;
}

/* The handle cycle is broken here; the group's cycle by Group_clear. */
static int Slot_clear(CoreSlot *s)
{
	Py_CLEAR(s->handle);
	Py_CLEAR(s->model);
	return 0;
}

static void Slot_dealloc(CoreSlot *s)
{
	PyObject_GC_UnTrack(s);
	Slot_clear(s);
	Py_XDECREF(s->group); /* never linked here: the list holds a reference */
	PyObject_GC_Del(s);
}

static PyObject *Slot_get_index(CoreSlot *s, void *c)
{
	return PyLong_FromSsize_t(s->index);
}

static PyObject *Slot_get_group(CoreSlot *s, void *c)
{
	PyObject *g = s->group ? (PyObject *)s->group : Py_None;
	Py_INCREF(g);
	return g;
}

static PyMethodDef Slot_methods[] = {
	{"_done", (PyCFunction)Slot_done, METH_O, "The request ended: its outcome to the group."},
	{"_delta", (PyCFunction)Slot_delta, METH_O, "Ignored."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef Slot_getset[] = {
	{"index", (getter)Slot_get_index, NULL, "The item's index in the input.", NULL},
	{"group", (getter)Slot_get_group, NULL, "The group while the request is live, else None.",
	 NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CoreSlot_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.BatchSlot",
	.tp_basicsize = sizeof(CoreSlot),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_doc = "A batch item's token (made by BatchGroup only).",
	.tp_dealloc = (destructor)Slot_dealloc,
	.tp_traverse = (traverseproc)Slot_traverse,
	.tp_clear = (inquiry)Slot_clear,
	.tp_methods = Slot_methods,
	.tp_getset = Slot_getset,
};

/* ---- BatchGroup ------------------------------------------------------------ */

static PyObject *Group_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"core", "engine", "channel", "items", "default_model", "headers",
	                         "window", "as_completed", "common", NULL};
	PyObject *core, *engine, *chan, *items, *model, *headers, *common = Py_None;
	Py_ssize_t window;
	int as_completed = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!O!OOOn|pO:BatchGroup", kwlist, &core,
	                                 &CoreEngine_Type, &engine, &CoreChannel_Type, &chan,
	                                 &items, &model, &headers, &window, &as_completed, &common))
		return NULL;
	if (intern_names() < 0)
		return NULL;
	if (!hook_submit_python) {
		PyErr_SetString(PyExc_RuntimeError, "pyllmring: set_batch_hooks() was not called");
		return NULL;
	}
	if (window < 1) {
		PyErr_SetString(PyExc_ValueError, "pyllmring: window must be at least 1");
		return NULL;
	}
	if (common != Py_None && !PyDict_Check(common)) {
		PyErr_SetString(PyExc_TypeError, "pyllmring: common must be a dict or None");
		return NULL;
	}
	PyObject *it = PyObject_GetIter(items); /* owner: this function, then the group */
	if (!it)
		return NULL;
	CoreGroup *g = (CoreGroup *)t->tp_alloc(t, 0);
	if (!g) {
		Py_DECREF(it);
		return NULL;
	}
	g->results = as_completed ? NULL : PyList_New(0);
	if (!as_completed && !g->results) {
		Py_DECREF(it);
		Py_DECREF(g);
		return NULL;
	}
	g->iter = it;
	g->core = Py_NewRef(core);
	g->engine = (CoreEngine *)Py_NewRef(engine);
	g->chan = (CoreChannel *)Py_NewRef(chan);
	g->default_model = Py_NewRef(model);
	g->headers = Py_NewRef(headers);
	if (common != Py_None) {
		g->common = Py_NewRef(common);
		g->common_fast = !core_params_need_python(common);
	}
	g->as_completed = as_completed;
	g->window = window;
	/* Refill in steps, not one call per completion: the window is at least
	 * twice max_in_flight, so the engine stays busy meanwhile. */
	g->step = window / 8 < 1 ? 1 : window / 8 > 32 ? 32 : window / 8;
	g->gen = core_fork_gen;
	return (PyObject *)g;
}

static int Group_traverse(CoreGroup *g, visitproc visit, void *arg)
{
	Py_VISIT(g->core);
	Py_VISIT(g->engine);
	Py_VISIT(g->chan);
	Py_VISIT(g->iter);
	Py_VISIT(g->default_model);
	Py_VISIT(g->headers);
	Py_VISIT(g->common);
	Py_VISIT(g->results);
	Py_VISIT(g->failure);
	Py_VISIT(g->waiter);
	for (CoreSlot *s = g->live; s; s = s->next)
		Py_VISIT(s);
	for (Py_ssize_t k = 0; k < g->fifo.count; k++)
		Py_VISIT(g->fifo.outcome[(g->fifo.head + k) % g->fifo.cap]);
	return 0;
}

static int Group_clear(CoreGroup *g)
{
	while (g->live) {
		CoreSlot *s = g->live;
		CoreGroup *same = live_unlink(s);
		Py_DECREF(s);
		Py_DECREF(same); /* g is kept alive by its caller meanwhile */
	}
	while (g->fifo.count) {
		PyObject *o = g->fifo.outcome[g->fifo.head];
		g->fifo.head = (g->fifo.head + 1) % g->fifo.cap;
		g->fifo.count--;
		Py_DECREF(o);
	}
	Py_CLEAR(g->core);
	Py_CLEAR(g->engine);
	Py_CLEAR(g->chan);
	Py_CLEAR(g->iter);
	Py_CLEAR(g->default_model);
	Py_CLEAR(g->headers);
	Py_CLEAR(g->common);
	Py_CLEAR(g->results);
	Py_CLEAR(g->failure);
	Py_CLEAR(g->waiter);
	return 0;
}

static void Group_dealloc(CoreGroup *g)
{
	PyObject_GC_UnTrack(g);
	Group_clear(g);
	free(g->fifo.index);
	free(g->fifo.outcome);
	Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyObject *Group_fill(CoreGroup *g, PyObject *unused)
{
	if (core_check_fork(g->gen) < 0)
		return NULL;
	if (!g->iter) {
		PyErr_SetString(PyExc_ValueError, "pyllmring: a cleared group");
		return NULL;
	}
	if (group_fill(g) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *Group_cancel_all(CoreGroup *g, PyObject *unused)
{
	group_cancel_all(g);
	Py_RETURN_NONE;
}

static PyObject *Group_outcome(CoreGroup *g, PyObject *unused)
{
	if (g->failure) {
		PyErr_SetObject((PyObject *)Py_TYPE(g->failure), g->failure);
		return NULL;
	}
	if (!g->results)
		return PyList_New(0);
	return Py_NewRef(g->results);
}

/* Iterating takes the (index, outcome) pairs ready now, each once; it
 * stops when none is left (and may give more after the next wake-up). */
static PyObject *Group_iternext(CoreGroup *g)
{
	if (!g->fifo.count)
		return NULL;
	Py_ssize_t at = g->fifo.head;
	PyObject *o = g->fifo.outcome[at]; /* owner: this function, then the tuple */
	g->fifo.head = (at + 1) % g->fifo.cap;
	g->fifo.count--;
	PyObject *i = PyLong_FromSsize_t(g->fifo.index[at]);
	if (!i) {
		Py_DECREF(o);
		return NULL;
	}
	PyObject *pair = PyTuple_New(2);
	if (!pair) {
		Py_DECREF(i);
		Py_DECREF(o);
		return NULL;
	}
	PyTuple_SET_ITEM(pair, 0, i);
	PyTuple_SET_ITEM(pair, 1, o);
	return pair;
}

static PyObject *Group_get_pending(CoreGroup *g, void *c)
{
	return PyBool_FromLong(!g->exhausted || g->nlive > 0);
}

static PyObject *Group_get_count(CoreGroup *g, void *which)
{
	return PyLong_FromSsize_t(which ? g->fifo.count : g->nlive);
}

static PyObject *Group_get_obj(CoreGroup *g, void *which)
{
	PyObject *o = which == (void *)0 ? g->core : which == (void *)1 ? (PyObject *)g->chan
	            : which == (void *)2 ? g->default_model : g->failure;
	return Py_NewRef(o ? o : Py_None);
}

static PyObject *Group_get_waiter(CoreGroup *g, void *c)
{
	return Py_NewRef(g->waiter ? g->waiter : Py_None);
}

static int Group_set_waiter(CoreGroup *g, PyObject *v, void *c)
{
	Py_XSETREF(g->waiter, v && v != Py_None ? Py_NewRef(v) : NULL);
	return 0;
}

/* pace(in_flight): the group has its channel to itself (client.batch,
 * OpenAI.batch): from now on each completion step sets the channel's want,
 * so its waiter wakes about once a batch. */
static PyObject *Group_pace(CoreGroup *g, PyObject *arg)
{
	Py_ssize_t conc = PyLong_AsSsize_t(arg);
	if (conc == -1 && PyErr_Occurred())
		return NULL;
	g->pace = conc < 1 ? 1 : conc;
	if (g->chan)
		core_channel_set_want(g->chan, want_of(g, g->pace));
	Py_RETURN_NONE;
}

static PyMethodDef Group_methods[] = {
	{"pace", (PyCFunction)Group_pace, METH_O,
	 "pace(in_flight): the channel is the group's own; its want follows the group."},
	{"fill", (PyCFunction)Group_fill, METH_NOARGS, "Takes items while the window has room."},
	{"cancel_all", (PyCFunction)Group_cancel_all, METH_NOARGS,
	 "No more items are taken; what is in the engine is cancelled."},
	{"outcome", (PyCFunction)Group_outcome, METH_NOARGS,
	 "The outcomes by index, or raises what the items' iterator raised."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef Group_getset[] = {
	{"pending", (getter)Group_get_pending, NULL, "Items left to take, or in the engine.", NULL},
	{"live", (getter)Group_get_count, NULL, "Items in the engine.", NULL},
	{"ready", (getter)Group_get_count, NULL, "as_completed: outcomes not yet taken.", (void *)1},
	{"core", (getter)Group_get_obj, NULL, "The client's _Core.", (void *)0},
	{"channel", (getter)Group_get_obj, NULL, "The channel results arrive on.", (void *)1},
	{"default_model", (getter)Group_get_obj, NULL, "model= of the call.", (void *)2},
	{"failure", (getter)Group_get_obj, NULL, "What the items' iterator raised, or None.",
	 (void *)3},
	{"waiter", (getter)Group_get_waiter, (setter)Group_set_waiter,
	 "The future woken by the next outcome (as_completed) or the last (batch).", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CoreGroup_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.BatchGroup",
	.tp_basicsize = sizeof(CoreGroup),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_doc = "BatchGroup(core, engine, channel, items, default_model, headers, window, "
	          "as_completed=False, common=None): the outcomes of many requests, items taken "
	          "as room frees up.",
	.tp_new = Group_new,
	.tp_dealloc = (destructor)Group_dealloc,
	.tp_traverse = (traverseproc)Group_traverse,
	.tp_clear = (inquiry)Group_clear,
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)Group_iternext,
	.tp_methods = Group_methods,
	.tp_getset = Group_getset,
};

PyObject *core_set_batch_hooks(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"submit_python", "from_handle", "closed_error", "chat_completion",
	                         NULL};
	PyObject *sp, *fh, *ce, *cc;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "$OOOO:set_batch_hooks", kwlist, &sp, &fh, &ce,
	                                 &cc))
		return NULL;
	if (!PyCallable_Check(sp) || !PyCallable_Check(fh) || !PyCallable_Check(cc) ||
	    !PyExceptionClass_Check(ce)) {
		PyErr_SetString(PyExc_TypeError,
		                "set_batch_hooks: callables, and an exception class for closed_error");
		return NULL;
	}
	Py_XSETREF(hook_submit_python, Py_NewRef(sp));
	Py_XSETREF(hook_from_handle, Py_NewRef(fh));
	Py_XSETREF(hook_closed_error, Py_NewRef(ce));
	Py_XSETREF(hook_chat, Py_NewRef(cc));
	Py_RETURN_NONE;
}

int core_group_init(PyObject *m)
{
	PyTypeObject *types[] = {&CoreGroup_Type, &CoreSlot_Type};
	const char *names[] = {"BatchGroup", "BatchSlot"};
	for (size_t i = 0; i < 2; i++) {
		if (PyType_Ready(types[i]) < 0)
			return -1;
		Py_INCREF(types[i]);
		if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
			Py_DECREF(types[i]);
			return -1;
		}
	}
	return 0;
}
