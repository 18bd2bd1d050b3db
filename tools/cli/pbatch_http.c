/*
 * One plain HTTP call at a time through the batch's (caller-driven)
 * engine: the batch phase has nothing else in flight, so waiting for one
 * future by reaping is all the concurrency it needs (parts are few: 50,000
 * lines each). Also the small JSON readers and the resumable download.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pbatch.h"

#define PB_DOWNLOAD_TRIES 5 /* cut downloads resumed in one go before waiting */

void pb_sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

lr_request *pb_request(int api, enum lr_method m, const char *target)
{
	return lr_request_new_http(api == PB_ANTHROPIC ? "anthropic" : "openai", m, target);
}

int pb_http(struct pbatch *pb, lr_request *rq, struct pb_call *c)
{
	c->f = NULL;
	c->r = NULL;
	if (!rq)
		return -1;
	lr_future *f = lr_submit(pb->b->eng, rq); /* takes rq over */
	if (!f)
		return -1;
	lr_future *got[16];
	for (;;) {
		int n = lr_engine_reap_batch(pb->b->eng, got, 16, 1, 1000);
		if (n < 0) {
			fprintf(stderr, "llmring batch: waiting for a response failed: %s\n",
			        lr_strerror(n));
			lr_future_release(f);
			return -1;
		}
		bool mine = false;
		for (int k = 0; k < n; k++) {
			if (got[k] == f)
				mine = true;
			else
				lr_future_release(got[k]); /* nothing else is in flight */
		}
		if (mine)
			break;
	}
	/* lr_submit's handle and the reaped one each hold a reference: the
	 * first goes now, the second in pb_call_done. */
	lr_future_release(f);
	c->f = f;
	c->r = lr_future_result(f);
	return c->r ? 0 : -1;
}

void pb_call_done(struct pb_call *c)
{
	if (c->f)
		lr_future_release(c->f);
	c->f = NULL;
	c->r = NULL;
}

bool pb_transient(const lr_result *r)
{
	if (r->http_status == 429 || r->http_status == 408 || r->http_status == 409 ||
	    r->http_status >= 500)
		return true;
	if (r->http_status == 0)
		return true; /* transport: connect, reset, timeout */
	return false;
}

uint64_t pb_retry_ms(const lr_result *r, unsigned k)
{
	if (r && r->retry_after_s >= 0)
		return (uint64_t)(r->retry_after_s * 1000) + 50;
	uint64_t ms = 1000ull << (k > 6 ? 6 : k - 1);
	return ms > 60000 ? 60000 : ms;
}

bool pb_json_str(const struct json_doc *d, int obj, const char *path, char *out, size_t cap)
{
	int t = json_path(d, obj, path);
	if (t < 0 || d->tok[t].type != JSON_STRING)
		return false;
	long n = json_get_string(d, t, out, cap);
	return n >= 0 && (size_t)n < cap;
}

int64_t pb_json_int(const struct json_doc *d, int obj, const char *path)
{
	int t = json_path(d, obj, path);
	int64_t v;
	return t >= 0 && json_get_int(d, t, &v) ? v : -1;
}

bool pb_json_lit(const struct json_doc *d, int t, const char *lit)
{
	if (t < 0 || t >= d->count || d->tok[t].type != JSON_PRIMITIVE)
		return false;
	size_t n = strlen(lit);
	return (size_t)(d->tok[t].end - d->tok[t].start) == n &&
	       memcmp(d->text + d->tok[t].start, lit, n) == 0;
}

void pb_print_failure(const char *what, const lr_result *r)
{
	char body[300] = "";
	if (r->body && r->body_len)
		snprintf(body, sizeof body, ": %.*s", (int)(r->body_len > 240 ? 240 : r->body_len),
		         r->body);
	for (char *p = body; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	char status[24] = "";
	if (r->http_status > 0)
		snprintf(status, sizeof status, " (HTTP %d)", r->http_status);
	fprintf(stderr, "llmring batch: %s failed: %s%s%s\n", what,
	        r->error_message ? r->error_message : lr_strerror(r->error), status, body);
}

/* One attempt; 0 complete, 1 cut or transient, 2 start over (the server
 * ignored the range), -1 lasting failure. */
static int download_once(struct pbatch *pb, int api, const char *target, int fd, const char *path)
{
	struct stat sb;
	if (fstat(fd, &sb) != 0)
		return -1;
	uint64_t have = (uint64_t)sb.st_size;
	lr_request *rq = pb_request(api, LR_METHOD_GET, target);
	char range[48];
	snprintf(range, sizeof range, "bytes=%" PRIu64 "-", have);
	if (have > 0 && !pb->b->opt.quiet)
		fprintf(stderr, "llmring batch: resuming the download of %s from byte %" PRIu64 "\n",
		        path, have);
	if (rq && have > 0 && lr_request_add_header(rq, "Range", range)) {
		lr_request_free(rq);
		rq = NULL;
	}
	if (rq && lr_request_set_response_fd(rq, fd)) {
		lr_request_free(rq);
		rq = NULL;
	}
	struct pb_call c;
	if (pb_http(pb, rq, &c))
		return 1;
	const lr_result *r = c.r;
	int rc;
	if (r->error == LR_OK && (r->http_status == 206 || have == 0)) {
		rc = 0;
	} else if (r->error == LR_OK) {
		rc = 2; /* a 200 to a range: the whole file was appended */
	} else if (r->http_status == 416 && have > 0) {
		rc = 0; /* everything is on disk already */
	} else if (pb_transient(r) || r->error == LR_ECONNRESET) {
		rc = 1;
	} else {
		pb_print_failure(path, r);
		rc = -1;
	}
	pb_call_done(&c);
	return rc;
}

int pb_download(struct pbatch *pb, int api, const char *target, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644); /* owner: here */
	if (fd < 0) {
		fprintf(stderr, "llmring batch: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	int rc = 1;
	for (int k = 0; k < PB_DOWNLOAD_TRIES && rc > 0; k++) {
		rc = download_once(pb, api, target, fd, path);
		if (rc == 2 && ftruncate(fd, 0) != 0)
			rc = -1;
	}
	if (rc == 0 && fsync(fd) != 0)
		rc = -1;
	close(fd);
	return rc > 0 ? 1 : rc;
}
