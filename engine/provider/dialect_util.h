/*
 * Helpers the dialect files share (and provider.c's unified body): JSON
 * values copied and unescaped, the unified request's pieces (message text,
 * images, tool calls, function lists), endpoint paths, whole tool calls
 * and error messages into struct reply. Nothing here knows a dialect.
 */
#ifndef LR_DIALECT_UTIL_H
#define LR_DIALECT_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "format/json.h"
#include "provider/dialect.h"
#include "provider/reply.h"
#include "util/buf.h"

/* ---- scanned values (json_scan callbacks) ---- */

/* A scanned number as a token count; 0 when it is not a plain count
 * (treated as absent). */
int64_t scanned_count(const char *v, size_t len);
/* The key leading into level of p is lit (n bytes). */
static inline bool scan_key_is(const struct json_scan_path *p, int level, const char *lit, size_t n)
{
	return level < p->depth && p->key[level] && p->key_len[level] == n &&
	       memcmp(p->key[level], lit, n) == 0;
}
#define KEY_IS(p, level, lit) scan_key_is(p, level, lit, sizeof(lit) - 1)
/* v[0..n) is exactly lit. */
static inline bool span_is(const char *v, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(v, lit, n) == 0;
}

/* ---- token values ---- */

/* Whether token i is a string; *s and *n its raw text (no quotes,
 * escapes kept), else NULL and 0. */
bool json_string_span(const struct json_doc *d, int i, const char **s, size_t *n);
/* Appends the raw span of value i (strings with their quotes). */
int json_copy_value(struct buf *b, const struct json_doc *d, int i);
/* The unescaped text of string token i into b. */
int json_unescape_token(struct buf *b, const struct json_doc *d, int i);
/* Appends ,"name":VALUE with value i as it is. */
int put_member(struct buf *out, const char *name, const struct json_doc *d, int v);
/* Appends value v, a string made a one-element array ("stop" into the
 * stop-sequence lists that take only arrays). */
int put_as_list(struct buf *out, const struct json_doc *d, int v);

/* Appends ,"name":{MEMBERS} (members: comma-joined, already written). */
int put_object_member(struct buf *out, const char *name, const struct buf *members);

/* ---- the unified request ---- */

/* The "messages" array of the unified body d, or LR_EINVAL with *why. */
int messages_array(const struct json_doc *d, const char **why);
/* A system (or developer) message's text joined onto system with LF, for
 * dialects that take the system prompt apart from the turns. 0, LR_EINVAL
 * (not text, *why set) or LR_ENOMEM. */
int lift_system_message(struct buf *system, const struct json_doc *d, int content, const char **why);
/* Whether message role token role is system or developer. */
bool role_is_system(const struct json_doc *d, int role);
/* How a dialect writes the unified messages as turns (Anthropic's
 * messages, Gemini's contents): system messages lifted out, consecutive
 * tool results in one user turn, user and assistant turns of items. */
struct turn_style {
	const char *user_open;      /* opens a user turn: {"role":"user","content":[ */
	const char *assistant_open; /* opens an assistant turn */
	/* Tool message m (of the array msgs) as an item of the user turn. */
	int (*tool_result)(struct buf *out, const struct json_doc *d, int msgs, int m, const char **why);
	/* A message's content as items; *any: an item was written (the next
	 * one needs a comma). */
	int (*content_items)(struct buf *out, const struct json_doc *d, int content, bool *any,
	                     const char **why);
	/* An assistant message's tool_calls array as items. */
	int (*call_items)(struct buf *out, const struct json_doc *d, int calls, bool *any,
	                  const char **why);
};
/* The messages array msgs as comma-joined turns, then "]" (the caller
 * opens the array); system text joined into system. */
int put_turns(struct buf *out, struct buf *system, const struct json_doc *d, int msgs,
              const struct turn_style *style, const char **why);
/* The text of an OpenAI message content (a string, or the text parts of
 * an array joined with LF) appended to out, unescaped. null is "".
 * 0, LR_EINVAL (not text) or LR_ENOMEM. */
int content_text(struct buf *out, const struct json_doc *d, int content);
/* An image part's URL (image_url.url), unescaped into url. For a data:
 * URL with base64 data, *mime and *data point into url. */
int image_part(const struct json_doc *d, int part, struct buf *url, const char **mime,
               size_t *mime_len, const char **data, size_t *data_len);
/* The function name of the assistant tool call (in messages before the
 * one at upto) whose id equals the string token id, or -1. */
int tool_call_name(const struct json_doc *d, int msgs, int upto, int id);
/* Tool-call arguments (a JSON string holding an object) appended as the
 * object itself; "" becomes {}. LR_EINVAL when not an object. */
int arguments_object(struct buf *out, const struct json_doc *d, int args);
/* The function tools of an OpenAI "tools" array as comma-joined
 * {"name","description",SCHEMA_KEY:parameters} objects (the parameters,
 * else default_schema, else nothing). */
int put_function_list(struct buf *out, const struct json_doc *d, int tools, const char *schema_key,
                      const char *default_schema, const char **why);

/* ---- endpoint paths ---- */

bool ends_with(const char *s, size_t n, const char *suffix);
/*
 * "{base}{version}{rest}", without doubling a version the base already
 * ends in. drop is a suffix of the base that names another API's prefix
 * and is left out (Ollama's native API is beside its OpenAI one at /v1,
 * so one --base-url ending in /v1 serves both), or NULL.
 */
int path_join(struct buf *out, const char *base, const char *drop, const char *version,
              const char *rest);

/* ---- replies ---- */

/* A tool call that arrives whole (Gemini, Ollama) as call `at`: its id
 * (a raw string span) or, when id is NULL, a made "call_AT"; its name (a
 * raw string span, or NULL); its arguments' JSON text as it is (NULL:
 * {}). */
void reply_whole_tool_call(struct reply *r, int at, const char *id, size_t id_len, const char *name,
                           size_t name_len, const char *args, size_t args_len);
/* The same from tokens of d: string id and name, and args the arguments
 * object (each -1 when absent). */
void reply_whole_tool_call_tokens(struct reply *r, int at, const struct json_doc *d, int id, int name,
                                  int args);
/* A stream's event (or NDJSON line) that is not a JSON object: the
 * stream stops with LR_ENOMEM when rc says so, else LR_EPROTO naming why. */
int stream_not_json(struct stream_decoder *sd, int rc, const char *data, size_t len, bool line);
/* Message text (string token msg, or -1) in an error of the provider's
 * shape, into r->err (its code is set already). */
void provider_error_message(struct reply *r, int status, struct json_doc *d, int msg);
/* A provider's error name (type, status) to a code. */
struct named_code {
	const char *name;
	int code;
};
/* The code table gives name, else fallback. */
int named_code(const struct named_code *table, size_t n, const char *name, int fallback);
/* HTTP status to code, for responses whose body says nothing finer. */
int provider_status_code(int status);

#endif
