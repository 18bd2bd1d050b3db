/* Shared by the provider files only (openai.c, anthropic.c, ollama.c,
 * gemini.c, provider.c); the engine includes provider.h. */
#ifndef LR_PROVIDER_IMPL_H
#define LR_PROVIDER_IMPL_H

#include <stdint.h>
#include <string.h>

#include "format/ndjson.h"
#include "provider/provider.h"
#include "format/sse.h"

struct stream_decoder {
	enum provider p;
	bool ndjson;
	bool fatal;                 /* framing or JSON broke: stop reading */
	struct sse_parser sse;      /* owner: the decoder */
	struct ndjson_parser nd;    /* owner: the decoder */
	struct reply *r;            /* borrowed: the future's reply */
	/* Anthropic: content blocks arrive one at a time. */
	int block;                  /* index of the open block, -1 none */
	int block_tool;             /* its tool-call index, -1 for a text block */
	int tools;                  /* tool blocks so far */
	bool json_block;            /* the open block is response_format's JSON tool */
	bool json_reply;            /* such a block was seen */
	/* Gemini and Ollama number calls themselves. */
	int calls;
	struct json_doc doc;        /* owner: the decoder; Ollama lines and Gemini chunks */
};

/* Body builders: from the unified (OpenAI-shaped) body in d, for model. */
/* A composed *why is written into why_text (why_cap bytes). */
int anthropic_build(const struct json_doc *d, const char *model, bool stream, struct buf *out,
                    char *why_text, size_t why_cap, const char **why);
int ollama_build(const struct json_doc *d, const char *model, bool stream, struct buf *out,
                 const char **why);
int ollama_build_embed(const struct json_doc *d, const char *model, struct buf *out,
                       const char **why);
int gemini_build(const struct json_doc *d, const char *model, struct buf *out, const char **why);

/* Whole responses into r (success: text, calls, finish, usage, model). */
void openai_parse(int status, const char *body, size_t len, struct json_doc *doc, struct reply *r,
                  bool *body_is_json);
void anthropic_parse(struct json_doc *d, struct reply *r);
void ollama_parse(struct json_doc *d, struct reply *r);
int ollama_embed_body(struct json_doc *d, struct reply *r, struct buf *out);
void gemini_parse(struct json_doc *d, struct reply *r, int *calls);
/* The provider's error body: code and message into r. */
void anthropic_error(struct json_doc *d, bool have_doc, int status, struct reply *r);
void ollama_error(struct json_doc *d, bool have_doc, int status, struct reply *r);
void gemini_error(struct json_doc *d, bool have_doc, int status, struct reply *r);

/* Stream events. */
int openai_sse_event(struct stream_decoder *sd, const struct sse_event *ev);
int anthropic_sse_event(struct stream_decoder *sd, const struct sse_event *ev);
int gemini_sse_event(struct stream_decoder *sd, const struct sse_event *ev);
int ollama_line(void *ctx, const char *line, size_t len);

/* Helpers. */
int64_t provider_count(const char *v, size_t len);
/* The key leading into level of p is lit (n bytes): the scanners' test. */
static inline bool provider_key_is(const struct json_scan_path *p, int level, const char *lit, size_t n)
{
	return level < p->depth && p->key[level] && p->key_len[level] == n &&
	       memcmp(p->key[level], lit, n) == 0;
}
#define KEY_IS(p, level, lit) provider_key_is(p, level, lit, sizeof(lit) - 1)
/* Appends the raw span of value i (strings with their quotes). */
int json_copy_value(struct buf *b, const struct json_doc *d, int i);
/* The unescaped text of string token i into b. */
int json_unescape_token(struct buf *b, const struct json_doc *d, int i);
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
/* Message text in an error of the provider's shape, into r. */
void provider_error_message(struct reply *r, int status, struct json_doc *d, int msg);

#endif
