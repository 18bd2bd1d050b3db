/*
 * _core.Channel: an eventfd, a mutex and a FIFO of events. The engine
 * thread pushes (core_on_delta, core_on_done) without the GIL and without
 * touching a reference count; drain(), dispatch() and reap() hand the
 * events to Python. The eventfd is written on the empty-to-non-empty edge,
 * after the mutex is let go (the loop thread it wakes wants the mutex at
 * once), and not at all while a reap is under way: the reap takes what
 * comes before it lets go of the channel.
 */
#include "_core.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* A copied delta: the strings follow the struct, NUL-terminated. */
struct core_delta {
	struct core_event ev;
	int choice, tool_index;
	size_t text_len, args_len;
	const char *text, *finish_reason, *tool_id, *tool_name, *tool_args; /* into data, or NULL */
	char data[];
};

static void efd_signal(int efd)
{
	uint64_t one = 1;
	ssize_t n;
	do
		n = write(efd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
}

/* Under mu. A push's write still under way (made after the mutex) can
 * land after this read: the eventfd is then readable with nothing queued,
 * and the take that finds nothing reads it (channel_take). */
static void eventfd_clear(CoreChannel *ch)
{
	uint64_t v;
	ssize_t n;
	do
		n = read(ch->efd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	ch->signalled = false;
}

/* Engine thread (or the submitting one). Once the mutex is let go a
 * drainer may take ev and free the handle and with it the channel: the
 * write counted in `writing` keeps the channel (dealloc waits for it). */
static void channel_push(CoreChannel *ch, struct core_event *ev)
{
	ev->next = NULL;
	pthread_mutex_lock(&ch->mu);
	*ch->tail = ev;
	ch->tail = &ev->next;
	ch->count++;
	bool signal = !ch->signalled && !ch->draining && ch->count >= ch->want;
	if (signal) {
		ch->signalled = true;
		atomic_fetch_add_explicit(&ch->writing, 1, memory_order_relaxed);
	}
	int efd = ch->efd;
	pthread_mutex_unlock(&ch->mu);
	if (signal) {
		efd_signal(efd);
		atomic_fetch_sub_explicit(&ch->writing, 1, memory_order_release);
	}
}

static char *copy_in(char **p, const char *s, size_t n)
{
	char *d = *p;
	if (n)
		memcpy(d, s, n);
	d[n] = '\0';
	*p = d + n + 1;
	return d;
}

void core_on_delta(void *user, const lr_delta *d)
{
	CoreHandle *h = user;
	size_t fl = d->finish_reason ? strlen(d->finish_reason) : 0;
	size_t il = d->tool_id ? strlen(d->tool_id) : 0;
	size_t nl = d->tool_name ? strlen(d->tool_name) : 0;
	size_t al = d->tool_index >= 0 ? d->tool_arguments_len : 0;
	/* owner: the channel's FIFO, then drain (free) */
	struct core_delta *e = malloc(sizeof(*e) + d->text_len + fl + il + nl + al + 5);
	if (!e)
		return; /* out of memory: the delta is lost, the result keeps the text */
	char *p = e->data;
	e->ev.kind = CORE_EV_DELTA;
	e->ev.handle = h;
	e->choice = d->choice;
	e->tool_index = d->tool_index;
	e->text_len = d->text_len;
	e->text = copy_in(&p, d->text ? d->text : "", d->text ? d->text_len : 0);
	e->finish_reason = d->finish_reason ? copy_in(&p, d->finish_reason, fl) : NULL;
	e->tool_id = d->tool_id ? copy_in(&p, d->tool_id, il) : NULL;
	e->tool_name = d->tool_name ? copy_in(&p, d->tool_name, nl) : NULL;
	e->args_len = al;
	e->tool_args = d->tool_index >= 0 ? copy_in(&p, d->tool_arguments ? d->tool_arguments : "", al)
	                                  : NULL;
	channel_push(h->channel, &e->ev);
}

/* The reference to h taken by core_handle_start moves to the queue. The
 * result is copied when the event is handed out (core_handle_settle), on
 * the Python thread: there the copy reuses the memory of the futures that
 * thread released, where a copy made here would come from the engine
 * thread's own malloc arena and add to the resident set. */
void core_on_done(void *user, lr_future *f)
{
	CoreHandle *h = user;
	(void)f;
	h->done_ev.kind = CORE_EV_DONE;
	h->done_ev.handle = h;
	channel_push(h->channel, &h->done_ev);
}

static PyObject *str_or_none(const char *s, size_t n)
{
	if (!s)
		Py_RETURN_NONE;
	return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "replace");
}

static PyObject *delta_object(const struct core_delta *e)
{
	if (e->choice == 0 && !e->finish_reason && e->tool_index < 0)
		return PyUnicode_DecodeUTF8(e->text, (Py_ssize_t)e->text_len, "replace");
	PyObject *t = PyUnicode_DecodeUTF8(e->text, (Py_ssize_t)e->text_len, "replace");
	PyObject *fr = e->finish_reason ? str_or_none(e->finish_reason, strlen(e->finish_reason)) : NULL;
	PyObject *id = e->tool_id ? str_or_none(e->tool_id, strlen(e->tool_id)) : NULL;
	PyObject *nm = e->tool_name ? str_or_none(e->tool_name, strlen(e->tool_name)) : NULL;
	PyObject *ar = e->tool_args ? str_or_none(e->tool_args, e->args_len) : NULL;
	PyObject *r = NULL;
	if (t && (fr || !e->finish_reason) && (id || !e->tool_id) && (nm || !e->tool_name) &&
	    (ar || !e->tool_args))
		r = Py_BuildValue("(OiOiOOO)", t, e->choice, fr ? fr : Py_None, e->tool_index,
		                  id ? id : Py_None, nm ? nm : Py_None, ar ? ar : Py_None);
	Py_XDECREF(t);
	Py_XDECREF(fr);
	Py_XDECREF(id);
	Py_XDECREF(nm);
	Py_XDECREF(ar);
	return r;
}

/* One event as drain's 3-tuple; consumes ev (the done event's reference
 * moves into the tuple, a delta is freed). NULL on failure, ev consumed. */
static PyObject *event_object(struct core_event *ev)
{
	CoreHandle *h = ev->handle;
	if (ev->kind == CORE_EV_DONE) {
		core_handle_settle(h);
		PyObject *t = !h->session || core_session_turn_done(h) == 0 ? PyTuple_New(3) : NULL;
		if (!t) {
			Py_DECREF(h);
			return NULL;
		}
		Py_INCREF(h->token);
		PyTuple_SET_ITEM(t, 0, h->token);
		PyTuple_SET_ITEM(t, 1, (PyObject *)h);
		Py_INCREF(Py_None);
		PyTuple_SET_ITEM(t, 2, Py_None);
		return t;
	}
	struct core_delta *e = (struct core_delta *)ev;
	PyObject *d = delta_object(e);
	free(e);
	if (!d)
		return NULL;
	PyObject *t = PyTuple_Pack(3, h->token, Py_None, d);
	Py_DECREF(d);
	return t;
}

static void event_discard(struct core_event *ev)
{
	if (ev->kind == CORE_EV_DONE) {
		core_handle_settle(ev->handle);
		core_eager_discard(ev->handle);
		Py_DECREF(ev->handle);
	} else {
		free(ev);
	}
}

static PyObject *Channel_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	if (core_check_fork(core_fork_gen) < 0)
		return NULL;
	if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
		PyErr_SetString(PyExc_TypeError, "Channel() takes no arguments");
		return NULL;
	}
	CoreChannel *ch = (CoreChannel *)type->tp_alloc(type, 0);
	if (!ch)
		return NULL;
	ch->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ch->efd < 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		Py_DECREF(ch);
		return NULL;
	}
	/* Adaptive: the two threads hold it for a few instructions each, so a
	 * short spin beats sleeping on the futex. */
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&ch->mu, &attr);
	pthread_mutexattr_destroy(&attr);
	atomic_init(&ch->writing, 0);
	ch->want = 1;
	ch->tail = &ch->head;
	ch->gen = core_fork_gen;
	return (PyObject *)ch;
}

/* Takes the whole FIFO out (under the mutex); the caller discards it. */
static struct core_event *channel_take_all(CoreChannel *ch)
{
	pthread_mutex_lock(&ch->mu);
	struct core_event *all = ch->head;
	ch->head = NULL;
	ch->tail = &ch->head;
	ch->count = 0;
	if (ch->signalled)
		eventfd_clear(ch);
	pthread_mutex_unlock(&ch->mu);
	return all;
}

static int Channel_traverse(CoreChannel *ch, visitproc visit, void *arg)
{
	if (!ch->tail)
		return 0;
	pthread_mutex_lock(&ch->mu);
	int rc = 0;
	for (struct core_event *e = ch->head; e && !rc; e = e->next)
		if (e->kind == CORE_EV_DONE)
			rc = visit((PyObject *)e->handle, arg);
	pthread_mutex_unlock(&ch->mu);
	return rc;
}

static int Channel_clear(CoreChannel *ch)
{
	if (!ch->tail)
		return 0;
	struct core_event *e = channel_take_all(ch);
	while (e) {
		struct core_event *next = e->next;
		event_discard(e);
		e = next;
	}
	return 0;
}

static void Channel_dealloc(CoreChannel *ch)
{
	PyObject_GC_UnTrack(ch);
	Channel_clear(ch);
	/* A pusher's eventfd write may still be under way (channel_push). */
	while (atomic_load_explicit(&ch->writing, memory_order_acquire) > 0)
		sched_yield();
	if (ch->tail)
		pthread_mutex_destroy(&ch->mu);
	if (ch->efd >= 0)
		close(ch->efd);
	Py_TYPE(ch)->tp_free((PyObject *)ch);
}

static PyObject *Channel_fileno(CoreChannel *ch, PyObject *unused)
{
	if (core_check_fork(ch->gen) < 0)
		return NULL;
	return PyLong_FromLong(ch->efd);
}

static PyObject *Channel_pending(CoreChannel *ch, PyObject *unused)
{
	if (core_check_fork(ch->gen) < 0)
		return NULL;
	pthread_mutex_lock(&ch->mu);
	Py_ssize_t n = ch->count;
	pthread_mutex_unlock(&ch->mu);
	return PyLong_FromSsize_t(n);
}

/* Takes up to max events (max < 0: all) off the FIFO, in order; *count
 * says how many. The caller consumes each (event_object, event_discard).
 * mode: a reap (TAKE_REAP_*) takes these and comes back for more, so
 * pushes need not signal meanwhile; finding the FIFO empty ends the reap
 * (draining off, under the same lock as the pushes that test it). */
enum { TAKE_PLAIN, TAKE_REAP_FIRST, TAKE_REAP_MORE };
static struct core_event *channel_take(CoreChannel *ch, Py_ssize_t max, Py_ssize_t *count,
                                       int mode)
{
	pthread_mutex_lock(&ch->mu);
	Py_ssize_t n = max < 0 || max > ch->count ? ch->count : max;
	struct core_event *first = ch->head, *e = first;
	if (n == ch->count) {
		/* all of it: no walk over the list (a cache miss an event) */
		ch->head = NULL;
		ch->tail = &ch->head;
		ch->count = 0;
	} else if (n > 0) {
		for (Py_ssize_t i = 1; i < n; i++)
			e = e->next;
		ch->head = e->next;
		e->next = NULL;
		ch->count -= n;
	}
	if (mode != TAKE_PLAIN)
		ch->draining = n > 0;
	/* Read only once empty: events left keep the fd readable, so the
	 * loop comes back for them. Finding nothing also reads it (that is
	 * the readiness a late write left, eventfd_clear), except in a reap's
	 * later rounds, which were not called by readiness. */
	if (ch->count == 0 && (ch->signalled || (n == 0 && mode != TAKE_REAP_MORE)))
		eventfd_clear(ch);
	pthread_mutex_unlock(&ch->mu);
	*count = n;
	return n > 0 ? first : NULL;
}

/* A reap that stops with events left: the loop is to come back for them
 * after its other callbacks, so the eventfd is made readable. */
static void channel_end_reap(CoreChannel *ch)
{
	pthread_mutex_lock(&ch->mu);
	ch->draining = false;
	if (ch->count > 0 && !ch->signalled) {
		ch->signalled = true;
		efd_signal(ch->efd); /* the loop's thread: the channel is alive */
	}
	pthread_mutex_unlock(&ch->mu);
}

static PyObject *Channel_drain(CoreChannel *ch, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"max", NULL};
	Py_ssize_t max = -1, n;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|n:drain", kwlist, &max))
		return NULL;
	if (core_check_fork(ch->gen) < 0)
		return NULL;
	struct core_event *first = channel_take(ch, max, &n, TAKE_PLAIN), *e;
	PyObject *list = PyList_New(n);
	Py_ssize_t i = 0;
	for (e = first; e; i++) {
		struct core_event *next = e->next;
		PyObject *item = list ? event_object(e) : NULL;
		if (!list) {
			event_discard(e);
		} else if (!item) {
			Py_CLEAR(list);
		} else {
			PyList_SET_ITEM(list, i, item);
		}
		e = next;
	}
	return list;
}

/* One event handed to its token (dispatch): a future_type instance is
 * resolved with None (its awaiter holds the handle), a stream's delta is
 * queued by the C base, anything else gets _done(handle) or _delta(d); a
 * stream is woken after its _done. woken: as core_stream_delta's.
 * Consumes ev. 0, or -1 with the callback's exception set. */
static int dispatch_one(struct core_event *ev, PyObject *future_type, PyObject *woken)
{
	static PyObject *s_done_m, *s_set_result, *s_tok_done, *s_tok_delta;
	if (!s_done_m) {
		s_done_m = PyUnicode_InternFromString("done");
		s_set_result = PyUnicode_InternFromString("set_result");
		s_tok_done = PyUnicode_InternFromString("_done");
		s_tok_delta = PyUnicode_InternFromString("_delta");
		if (!s_done_m || !s_set_result || !s_tok_done || !s_tok_delta) {
			event_discard(ev);
			return -1;
		}
	}
	CoreHandle *h = ev->handle;
	PyObject *tok = h->token ? h->token : Py_None;
	Py_INCREF(tok); /* the token may drop the handle, which holds it */
	int rc = -1;
	if (ev->kind == CORE_EV_DONE && h->eager_kind) {
		/* create()'s future: resolved with the response (_core_eager.c). */
		core_handle_settle(h);
		int erc = core_eager_done(h, tok);
		Py_DECREF(h);
		Py_DECREF(tok);
		return erc;
	}
	bool stream = PyObject_TypeCheck(tok, &CoreStream_Type);
	if (ev->kind == CORE_EV_DONE) {
		/* The FIFO's reference to h is dropped after the call. */
		PyObject *r = NULL;
		core_handle_settle(h);
		if (h->session && core_session_turn_done(h) < 0) {
			r = NULL;
		} else if (PyObject_TypeCheck(tok, (PyTypeObject *)future_type)) {
			PyObject *done = PyObject_CallMethodNoArgs(tok, s_done_m);
			r = done == Py_False ? PyObject_CallMethodOneArg(tok, s_set_result, Py_None) : done;
			if (done == Py_False)
				Py_DECREF(done);
		} else {
			r = PyObject_CallMethodOneArg(tok, s_tok_done, (PyObject *)h);
		}
		/* A stream keeps its handle (its outcome): the handle lets go of
		 * the stream, its last event handed out, so the two make no cycle
		 * and both go when the consumer drops the stream. */
		if (stream)
			Py_CLEAR(h->token);
		Py_DECREF(h);
		rc = r ? 0 : -1;
		Py_XDECREF(r);
		if (stream && core_stream_wake(tok, woken) < 0)
			rc = -1;
	} else {
		struct core_delta *e = (struct core_delta *)ev;
		PyObject *d = delta_object(e);
		free(e);
		if (d && stream) {
			rc = core_stream_delta(tok, d, woken);
		} else if (d) {
			PyObject *r = PyObject_CallMethodOneArg(tok, s_tok_delta, d);
			rc = r ? 0 : -1;
			Py_XDECREF(r);
		}
		Py_XDECREF(d);
	}
	Py_DECREF(tok);
	return rc;
}

/* Hands out the taken events e.., keeping the first exception (fetched
 * into *et.. when none is kept yet, cleared otherwise). */
static void dispatch_list(struct core_event *e, PyObject *future_type, PyObject *woken,
                          PyObject **et, PyObject **ev, PyObject **tb)
{
	while (e) {
		struct core_event *next = e->next;
		if (dispatch_one(e, future_type, woken) < 0) {
			if (!*et)
				PyErr_Fetch(et, ev, tb);
			else
				PyErr_Clear(); /* a later one: the first is raised */
		}
		e = next;
	}
}

static int check_dispatch_args(CoreChannel *ch, PyObject *const *args, Py_ssize_t nargs,
                               Py_ssize_t want, const char *usage, Py_ssize_t *max)
{
	if (nargs != want || !PyLong_Check(args[0]) || !PyType_Check(args[1]) ||
	    (want > 2 && !PyLong_Check(args[2]))) {
		PyErr_SetString(PyExc_TypeError, usage);
		return -1;
	}
	*max = PyLong_AsSsize_t(args[0]);
	if ((*max == -1 && PyErr_Occurred()) || core_check_fork(ch->gen) < 0)
		return -1;
	return 0;
}

/* dispatch(max, future_type) -> how many: drain's events handed to their
 * tokens here, without a tuple or a Python frame per event. A callback
 * that raises does not stop the others; the first exception is raised
 * once all are handed out. Woken streams' tasks are scheduled with
 * call_soon (this may run inside a task: close() drains its reaper). */
static PyObject *Channel_dispatch(CoreChannel *ch, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t max, n;
	if (check_dispatch_args(ch, args, nargs, 2, "dispatch(max, future_type)", &max) < 0)
		return NULL;
	struct core_event *e = channel_take(ch, max, &n, TAKE_PLAIN);
	PyObject *et = NULL, *ev = NULL, *tb = NULL;
	dispatch_list(e, args[1], NULL, &et, &ev, &tb);
	if (et) {
		PyErr_Restore(et, ev, tb);
		return NULL;
	}
	return PyLong_FromSsize_t(n);
}

/* reap(max, future_type, rounds) -> how many: the loop's reader callback
 * (never called inside a task). Each round takes up to max events, hands
 * them out, then resumes the tasks of the streams it woke, here rather
 * than through a call_soon each; what their steps leave queued is the
 * next round's. Until a round finds the FIFO empty the engine thread does
 * not write the eventfd. After `rounds` with events left the eventfd is
 * made readable, so other callbacks get their turn first. */
static PyObject *Channel_reap(CoreChannel *ch, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t max, n, total = 0;
	if (check_dispatch_args(ch, args, nargs, 3, "reap(max, future_type, rounds)", &max) < 0)
		return NULL;
	long rounds = PyLong_AsLong(args[2]);
	if (rounds == -1 && PyErr_Occurred())
		return NULL;
	PyObject *woken = PyList_New(0); /* owner: this call */
	if (!woken)
		return NULL;
	PyObject *et = NULL, *ev = NULL, *tb = NULL;
	bool left = true;
	for (long r = 0; r < rounds; r++) {
		struct core_event *e = channel_take(ch, max, &n, r ? TAKE_REAP_MORE : TAKE_REAP_FIRST);
		if (!e) {
			left = false; /* the take ended the reap */
			break;
		}
		total += n;
		dispatch_list(e, args[1], woken, &et, &ev, &tb);
		if (core_stream_run_woken(woken) < 0) {
			if (!et)
				PyErr_Fetch(&et, &ev, &tb);
			else
				PyErr_Clear();
		}
		if (et)
			break; /* raised at once (KeyboardInterrupt in a step, ...) */
	}
	if (left)
		channel_end_reap(ch);
	Py_DECREF(woken);
	if (et) {
		PyErr_Restore(et, ev, tb);
		return NULL;
	}
	return PyLong_FromSsize_t(total);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Blocks until an event is queued or timeout s pass (None: forever), in
 * slices of at most 50 ms with the GIL released and signals checked. */
static PyObject *Channel_wait(CoreChannel *ch, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"timeout", NULL};
	PyObject *tmo = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:wait", kwlist, &tmo))
		return NULL;
	if (core_check_fork(ch->gen) < 0)
		return NULL;
	double limit = -1;
	if (tmo != Py_None) {
		limit = PyFloat_AsDouble(tmo);
		if (limit == -1 && PyErr_Occurred())
			return NULL;
		if (limit < 0)
			limit = 0;
	}
	/* A pump left behind by an exception may have left want raised:
	 * every push signals again, and what is queued already counts. */
	pthread_mutex_lock(&ch->mu);
	ch->want = 1;
	Py_ssize_t already = ch->count;
	pthread_mutex_unlock(&ch->mu);
	if (already > 0)
		Py_RETURN_TRUE;
	double end = now_s() + limit;
	for (;;) {
		int ms = 50;
		if (limit >= 0) {
			double left = end - now_s();
			ms = left <= 0 ? 0 : left < 0.05 ? (int)(left * 1000) + 1 : 50;
		}
		struct pollfd p = {.fd = ch->efd, .events = POLLIN};
		int rc;
		Py_BEGIN_ALLOW_THREADS
		rc = poll(&p, 1, ms);
		Py_END_ALLOW_THREADS
		if (rc > 0) {
			/* Readable with nothing queued: a late write (eventfd_clear). */
			pthread_mutex_lock(&ch->mu);
			Py_ssize_t queued = ch->count;
			if (queued == 0)
				eventfd_clear(ch);
			pthread_mutex_unlock(&ch->mu);
			if (queued > 0)
				Py_RETURN_TRUE;
		}
		if (rc < 0 && errno != EINTR)
			return PyErr_SetFromErrno(PyExc_OSError);
		if (PyErr_CheckSignals() < 0)
			return NULL;
		if (limit >= 0 && (ms == 0 || now_s() >= end))
			Py_RETURN_FALSE;
	}
}

void core_channel_set_want(CoreChannel *ch, Py_ssize_t want)
{
	pthread_mutex_lock(&ch->mu);
	ch->want = want < 1 ? 1 : want;
	pthread_mutex_unlock(&ch->mu);
}

/* flush(): makes the eventfd readable when events are queued that no push
 * signalled (below want): a paced batch's linger tick on its loop. */
static PyObject *Channel_flush(CoreChannel *ch, PyObject *unused)
{
	if (core_check_fork(ch->gen) < 0)
		return NULL;
	pthread_mutex_lock(&ch->mu);
	if (ch->count > 0 && !ch->signalled && !ch->draining) {
		ch->signalled = true;
		efd_signal(ch->efd); /* this thread holds the channel */
	}
	pthread_mutex_unlock(&ch->mu);
	Py_RETURN_NONE;
}

/* pump(max, future_type, want, linger) -> how many: the bulk waiter of the
 * sync batch (OpenAI.batch, batch_completion). Sleeps, the GIL released,
 * until want events are queued (0: the channel's own want, which a paced
 * group keeps), or linger seconds passed with at least
 * one, then hands out up to max as dispatch() does. Meanwhile pushes do
 * not signal below want (nor while the events are handed out), so the engine's thread writes the eventfd and
 * this thread wakes about once a batch, not once per completion (what
 * lr_engine_reap_batch's min does for the C batch job). The caller keeps
 * want at most what it has in the engine, so the count gets there; linger
 * bounds the wait when some of them take long (a retry's backoff).
 * Signals are checked every 50 ms (Ctrl-C). */
static PyObject *Channel_pump(CoreChannel *ch, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs != 4 || !PyLong_Check(args[0]) || !PyType_Check(args[1]) ||
	    !PyLong_Check(args[2])) {
		PyErr_SetString(PyExc_TypeError, "pump(max, future_type, want, linger)");
		return NULL;
	}
	Py_ssize_t max = PyLong_AsSsize_t(args[0]), want = PyLong_AsSsize_t(args[2]), n;
	double linger = PyFloat_AsDouble(args[3]);
	if (((max == -1 || want == -1 || linger == -1) && PyErr_Occurred()) ||
	    core_check_fork(ch->gen) < 0)
		return NULL;
	double end = now_s() + (linger > 0 ? linger : 0);
	pthread_mutex_lock(&ch->mu);
	if (want < 1)
		want = ch->want; /* 0: the want a paced group keeps (BatchGroup.pace) */
	ch->want = want;
	bool ready = ch->count >= want;
	/* The readiness of a count below want (or a late write): sleep on. */
	if (!ready && ch->signalled)
		eventfd_clear(ch);
	pthread_mutex_unlock(&ch->mu);
	while (!ready) {
		int ms = 50;
		if (want > 1) {
			double left = end - now_s();
			ms = left <= 0 ? 0 : left < 0.05 ? (int)(left * 1000) + 1 : 50;
		}
		struct pollfd p = {.fd = ch->efd, .events = POLLIN};
		int rc;
		Py_BEGIN_ALLOW_THREADS
		rc = poll(&p, 1, ms);
		Py_END_ALLOW_THREADS
		if (rc < 0 && errno != EINTR) {
			core_channel_set_want(ch, 1);
			return PyErr_SetFromErrno(PyExc_OSError);
		}
		pthread_mutex_lock(&ch->mu);
		if (ch->count >= ch->want) {
			ready = true;
		} else if (want > 1 && now_s() >= end) {
			/* Lingered long enough: what is there, or the next one. */
			if (ch->count > 0)
				ready = true;
			else
				ch->want = want = 1;
		}
		/* Readable but not ready: a late write (eventfd_clear). */
		if (!ready && rc > 0)
			eventfd_clear(ch);
		pthread_mutex_unlock(&ch->mu);
		if (!ready && PyErr_CheckSignals() < 0) {
			core_channel_set_want(ch, 1);
			return NULL;
		}
	}
	/* want stays raised while the events are handed out: the next pump
	 * sets it again and counts what came meanwhile (wait() lowers it). */
	struct core_event *e = channel_take(ch, max, &n, TAKE_PLAIN);
	PyObject *et = NULL, *ev = NULL, *tb = NULL;
	dispatch_list(e, args[1], NULL, &et, &ev, &tb);
	if (et) {
		PyErr_Restore(et, ev, tb);
		return NULL;
	}
	return PyLong_FromSsize_t(n);
}

static PyMethodDef Channel_methods[] = {
	{"fileno", (PyCFunction)Channel_fileno, METH_NOARGS, "The eventfd, readable while events are queued."},
	{"drain", (PyCFunction)(void (*)(void))Channel_drain, METH_VARARGS | METH_KEYWORDS,
	 "drain(max=-1) -> list of (token, handle, None) or (token, None, delta), in FIFO order."},
	{"dispatch", (PyCFunction)(void (*)(void))Channel_dispatch, METH_FASTCALL,
	 "dispatch(max, future_type) -> n: up to max events (-1: all) handed to their tokens; a "
	 "future_type token is resolved with None, others get _done(handle) / _delta(delta)."},
	{"reap", (PyCFunction)(void (*)(void))Channel_reap, METH_FASTCALL,
	 "reap(max, future_type, rounds) -> n: the loop's reader callback; dispatch in up to "
	 "rounds rounds, the woken streams' tasks resumed after each (not inside a task)."},
	{"flush", (PyCFunction)Channel_flush, METH_NOARGS,
	 "Makes the fd readable when events are queued below want."},
	{"pump", (PyCFunction)(void (*)(void))Channel_pump, METH_FASTCALL,
	 "pump(max, future_type, want, linger) -> n: sleeps (GIL released) until want events are "
	 "queued, or linger s passed with one, then dispatches up to max."},
	{"wait", (PyCFunction)(void (*)(void))Channel_wait, METH_VARARGS | METH_KEYWORDS,
	 "wait(timeout=None) -> bool: an event is queued (GIL released, Ctrl-C interrupts)."},
	{"pending", (PyCFunction)Channel_pending, METH_NOARGS, "Events queued."},
	{NULL, NULL, 0, NULL},
};

PyTypeObject CoreChannel_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._core.Channel",
	.tp_basicsize = sizeof(CoreChannel),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_doc = "Channel(): the queue the engine thread fills for one event loop or waiter.",
	.tp_new = Channel_new,
	.tp_dealloc = (destructor)Channel_dealloc,
	.tp_traverse = (traverseproc)Channel_traverse,
	.tp_clear = (inquiry)Channel_clear,
	.tp_methods = Channel_methods,
};
