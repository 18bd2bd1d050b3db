/*
 * Anthropic's Message Batches for one part: the create (the part file is
 * the body, read in pieces), adoption, polling, cancel and the results
 * download from results_url (an absolute URL: the engine sends the key
 * only to the origin of its own Anthropic endpoint).
 *
 * Adoption has no metadata to go by: a batch created no earlier than our
 * first create attempt (less 2 s), whose request counts add up to the
 * part's lines and which no other part holds, is ours when it is the only
 * one. Two such batches (another client made one of the same size in the
 * same seconds) stop the run with a message rather than guess.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pbatch.h"

/* "2026-12-03T14:12:48.123Z" (or without fraction) as epoch ms; 0 when
 * it is not one. */
static uint64_t rfc3339_ms(const char *s)
{
	struct tm tm = {0};
	unsigned ms = 0;
	int used = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	           &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6)
		return 0;
	const char *p = s + used;
	if (*p == '.') {
		unsigned scale = 100;
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			ms += (unsigned)(*p - '0') * scale;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	return t < 0 ? 0 : (uint64_t)t * 1000 + ms;
}

static bool parse_body(struct pbatch *pb, const lr_result *r)
{
	return r->body && json_parse(&pb->doc, r->body, r->body_len) == 0 &&
	       pb->doc.tok[0].type == JSON_OBJECT;
}

static uint64_t count_at(const struct json_doc *d, int o, const char *path)
{
	int64_t v = pb_json_int(d, o, path);
	return v > 0 ? (uint64_t)v : 0;
}

/* Reads a message batch (token o) into p; true when something changed. */
static bool read_batch(struct pbatch *pb, struct pb_part *p, int o)
{
	const struct json_doc *d = &pb->doc;
	char status[24] = "";
	pb_json_str(d, o, "processing_status", status, sizeof status);
	uint64_t ok = count_at(d, o, "request_counts.succeeded");
	uint64_t bad = count_at(d, o, "request_counts.errored") +
	               count_at(d, o, "request_counts.canceled") +
	               count_at(d, o, "request_counts.expired");
	uint64_t total = ok + bad + count_at(d, o, "request_counts.processing");
	bool changed = strcmp(status, p->remote) != 0 || ok != p->done || bad != p->failed;
	snprintf(p->remote, sizeof p->remote, "%s", status);
	p->done = ok;
	p->failed = bad;
	p->total = total;
	if (strcmp(status, "ended") == 0) {
		int u = json_object_get(d, o, "results_url");
		free(p->results_url);
		p->results_url = u >= 0 && d->tok[u].type == JSON_STRING ? json_dup_string(d, u) : NULL;
		p->status = PS_ENDED;
		changed = true;
	}
	return changed;
}

/* Whether batch id is held by a part of the state already. */
static bool known(const struct pb_state *st, const char *id)
{
	for (size_t i = 0; i < st->nparts; i++)
		if (strcmp(st->parts[i].batch_id, id) == 0)
			return true;
	return false;
}

/* 1 adopted, 0 none, -1 could not tell, -2 ambiguous (printed). */
static int adopt(struct pbatch *pb, struct pb_part *p)
{
	char after[96] = "", match[96] = "";
	int matches = 0;
	for (int page = 0; page < 1000; page++) {
		char target[180];
		snprintf(target, sizeof target, "/v1/messages/batches?limit=100%s%s",
		         after[0] ? "&after_id=" : "", after);
		struct pb_call c;
		if (pb_http(pb, pb_request(PB_ANTHROPIC, LR_METHOD_GET, target), &c))
			return -1;
		if (c.r->error || !parse_body(pb, c.r)) {
			pb_print_failure("listing message batches", c.r);
			pb_call_done(&c);
			return -1;
		}
		const struct json_doc *d = &pb->doc;
		int data = json_object_get(d, 0, "data");
		bool older = false;
		int t = data >= 0 && d->tok[data].type == JSON_ARRAY ? data + 1 : -1;
		for (int i = 0; t >= 0 && i < d->tok[data].size; i++, t = json_skip(d, t)) {
			char id[96] = "", created[48] = "";
			pb_json_str(d, t, "id", id, sizeof id);
			pb_json_str(d, t, "created_at", created, sizeof created);
			uint64_t ms = rfc3339_ms(created);
			uint64_t total = count_at(d, t, "request_counts.processing") +
			                 count_at(d, t, "request_counts.succeeded") +
			                 count_at(d, t, "request_counts.errored") +
			                 count_at(d, t, "request_counts.canceled") +
			                 count_at(d, t, "request_counts.expired");
			if (ms && ms + 2000 < p->creating_ms) {
				older = true; /* newest first: the rest are older still */
				break;
			}
			if (total == p->lines && id[0] && !known(&pb->st, id)) {
				matches++;
				snprintf(match, sizeof match, "%s", id);
			}
			snprintf(after, sizeof after, "%s", id);
		}
		int more = json_object_get(d, 0, "has_more");
		bool has_more = more >= 0 && pb_json_lit(d, more, "true");
		pb_call_done(&c);
		if (older || !has_more || !after[0])
			break;
	}
	if (matches > 1) {
		fprintf(stderr, "llmring batch: part %u was being created when the last run ended, and "
		        "%d message batches of %" PRIu64 " requests were created since: cannot tell "
		        "which is ours (cancel the extra one, then run again)\n", p->n, matches, p->lines);
		return -2;
	}
	if (matches == 0)
		return 0;
	snprintf(p->batch_id, sizeof p->batch_id, "%s", match);
	p->status = PS_SUBMITTED;
	return 1;
}

int pb_anthropic_adopt(struct pbatch *pb, struct pb_part *p)
{
	return adopt(pb, p);
}

int pb_anthropic_submit(struct pbatch *pb, struct pb_part *p)
{
	if (p->status == PS_CREATING) {
		int a = adopt(pb, p);
		if (a == -2)
			return -2;
		if (a < 0)
			return 1;
		if (a > 0) {
			pb_show_adopted(pb, p);
			return pb_state_save(&pb->st) ? -2 : 0;
		}
	} else {
		p->status = PS_CREATING;
		p->creating_ms = pb_now_ms();
		if (pb_state_save(&pb->st))
			return -2;
	}
	char *path = pb_part_path(&pb->st, p, "jsonl"); /* owner: here */
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1; /* owner: here */
	if (fd < 0) {
		fprintf(stderr, "llmring batch: cannot read part %u's file %s\n", p->n,
		        path ? path : "");
		free(path);
		return -2;
	}
	free(path);
	lr_request *rq = pb_request(PB_ANTHROPIC, LR_METHOD_POST, "/v1/messages/batches");
	if (rq && (lr_request_set_max_retries(rq, 0) || lr_request_add_body_file(rq, fd, 0, -1))) {
		lr_request_free(rq);
		rq = NULL;
	}
	struct pb_call c;
	int rc = 1;
	if (!pb_http(pb, rq, &c)) {
		if (c.r->error == LR_OK && parse_body(pb, c.r) &&
		    pb_json_str(&pb->doc, 0, "id", p->batch_id, sizeof p->batch_id)) {
			read_batch(pb, p, 0);
			if (p->status != PS_ENDED)
				p->status = PS_SUBMITTED;
			rc = pb_state_save(&pb->st) ? -2 : 0;
		} else if (pb_transient(c.r)) {
			pb->backoff_ms = pb_retry_ms(c.r, 1);
		} else {
			pb_print_failure("creating a message batch", c.r);
			free(p->fail_msg);
			p->fail_msg = strdup(c.r->error_message ? c.r->error_message
			                                        : "the create was refused");
			rc = -1;
		}
		pb_call_done(&c);
	}
	close(fd);
	return rc;
}

int pb_anthropic_poll(struct pbatch *pb, struct pb_part *p)
{
	char target[180];
	snprintf(target, sizeof target, "/v1/messages/batches/%s", p->batch_id);
	struct pb_call c;
	if (pb_http(pb, pb_request(PB_ANTHROPIC, LR_METHOD_GET, target), &c))
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
		pb_print_failure("polling a message batch", c.r);
		if (c.r->retry_after_s >= 0)
			pb->backoff_ms = pb_retry_ms(c.r, 1);
	}
	pb_call_done(&c);
	return rc;
}

int pb_anthropic_cancel(struct pbatch *pb, struct pb_part *p)
{
	char target[180];
	snprintf(target, sizeof target, "/v1/messages/batches/%s/cancel", p->batch_id);
	struct pb_call c;
	if (pb_http(pb, pb_request(PB_ANTHROPIC, LR_METHOD_POST, target), &c))
		return 1;
	int rc = c.r->error == LR_OK || c.r->http_status == 409 ? 0 : 1;
	if (rc)
		pb_print_failure("cancelling a message batch", c.r);
	pb_call_done(&c);
	if (!rc) {
		p->cancel_sent = true;
		if (pb_state_save(&pb->st))
			return -2;
	}
	return rc;
}

int pb_anthropic_fetch(struct pbatch *pb, struct pb_part *p)
{
	if (p->out_done) {
		free(p->results_url);
		p->results_url = NULL; /* a gone batch's: nothing to fetch */
		return 0;
	}
	if (!p->results_url) {
		p->out_done = true; /* no results: every line gets the part's code */
		return pb_state_save(&pb->st) ? -2 : 0;
	}
	char *path = pb_part_path(&pb->st, p, "out.jsonl"); /* owner: here */
	int rc = path ? pb_download(pb, PB_ANTHROPIC, p->results_url, path) : -1;
	free(path);
	if (rc)
		return rc;
	p->out_done = true;
	return pb_state_save(&pb->st) ? -2 : 0;
}
