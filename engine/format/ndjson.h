/*
 * Newline-delimited JSON framing (Ollama's streaming responses),
 * feed-and-callback.
 *
 * The caller feeds body bytes as they arrive, split anywhere; the framer
 * calls back once per complete non-blank line, without its LF (and
 * without a CR before it). It does not parse JSON: the line goes to the
 * JSON layer as it is. A line that lies inside one fed buffer is passed
 * as a pointer into that buffer; only a line split across feeds is copied
 * into the framer's own buffer (grown geometrically up to the cap, kept
 * for the next line).
 */
#ifndef LR_NDJSON_H
#define LR_NDJSON_H

#include <stdbool.h>
#include <stddef.h>

/* Returns 0 to go on, or a negative LR_E* code that stops the framer.
 * line is valid only during the call and is not NUL-terminated. */
typedef int (*ndjson_line_fn)(void *ctx, const char *line, size_t len);

struct ndjson_parser {
	size_t max_line_bytes; /* default 1 MiB: the bytes before LF, a CR included */
	/* Private to ndjson.c. */
	int error;             /* sticky LR_E* once stopped; 0 while running */
	char *partial;         /* owner: this parser. A line split across feeds. */
	size_t partial_len, partial_cap;
};

/* Zero max_line_bytes means the default. */
void ndjson_parser_init(struct ndjson_parser *p, size_t max_line_bytes);
/* Start a new stream: keeps the limit and the allocation, clears the rest. */
void ndjson_parser_reset(struct ndjson_parser *p);
void ndjson_parser_free(struct ndjson_parser *p);

/*
 * Feed len bytes. All are consumed. Lines that are empty or only spaces,
 * tabs and CRs are skipped. Returns 0 or a negative LR_E* code:
 * LR_ETOOLARGE (a line past the cap), LR_ENOMEM, or whatever on_line
 * returned. After an error the framer stays stopped until reset.
 */
int ndjson_parser_feed(struct ndjson_parser *p, const char *buf, size_t len,
                       ndjson_line_fn on_line, void *ctx);

/* The stream ended: a last line without LF is delivered when it is not
 * blank (Ollama ends every line with LF; this is leniency). Returns 0, the
 * callback's code, or the sticky error. The framer is then empty. */
int ndjson_parser_finish(struct ndjson_parser *p, ndjson_line_fn on_line, void *ctx);

/* True when bytes of an unfinished line are pending. */
bool ndjson_parser_mid_line(const struct ndjson_parser *p);

#endif
