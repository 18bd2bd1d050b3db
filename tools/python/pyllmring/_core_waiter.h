/*
 * StreamWaiter (_core_waiter.c), shared with AsyncStreamBase
 * (_core_stream.c): a minimal asyncio future a stream's task waits on.
 */
#ifndef PYLLMRING_CORE_WAITER_H
#define PYLLMRING_CORE_WAITER_H

#include "_core.h"

enum { W_PENDING, W_DONE, W_CANCELLED };

typedef struct {
	PyObject_HEAD
	PyObject *loop;           /* strong */
	PyObject *cb, *ctx;       /* strong or NULL: the first done callback and its context */
	PyObject *more;           /* strong or NULL: a list of (cb, ctx) after the first */
	PyObject *cancel_msg;     /* strong or NULL */
	int state;
	int blocking;             /* _asyncio_future_blocking */
} Waiter;

extern PyTypeObject CoreWaiter_Type;
extern PyObject *core_cancelled_error; /* asyncio.CancelledError, set by core_waiter_init */

/* A pending waiter on loop (a new reference), or NULL with an exception. */
Waiter *core_waiter_new(PyObject *loop);
/* w is done or cancelled: its callbacks through loop.call_soon. 0 or -1. */
int core_waiter_schedule(Waiter *w);
/* The type (added to m as StreamWaiter) and asyncio's exceptions. 0 or -1. */
int core_waiter_init(PyObject *m);

#endif
