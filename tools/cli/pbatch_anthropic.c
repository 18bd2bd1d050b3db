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

static const struct pb_api_desc anthropic_api = {
	.api = PB_ANTHROPIC, .batches = "/v1/messages/batches", .after = "&after_id=",
	.one = "a message batch", .many = "message batches", .read_batch = read_batch,
};

struct adopt_ctx {
	const struct pb_part *p;
	int matches;
	char match[96]; /* the last match's id */
};

/* A batch created since p's first create attempt (less 2 s) with p's
 * request count that no part holds is a match; the first older one ends
 * the listing (newest first: the rest are older still). */
static enum pb_visit adopt_visit(struct pbatch *pb, int t, void *ctx)
{
	struct adopt_ctx *a = ctx;
	const struct json_doc *d = &pb->doc;
	char id[96] = "", created[48] = "";
	pb_json_str(d, t, "id", id, sizeof id);
	pb_json_str(d, t, "created_at", created, sizeof created);
	uint64_t ms = rfc3339_ms(created);
	uint64_t total = count_at(d, t, "request_counts.processing") +
	                 count_at(d, t, "request_counts.succeeded") +
	                 count_at(d, t, "request_counts.errored") +
	                 count_at(d, t, "request_counts.canceled") +
	                 count_at(d, t, "request_counts.expired");
	if (ms && ms + 2000 < a->p->creating_ms)
		return PB_LIST_STOP;
	if (total == a->p->lines && id[0] && !known(&pb->st, id)) {
		a->matches++;
		snprintf(a->match, sizeof a->match, "%s", id);
	}
	return PB_LIST_NEXT;
}

int pb_anthropic_adopt(struct pbatch *pb, struct pb_part *p)
{
	struct adopt_ctx a = {.p = p};
	if (pb_list_batches(pb, &anthropic_api, adopt_visit, &a))
		return -1;
	if (a.matches > 1) {
		fprintf(stderr, "llmring batch: part %u was being created when the last run ended, and "
		        "%d message batches of %" PRIu64 " requests were created since: cannot tell "
		        "which is ours (cancel the extra one, then run again)\n", p->n, a.matches,
		        p->lines);
		return -2;
	}
	if (a.matches == 0)
		return 0;
	snprintf(p->batch_id, sizeof p->batch_id, "%s", a.match);
	p->status = PS_SUBMITTED;
	return 1;
}

int pb_anthropic_submit(struct pbatch *pb, struct pb_part *p)
{
	bool adopted;
	int rc = pb_readopt(pb, p, &adopted);
	if (rc || adopted)
		return rc;
	if (pb_mark_creating(pb, p))
		return -2;
	int fd = pb_open_part(pb, p); /* owner: here */
	if (fd < 0)
		return -2;
	lr_request *rq = pb_request(PB_ANTHROPIC, LR_METHOD_POST, "/v1/messages/batches");
	if (rq && lr_request_add_body_file(rq, fd, 0, -1)) {
		lr_request_free(rq);
		rq = NULL;
	}
	rc = pb_create(pb, p, rq, &anthropic_api);
	close(fd); /* the call is complete: the engine is done with fd */
	return rc;
}

int pb_anthropic_poll(struct pbatch *pb, struct pb_part *p)
{
	return pb_poll(pb, p, &anthropic_api);
}

int pb_anthropic_cancel(struct pbatch *pb, struct pb_part *p)
{
	return pb_cancel(pb, p, &anthropic_api);
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
