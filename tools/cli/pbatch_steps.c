/*
 * The steps both providers' batches take alike, around each API's own
 * requests and batch objects (pbatch_openai.c, pbatch_anthropic.c, each
 * described by a struct pb_api_desc): another look for the batch of a
 * part left "creating", the create's answer, the poll, the cancel and the
 * paged list of batches that adoption searches.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbatch.h"

bool pb_parse_body(struct pbatch *pb, const lr_result *r)
{
	return r->body && json_parse(&pb->doc, r->body, r->body_len) == 0 &&
	       pb->doc.tok[0].type == JSON_OBJECT;
}

int pb_readopt(struct pbatch *pb, struct pb_part *p, bool *adopted)
{
	*adopted = false;
	if (p->status != PS_CREATING)
		return 0;
	int a = p->api == PB_ANTHROPIC ? pb_anthropic_adopt(pb, p) : pb_openai_adopt(pb, p);
	if (a == -2)
		return -2;
	if (a < 0)
		return 1;
	if (a == 0)
		return 0;
	*adopted = true;
	if (!pb->b->opt.quiet)
		fprintf(stderr, "llmring batch: part %u: adopted batch %s, which the create of an "
		        "earlier run made (not created again)\n", p->n, p->batch_id);
	return pb_state_save(&pb->st) ? -2 : 0;
}

int pb_mark_creating(struct pbatch *pb, struct pb_part *p)
{
	if (p->status != PS_PLANNED)
		return 0;
	p->status = PS_CREATING;
	p->creating_ms = pb_now_ms();
	return pb_state_save(&pb->st) ? -2 : 0;
}

int pb_open_part(struct pbatch *pb, const struct pb_part *p)
{
	char *path = pb_part_path(&pb->st, p, "jsonl"); /* owner: here */
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0)
		fprintf(stderr, "llmring batch: cannot read part %u's file %s\n", p->n,
		        path ? path : "");
	free(path);
	return fd;
}

/* pb_print_failure of "VERB NOUN" ("polling", "a message batch"). */
static void say_failure(const char *verb, const char *noun, const lr_result *r)
{
	char what[80];
	snprintf(what, sizeof what, "%s %s", verb, noun);
	pb_print_failure(what, r);
}

/* m on batches/ID/tail (p's batch): as pb_http. */
static int call_batch(struct pbatch *pb, const struct pb_part *p, const struct pb_api_desc *a,
                      enum lr_method m, const char *tail, struct pb_call *c)
{
	char target[200];
	snprintf(target, sizeof target, "%s/%s%s", a->batches, p->batch_id, tail);
	return pb_http(pb, pb_request(a->api, m, target), c);
}

/* Why a lasting failure failed, for the part's lines. */
static void set_fail_msg(struct pb_part *p, const char *msg)
{
	free(p->fail_msg);
	p->fail_msg = strdup(msg);
}

int pb_create(struct pbatch *pb, struct pb_part *p, lr_request *rq, const struct pb_api_desc *a)
{
	/* Never retried by the engine: an answer lost after the batch was made
	 * would make a second one. The next try adopts first. */
	if (rq && lr_request_set_max_retries(rq, 0)) {
		lr_request_free(rq);
		rq = NULL;
	}
	struct pb_call c;
	if (pb_http(pb, rq, &c))
		return 1;
	int rc;
	if (c.r->error == LR_OK && pb_parse_body(pb, c.r) &&
	    pb_json_str(&pb->doc, 0, "id", p->batch_id, sizeof p->batch_id)) {
		a->read_batch(pb, p, 0);
		if (p->status != PS_ENDED)
			p->status = PS_SUBMITTED;
		rc = pb_state_save(&pb->st) ? -2 : 0;
	} else if (pb_transient(c.r)) {
		pb->backoff_ms = pb_retry_ms(c.r, 1);
		rc = 1;
	} else {
		say_failure("creating", a->one, c.r);
		set_fail_msg(p, c.r->error_message ? c.r->error_message : "the create was refused");
		rc = -1;
	}
	pb_call_done(&c);
	return rc;
}

int pb_poll(struct pbatch *pb, struct pb_part *p, const struct pb_api_desc *a)
{
	struct pb_call c;
	if (call_batch(pb, p, a, LR_METHOD_GET, "", &c))
		return 1;
	int rc = 1;
	if (c.r->error == LR_OK && pb_parse_body(pb, c.r)) {
		rc = a->read_batch(pb, p, 0) && pb_state_save(&pb->st) ? -2 : 0;
	} else if (c.r->http_status == 404) {
		/* Gone (deleted, another account, an in-process mock's run
		 * ended): its lines fail with batch_failed, which
		 * --retry-errors sends again. */
		char msg[200];
		snprintf(msg, sizeof msg, "the provider does not know batch %s (404)", p->batch_id);
		set_fail_msg(p, msg);
		snprintf(p->remote, sizeof p->remote, "failed");
		p->status = PS_ENDED;
		p->out_done = p->err_done = true;
		rc = pb_state_save(&pb->st) ? -2 : 0;
	} else {
		say_failure("polling", a->one, c.r);
		if (c.r->retry_after_s >= 0)
			pb->backoff_ms = pb_retry_ms(c.r, 1);
	}
	pb_call_done(&c);
	return rc;
}

int pb_cancel(struct pbatch *pb, struct pb_part *p, const struct pb_api_desc *a)
{
	struct pb_call c;
	if (call_batch(pb, p, a, LR_METHOD_POST, "/cancel", &c))
		return 1;
	/* 409: it ended meanwhile; the poll sees how. */
	int rc = c.r->error == LR_OK || c.r->http_status == 409 ? 0 : 1;
	if (rc)
		say_failure("cancelling", a->one, c.r);
	pb_call_done(&c);
	if (!rc) {
		p->cancel_sent = true;
		if (pb_state_save(&pb->st))
			return -2;
	}
	return rc;
}

int pb_list_batches(struct pbatch *pb, const struct pb_api_desc *a,
                    enum pb_visit (*visit)(struct pbatch *pb, int t, void *ctx), void *ctx)
{
	char after[96] = "";
	for (int page = 0; page < 1000; page++) {
		char target[200];
		snprintf(target, sizeof target, "%s?limit=100%s%s", a->batches, after[0] ? a->after : "",
		         after);
		struct pb_call c;
		if (pb_http(pb, pb_request(a->api, LR_METHOD_GET, target), &c))
			return -1;
		if (c.r->error || !pb_parse_body(pb, c.r)) {
			say_failure("listing", a->many, c.r);
			pb_call_done(&c);
			return -1;
		}
		const struct json_doc *d = &pb->doc;
		int data = json_object_get(d, 0, "data");
		enum pb_visit said = PB_LIST_NEXT;
		int t = data >= 0 && d->tok[data].type == JSON_ARRAY ? data + 1 : -1;
		for (int i = 0; t >= 0 && i < d->tok[data].size; i++, t = json_skip(d, t)) {
			enum pb_visit v = visit(pb, t, ctx);
			if (v > said)
				said = v;
			if (said == PB_LIST_STOP)
				break;
			/* The cursor: an object without an id ends the list. */
			char id[96] = "";
			pb_json_str(d, t, "id", id, sizeof id);
			snprintf(after, sizeof after, "%s", id);
		}
		int more = json_object_get(d, 0, "has_more");
		bool has_more = more >= 0 && pb_json_lit(d, more, "true");
		pb_call_done(&c);
		if (said != PB_LIST_NEXT || !has_more || !after[0])
			break;
	}
	return 0;
}
