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
 * A failure's text travels with its code in one struct, struct
 * error_info, in every layer: a connection's TLS failure (io/conn), an
 * exchange's (http/pool), a reply's (provider/reply), a refused request
 * body (provider/dialect), a future's (core: lr_result.error_message
 * points at its message), the prices loader's, an endpoint's and engine
 * setup's. Its message is written only through the helpers below (a
 * layer that reclassifies a failure may set the code alone).
 *
 * Why not lr_error_info itself: its message is 256 bytes and fixed by the
 * ABI, while lr_result's messages have always held up to 399 (a provider's
 * error is "HTTP 400: " and up to 299 bytes of its own text, which 256
 * would cut). One internal size,
 * ERROR_MESSAGE_MAX, keeps every message as long as it was; lr_engine_create
 * fills the public struct from the internal one (error_export), which cuts
 * at the same byte as formatting into 256 did.
 *
 * Never put an API key in a message: they reach logs and output files.
 */
#ifndef LR_ERRORS_H
#define LR_ERRORS_H

#include <stdarg.h>
#include <stddef.h>

#include "llmring.h"

#define ERROR_MESSAGE_MAX 400

struct error_info {
	int code;                        /* LR_E*, 0 when nothing failed */
	int sys_errno;                   /* errno of a refused system call, or 0 */
	char message[ERROR_MESSAGE_MAX]; /* NUL-terminated; "" when code is 0 */
};

/* Sets *err (when not NULL) to code, sys_errno and the formatted message;
 * returns code, so a caller can `return error_set(...)`. */
int error_set(struct error_info *err, int code, int sys_errno, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int error_vset(struct error_info *err, int code, int sys_errno, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
/* *dst = *src (dst may be NULL); returns src's code. */
int error_copy(struct error_info *dst, const struct error_info *src);
/* Nothing failed: code 0, message "". */
void error_clear(struct error_info *err);
/* The public view (the message cut to lr_error_info's size); out may be NULL. */
void error_export(lr_error_info *out, const struct error_info *err);

/* A setup step's -errno as an LR_E*: LR_ENOMEM for -ENOMEM (and a
 * thread's EAGAIN: no memory for its stack), else LR_ESYSTEM. */
int error_from_errno(int neg_errno);

#endif
