/*
 * The JSON of the batch APIs' objects (mock_batches.h): OpenAI's File and
 * Batch, Anthropic's MessageBatch, with the providers' field names, types
 * and time formats (seconds since the epoch; RFC 3339 for Anthropic).
 */
#include "mock_batches.h"

#include <stdio.h>
#include <time.h>


static void put_ts(struct mock_buf *b, uint64_t ms)
{
	if (ms)
		put_u64(b, ms / 1000);
	else
		PUTL(b, "null");
}

/* RFC 3339, as Anthropic's timestamps are. */
static void put_rfc3339(struct mock_buf *b, uint64_t ms)
{
	if (!ms) {
		PUTL(b, "null");
		return;
	}
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char s[48];
	snprintf(s, sizeof(s), "\"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ\"", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned)(ms % 1000));
	put(b, s, strlen(s));
}

void mock_put_str_or_null(struct mock_buf *b, const char *s)
{
	if (!s || !*s) {
		PUTL(b, "null");
		return;
	}
	put_ch(b, '"');
	put(b, s, strlen(s));
	put_ch(b, '"');
}

void mock_put_file(struct mock_buf *b, const struct mock_bfile *f)
{
	PUTL(b, "{\"id\":\"");
	put(b, f->id, strlen(f->id));
	PUTL(b, "\",\"object\":\"file\",\"bytes\":");
	put_u64(b, f->len);
	PUTL(b, ",\"created_at\":");
	put_u64(b, f->created);
	PUTL(b, ",\"expires_at\":null,\"filename\":\"");
	put(b, f->filename, strlen(f->filename));
	PUTL(b, "\",\"purpose\":\"");
	if (f->purpose == BP_BATCH)
		PUTL(b, "batch");
	else
		PUTL(b, "batch_output");
	PUTL(b, "\",\"status\":\"processed\",\"status_details\":null}");
}

const char *const mock_openai_status[] = {
	[BS_VALIDATING] = "validating", [BS_IN_PROGRESS] = "in_progress",
	[BS_FINALIZING] = "finalizing", [BS_COMPLETED] = "completed", [BS_FAILED] = "failed",
	[BS_EXPIRED] = "expired", [BS_CANCELLING] = "cancelling", [BS_CANCELLED] = "cancelled"};
const char *const mock_endpoints[] = {"/v1/chat/completions", "/v1/embeddings",
					"/v1/completions"};

void mock_put_openai_batch(struct mock_buf *b, const struct mock_batch *x)
{
	PUTL(b, "{\"id\":\"");
	put(b, x->id, strlen(x->id));
	PUTL(b, "\",\"object\":\"batch\",\"endpoint\":\"");
	put(b, mock_endpoints[x->ep], strlen(mock_endpoints[x->ep]));
	PUTL(b, "\",\"errors\":");
	if (x->errors) {
		PUTL(b, "{\"object\":\"list\",\"data\":[");
		put(b, x->errors, strlen(x->errors));
		PUTL(b, "]}");
	} else {
		PUTL(b, "null");
	}
	PUTL(b, ",\"input_file_id\":\"");
	put(b, x->input_file_id, strlen(x->input_file_id));
	PUTL(b, "\",\"completion_window\":\"");
	put(b, x->completion_window, strlen(x->completion_window));
	PUTL(b, "\",\"status\":\"");
	put(b, mock_openai_status[x->status], strlen(mock_openai_status[x->status]));
	PUTL(b, "\",\"output_file_id\":");
	mock_put_str_or_null(b, x->output_file_id);
	PUTL(b, ",\"error_file_id\":");
	mock_put_str_or_null(b, x->error_file_id);
	PUTL(b, ",\"created_at\":");
	put_ts(b, x->created_ms);
	PUTL(b, ",\"in_progress_at\":");
	put_ts(b, x->in_progress_ms);
	PUTL(b, ",\"expires_at\":");
	put_ts(b, x->created_ms + 86400000ull);
	PUTL(b, ",\"finalizing_at\":");
	put_ts(b, x->finalizing_ms);
	PUTL(b, ",\"completed_at\":");
	put_ts(b, x->completed_ms);
	PUTL(b, ",\"failed_at\":");
	put_ts(b, x->failed_ms);
	PUTL(b, ",\"expired_at\":");
	put_ts(b, x->expired_ms);
	PUTL(b, ",\"cancelling_at\":");
	put_ts(b, x->cancelling_ms);
	PUTL(b, ",\"cancelled_at\":");
	put_ts(b, x->cancelled_ms);
	PUTL(b, ",\"request_counts\":{\"total\":");
	put_u64(b, x->status == BS_VALIDATING ? 0 : x->total);
	PUTL(b, ",\"completed\":");
	put_u64(b, x->completed);
	PUTL(b, ",\"failed\":");
	put_u64(b, x->failed);
	PUTL(b, "},\"metadata\":");
	if (x->metadata)
		put(b, x->metadata, strlen(x->metadata));
	else
		PUTL(b, "null");
	put_ch(b, '}');
}

bool mock_batch_ended(const struct mock_batch *x)
{
	/* Failed: only when its stored input is gone after a restart. */
	return x->status == BS_COMPLETED || x->status == BS_CANCELLED || x->status == BS_FAILED ||
	       x->status == BS_EXPIRED;
}

void mock_put_anthropic_batch(const struct mock_server *s, struct mock_buf *b,
			       const struct mock_batch *x)
{
	PUTL(b, "{\"id\":\"");
	put(b, x->id, strlen(x->id));
	PUTL(b, "\",\"type\":\"message_batch\",\"processing_status\":\"");
	if (mock_batch_ended(x))
		PUTL(b, "ended");
	else if (x->status == BS_CANCELLING)
		PUTL(b, "canceling");
	else
		PUTL(b, "in_progress");
	unsigned done = x->completed + x->failed + x->canceled + x->expired;
	PUTL(b, "\",\"request_counts\":{\"processing\":");
	put_u64(b, mock_batch_ended(x) || done > x->total ? 0 : x->total - done);
	PUTL(b, ",\"succeeded\":");
	put_u64(b, x->completed);
	PUTL(b, ",\"errored\":");
	put_u64(b, x->failed);
	PUTL(b, ",\"canceled\":");
	put_u64(b, x->canceled);
	PUTL(b, ",\"expired\":");
	put_u64(b, x->expired);
	uint64_t end_ms = x->status == BS_CANCELLED ? x->cancelled_ms
			  : x->status == BS_FAILED ? x->failed_ms : x->completed_ms;
	PUTL(b, "},\"ended_at\":");
	put_rfc3339(b, mock_batch_ended(x) ? end_ms : 0);
	PUTL(b, ",\"created_at\":");
	put_rfc3339(b, x->created_ms);
	PUTL(b, ",\"expires_at\":");
	put_rfc3339(b, x->created_ms + 86400000ull);
	PUTL(b, ",\"archived_at\":null,\"cancel_initiated_at\":");
	put_rfc3339(b, x->cancelling_ms);
	PUTL(b, ",\"results_url\":");
	if (mock_batch_ended(x)) {
		const char *h = s->host;
		if (!strcmp(h, "0.0.0.0") || !strcmp(h, "::") || !*h)
			h = "127.0.0.1";
		PUTL(b, "\"");
		if (s->tls)
			PUTL(b, "https://");
		else
			PUTL(b, "http://");
		if (strchr(h, ':')) {
			put_ch(b, '[');
			put(b, h, strlen(h));
			put_ch(b, ']');
		} else {
			put(b, h, strlen(h));
		}
		put_ch(b, ':');
		put_u64(b, s->port);
		PUTL(b, "/v1/messages/batches/");
		put(b, x->id, strlen(x->id));
		PUTL(b, "/results\"");
	} else {
		PUTL(b, "null");
	}
	put_ch(b, '}');
}

