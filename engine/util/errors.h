/*
 * The library's error model, inside.
 *
 * Two kinds of code meet in the engine and their values overlap
 * (LR_ENOMEM is -2, and so is -ENOENT), so each function speaks exactly
 * one, and the crossing happens in two documented places only:
 *   - the kernel's layer speaks -errno: io/ring.c and io/conn.c (results
 *     of io_uring operations and system calls), and the setup functions
 *     ring_init and resolver_new;
 *   - everything else speaks LR_E*: io/tls, io/resolve's answers, io/url,
 *     http/, format/, provider/, core/, api/.
 * The crossings: http/pool.c's connection callbacks (pconn_connected,
 * pconn_sent, pconn_eof) turn a connection's -errno into the LR_E* its
 * phase means (a refused connect is LR_ECONNECT, a broken send
 * LR_ECONNRESET); lr_engine_create turns a setup step's -errno into
 * LR_ENOMEM or LR_ESYSTEM (error_from_errno) and names the step.
 *
 * A failure's text travels with its code in one struct, lr_error_info
 * (llmring.h): error_set fills it.
 */
#ifndef LR_ERRORS_H
#define LR_ERRORS_H

#include "llmring.h"

/* Sets *err (when not NULL) to code, sys_errno and the formatted message;
 * returns code, so a caller can `return error_set(...)`. */
int error_set(lr_error_info *err, int code, int sys_errno, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A setup step's -errno as an LR_E*: LR_ENOMEM for -ENOMEM (and a
 * thread's EAGAIN: no memory for its stack), else LR_ESYSTEM. */
int error_from_errno(int neg_errno);

#endif
