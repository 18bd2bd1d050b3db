/*
 * JSON access over jsmn tokens (the one translation unit that includes
 * jsmn.h is json.c). A json_doc borrows the text it was parsed from; token
 * indices are stable until the next json_parse on the same doc.
 */
#ifndef LR_JSON_H
#define LR_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum json_type { JSON_UNDEFINED = 0, JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_PRIMITIVE };

struct json_token {
	enum json_type type;
	int start, end;   /* byte span in the text; strings exclude the quotes */
	int size;         /* children: members of an object, items of an array */
};

struct json_doc {
	const char *text;          /* borrowed */
	size_t len;
	struct json_token *tok;    /* owner: the doc (grown on demand, reused) */
	int count, cap;
};

/* Parses text[0..len). 0 on success; LR_EPROTO when it is not one
 * complete JSON value (trailing bytes other than whitespace count as
 * invalid); LR_ENOMEM. */
int json_parse(struct json_doc *d, const char *text, size_t len);
void json_doc_free(struct json_doc *d);

/* Index of the token after the whole value at i (its next sibling). */
int json_skip(const struct json_doc *d, int i);
/* Index of the value of key in the object at obj, or -1. */
int json_object_get(const struct json_doc *d, int obj, const char *key);
/* Follows a dotted path of object keys ("usage.prompt_tokens"), or -1. */
int json_path(const struct json_doc *d, int obj, const char *path);
/* True when token i is a string equal to s (raw bytes, no unescaping). */
bool json_string_eq(const struct json_doc *d, int i, const char *s);
/* Integer value of a primitive; false when i is not an integer. */
bool json_get_int(const struct json_doc *d, int i, int64_t *out);
/* Unescapes string token i into out (NUL-terminated, truncated to cap);
 * returns the full unescaped length or -1 when i is not a valid string. */
long json_get_string(const struct json_doc *d, int i, char *out, size_t cap);
/* Unescaped copy in malloc'd memory (owner: the caller), or NULL. */
char *json_dup_string(const struct json_doc *d, int i);
/* Span of the whole value at i including quotes for strings. */
void json_span(const struct json_doc *d, int i, const char **start, size_t *len);

/*
 * Single-pass validation with a callback per scalar (json_scan.c): no
 * tokens, no allocation. path holds, for each enclosing container, the raw
 * key leading into it (NULL inside arrays); depth counts the containers.
 * A scalar's span is raw text (strings without their quotes, escapes kept).
 * A container is reported once it closed, with its whole span (brackets
 * included), at the depth and keys of a scalar in its place.
 * Returns whether text is exactly one valid JSON value.
 */
#define JSON_SCAN_MAX_DEPTH 128
struct json_scan_path {
	int depth;
	const char *key[JSON_SCAN_MAX_DEPTH];
	size_t key_len[JSON_SCAN_MAX_DEPTH];
};
typedef void (*json_scan_fn)(void *ctx, const struct json_scan_path *path, enum json_type type,
                             const char *value, size_t len);
bool json_scan(const char *text, size_t len, json_scan_fn fn, void *ctx);
/* The scalar sits at exactly these object keys ({"usage":{"prompt_tokens":…}}). */
bool json_scan_path_is(const struct json_scan_path *path, const char *const *keys, int n);

/* Appends the unescaped text of a raw JSON string span (as json_scan
 * reports it: no quotes, escapes kept) to out; \u escapes become UTF-8
 * (a lone surrogate U+FFFD). 0, LR_EPROTO on a bad escape, LR_ENOMEM. */
int json_unescape_append(struct buf *out, const char *raw, size_t len);

/*
 * Why text is not a JSON object (the caller found it is not one), in
 * words for an error message: "it is empty", "it is gzip-compressed
 * data", "it begins with a UTF-8 byte order mark", "it is not valid UTF-8
 * (byte N)", "it nests deeper than 128 levels", "it is a JSON array",
 * "it is not valid JSON". Written into buf (cap bytes); returns buf.
 */
const char *json_invalid_reason(const char *text, size_t len, char *buf, size_t cap);

/* Appends s as a quoted, escaped JSON string. */
int json_append_string(struct buf *b, const char *s, size_t len);

#endif
