/* The HTTP/1.1 request serializer. */
#ifndef LR_HTTP_WRITER_H
#define LR_HTTP_WRITER_H

#include <stddef.h>

#include "util/buf.h"

/*
 * Appends "METHOD target HTTP/1.1\r\nHost: host\r\n" plus headers to a
 * growable buffer. Returns LR_EINVAL when a name or value contains CR, LF
 * or NUL (or a name is not an HTTP token), LR_ENOMEM.
 */

int http_write_request_line(struct buf *b, const char *method, const char *target,
                            const char *host_header);
int http_write_header(struct buf *b, const char *name, size_t name_len,
                      const char *value, size_t value_len);
/* Writes Content-Length (and the blank line) then the body bytes. */
int http_write_body(struct buf *b, const char *body, size_t len);

#endif
