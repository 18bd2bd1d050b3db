/*
 * OpenAI's Files + Batches for one part: the upload (multipart: our bytes,
 * the part file read in pieces, our bytes), the create with metadata
 * naming the run and the part, adoption of a batch an earlier run created
 * (GET /v1/batches, newest first, until one older than our first create
 * attempt), polling, cancel, and the output and error files' downloads.
 */
#include <fcntl.h>
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

/* The body of call c parsed into pb->doc; false when it is not an object. */
static bool parse_body(struct pbatch *pb, const lr_result *r)
{
	return r->body && json_parse(&pb->doc, r->body, r->body_len) == 0 &&
	       pb->doc.tok[0].type == JSON_OBJECT;
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

/* 1 adopted (p submitted), 0 none there, -1 could not tell. */
static int adopt(struct pbatch *pb, struct pb_part *p)
{
	char after[96] = "";
	for (int page = 0; page < 1000; page++) {
		char target[160];
		snprintf(target, sizeof target, "/v1/batches?limit=100%s%s", after[0] ? "&after=" : "",
		         after);
		struct pb_call c;
		if (pb_http(pb, pb_request(PB_OPENAI, LR_METHOD_GET, target), &c))
			return -1;
		if (c.r->error || !parse_body(pb, c.r)) {
			pb_print_failure("listing batches", c.r);
			pb_call_done(&c);
			return -1;
		}
		const struct json_doc *d = &pb->doc;
		int data = json_object_get(d, 0, "data");
		bool older = false, found = false;
		int t = data >= 0 && d->tok[data].type == JSON_ARRAY ? data + 1 : -1;
		for (int i = 0; t >= 0 && i < d->tok[data].size; i++, t = json_skip(d, t)) {
			if (ours(pb, p, t)) {
				pb_json_str(d, t, "id", p->batch_id, sizeof p->batch_id);
				read_batch(pb, p, t);
				if (p->status != PS_ENDED)
					p->status = PS_SUBMITTED;
				found = true;
				break;
			}
			int64_t created = pb_json_int(d, t, "created_at");
			/* A minute of clock skew allowed. */
			if (created >= 0 && (uint64_t)created * 1000 + 60000 < p->creating_ms)
				older = true;
			pb_json_str(d, t, "id", after, sizeof after);
		}
		int more = json_object_get(d, 0, "has_more");
		bool has_more = more >= 0 && pb_json_lit(d, more, "true");
		pb_call_done(&c);
		if (found)
			return 1;
		if (older || !has_more || !after[0])
			return 0;
	}
	return 0;
}

int pb_openai_adopt(struct pbatch *pb, struct pb_part *p)
{
	return adopt(pb, p);
}

static int upload(struct pbatch *pb, struct pb_part *p)
{
	char *path = pb_part_path(&pb->st, p, "jsonl"); /* owner: here */
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1; /* owner: here */
	if (fd < 0) {
		fprintf(stderr, "llmring batch: cannot read part %u's file %s\n", p->n,
		        path ? path : "");
		free(path);
		return -1;
	}
	free(path);
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
		if (c.r->error == LR_OK && parse_body(pb, c.r) &&
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
	if (p->status == PS_CREATING) {
		int a = adopt(pb, p);
		if (a < 0)
			return 1;
		if (a > 0) {
			pb_show_adopted(pb, p);
			return pb_state_save(&pb->st) ? -2 : 0;
		}
	}
	if (!p->file_id[0]) {
		int rc = upload(pb, p);
		if (rc)
			return rc;
		if (pb_state_save(&pb->st))
			return -2;
	}
	if (p->status == PS_PLANNED) {
		p->status = PS_CREATING;
		p->creating_ms = pb_now_ms();
		if (pb_state_save(&pb->st))
			return -2;
	}
	char body[400];
	snprintf(body, sizeof body,
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"%s\",\"completion_window\":\"24h\","
	         "\"metadata\":{\"llmring_run\":\"%s\",\"llmring_part\":\"%u\"}}",
	         p->file_id, p->ep == LR_ENDPOINT_EMBEDDINGS ? "/v1/embeddings" : "/v1/chat/completions",
	         pb->st.run_id, p->n);
	lr_request *rq = pb_request(PB_OPENAI, LR_METHOD_POST, "/v1/batches");
	/* Never retried by the engine: an answer lost after the batch was made
	 * would make a second one. The next try adopts first. */
	if (rq && (lr_request_set_max_retries(rq, 0) ||
	           lr_request_add_body_bytes(rq, body, strlen(body), NULL, NULL))) {
		lr_request_free(rq);
		rq = NULL;
	}
	struct pb_call c;
	if (pb_http(pb, rq, &c))
		return 1;
	int rc;
	if (c.r->error == LR_OK && parse_body(pb, c.r) &&
	    pb_json_str(&pb->doc, 0, "id", p->batch_id, sizeof p->batch_id)) {
		read_batch(pb, p, 0);
		if (p->status != PS_ENDED)
			p->status = PS_SUBMITTED;
		rc = pb_state_save(&pb->st) ? -2 : 0;
	} else if (pb_transient(c.r)) {
		pb->backoff_ms = pb_retry_ms(c.r, 1);
		rc = 1;
	} else {
		pb_print_failure("creating a batch", c.r);
		free(p->fail_msg);
		p->fail_msg = strdup(c.r->error_message ? c.r->error_message : "the create was refused");
		rc = -1;
	}
	pb_call_done(&c);
	return rc;
}

int pb_openai_poll(struct pbatch *pb, struct pb_part *p)
{
	char target[160];
	snprintf(target, sizeof target, "/v1/batches/%s", p->batch_id);
	struct pb_call c;
	if (pb_http(pb, pb_request(PB_OPENAI, LR_METHOD_GET, target), &c))
		return 1;
	int rc = 1;
	if (c.r->error == LR_OK && parse_body(pb, c.r)) {
		rc = read_batch(pb, p, 0) && pb_state_save(&pb->st) ? -2 : 0;
	} else if (c.r->http_status == 404) {
		/* Gone (deleted, another account, an in-process mock's run
		 * ended): its lines fail with batch_failed, which
		 * --retry-errors sends again. */
		char msg[200];
		snprintf(msg, sizeof msg, "the provider does not know batch %s (404)", p->batch_id);
		free(p->fail_msg);
		p->fail_msg = strdup(msg);
		snprintf(p->remote, sizeof p->remote, "failed");
		p->status = PS_ENDED;
		p->out_done = p->err_done = true;
		rc = pb_state_save(&pb->st) ? -2 : 0;
	} else {
		pb_print_failure("polling a batch", c.r);
		if (c.r->retry_after_s >= 0)
			pb->backoff_ms = pb_retry_ms(c.r, 1);
	}
	pb_call_done(&c);
	return rc;
}

int pb_openai_cancel(struct pbatch *pb, struct pb_part *p)
{
	char target[160];
	snprintf(target, sizeof target, "/v1/batches/%s/cancel", p->batch_id);
	struct pb_call c;
	if (pb_http(pb, pb_request(PB_OPENAI, LR_METHOD_POST, target), &c))
		return 1;
	/* 409: it ended meanwhile; the poll sees how. */
	int rc = c.r->error == LR_OK || c.r->http_status == 409 ? 0 : 1;
	if (rc)
		pb_print_failure("cancelling a batch", c.r);
	pb_call_done(&c);
	if (!rc) {
		p->cancel_sent = true;
		if (pb_state_save(&pb->st))
			return -2;
	}
	return rc;
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
