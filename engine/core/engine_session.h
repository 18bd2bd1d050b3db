/* What sessions need from the engine beyond the public API. */
#ifndef LR_SESSION_H
#define LR_SESSION_H

#include "llmring.h"

/* A future already complete with err and msg, for a request that never
 * reached the engine (a refused session turn). */
lr_future *engine_failed_future(lr_engine *eng, int err, const char *msg);

/* Turns f's success into err with msg. Only from f's then-callback, before
 * anyone else can read the result: on the engine thread (before waiters
 * are woken) or from lr_future_then before f was handed out. */
void engine_future_refail(lr_future *f, int err, const char *msg);

#endif
