/*
 * Outcome lines: built one at a time at the end of b->pending (where they
 * are gathered: no copy per line) and written with one write() per reap
 * round; then the --stats file and the
 * summary on stderr. Lines are appended through util/buf.h's sticky error:
 * a line is checked once, when it is finished.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "pbatch.h"

/* The low `digits` hex digits of v (an even count), most significant
 * first: two digits a step from a table of byte values' pairs (a line's
 * id has 28 of them, a digit a step was a tenth of the line's cost). */
static void put_hex(char *out, uint64_t v, int digits)
{
	static const char pairs[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	                            "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
	                            "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
	                            "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
	                            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
	                            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
	                            "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
	                            "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
	for (int i = digits - 2; i >= 0; i -= 2, v >>= 8)
		memcpy(out + i, pairs + 2 * (v & 0xff), 2);
}

/*
 * Appends a JSON value that is known to be valid, on one line: bodies from
 * some servers (api.openai.com among them) are pretty-printed, and a raw
 * newline would break the JSONL. Inside valid JSON strings there are no
 * raw newlines, so only whitespace outside strings is dropped.
 */
static void append_json_one_line(struct buf *b, const char *s, size_t len)
{
	if (!memchr(s, '\n', len) && !memchr(s, '\r', len)) {
		buf_append(b, s, len);
		return;
	}
	if (buf_reserve(b, len))
		return;
	bool in_string = false, escaped = false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			continue;
		}
		b->data[b->len++] = c;
	}
}

/* Starts a line at the end of b->pending with the line's id; ids are
 * unique across runs through a random per-run prefix. Hand-formatted:
 * this runs once per request (printf was 4 % of the batch thread's time).
 * Returns the buffer the line's pieces go to. */
static struct buf *start_line(struct batch *b)
{
	static const char prefix[] = "{\"id\":\"batch_req_";
	static const char suffix[] = "\",\"custom_id\":";
	char hex[28];
	b->line_start = b->pending.len;
	b->id_counter++;
	put_hex(hex, b->id_prefix, 16);
	put_hex(hex + 16, b->id_counter, 12);
	buf_append(&b->pending, prefix, sizeof(prefix) - 1);
	buf_append(&b->pending, hex, 28);
	buf_append(&b->pending, suffix, sizeof(suffix) - 1);
	return &b->pending;
}

/* Ends the line begun at b->line_start with its newline, unless a piece
 * of it could not be appended (then the run stops) or the output failed
 * already (the line is dropped); the lines of one reap round go out
 * together (write_pending). */
static void finish_line(struct batch *b)
{
	if (!b->write_failed && (buf_append(&b->pending, "\n", 1) || buf_error(&b->pending))) {
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
	}
	if (b->write_failed) {
		b->pending.len = b->line_start; /* what the line had appended */
		return;
	}
	if (b->pending.len >= BATCH_PENDING_MAX)
		write_pending(b);
}

void write_input_error(struct batch *b, const char *custom_id, size_t id_len, const char *code,
                       const char *message, uint64_t line_hash)
{
	b->pend.invalid_lines++;
	struct buf *o = start_line(b);
	if (custom_id)
		json_append_string(o, custom_id, id_len);
	else
		buf_puts(o, "null");
	buf_puts(o, ",\"response\":null,\"error\":{\"code\":");
	json_append_string(o, code, strlen(code));
	buf_puts(o, ",\"message\":");
	json_append_string(o, message, strlen(message));
	buf_printf(o, "},\"input_line\":%" PRIu64 ",\"input_hash\":\"%016" PRIx64 "\"}", b->line_no,
	           line_hash);
	finish_line(b);
}

/*
 * Whether a whole response arrived (kept in the output line with its status
 * and body) rather than a transport failure (response null): no status, or
 * a status whose body was cut short by a reset, a deadline or a size cap.
 * The codes an HTTP status maps to, and protocol_error (a body that is not
 * JSON, or a truncated one), keep the response for diagnosis.
 */
static bool response_arrived(const lr_result *r)
{
	if (r->http_status == 0)
		return false;
	switch (r->error) {
	case LR_ECONNECT:
	case LR_ECONNRESET:
	case LR_ETOOLARGE:
	case LR_ECANCELLED:
	case LR_ENOMEM:
	case LR_ESYSTEM:
	case LR_EIO:
		return false;
	case LR_ETIMEOUT: /* 408 maps to timeout too, and then is an HTTP error */
		return r->http_status == 408;
	default:
		return true;
	}
}

static void append_response(struct batch *b, const lr_result *r)
{
	struct buf *o = &b->pending;
	if (!response_arrived(r)) {
		buf_puts(o, "null");
		return;
	}
	char status[4] = {(char)('0' + r->http_status / 100 % 10), (char)('0' + r->http_status / 10 % 10),
	                  (char)('0' + r->http_status % 10), 0};
	buf_puts(o, "{\"status_code\":");
	buf_puts(o, r->http_status >= 100 && r->http_status <= 999 ? status : "0");
	buf_puts(o, ",\"request_id\":");
	if (r->request_id)
		json_append_string(o, r->request_id, strlen(r->request_id));
	else
		buf_puts(o, "null");
	buf_puts(o, ",\"body\":");
	if (!r->body || r->body_len == 0)
		buf_puts(o, "null");
	/* The engine has parsed success bodies and JSON-object error bodies
	 * already; only other error bodies are checked here. */
	else if (r->error == LR_OK || r->body_is_json || json_parse(&b->doc, r->body, r->body_len) == 0)
		append_json_one_line(o, r->body, r->body_len);
	else
		json_append_string(o, r->body, r->body_len);
	buf_puts(o, "}");
}

void write_outcome(struct batch *b, const struct line_rec *rec, const lr_result *r)
{
	struct buf *o = start_line(b);
	json_append_string(o, rec->custom_id, rec->id_len);
	buf_puts(o, ",\"response\":");
	append_response(b, r);
	buf_puts(o, ",\"error\":");
	if (r->error == LR_OK && r->cached) {
		buf_puts(o, "null,\"cached\":true}"); /* answered from --cache */
	} else if (r->error == LR_OK) {
		buf_puts(o, "null}");
	} else {
		const char *code = lr_error_name(r->error);
		const char *msg = r->error_message ? r->error_message : lr_strerror(r->error);
		buf_puts(o, "{\"code\":");
		json_append_string(o, code, strlen(code));
		buf_puts(o, ",\"message\":");
		json_append_string(o, msg, strlen(msg));
		buf_puts(o, "}}");
	}
	finish_line(b);
}

/*
 * Writes every complete line gathered since the last call with one
 * write(): never part of a line, so a crash at any moment leaves whole
 * lines (at worst a torn tail after a failed disk, which resume cuts off)
 * and loses only what was in flight. One syscall per reap round instead
 * of one per request.
 */
void write_pending(struct batch *b)
{
	size_t off = 0;
	while (!b->write_failed && off < b->pending.len) {
		ssize_t n = write(b->out_fd, b->pending.data + off, b->pending.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "llmring batch: cannot write %s: %s\n", b->opt.output_path,
			        n < 0 ? strerror(errno) : "short write");
			b->write_failed = true;
			break;
		}
		off += (size_t)n;
	}
	/* Only what reached the file counts as done. */
	if (b->write_failed) {
		b->unwritten += b->pend.succeeded + b->pend.failed + b->pend.invalid_lines;
	} else {
		b->succeeded += b->pend.succeeded;
		b->failed += b->pend.failed;
		b->invalid_lines += b->pend.invalid_lines;
	}
	memset(&b->pend, 0, sizeof(b->pend));
	buf_clear(&b->pending);
}

int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
/* The unpriced model names, all of them (max 0) or the first max and
 * how many more. */
static void append_unpriced(struct buf *s, const struct batch *b, const char *sep, bool json,
                            size_t max)
{
	size_t count = b->unpriced.count, shown = max && count > max ? max : count;
	for (size_t k = 0; k < shown; k++) {
		const char *name = b->unpriced.names[k];
		if (k)
			buf_puts(s, sep);
		if (json)
			json_append_string(s, name, strlen(name));
		else
			buf_puts(s, name);
	}
	if (shown < count)
		buf_printf(s, " and %zu more", count - shown);
}

int write_stats_file(struct batch *b, double wall)
{
	struct buf s = {0}; /* owner: this function */
	double rate = wall > 0 ? (double)b->requests / wall : 0.0;
	buf_printf(&s, "{\"requests\":%" PRIu64 ",\"skipped\":%" PRIu64, b->requests, b->skipped);
	buf_printf(&s, ",\"succeeded\":%" PRIu64 ",\"failed\":%" PRIu64, b->succeeded, b->failed);
	buf_printf(&s, ",\"invalid_lines\":%" PRIu64 ",\"retries\":%" PRIu64, b->invalid_lines,
	           b->retries);
	buf_printf(&s, ",\"input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64, b->input_tokens,
	           b->output_tokens);
	/* null only when nothing was priced (so "free" and "unknown" differ). */
	if (b->priced)
		buf_printf(&s, ",\"cost_usd\":%.10g", b->cost_usd);
	else
		buf_puts(&s, ",\"cost_usd\":null");
	buf_printf(&s, ",\"cache_hits\":%" PRIu64 ",\"cost_saved_usd\":%.10g", b->cache_hits,
	           b->cost_saved_usd);
	buf_puts(&s, ",\"unpriced_models\":[");
	append_unpriced(&s, b, ",", true, 0);
	buf_puts(&s, "]");
	if (b->pb)
		pb_stats_fields(b->pb, &s);
	buf_printf(&s, ",\"wall_s\":%.3f,\"requests_per_s\":%.1f}\n", wall, rate);
	/* Opened (and so checked) before the run; replaced in place. A
	 * device or pipe cannot be truncated, and need not be. */
	int err = buf_error(&s) ? ENOMEM : 0;
	if (!err && ftruncate(b->stats_fd, 0) != 0 && errno != EINVAL)
		err = errno;
	if (!err && lseek(b->stats_fd, 0, SEEK_SET) < 0 && errno != ESPIPE)
		err = errno;
	if (!err) {
		int w = write_all(b->stats_fd, s.data, s.len);
		err = w ? -w : 0;
	}
	if (err)
		fprintf(stderr, "llmring batch: cannot write the stats file %s: %s\n", b->opt.stats_path,
		        strerror(err));
	buf_free(&s);
	return err ? -1 : 0;
}

void print_summary(struct batch *b, double wall)
{
	struct buf unpriced = {0}; /* owner: this function */
	append_unpriced(&unpriced, b, ", ", false, BATCH_SUMMARY_MODEL_NAMES);
	buf_append(&unpriced, "", 1);
	if (buf_error(&unpriced))
		buf_clear(&unpriced);
	const char *names = unpriced.len ? unpriced.data : "";
	fprintf(stderr, "llmring batch: %" PRIu64 " requests: %" PRIu64 " succeeded, %" PRIu64
	        " failed, %" PRIu64 " skipped (already done), %" PRIu64 " retries",
	        b->requests, b->succeeded, b->failed, b->skipped, b->retries);
	if (b->invalid_lines)
		fprintf(stderr, "; %" PRIu64 " unusable input lines", b->invalid_lines);
	if (b->unwritten)
		fprintf(stderr, "; %" PRIu64 " outcomes not written", b->unwritten);
	fprintf(stderr, "\n  tokens: %" PRId64 " input, %" PRId64 " output; ", b->input_tokens,
	        b->output_tokens);
	if (b->priced && b->unpriced.count)
		fprintf(stderr, "cost: $%.6f (unpriced: %s)", b->cost_usd, names);
	else if (b->priced)
		fprintf(stderr, "cost: $%.6f", b->cost_usd);
	else if (b->unpriced.count)
		fprintf(stderr, "cost: unknown (unpriced: %s)", names);
	else
		fputs("cost: none", stderr);
	if (b->opt.cache_path && b->opt.cache_mode != LR_CACHE_OFF)
		fprintf(stderr, "\n  cache: %" PRIu64 " hits, $%.6f saved", b->cache_hits, b->cost_saved_usd);
	if (b->pb)
		pb_summary(b->pb);
	fprintf(stderr, "\n  %.2f s, %.1f requests/s\n", wall,
	        wall > 0 ? (double)b->requests / wall : 0.0);
	buf_free(&unpriced);
}
