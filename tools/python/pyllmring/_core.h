/*
 * pyllmring._core: the CPython extension over include/llmring.h
 * (/work/py-design.md). The engine thread never runs Python: the C
 * callbacks of _core_channel.c copy a delta or queue a handle's done
 * event on its channel's FIFO and write the eventfd on the
 * empty-to-non-empty edge. References are taken under the GIL at submit
 * and handed to Python by Channel.drain().
 */
#ifndef PYLLMRING_CORE_H
#define PYLLMRING_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "llmring.h"

/* One queued event. A done event lives inside its Handle (no allocation
 * on the engine thread); a delta event is a core_delta, malloc'd by the
 * engine thread and freed by drain. */
enum { CORE_EV_DONE = 0, CORE_EV_DELTA = 1 };
struct core_event {
	struct core_event *next;
	int kind;
	/* done: the queue owns one reference to it, drain hands it to Python.
	 * delta: borrowed; the request's done event, queued after every delta
	 * of the request, keeps it alive. */
	struct CoreHandle *handle;
};

typedef struct CoreChannel {
	PyObject_HEAD
	int efd;                  /* owner: the channel (closed in dealloc) */
	pthread_mutex_t mu;       /* guards everything below */
	struct core_event *head;  /* FIFO; done events own a handle reference */
	struct core_event **tail;
	Py_ssize_t count;
	bool signalled;           /* the eventfd holds a count, or a write of it is under way */
	bool draining;            /* a reap is taking what comes: pushes need not signal */
	/* Pushes signal once count reaches it (>= 1): pump() raises it so a
	 * bulk waiter sleeps until a batch is ready, not at every completion;
	 * wait() sets it back to 1. */
	Py_ssize_t want;
	/* Eventfd writes decided under mu and made after it (the writer must
	 * not hold mu while the woken loop thread wants it): the channel is
	 * not freed, nor the eventfd read as cleared, while one is under way. */
	atomic_int writing;
	unsigned gen;
} CoreChannel;

typedef struct CoreHandle {
	PyObject_HEAD
	/* owner: the handle, until its done event leaves the channel
	 * (core_handle_settle): then released, so the future goes back to the
	 * engine's slab while the result is kept (NULL from then on). */
	lr_future *future;
	/* owner: the handle (lr_result_free in dealloc). The result's compact
	 * copy (lr_result_copy) when settled but no Result object could be
	 * made (out of memory); NULL otherwise. */
	lr_result *copy;
	/* strong: the copy as a Result object once settled, or NULL. The
	 * records hold it instead of the handle (so the handle and its token
	 * go when the caller drops them); not GC-tracked, it references no
	 * object. */
	struct CoreResult *kept;
	PyObject *token;          /* strong */
	CoreChannel *channel;     /* strong: the FIFO outlives every callback */
	struct core_event done_ev;
	PyObject *session;        /* strong: the Session of this turn, or NULL */
	/* create()'s eager path (_core_eager.c): what the done event makes
	 * (CORE_EAGER_*, 0: not eager), with the client's _Core and the
	 * model (strong, cleared when the future is resolved). */
	int eager_kind;
	long eager_n;
	PyObject *eager_core, *eager_model;
	/* Its EagerWindow (strong, from submit until its done event is handed
	 * out), and while it waits there for room: its request (owner: the
	 * handle, lr_request_free in dealloc unless submitted) and the next
	 * handle waiting. */
	struct CoreWindow *eager_window;
	lr_request *eager_rq;
	struct CoreHandle *eager_next;
	unsigned gen;
} CoreHandle;

/* _core.Result: a completed request's result without its future (the
 * same result attributes as a Handle). Made by core_handle_settle. */
typedef struct CoreResult {
	PyObject_HEAD
	lr_result *res;           /* owner: the object (lr_result_free in dealloc) */
} CoreResult;

typedef struct CoreEngine {
	PyObject_HEAD
	lr_engine *eng;           /* owner: the object; NULL once closed */
	unsigned gen;
} CoreEngine;

/* A conversation. lr_session is not used: it takes the future's one
 * then-callback, which the channel needs; the history is kept here, as
 * message dicts, and a turn is appended when drain hands out its done
 * event (core_session_turn_done). */
typedef struct CoreSession {
	PyObject_HEAD
	CoreEngine *engine;       /* strong */
	PyObject *model;          /* str */
	PyObject *history;        /* list of message dicts (the system one first) */
	PyObject *pending;        /* the user message of the turn in flight, or NULL */
	int turns;
	bool busy;                /* a turn is in flight */
	unsigned gen;
} CoreSession;

extern PyTypeObject CoreChannel_Type, CoreHandle_Type, CoreEngine_Type, CoreSession_Type;
extern PyTypeObject CoreResult_Type;
extern PyObject *core_engine_error;  /* _core.EngineError */
extern PyObject *core_json_dumps;    /* json.dumps, imported once */

/* Bumped in a forked child by the pthread_atfork handler. */
extern volatile unsigned core_fork_gen;
/* 0, or -1 with RuntimeError set when obj_gen is from before a fork. */
int core_check_fork(unsigned obj_gen);

/* _core_channel.c: the engine-thread callbacks. */
void core_on_delta(void *user, const lr_delta *d);
void core_on_done(void *user, lr_future *f);
int core_channel_ready(void);
/* Sets ch->want (under its mutex): pushes signal from that count on. */
void core_channel_set_want(CoreChannel *ch, Py_ssize_t want);

/* _core_handle.c: a handle for a request about to be submitted (token
 * and channel referenced); NULL with an exception set. */
CoreHandle *core_handle_new(CoreChannel *ch, PyObject *token);
/* Attaches f (NULL: MemoryError) and registers the done callback, which
 * takes a reference to h. Returns h (a new reference) or NULL. */
PyObject *core_handle_start(CoreHandle *h, lr_future *f);
/* The result of h: its kept copy, else its future's; NULL while h is not
 * complete (no exception set). Any reader of a handle's result goes
 * through this (records, errors, sessions, batches). */
const lr_result *core_handle_result(CoreHandle *h);
/* Under the GIL, once h's done event is handed out (drain, dispatch) or
 * dropped: the copy becomes h->kept and the future is released. */
void core_handle_settle(CoreHandle *h);
/* What a record keeps of a completed handle: h->kept when settled (a new
 * reference), else h itself. */
PyObject *core_handle_keep(CoreHandle *h);

/* _core_request.c: builds an lr_request from submit's arguments. */
struct core_submit_args {
	PyObject *model, *messages, *params, *headers, *max_retries, *timeout;
	PyObject *base_url, *body, *input;
	PyObject *prompt;         /* str (endpoint "completions"), or NULL / None */
	const char *endpoint;
	int stream;
	/* params is a whole batch item (create's kwargs): its "model" and
	 * "messages" keys are not parameters (submit_item). */
	int params_is_item;
};
/* The request (caller's until lr_submit), or NULL with an exception set. */
lr_request *core_build_request(const struct core_submit_args *a);

/* _core_engine.c: one batch item submitted (BatchGroup, submit_item).
 * item: a list of messages, or create()'s kwargs as a dict; with common
 * (batch_completion's kwargs) item is the messages. 1 with out set,
 * 0 when the item needs the Python path (per-call options, messages that
 * are not plain dicts), -1 with an exception set. */
struct core_item {
	PyObject *handle;         /* a new reference */
	long n;
	PyObject *model;          /* borrowed: from the item, common or default_model */
};
int core_submit_item(CoreEngine *self, PyObject *channel, PyObject *token, PyObject *item,
                     PyObject *default_model, PyObject *headers, PyObject *common,
                     struct core_item *out);
/* 1 when a params dict holds a per-call option (extra_headers, timeout, ...). */
int core_params_need_python(PyObject *params);
/* _core_group.c: BatchGroup and BatchSlot (added to m), set_batch_hooks(). */
int core_group_init(PyObject *m);
PyObject *core_set_batch_hooks(PyObject *self, PyObject *args, PyObject *kw);

/* _core_eager.c: create()'s eager future. The token of a handle with
 * eager_kind set is a _client._Eager future; core_eager_done (dispatch,
 * under the GIL, h settled or not) resolves it with the response or the
 * exception; core_eager_discard lets go of it when its event is dropped.
 * set_eager_hooks() and eager() are module functions. */
enum { CORE_EAGER_CHAT = 1, CORE_EAGER_COMPLETION = 2, CORE_EAGER_EMBEDDING = 3 };
int core_eager_done(CoreHandle *h, PyObject *fut);
/* _core.EagerWindow: at most `limit` of a reaper's eager requests in the
 * engine; the others wait, built, for a done event to make room (the
 * engine's memory per request is then spent only on those it works on).
 * core_window_submit takes over rq and the caller's reference to h and
 * returns it (submitted, or kept until there is room), or NULL with an
 * exception set. */
extern PyTypeObject CoreWindow_Type;
PyObject *core_window_submit(PyObject *window, CoreHandle *h, lr_request *rq);
int core_eager_init(PyObject *m);
void core_eager_discard(CoreHandle *h);
PyObject *core_set_eager_hooks(PyObject *self, PyObject *args, PyObject *kw);
PyObject *core_eager(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *core_eager_track(PyObject *self, PyObject *o);

/* _core_session.c: the turn of h (h->session set) ended; under the GIL.
 * Appends the user message and the reply when it succeeded. 0 or -1. */
int core_session_turn_done(CoreHandle *h);
/* _core_records.c: the response record types (added to module m), and
 * set_record_types(), which names their Python subclasses and hooks. */
int core_records_init(PyObject *m);
PyObject *core_set_record_types(PyObject *self, PyObject *args, PyObject *kw);
/* A ChatCompletionChunk of delta (the registered subclass), and Ready(value):
 * new references, or NULL with an exception set. */
PyObject *core_chunk_new(PyObject *id, PyObject *model, PyObject *created, PyObject *delta);
PyObject *core_ready_new(PyObject *value);
/* _core_stream.c: AsyncStreamBase (added to module m). core_stream_delta
 * queues d and wakes the waiter; core_stream_wake wakes it. With woken (a
 * list, during Channel.reap) the woken waiter is appended there and its
 * callbacks run by core_stream_run_woken once the round is handed out;
 * without, they are scheduled with loop.call_soon. 0, or -1 with an
 * exception set. */
extern PyTypeObject CoreStream_Type;
int core_stream_init(PyObject *m);
int core_stream_delta(PyObject *stream, PyObject *d, PyObject *woken);
int core_stream_wake(PyObject *stream, PyObject *woken);
int core_stream_run_woken(PyObject *woken);
/* _core_engine.c */
lr_engine *core_engine_get(CoreEngine *e);

/* ValueError "what: lr_strerror(rc)". Returns -1. */
int core_lr_value_error(const char *what, int rc);

#endif
