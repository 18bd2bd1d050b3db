/*
 * The plan: each usable input line (the direct batch's checks passed, not
 * done in OUTPUT, not in a part still pending) goes into a part of its
 * (provider, model, endpoint), as the body a direct request would send
 * (provider_build_request: the prefix stripped, Anthropic's translation).
 * A part is closed at the provider's limits. Part files:
 *   OpenAI     JSONL of {"custom_id","method","url","body"}: the upload.
 *   Anthropic  the create body itself, one request a line so that it can
 *              be read back line by line:
 *                {"requests":[
 *                {"custom_id":...,"params":{...}},
 *                {"custom_id":...,"params":{...}}
 *                ]}
 * Lines of providers without a batch API here go direct (submit_line).
 * With --cache a line is looked up first (pbatch_cache.c), and planned
 * here once it was not found, with its key beside it (part-N.keys).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pbatch.h"
#include "provider/provider.h"

#define PB_WRITE_CHUNK (256u << 10) /* per open part: at most 256 models at once */

/* Anthropic's rule: ^[a-zA-Z0-9_-]{1,64}$. */
static bool anthropic_id_ok(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int flush_part(struct pb_part *p)
{
	if (p->wbuf.len == 0)
		return 0;
	int rc = write_all(p->fd, p->wbuf.data, p->wbuf.len);
	buf_clear(&p->wbuf);
	return rc;
}

/* Ends part p's file: the closing of Anthropic's body, written, synced;
 * its keys beside it. */
static int close_part(const struct pb_state *st, struct pb_part *p)
{
	if (p->fd < 0)
		return 0;
	if (pb_keys_write(st, p)) {
		close(p->fd);
		p->fd = -1;
		return -1;
	}
	if (p->api == PB_ANTHROPIC) {
		buf_puts(&p->wbuf, "\n]}\n");
		p->bytes += 4;
	}
	int rc = buf_error(&p->wbuf) ? -ENOMEM : flush_part(p);
	if (!rc && fsync(p->fd) != 0)
		rc = -errno;
	close(p->fd);
	p->fd = -1;
	buf_free(&p->wbuf);
	return rc;
}

/* The open part of (api, ep, model) with room for a line of n bytes, a
 * new one when none; NULL after printing why. */
static struct pb_part *part_for(struct pbatch *pb, int api, enum lr_endpoint ep, const char *model,
                                size_t n)
{
	struct pb_state *st = &pb->st;
	uint64_t max_lines = api == PB_ANTHROPIC ? pb->lim.anthropic_lines : pb->lim.openai_lines;
	uint64_t max_bytes = api == PB_ANTHROPIC ? pb->lim.anthropic_bytes : pb->lim.openai_bytes;
	for (size_t i = 0; i < st->nparts; i++) {
		struct pb_part *p = &st->parts[i];
		if (p->fd < 0 || p->api != api || p->ep != ep || strcmp(p->model, model) != 0)
			continue;
		if (p->lines < max_lines && p->bytes + n + 8 <= max_bytes)
			return p;
		if (close_part(st, p)) {
			fprintf(stderr, "llmring batch: cannot write part %u under %s\n", p->n, st->dir);
			return NULL;
		}
	}
	struct pb_part *p = pb_part_add(st);
	if (!p) {
		fprintf(stderr, "llmring batch: too many parts (at most %d)\n", PB_MAX_PARTS);
		return NULL;
	}
	p->api = (uint8_t)api;
	p->ep = ep;
	snprintf(p->model, sizeof p->model, "%s", model);
	char *path = pb_part_path(st, p, "jsonl"); /* owner: here */
	/* A file of this number is a leftover of a plan killed before its
	 * state was saved: nothing of it was sent. */
	p->fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
	if (p->fd < 0) {
		fprintf(stderr, "llmring batch: cannot write %s: %s\n", path ? path : st->dir,
		        strerror(errno));
		free(path);
		st->nparts--;
		return NULL;
	}
	free(path);
	/* Nor may such a leftover's keys stay: they would be read as this
	 * part's (and its results stored under other lines' keys). */
	path = pb_part_path(st, p, "keys");
	if (path)
		unlink(path);
	free(path);
	if (api == PB_ANTHROPIC) {
		buf_puts(&p->wbuf, "{\"requests\":[\n");
		p->bytes = 14;
	}
	pb->planned_parts++;
	return p;
}

/* The error line of a line that cannot go into a batch (input_line and
 * hash, so that a resume skips it as the direct batch does). */
static void refuse(struct batch *b, const char *id, size_t id_len, const char *code,
                   const char *why, uint64_t line_hash)
{
	write_input_error(b, id, id_len, code, why, line_hash);
}

/* The batch API of in's provider (enum pb_api), or -1 for none; its
 * provider and the model as sent. */
static int line_api(const struct input_request *in, const char **prov, const char **sent)
{
	*sent = NULL;
	*prov = lr_model_provider(in->model, sent);
	if (*prov && (strcmp(*prov, "openai") == 0 || strcmp(*prov, "mock") == 0))
		return PB_OPENAI;
	if (*prov && strcmp(*prov, "anthropic") == 0 && in->endpoint == LR_ENDPOINT_CHAT)
		return PB_ANTHROPIC;
	return -1;
}

/* Says once per provider that its lines go direct, and why. */
static void notice_direct(struct pbatch *pb, const char *prov, bool probed)
{
	size_t k = 0;
	for (; k < 8 && pb->noticed[k]; k++)
		if (strcmp(pb->noticed[k], prov) == 0)
			return;
	if (k < 8)
		pb->noticed[k] = prov;
	if (!pb->b->opt.quiet)
		fprintf(stderr, "llmring batch: --via provider-batch: %s lines are sent directly (%s)\n",
		        prov, probed ? "the server has no batch API: 404 on its batches route"
		                     : "no batch API for this provider or endpoint");
}

void pb_plan_line(struct batch *b, const char *custom_id, size_t id_len,
                  const struct input_request *in, const char *line, size_t len)
{
	struct pbatch *pb = b->pb;
	if (pb_line_pending(pb, b->line_no))
		return; /* in a part still running: its outcome comes from there */
	if (b->opt.cancel) {
		pb->unplanned++; /* --cancel plans nothing new */
		return;
	}
	const char *sent, *prov;
	int api = line_api(in, &prov, &sent);
	if (api < 0 || pb->direct[api]) {
		notice_direct(pb, prov ? prov : "?", api >= 0);
		submit_line(b, custom_id, id_len, in);
		return;
	}
	if (api == PB_ANTHROPIC && !anthropic_id_ok(custom_id, id_len)) {
		refuse(b, custom_id, id_len, "invalid_input",
		       "Anthropic's batch API takes custom_ids of 1 to 64 letters, digits, '_' and "
		       "'-' only: give this line another custom_id (or send it with --via direct)",
		       hash_bytes(line, len));
		return;
	}
	if (pb->cache_reads || pb->cache_writes)
		pb_lookup_submit(pb, custom_id, id_len, in, hash_bytes(line, len));
	else
		pb_plan_request(pb, custom_id, id_len, in, line, len, 0, NULL);
}

void pb_plan_request(struct pbatch *pb, const char *custom_id, size_t id_len,
                     const struct input_request *in, const char *line, size_t len,
                     uint64_t line_hash, const lr_cache_key *key)
{
	struct batch *b = pb->b;
	const char *sent, *prov;
	int api = line_api(in, &prov, &sent);
	lr_request *rq = lr_request_new(b->opt.model); /* owner: here */
	int rc = rq ? lr_request_set_endpoint(rq, in->endpoint) : LR_ENOMEM;
	if (!rc)
		rc = lr_request_set_body(rq, in->body, in->body_len);
	struct provider_request pr; /* owner: here once built */
	const char *const paths[PROVIDER_COUNT] = {"", "", "", "", ""};
	if (!rc) {
		rc = provider_build_request(rq, paths, &pr);
		if (rc) {
			refuse(b, custom_id, id_len, lr_error_name(rc),
			       pr.err.message[0] ? pr.err.message : lr_strerror(rc),
			       line ? hash_bytes(line, len) : line_hash);
			lr_request_free(rq);
			return;
		}
	}
	if (rc == LR_ENOMEM) {
		lr_request_free(rq);
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
		return;
	}
	if (rc) { /* as the direct batch answers a request it cannot submit */
		refuse(b, custom_id, id_len, lr_error_name(rc), "the request could not be submitted",
		       line ? hash_bytes(line, len) : line_hash);
		lr_request_free(rq);
		return;
	}
	const char *body = pr.body_is_input ? rq->body.data : pr.body.data;
	size_t body_len = pr.body_is_input ? rq->body.len : pr.body.len;
	struct buf *s = &pb->scratch;
	buf_clear(s);
	buf_puts(s, "{\"custom_id\":");
	json_append_string(s, custom_id, id_len);
	if (api == PB_OPENAI) {
		buf_puts(s, in->endpoint == LR_ENDPOINT_EMBEDDINGS
		                ? ",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":"
		                : ",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":");
	} else {
		buf_puts(s, ",\"params\":");
	}
	buf_append(s, body, body_len);
	buf_puts(s, api == PB_OPENAI ? "}\n" : "}");
	const char *model = pr.model[0] ? pr.model : (sent ? sent : in->model);
	struct pb_part *p = buf_error(s) ? NULL : part_for(pb, api, in->endpoint, model, s->len + 2);
	if (p) {
		if (api == PB_ANTHROPIC && p->lines)
			buf_puts(&p->wbuf, ",\n");
		buf_append(&p->wbuf, s->data, s->len);
		p->bytes += s->len + (api == PB_ANTHROPIC && p->lines ? 2 : 0);
		p->lines++;
		pb->planned_lines++;
		if (pb->cache_writes)
			pb_keys_add(p, key); /* one line each, in the part's order */
		if (buf_error(&p->wbuf) || buf_error(&p->keys) || pb_part_add_line(p, b->line_no) ||
		    (p->wbuf.len >= PB_WRITE_CHUNK && flush_part(p))) {
			fprintf(stderr, "llmring batch: cannot write part %u under %s\n", p->n,
			        pb->st.dir);
			p = NULL;
		}
	}
	if (!p)
		b->write_failed = true; /* the plan is incomplete: nothing is submitted */
	provider_request_free(&pr);
	lr_request_free(rq);
}

int pb_plan_finish(struct pbatch *pb)
{
	int rc = 0;
	for (size_t i = 0; i < pb->st.nparts; i++) {
		struct pb_part *p = &pb->st.parts[i];
		if (p->fd >= 0 && close_part(&pb->st, p)) {
			fprintf(stderr, "llmring batch: cannot write part %u under %s\n", p->n,
			        pb->st.dir);
			rc = -1;
		}
	}
	if (!rc && pb->planned_parts) {
		/* The files' names are on disk before the state names them. */
		int fd = open(pb->st.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			fsync(fd);
			close(fd);
		}
	}
	return rc;
}
