/*
 * HTTP/1.1 request serializer over a growable buffer.
 *
 * Every writer validates all of its input before it appends anything, so a
 * rejected header (header injection through CR/LF, a NUL that would cut
 * the line short in some server, a name that is not a token) leaves the
 * buffer exactly as it was.
 */
#include "http/http_writer.h"
#include "http/http_reader.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmring.h"

#define U64_DECIMAL_MAX 20

static bool is_token(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!http_token_char[(unsigned char)s[i]])
			return false;
	return true;
}

/* field-value: no control characters except HT (so no CR, LF or NUL). */
static bool is_field_value(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 ? c == 0x7f : c != '\t')
			return false;
	}
	return true;
}

/* Request target and Host: visible characters only (no SP, no controls;
 * bytes from 0x80 pass as obs-text). Eight bytes a step: it runs per
 * request. A byte below 0x21 or equal to 0x7f shows in the high bits of
 * (x - 0x21..) & ~x and of (y - 0x01..) & ~y with y = x ^ 0x7f.. (both
 * exact for "is there one", for bytes below 0x80). */
static bool is_visible(const char *s, size_t len)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	if (len == 0)
		return false;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t x, y;
		memcpy(&x, s + i, 8);
		y = x ^ (ones * 0x7f);
		if (((x - ones * 0x21) & ~x & highs) | ((y - ones) & ~y & highs))
			return false;
	}
	for (; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f)
			return false;
	}
	return true;
}
/* Appends without checks; the caller reserved the room. */
static inline void put(struct buf *b, const void *data, size_t len)
{
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

#define PUT_LITERAL(b, lit) put((b), (lit), sizeof(lit) - 1)

int http_write_request_line(struct buf *b, const char *method, const char *target,
                            const char *host_header)
{
	size_t method_len = strlen(method), target_len = strlen(target);
	size_t host_len = strlen(host_header);
	if (!is_token(method, method_len) || !is_visible(target, target_len) ||
	    !is_visible(host_header, host_len))
		return LR_EINVAL;
	size_t total = method_len + 1 + target_len + sizeof(" HTTP/1.1\r\nHost: ") - 1 +
	               host_len + 2;
	int rc = buf_reserve(b, total);
	if (rc < 0)
		return rc;
	put(b, method, method_len);
	PUT_LITERAL(b, " ");
	put(b, target, target_len);
	PUT_LITERAL(b, " HTTP/1.1\r\nHost: ");
	put(b, host_header, host_len);
	PUT_LITERAL(b, "\r\n");
	return 0;
}

int http_write_header(struct buf *b, const char *name, size_t name_len,
                      const char *value, size_t value_len)
{
	if (!is_token(name, name_len) || !is_field_value(value, value_len))
		return LR_EINVAL;
	int rc = buf_reserve(b, name_len + 2 + value_len + 2);
	if (rc < 0)
		return rc;
	put(b, name, name_len);
	PUT_LITERAL(b, ": ");
	if (value_len > 0)
		put(b, value, value_len);
	PUT_LITERAL(b, "\r\n");
	return 0;
}

int http_write_body(struct buf *b, const char *body, size_t len)
{
	char digits[U64_DECIMAL_MAX];
	size_t n = 0;
	uint64_t v = len;
	do {
		digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	static const char prefix[] = "Content-Length: ";
	if (len > SIZE_MAX - sizeof(prefix) - sizeof(digits) - 4)
		return LR_ENOMEM;
	int rc = buf_reserve(b, sizeof(prefix) - 1 + n + 4 + len);
	if (rc < 0)
		return rc;
	PUT_LITERAL(b, prefix);
	put(b, digits + sizeof(digits) - n, n);
	PUT_LITERAL(b, "\r\n\r\n");
	if (len > 0)
		put(b, body, len);
	return 0;
}
