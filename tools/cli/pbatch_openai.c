/*
 * OpenAI's Files + Batches for one part: the upload (multipart: our bytes,
 * the part file read in pieces, our bytes), the create with metadata
 * naming the run and the part, adoption of a batch an earlier run created
 * (GET /v1/batches, newest first, until one older than our first create
 * attempt), polling, cancel, and the output and error files' downloads.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pbatch.h"

static bool terminal(const char *s)
{
	return !strcmp(s, "completed") || !strcmp(s, "failed") || !strcmp(s, "expired") ||
	       !strcmp(s, "cancelled");
}

/* Reads a batch object (token o of pb->doc) into p; true when its status
 * or counts changed. */
static bool read_batch(struct pbatch *pb, struct pb_part *p, int o)
{
	const struct json_doc *d = &pb->doc;
	char status[24] = "", out[96] = "", err[96] = "";
	pb_json_str(d, o, "status", status, sizeof status);
	pb_json_str(d, o, "output_file_id", out, sizeof out);
	pb_json_str(d, o, "error_file_id", err, sizeof err);
	int64_t total = pb_json_int(d, o, "request_counts.total");
	int64_t done = pb_json_int(d, o, "request_counts.completed");
	int64_t failed = pb_json_int(d, o, "request_counts.failed");
	bool changed = strcmp(status, p->remote) != 0 || (total >= 0 && (uint64_t)total != p->total) ||
	               (done >= 0 && (uint64_t)done != p->done) ||
	               (failed >= 0 && (uint64_t)failed != p->failed);
	snprintf(p->remote, sizeof p->remote, "%s", status);
	if (total >= 0)
		p->total = (uint64_t)total;
	if (done >= 0)
		p->done = (uint64_t)done;
	if (failed >= 0)
		p->failed = (uint64_t)failed;
	snprintf(p->output_file_id, sizeof p->output_file_id, "%s", out);
	snprintf(p->error_file_id, sizeof p->error_file_id, "%s", err);
	if (terminal(status)) {
		p->status = PS_ENDED;
		char code[64] = "", msg[400] = "";
		int data = json_path(d, o, "errors.data");
		if (data >= 0 && d->tok[data].type == JSON_ARRAY && d->tok[data].size > 0) {
			pb_json_str(d, data + 1, "code", code, sizeof code);
			pb_json_str(d, data + 1, "message", msg, sizeof msg);
			char both[480];
			snprintf(both, sizeof both, "%s: %s", code, msg);
			free(p->fail_msg);
			p->fail_msg = strdup(both);
		}
		changed = true;
	}
	return changed;
}

/* Whether the batch object o carries our run's and p's metadata. */
static bool ours(struct pbatch *pb, const struct pb_part *p, int o)
{
	char run[40], part[16], want[16];
	snprintf(want, sizeof want, "%u", p->n);
	return pb_json_str(&pb->doc, o, "metadata.llmring_run", run, sizeof run) &&
	       strcmp(run, pb->st.run_id) == 0 &&
	       pb_json_str(&pb->doc, o, "metadata.llmring_part", part, sizeof part) &&
	       strcmp(part, want) == 0;
}

static const struct pb_api_desc openai_api = {
	.api = PB_OPENAI, .batches = "/v1/batches", .after = "&after=", .one = "a batch",
	.many = "batches", .read_batch = read_batch,
};

struct adopt_ctx {
	struct pb_part *p;
	bool found;
};

/* Ours: p adopted, the listing stops. Older than p's first create
 * attempt (a minute of clock skew allowed): this page is the last. */
static enum pb_visit adopt_visit(struct pbatch *pb, int t, void *ctx)
{
	struct adopt_ctx *a = ctx;
	struct pb_part *p = a->p;
	const struct json_doc *d = &pb->doc;
	if (ours(pb, p, t)) {
		pb_json_str(d, t, "id", p->batch_id, sizeof p->batch_id);
		read_batch(pb, p, t);
		if (p->status != PS_ENDED)
			p->status = PS_SUBMITTED;
		a->found = true;
		return PB_LIST_STOP;
	}
	int64_t created = pb_json_int(d, t, "created_at");
	if (created >= 0 && (uint64_t)created * 1000 + 60000 < p->creating_ms)
		return PB_LIST_LAST_PAGE;
	return PB_LIST_NEXT;
}

int pb_openai_adopt(struct pbatch *pb, struct pb_part *p)
{
	struct adopt_ctx a = {.p = p};
	if (pb_list_batches(pb, &openai_api, adopt_visit, &a))
		return -1;
	return a.found ? 1 : 0;
}

static int upload(struct pbatch *pb, struct pb_part *p)
{
	int fd = pb_open_part(pb, p); /* owner: here */
	if (fd < 0)
		return -1;
	char bnd[64], ctype[96], head[400], tail[80];
	snprintf(bnd, sizeof bnd, "llmring-%s-%u", pb->st.run_id, p->n);
	snprintf(ctype, sizeof ctype, "multipart/form-data; boundary=%s", bnd);
	int hl = snprintf(head, sizeof head,
	                  "--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
	                  "--%s\r\nContent-Disposition: form-data; name=\"file\"; "
	                  "filename=\"part-%u.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n",
	                  bnd, bnd, p->n);
	int tl = snprintf(tail, sizeof tail, "\r\n--%s--\r\n", bnd);
	lr_request *rq = pb_request(PB_OPENAI, LR_METHOD_POST, "/v1/files");
	if (rq && (lr_request_add_header(rq, "Content-Type", ctype) ||
	           lr_request_add_body_bytes(rq, head, (size_t)hl, NULL, NULL) ||
	           lr_request_add_body_file(rq, fd, 0, -1) ||
	           lr_request_add_body_bytes(rq, tail, (size_t)tl, NULL, NULL))) {
		lr_request_free(rq);
		rq = NULL;
	}
	struct pb_call c;
	int rc = pb_http(pb, rq, &c) ? 1 : 0;
	if (!rc) {
		if (c.r->error == LR_OK && pb_parse_body(pb, c.r) &&
		    pb_json_str(&pb->doc, 0, "id", p->file_id, sizeof p->file_id)) {
			rc = 0;
		} else {
			pb_print_failure("uploading a part", c.r);
			rc = pb_transient(c.r) ? 1 : -1;
			if (rc < 0) {
				free(p->fail_msg);
				p->fail_msg = strdup(c.r->error_message ? c.r->error_message
				                                        : "the upload was refused");
			}
		}
		pb_call_done(&c);
	}
	close(fd); /* the future is complete: the engine is done with fd */
	return rc;
}

int pb_openai_submit(struct pbatch *pb, struct pb_part *p)
{
	bool adopted;
	int rc = pb_readopt(pb, p, &adopted);
	if (rc || adopted)
		return rc;
	if (!p->file_id[0]) {
		rc = upload(pb, p);
		if (rc)
			return rc;
		if (pb_state_save(&pb->st))
			return -2;
	}
	if (pb_mark_creating(pb, p))
		return -2;
	char body[400];
	snprintf(body, sizeof body,
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"%s\",\"completion_window\":\"24h\","
	         "\"metadata\":{\"llmring_run\":\"%s\",\"llmring_part\":\"%u\"}}",
	         p->file_id, p->ep == LR_ENDPOINT_EMBEDDINGS ? "/v1/embeddings" : "/v1/chat/completions",
	         pb->st.run_id, p->n);
	lr_request *rq = pb_request(PB_OPENAI, LR_METHOD_POST, "/v1/batches");
	if (rq && lr_request_add_body_bytes(rq, body, strlen(body), NULL, NULL)) {
		lr_request_free(rq);
		rq = NULL;
	}
	return pb_create(pb, p, rq, &openai_api);
}

int pb_openai_poll(struct pbatch *pb, struct pb_part *p)
{
	return pb_poll(pb, p, &openai_api);
}

int pb_openai_cancel(struct pbatch *pb, struct pb_part *p)
{
	return pb_cancel(pb, p, &openai_api);
}

int pb_openai_fetch(struct pbatch *pb, struct pb_part *p)
{
	const char *ids[2] = {p->output_file_id, p->error_file_id};
	bool *done[2] = {&p->out_done, &p->err_done};
	const char *suffix[2] = {"out.jsonl", "err.jsonl"};
	for (int k = 0; k < 2; k++) {
		if (*done[k] || !ids[k][0])
			continue;
		char target[160];
		snprintf(target, sizeof target, "/v1/files/%s/content", ids[k]);
		char *path = pb_part_path(&pb->st, p, suffix[k]); /* owner: here */
		int rc = path ? pb_download(pb, PB_OPENAI, target, path) : -1;
		free(path);
		if (rc)
			return rc;
		*done[k] = true;
		if (pb_state_save(&pb->st))
			return -2;
	}
	return 0;
}

int pb_has_batch_api(struct pbatch *pb, int api)
{
	struct pb_call c;
	const char *target = api == PB_ANTHROPIC ? "/v1/messages/batches?limit=1" : "/v1/batches?limit=1";
	if (pb_http(pb, pb_request(api, LR_METHOD_GET, target), &c))
		return -1;
	int has = c.r->http_status == 404 || c.r->http_status == 405 ? 0 : 1;
	if (c.r->http_status == 0) {
		pb_print_failure(api == PB_ANTHROPIC ? "reaching the Anthropic endpoint"
		                                     : "reaching the OpenAI endpoint", c.r);
		has = -1;
	}
	pb_call_done(&c);
	return has;
}
