/*
 * A part's results into OUTPUT, in the direct batch's line format:
 * OpenAI's output and error lines are that format already; Anthropic's
 * results are translated (succeeded: the message as a chat.completion
 * through the provider's own parser, as a direct request would get it;
 * errored: the provider's error code; canceled, expired: batch_cancelled,
 * batch_expired). Then every line of the part still without an outcome
 * (the batch failed, expired or was cancelled before reaching it) gets
 * the part's code. Merging is idempotent: a custom_id already in OUTPUT
 * is skipped, so a kill between the append and the state's "merged"
 * never duplicates a line. With --cache each success is stored under its
 * line's key (pbatch_cache.c), also when its line was written by a merge
 * that a kill cut short.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pbatch.h"
#include "provider/provider.h"

static void put_hex(char *out, uint64_t v, int digits)
{
	static const char xdigits[] = "0123456789abcdef";
	for (int i = digits - 1; i >= 0; i--, v >>= 4)
		out[i] = xdigits[v & 15];
}

/* Starts pb->line as the direct batch starts its lines (a run-unique id). */
static void start_line(struct pbatch *pb, const char *id, size_t id_len)
{
	struct batch *b = pb->b;
	char hex[28];
	buf_clear(&pb->line);
	b->id_counter++;
	put_hex(hex, b->id_prefix, 16);
	put_hex(hex + 16, b->id_counter, 12);
	buf_puts(&pb->line, "{\"id\":\"batch_req_");
	buf_append(&pb->line, hex, 28);
	buf_puts(&pb->line, "\",\"custom_id\":");
	json_append_string(&pb->line, id, id_len);
}

/* Moves pb->line (a whole outcome) to the batch's pending lines. */
static int finish_line(struct pbatch *pb, bool ok)
{
	struct batch *b = pb->b;
	if (buf_error(&pb->line) || buf_append(&b->pending, pb->line.data, pb->line.len) ||
	    buf_append(&b->pending, "\n", 1)) {
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
		return -1;
	}
	pb->merged_lines++;
	if (ok)
		b->pend.succeeded++;
	else
		b->pend.failed++;
	if (b->pending.len >= BATCH_PENDING_MAX)
		write_pending(b);
	return b->write_failed ? -1 : 0;
}

static void error_line(struct pbatch *pb, const char *id, size_t id_len, const char *code,
                       const char *msg)
{
	start_line(pb, id, id_len);
	buf_puts(&pb->line, ",\"response\":null,\"error\":{\"code\":");
	json_append_string(&pb->line, code, strlen(code));
	buf_puts(&pb->line, ",\"message\":");
	json_append_string(&pb->line, msg, strlen(msg));
	buf_puts(&pb->line, "}}");
}

/* Whether custom_id has an outcome already; else it is recorded as
 * having one now. -1 out of memory. */
static int seen(struct pbatch *pb, const char *id, size_t len)
{
	long no = id_set_find(&pb->written, id, len);
	if (no >= 0)
		return 1;
	return no == ID_FAILED || id_set_add(&pb->written, id, len, ID_DONE_OK) ? -1 : 0;
}

/* For a result line: 1 skip it (its id has an outcome, or is not one of
 * the part's: a provider's answer never adds lines), 0 write it (now
 * recorded), -1 out of memory. *no: its line's order in the part, or -1
 * for an id not in the part. */
static int result_seen(struct pbatch *pb, const char *id, size_t len, long *no)
{
	*no = id_set_find(&pb->part_ids, id, len);
	if (*no == ID_FAILED)
		return -1;
	if (*no < 0) {
		pb->strangers++;
		return 1;
	}
	return seen(pb, id, len);
}

/* USD of a request's tokens at rates per million (cached within input,
 * as the engine's price_cost counts them). */
static double cost_at(double pin, double pcached, double pout, int64_t in, int64_t cached,
                      int64_t out)
{
	return ((double)(in - cached) * pin + (double)cached * pcached + (double)out * pout) / 1e6;
}

/* Says once per model that its batched tokens are priced at the
 * standard rate: the table has no batch rates for it. */
static void note_no_batch_rate(struct pbatch *pb, const char *model)
{
	size_t len = strlen(model);
	if (model_names_find(&pb->no_batch_rate, model, len, false) ||
	    !model_names_find(&pb->no_batch_rate, model, len, true) || pb->b->opt.quiet)
		return;
	fprintf(stderr, "llmring batch: the price table has no batch rate for %s: its batched "
	        "tokens are priced at the standard rate (no saving counted)\n", model);
}

/*
 * Token counts and cost of a success body (token body of doc): at the
 * price table's batch rates (lr_engine_batch_price), and at the direct
 * ones for the saving; a model without batch rates costs its direct
 * price, with a notice.
 */
static void count_usage(struct pbatch *pb, const struct json_doc *d, int body)
{
	int64_t in = pb_json_int(d, body, "usage.prompt_tokens");
	int64_t out = pb_json_int(d, body, "usage.completion_tokens");
	int64_t cached = pb_json_int(d, body, "usage.prompt_tokens_details.cached_tokens");
	if (in < 0)
		in = 0;
	if (out < 0)
		out = 0;
	if (cached < 0)
		cached = 0;
	if (cached > in)
		cached = in;
	struct batch *b = pb->b;
	b->input_tokens += in;
	b->output_tokens += out;
	pb->batched_input_tokens += (uint64_t)in;
	pb->batched_output_tokens += (uint64_t)out;
	char model[128];
	bool named = pb_json_str(d, body, "model", model, sizeof model);
	double pin, pcached, pout, bin, bcached, bout;
	if (named && lr_engine_price(b->eng, model, &pin, &pcached, &pout) == 0) {
		double direct = cost_at(pin, pcached, pout, in, cached, out), batch = direct;
		if (lr_engine_batch_price(b->eng, model, &bin, &bcached, &bout) == 0)
			batch = cost_at(bin, bcached, bout, in, cached, out);
		else
			note_no_batch_rate(pb, model);
		pb->direct_cost_usd += direct;
		pb->batch_cost_usd += batch;
		b->cost_usd += batch;
		b->priced = true;
		pb->priced = true;
	} else if (in || out) {
		const char *name = named ? model : "?";
		model_names_find(&b->unpriced, name, strlen(name), true);
	}
}

/*
 * A JSONL line parsed into b->doc (scratch_string reads b->doc) and its
 * custom_id unescaped into b->scratch: the id's length; LINE_NO_ID when
 * the line is not an object with a string custom_id; -1 out of memory.
 */
#define LINE_NO_ID (-2)
static long line_custom_id(struct pbatch *pb, const char *line, size_t len)
{
	struct json_doc *d = &pb->b->doc;
	if (json_parse(d, line, len) != 0 || d->tok[0].type != JSON_OBJECT)
		return LINE_NO_ID;
	int id = json_object_get(d, 0, "custom_id");
	if (id < 0 || d->tok[id].type != JSON_STRING)
		return LINE_NO_ID;
	long n = scratch_string(pb->b, id);
	return n < 0 ? -1 : n;
}

/* An OpenAI output or error line: ours already. */
static int merge_openai(struct pbatch *pb, const char *line, size_t len)
{
	struct json_doc *d = &pb->b->doc;
	long n = line_custom_id(pb, line, len);
	if (n < 0)
		return n == LINE_NO_ID ? 0 : -1;
	long no;
	int s = result_seen(pb, pb->b->scratch, (size_t)n, &no);
	if (s < 0)
		return -1;
	int err = json_object_get(d, 0, "error");
	bool ok = err >= 0 && pb_json_lit(d, err, "null");
	int body = json_path(d, 0, "response.body");
	if (ok && body >= 0 && pb->nkeys) {
		const char *text;
		size_t tl;
		char rid[128];
		json_span(d, body, &text, &tl);
		if (!pb_json_str(d, 0, "response.request_id", rid, sizeof rid))
			rid[0] = '\0';
		pb_store(pb, no, text, tl, rid);
	}
	if (s)
		return 0;
	if (ok && body >= 0)
		count_usage(pb, d, body);
	buf_clear(&pb->line);
	buf_append(&pb->line, line, len);
	return finish_line(pb, ok);
}

static const struct {
	const char *type, *code;
	int status;
} anthropic_errors[] = {
	{"invalid_request_error", "bad_request", 400},  {"authentication_error", "auth_error", 401},
	{"permission_error", "permission_denied", 403}, {"not_found_error", "not_found", 404},
	{"request_too_large", "bad_request", 413},      {"rate_limit_error", "rate_limited", 429},
	{"api_error", "server_error", 500},             {"overloaded_error", "overloaded", 529},
};

/* A succeeded result: the message (text, tl bytes; NULL: none) through
 * the provider's parser into the chat.completion a direct line gets;
 * stored under the key of the part's line no; its line written unless
 * only_store (written before). */
static int merge_succeeded(struct pbatch *pb, const char *cid, size_t n, const char *text,
                           size_t tl, long no, bool only_store)
{
	struct reply rp; /* owner: here */
	reply_init(&rp, NULL, NULL);
	bool is_json = false, rewritten = false;
	buf_clear(&pb->scratch);
	/* pb->doc is free while merging (results are read through b->doc). */
	if (text)
		provider_parse_response(PROVIDER_ANTHROPIC, LR_ENDPOINT_CHAT, &pb->doc, 200, text, tl,
		                        &rp, &is_json, &pb->scratch, &rewritten);
	if (text && !rewritten && !rp.err.code) {
		buf_clear(&pb->scratch);
		reply_openai_body(&rp, &pb->scratch);
	}
	int rc = 0;
	bool readable = text && !rp.err.code && !buf_error(&pb->scratch);
	if (readable)
		pb_store(pb, no, pb->scratch.data, pb->scratch.len, rp.id);
	if (only_store) {
		/* nothing to write */
	} else if (!readable) {
		error_line(pb, cid, n, "protocol_error", "the batch result's message could not be read");
		rc = finish_line(pb, false);
	} else {
		start_line(pb, cid, n);
		buf_puts(&pb->line, ",\"response\":{\"status_code\":200,\"request_id\":");
		if (rp.id[0])
			json_append_string(&pb->line, rp.id, strlen(rp.id));
		else
			buf_puts(&pb->line, "null");
		buf_puts(&pb->line, ",\"body\":");
		buf_append(&pb->line, pb->scratch.data, pb->scratch.len);
		buf_puts(&pb->line, "},\"error\":null}");
		if (json_parse(&pb->doc, pb->scratch.data, pb->scratch.len) == 0)
			count_usage(pb, &pb->doc, 0);
		rc = finish_line(pb, true);
	}
	reply_free(&rp);
	return rc;
}

/* An Anthropic result line, translated. */
static int merge_anthropic(struct pbatch *pb, const char *line, size_t len)
{
	struct json_doc *d = &pb->b->doc;
	long n = line_custom_id(pb, line, len);
	if (n < 0)
		return n == LINE_NO_ID ? 0 : -1;
	char *cid = strndup(pb->b->scratch, (size_t)n); /* owner: here */
	if (!cid)
		return -1;
	long no;
	int s = result_seen(pb, cid, (size_t)n, &no);
	char type[24] = "";
	if (s >= 0)
		pb_json_str(d, 0, "result.type", type, sizeof type);
	bool succeeded = strcmp(type, "succeeded") == 0;
	/* Written before (a merge a kill cut short): its store may not have
	 * been committed, so it is stored again. */
	bool only_store = s == 1 && no >= 0 && succeeded && pb->nkeys;
	if (s && !only_store) {
		free(cid);
		return s < 0 ? -1 : 0;
	}
	int rc;
	if (succeeded) {
		int msg = json_path(d, 0, "result.message");
		const char *text = NULL;
		size_t tl = 0;
		if (msg >= 0)
			json_span(d, msg, &text, &tl);
		rc = merge_succeeded(pb, cid, (size_t)n, text, tl, no, only_store);
	} else if (strcmp(type, "errored") == 0) {
		char etype[48] = "", emsg[400] = "the request failed";
		pb_json_str(d, 0, "result.error.error.type", etype, sizeof etype);
		pb_json_str(d, 0, "result.error.error.message", emsg, sizeof emsg);
		const char *code = "server_error";
		int status = 500;
		for (size_t k = 0; k < sizeof anthropic_errors / sizeof anthropic_errors[0]; k++)
			if (strcmp(etype, anthropic_errors[k].type) == 0) {
				code = anthropic_errors[k].code;
				status = anthropic_errors[k].status;
			}
		int e = json_path(d, 0, "result.error");
		const char *et = NULL;
		size_t el = 0;
		if (e >= 0)
			json_span(d, e, &et, &el);
		start_line(pb, cid, (size_t)n);
		buf_printf(&pb->line, ",\"response\":{\"status_code\":%d,\"request_id\":null,\"body\":",
		           status);
		if (et && el)
			buf_append(&pb->line, et, el);
		else
			buf_puts(&pb->line, "null");
		buf_puts(&pb->line, "},\"error\":{\"code\":");
		json_append_string(&pb->line, code, strlen(code));
		buf_puts(&pb->line, ",\"message\":");
		json_append_string(&pb->line, emsg, strlen(emsg));
		buf_puts(&pb->line, "}}");
		rc = finish_line(pb, false);
	} else if (strcmp(type, "canceled") == 0) {
		error_line(pb, cid, (size_t)n, "batch_cancelled",
		           "the batch was cancelled before this request ran");
		rc = finish_line(pb, false);
	} else {
		error_line(pb, cid, (size_t)n, "batch_expired",
		           "the batch expired before this request ran (--retry-errors sends it again)");
		rc = finish_line(pb, false);
	}
	free(cid);
	return rc;
}

/* Calls fn for each line of path (a missing file has none). */
static int each_line(struct pbatch *pb, const char *path,
                     int (*fn)(struct pbatch *pb, const char *line, size_t len))
{
	int fd = open(path, O_RDONLY | O_CLOEXEC); /* owner: here */
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	FILE *f = fdopen(fd, "r"); /* owner: here (with fd) */
	if (!f) {
		close(fd);
		return -1;
	}
	char *line = NULL; /* owner: here */
	size_t cap = 0;
	ssize_t n;
	int rc = 0;
	while (!rc && (n = getline(&line, &cap, f)) >= 0) {
		size_t len = (size_t)n;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		rc = fn(pb, line, len);
	}
	if (!rc && ferror(f))
		rc = -1;
	free(line);
	fclose(f);
	return rc;
}

/* The custom_id of a line of the part's own file into b->scratch: its
 * length, 0 for the body's first and last lines (Anthropic), -1. */
static long part_line_id(struct pbatch *pb, const char *line, size_t len)
{
	if (len && line[len - 1] == ',')
		len--; /* Anthropic's body, one request a line */
	if (len == 0 || line[0] != '{')
		return 0;
	long n = line_custom_id(pb, line, len);
	return n == LINE_NO_ID ? 0 : n;
}

static int add_part_id(struct pbatch *pb, const char *line, size_t len)
{
	long n = part_line_id(pb, line, len);
	if (n <= 0)
		return (int)n;
	const char *id = pb->b->scratch;
	long no = id_set_find(&pb->part_ids, id, (size_t)n);
	if (no >= 0)
		return 0;
	return no == ID_FAILED || id_set_add(&pb->part_ids, id, (size_t)n, ID_SEEN) ? -1 : 0;
}

/* A line of the part's own file: its custom_id gets missing_code when it
 * has no outcome yet. */
static int merge_missing(struct pbatch *pb, const char *line, size_t len)
{
	long n = part_line_id(pb, line, len);
	if (n <= 0)
		return (int)n;
	int s = seen(pb, pb->b->scratch, (size_t)n);
	if (s)
		return s < 0 ? -1 : 0;
	error_line(pb, pb->b->scratch, (size_t)n, pb->missing_code, pb->missing_msg);
	return finish_line(pb, false);
}

int pb_merge(struct pbatch *pb, struct pb_part *p, const char *code, const char *message)
{
	/* The part's ids, then its results (only for those), then what is
	 * left without one. */
	const char *suffix[4] = {"jsonl", "out.jsonl", "err.jsonl", "jsonl"};
	int (*const pass[4])(struct pbatch *, const char *, size_t) = {
		add_part_id, p->api == PB_ANTHROPIC ? merge_anthropic : merge_openai,
		p->api == PB_ANTHROPIC ? merge_anthropic : merge_openai, merge_missing};
	int rc = 0;
	id_set_free(&pb->part_ids);
	pb->strangers = 0;
	pb->missing_code = code;
	pb->missing_msg = message;
	if (pb_keys_load(pb, p)) {
		fprintf(stderr, "llmring batch: out of memory\n");
		return -1;
	}
	for (int k = 0; k < 4 && !rc; k++) {
		char *path = pb_part_path(&pb->st, p, suffix[k]); /* owner: here */
		if (!path)
			return -1;
		rc = each_line(pb, path, pass[k]);
		free(path);
	}
	id_set_free(&pb->part_ids);
	pb_keys_free(pb);
	if (pb->strangers && !pb->b->opt.quiet)
		fprintf(stderr, "llmring batch: part %u: %" PRIu64 " result line%s named a custom_id "
		        "not in the part; ignored\n", p->n, pb->strangers, pb->strangers == 1 ? "" : "s");
	write_pending(pb->b);
	if (rc || pb->b->write_failed) {
		fprintf(stderr, "llmring batch: cannot merge part %u into %s\n", p->n,
		        pb->b->opt.output_path);
		return -1;
	}
	return 0;
}

/* An output line's custom_id into pb->written. */
static int load_one(struct pbatch *pb, const char *line, size_t len)
{
	long n = line_custom_id(pb, line, len);
	if (n < 0)
		return n == LINE_NO_ID ? 0 : -1;
	return seen(pb, pb->b->scratch, (size_t)n) < 0 ? -1 : 0;
}

int pb_load_written(struct pbatch *pb)
{
	if (each_line(pb, pb->b->opt.output_path, load_one)) {
		fprintf(stderr, "llmring batch: cannot read %s\n", pb->b->opt.output_path);
		return -1;
	}
	return 0;
}
