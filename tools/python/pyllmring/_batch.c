/*
 * pyllmring._batch: the `llmring batch` job and the mock server, in the
 * Python process (the design: /work/py-design.md, "run_batch and the
 * in-process mock").
 *
 *   run_batch(argv, progress=None, interval=0.1) -> exit status
 *   Mock(args=None): .url, .port, .requests, .connections, .closed,
 *                    .close(), a context manager
 *
 * The job is the command's own (tools/cli/batch_run.h), on a thread of
 * its own with every signal blocked: the caller's thread waits with the
 * GIL released, waking every `interval` seconds to hand the latest counts
 * to progress() and to run the signal handlers. No Python code ever runs
 * on the job's thread: its progress hook copies the counts under a mutex.
 * A KeyboardInterrupt (or any exception from progress) sets the job's stop
 * flag, waits for it to end (its output stays valid and resumable) and is
 * raised then.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch_run.h"
#include "cli.h"
#include "mock_server.h"

/* ---- argv from a Python sequence ------------------------------------ */

struct argv_copy {
	int argc;
	char **argv; /* owner: this copy, and each string; NULL-terminated */
};

static void argv_free(struct argv_copy *a)
{
	if (a->argv)
		for (int i = 0; i < a->argc; i++)
			free(a->argv[i]);
	free(a->argv);
	a->argv = NULL;
	a->argc = 0;
}

/* Appends one string (owner: the copy). 0, or -1 with MemoryError set. */
static int argv_push(struct argv_copy *a, const char *s)
{
	char *copy = strdup(s);
	if (!copy) {
		PyErr_NoMemory();
		return -1;
	}
	a->argv[a->argc++] = copy;
	a->argv[a->argc] = NULL;
	return 0;
}

/*
 * head[0..nhead) then every item of seq (str, bytes or os.PathLike, in
 * the file system encoding; None seq: none). 0, or -1 with an exception
 * set (TypeError for a str or bytes given as the whole sequence, or an
 * item of another type; ValueError for an embedded NUL).
 */
static int argv_from(PyObject *seq, const char *const *head, int nhead, const char *what,
                     struct argv_copy *out)
{
	*out = (struct argv_copy){0};
	if (seq != Py_None && (PyUnicode_Check(seq) || PyBytes_Check(seq))) {
		PyErr_Format(PyExc_TypeError, "%s must be a list of strings, not a single %s", what,
		             Py_TYPE(seq)->tp_name);
		return -1;
	}
	PyObject *fast = NULL; /* owner: this function */
	Py_ssize_t n = 0;
	if (seq != Py_None) {
		fast = PySequence_Fast(seq, "argument must be a list of strings");
		if (!fast)
			return -1;
		n = PySequence_Fast_GET_SIZE(fast);
	}
	if (n > 1000000) {
		Py_XDECREF(fast);
		PyErr_Format(PyExc_ValueError, "%s: too many arguments", what);
		return -1;
	}
	out->argv = calloc((size_t)n + (size_t)nhead + 1, sizeof(char *));
	if (!out->argv) {
		Py_XDECREF(fast);
		PyErr_NoMemory();
		return -1;
	}
	for (int i = 0; i < nhead; i++)
		if (argv_push(out, head[i]))
			goto fail;
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *item = PySequence_Fast_GET_ITEM(fast, i); /* borrowed */
		PyObject *bytes = NULL; /* owner: this loop */
		if (!PyUnicode_FSConverter(item, &bytes))
			goto fail;
		int rc = argv_push(out, PyBytes_AS_STRING(bytes));
		Py_DECREF(bytes);
		if (rc)
			goto fail;
	}
	Py_XDECREF(fast);
	return 0;
fail:
	Py_XDECREF(fast);
	argv_free(out);
	return -1;
}

/* Runs fn(arg) on a new thread that has every signal blocked (they stay
 * with the interpreter's thread). 0, or an errno. */
static int start_thread_unsignalled(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/* ---- run_batch -------------------------------------------------------- */

struct job {
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* signalled when done is set */
	bool done;                  /* under mu */
	int status;                 /* batch_run's, once done */
	struct batch_progress latest; /* under mu: the hook's last counts */
	uint64_t seq;               /* under mu: bumped when latest changes */
	atomic_int stop;            /* set by the waiting thread */
	struct argv_copy args;      /* owner: the job */
	struct batch_hooks hooks;
};

/* The job's progress hook, on its thread: copy and return. */
static void job_progress(void *user, const struct batch_progress *p)
{
	struct job *j = user;
	pthread_mutex_lock(&j->mu);
	if (memcmp(&j->latest, p, sizeof(*p)) != 0) {
		j->latest = *p;
		j->seq++;
	}
	pthread_mutex_unlock(&j->mu);
}

static void *job_thread(void *arg)
{
	struct job *j = arg;
	int status = batch_run(j->args.argc, j->args.argv, &j->hooks);
	fflush(stdout); /* --help went to C's stdout buffer */
	fflush(stderr);
	pthread_mutex_lock(&j->mu);
	j->status = status;
	j->done = true;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

static void job_free(struct job *j)
{
	pthread_cond_destroy(&j->cv);
	pthread_mutex_destroy(&j->mu);
	argv_free(&j->args);
	free(j);
}

static PyObject *progress_dict(const struct batch_progress *p)
{
	return Py_BuildValue(
		"{s:K,s:K,s:K,s:K,s:K,s:K,s:L,s:L,s:d,s:K,s:K,s:K,s:K,s:K}",
		"submitted", (unsigned long long)p->run.submitted,
		"queued", (unsigned long long)p->run.queued,
		"in_flight", (unsigned long long)p->run.in_flight,
		"succeeded", (unsigned long long)p->run.succeeded,
		"failed", (unsigned long long)p->run.failed,
		"retried", (unsigned long long)p->run.retried,
		"input_tokens", (long long)p->run.input_tokens,
		"output_tokens", (long long)p->run.output_tokens,
		"cost_usd", p->run.cost_usd,
		"lines_read", (unsigned long long)p->lines_read,
		"lines_done", (unsigned long long)p->lines_done,
		"lines_total", (unsigned long long)p->lines_total,
		"skipped", (unsigned long long)p->skipped,
		"invalid_lines", (unsigned long long)p->invalid_lines);
}

/* Waits (GIL released by the caller) until the job is done or, with
 * interval_s > 0, that long has passed. Takes the latest counts. */
static void job_wait(struct job *j, double interval_s, bool *done, struct batch_progress *snap,
                     uint64_t *seq)
{
	pthread_mutex_lock(&j->mu);
	if (!j->done) {
		if (interval_s > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			double whole = floor(interval_s);
			ts.tv_sec += (time_t)whole;
			ts.tv_nsec += (long)((interval_s - whole) * 1e9);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &ts) != ETIMEDOUT)
				;
		} else {
			while (!j->done)
				pthread_cond_wait(&j->cv, &j->mu);
		}
	}
	*done = j->done;
	*snap = j->latest;
	*seq = j->seq;
	pthread_mutex_unlock(&j->mu);
}

PyDoc_STRVAR(run_batch_doc,
"run_batch(argv, progress=None, interval=0.1) -> int\n"
"\n"
"Runs `llmring batch` in this process: argv as the command takes it after\n"
"its name, e.g. [\"in.jsonl\", \"-o\", \"out.jsonl\", \"--concurrency\", \"64\"].\n"
"The job runs on its own thread; this one waits with the GIL released and\n"
"every `interval` seconds calls progress(dict) when the counts changed\n"
"(submitted, queued, in_flight, succeeded, failed, retried, input_tokens,\n"
"output_tokens, cost_usd, lines_read, lines_done, lines_total, skipped,\n"
"invalid_lines) and runs the signal handlers. KeyboardInterrupt, or an\n"
"exception from progress, stops the job (what is in flight is cancelled;\n"
"the output so far stays valid and a re-run resumes it) and is raised once\n"
"it has ended. Returns the command's exit status: 0, 1 (some lines\n"
"failed), 2 (usage, fatal, or stopped early). Messages go to stderr as the\n"
"command prints them.");

static PyObject *run_batch(PyObject *self, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = {"argv", "progress", "interval", NULL};
	PyObject *argv_obj, *progress = Py_None;
	double interval = 0.1;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|Od:run_batch", kwlist, &argv_obj, &progress,
	                                 &interval))
		return NULL;
	if (progress != Py_None && !PyCallable_Check(progress)) {
		PyErr_SetString(PyExc_TypeError, "progress must be callable or None");
		return NULL;
	}
	if (!isfinite(interval) || interval <= 0 || interval > 86400) {
		PyErr_SetString(PyExc_ValueError, "interval must be a number of seconds > 0");
		return NULL;
	}
	struct job *j = calloc(1, sizeof(*j)); /* owner: this function */
	if (!j)
		return PyErr_NoMemory();
	pthread_mutex_init(&j->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->cv, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&j->stop, 0);
	static const char *const head[] = {"batch"};
	if (argv_from(argv_obj, head, 1, "argv", &j->args)) {
		job_free(j);
		return NULL;
	}
	j->hooks = (struct batch_hooks){
		.on_progress = progress != Py_None ? job_progress : NULL,
		.user = j,
		.stop = &j->stop,
	};
	fflush(stdout); /* C's buffers, before the job writes too */
	pthread_t t;
	int rc = start_thread_unsignalled(&t, job_thread, j);
	if (rc) {
		job_free(j);
		errno = rc;
		return PyErr_SetFromErrno(PyExc_OSError);
	}

	uint64_t seen = 0;
	bool failed = false, done = false;
	while (!done) {
		struct batch_progress snap;
		uint64_t seq;
		double wait_s = failed ? 0 : interval; /* 0: until done */
		Py_BEGIN_ALLOW_THREADS
		job_wait(j, wait_s, &done, &snap, &seq);
		Py_END_ALLOW_THREADS
		if (failed)
			continue;
		if (seq != seen && progress != Py_None) {
			seen = seq;
			PyObject *d = progress_dict(&snap); /* owner: this block */
			PyObject *r = d ? PyObject_CallOneArg(progress, d) : NULL;
			Py_XDECREF(d);
			if (!r)
				failed = true;
			Py_XDECREF(r);
		}
		if (!failed && !done && PyErr_CheckSignals() < 0)
			failed = true;
		if (failed)
			atomic_store(&j->stop, 1);
	}
	Py_BEGIN_ALLOW_THREADS
	pthread_join(t, NULL);
	Py_END_ALLOW_THREADS
	int status = j->status;
	job_free(j);
	if (failed)
		return NULL;
	return PyLong_FromLong(status);
}

/* ---- Mock ------------------------------------------------------------- */

typedef struct {
	PyObject_HEAD
	struct mock_server *srv; /* owner: this object; NULL once closed */
	uint16_t port;
	char url[300];
} MockObject;

static void mock_close_server(MockObject *m, bool release_gil)
{
	struct mock_server *s = m->srv;
	m->srv = NULL;
	if (!s)
		return;
	if (release_gil) {
		Py_BEGIN_ALLOW_THREADS
		mock_server_stop(s);
		Py_END_ALLOW_THREADS
	} else {
		mock_server_stop(s);
	}
}

static int Mock_init(MockObject *self, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = {"args", NULL};
	PyObject *flags_obj = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:Mock", kwlist, &flags_obj))
		return -1;
	if (self->srv) {
		PyErr_SetString(PyExc_RuntimeError, "Mock: already started");
		return -1;
	}
	/* The command's flags, with an ephemeral loopback port unless
	 * --listen says otherwise (a later --listen wins). */
	static const char *const head[] = {"mock", "--listen", "127.0.0.1:0"};
	struct argv_copy a; /* owner: this function */
	if (argv_from(flags_obj, head, 3, "args", &a))
		return -1;
	struct mock_flags *mf = calloc(1, sizeof(*mf)); /* owner: this function */
	if (!mf) {
		argv_free(&a);
		PyErr_NoMemory();
		return -1;
	}
	int rc = mock_parse_flags(a.argc, a.argv, false, mf);
	if (rc) {
		fflush(stdout);
		if (rc < 0)
			PyErr_SetString(PyExc_ValueError, "Mock: --help is not a server option");
		else
			PyErr_Format(PyExc_ValueError, "llmring mock: %s", mf->error);
		free(mf);
		argv_free(&a);
		return -1;
	}
	char tls_error[512] = "";
	mf->o.error = tls_error;
	mf->o.error_size = sizeof(tls_error);
	struct mock_server *srv = NULL;
	int r;
	Py_BEGIN_ALLOW_THREADS
	/* The server's thread starts with every signal blocked. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = mock_server_start(&mf->o, &srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	Py_END_ALLOW_THREADS
	if (r < 0) {
		if (tls_error[0])
			PyErr_Format(PyExc_ValueError, "llmring mock: cannot serve HTTPS: %s", tls_error);
		else
			PyErr_Format(PyExc_OSError, "llmring mock: cannot listen on %s:%u: %s", mf->host,
			             (unsigned)mf->o.port, strerror(-r));
		free(mf);
		argv_free(&a);
		return -1;
	}
	self->srv = srv;
	self->port = mock_server_port(srv);
	const char *scheme = mf->tls_cert ? "https" : "http";
	bool v6 = strchr(mf->host, ':') != NULL;
	snprintf(self->url, sizeof(self->url), "%s://%s%s%s:%u", scheme, v6 ? "[" : "", mf->host,
	         v6 ? "]" : "", (unsigned)self->port);
	free(mf);
	argv_free(&a);
	return 0;
}

static void Mock_dealloc(MockObject *self)
{
	mock_close_server(self, false); /* the server's thread needs no GIL */
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Mock_close(MockObject *self, PyObject *unused)
{
	mock_close_server(self, true);
	Py_RETURN_NONE;
}

static PyObject *Mock_enter(MockObject *self, PyObject *unused)
{
	if (!self->srv) {
		PyErr_SetString(PyExc_ValueError, "Mock: the server is closed");
		return NULL;
	}
	Py_INCREF(self);
	return (PyObject *)self;
}

static PyObject *Mock_exit(MockObject *self, PyObject *args)
{
	mock_close_server(self, true);
	Py_RETURN_FALSE;
}

static PyObject *Mock_get_url(MockObject *self, void *closure)
{
	if (!self->url[0]) {
		PyErr_SetString(PyExc_ValueError, "Mock: not started");
		return NULL;
	}
	return PyUnicode_FromString(self->url);
}

static PyObject *Mock_get_port(MockObject *self, void *closure)
{
	return PyLong_FromLong(self->port);
}

static PyObject *Mock_get_closed(MockObject *self, void *closure)
{
	return PyBool_FromLong(self->srv == NULL);
}

static PyObject *Mock_get_count(MockObject *self, void *closure)
{
	if (!self->srv) {
		PyErr_SetString(PyExc_ValueError, "Mock: the server is closed");
		return NULL;
	}
	uint64_t n = closure ? mock_server_connections(self->srv) : mock_server_requests(self->srv);
	return PyLong_FromUnsignedLongLong((unsigned long long)n);
}

static PyMethodDef Mock_methods[] = {
	{"close", (PyCFunction)Mock_close, METH_NOARGS,
	 "Stops the server (idempotent; also done when the object goes away)."},
	{"__enter__", (PyCFunction)Mock_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)Mock_exit, METH_VARARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef Mock_getset[] = {
	{"url", (getter)Mock_get_url, NULL, "\"http://127.0.0.1:PORT\" (https with --tls-cert)", NULL},
	{"port", (getter)Mock_get_port, NULL, "the port listened on", NULL},
	{"closed", (getter)Mock_get_closed, NULL, "whether close() was called", NULL},
	{"requests", (getter)Mock_get_count, NULL, "requests answered so far", NULL},
	{"connections", (getter)Mock_get_count, NULL, "connections accepted so far", (void *)1},
	{NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Mock_doc,
"Mock(args=None)\n"
"\n"
"The mock LLM server of `llmring mock`, on a thread of this process.\n"
"args: the command's flags ([\"--tokens\", \"4\", \"--fault\", \"500:0.1\"]);\n"
"it listens on 127.0.0.1 on a free port unless --listen says otherwise.\n"
"Bad flags raise ValueError, a port that cannot be bound OSError.");

static PyTypeObject MockType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyllmring._batch.Mock",
	.tp_basicsize = sizeof(MockObject),
	.tp_dealloc = (destructor)Mock_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = Mock_doc,
	.tp_methods = Mock_methods,
	.tp_getset = Mock_getset,
	.tp_init = (initproc)Mock_init,
	.tp_new = PyType_GenericNew,
};

/* ---- the module --------------------------------------------------------- */

static PyMethodDef module_methods[] = {
	{"run_batch", (PyCFunction)(void (*)(void))run_batch, METH_VARARGS | METH_KEYWORDS,
	 run_batch_doc},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef batch_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "pyllmring._batch",
	.m_doc = "The llmring batch job and the mock server, in process.",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__batch(void)
{
	if (PyType_Ready(&MockType) < 0)
		return NULL;
	PyObject *m = PyModule_Create(&batch_module);
	if (!m)
		return NULL;
	Py_INCREF(&MockType);
	if (PyModule_AddObject(m, "Mock", (PyObject *)&MockType) < 0) {
		Py_DECREF(&MockType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
