/*
 * The reply in progress on a connection (c->job): the order of a stream's
 * events, their chunk framing, and the pacing of every reply (the head at
 * once or trickled, ttft, then the body or one event per token, itl apart;
 * both drawn per request and per gap by mock_latency.c). A job holding no
 * slot of the simulated capacity yet (mock_capacity.c) does not run.
 *
 * A stream is numbered the same way in every dialect (ev_kind): event 0
 * opens it (OpenAI role chunk, Anthropic message_start +
 * content_block_start + ping; nothing for Ollama and Gemini), events
 * 1..nev carry the tokens (or tool-call pieces), then finish, usage
 * (OpenAI with include_usage) and the end of the chunked body. So ttft,
 * itl and the stream faults work alike everywhere; the dialect only
 * renders each event (mock_dialect.event).
 */
#include "mock_internal.h"

/* Events: 0 start, 1..nev tokens, finish, usage (OpenAI, when asked), done.
 * stream-error: at most 2 tokens (mock_dispatch cut nev), an error, then done. */
static enum ev_kind ev_kind(const struct job *j, unsigned ev)
{
	if (ev == 0)
		return EV_START;
	if (j->fault == MOCK_FAULT_MALFORMED)
		return ev == 1 ? EV_MALFORMED : EV_DONE;
	if (ev <= j->nev)
		return EV_TOKEN;
	if (j->fault == MOCK_FAULT_STREAM_ERROR)
		return ev == j->nev + 1 ? EV_ERROR : EV_DONE;
	if (ev == j->nev + 1)
		return EV_FINISH;
	if (ev == j->nev + 2 && j->include_usage)
		return EV_USAGE;
	return EV_DONE;
}

static bool ev_is_last(const struct job *j, unsigned ev)
{
	if (j->fault == MOCK_FAULT_RESET)
		return ev == (j->nev ? 1u : 0u);
	if (j->fault == MOCK_FAULT_TRUNCATE)
		return ev == j->nev / 2;
	return ev_kind(j, ev) == EV_DONE;
}

/* Appends stream event ev to pend as one HTTP chunk (none when empty). */
static void emit_event(struct mock_server *s, struct conn *c, unsigned ev)
{
	struct job *j = &c->job;
	struct mock_buf *b = &s->scratch;
	enum ev_kind k = ev_kind(j, ev);
	b->len = 0;
	if (k == EV_DONE) {
		if (j->dialect == D_OPENAI && j->fault != MOCK_FAULT_STREAM_ERROR)
			PUTL(&c->pend, "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
		else
			PUTL(&c->pend, "0\r\n\r\n");
		return;
	}
	mock_dialects[j->dialect]->event(s, j, b, ev, k);
	if (b->len == 0)
		return; /* an empty chunk would end the body */
	put_hex(&c->pend, b->len);
	PUTL(&c->pend, "\r\n");
	put(&c->pend, b->p, b->len);
	PUTL(&c->pend, "\r\n");
}

void mock_job_reset(struct job *j)
{
	struct mock_buf whole = j->whole, prefix = j->prefix;
	memset(j, 0, sizeof(*j));
	j->whole = whole;
	j->prefix = prefix;
	j->whole.len = j->prefix.len = 0;
}

static void job_done(struct mock_server *s, struct conn *c)
{
	mock_batch_release(s, c); /* its last byte is queued: the slot is free */
	mock_bfile_unref(c->job.src);
	c->job.src = NULL;
	c->job.active = false;
	if (c->job.close_mode) {
		c->want_close = c->job.close_mode;
		c->rst = c->job.close_mode == CLOSE_RST;
		/* A truncation must look like one at the TLS layer too. */
		c->tls_bare_close = c->job.fault == MOCK_FAULT_TRUNCATE;
	}
}

void mock_job_run(struct mock_server *s, struct conn *c)
{
	struct job *j = &c->job;
	if (j->batch == BATCH_WAITING || j->batch == BATCH_READY)
		return; /* no slot yet: mock_batch_run_ready runs it */
	for (;;) {
		switch (j->phase) {
		case PH_TTFT:
			j->phase = j->stream ? PH_EVENTS : PH_HEAD;
			if (j->ttft_us) {
				mock_conn_flush(s, c);
				/* A stream's events are due on one schedule from here:
				 * lateness in one send never carries into the next. */
				j->due_ns = mock_now_ns() + j->ttft_us * 1000;
				mock_timer_arm_at_ns(s, c, j->due_ns);
				return;
			}
			break;
		case PH_HEAD:
			if (j->slow) {
				put(&c->pend, j->whole.p + j->off, 1);
				j->off++;
				if (j->off < j->head_len) {
					mock_conn_flush(s, c);
					mock_timer_arm_us(s, c, (uint64_t)s->o.slow_header_ms * 1000);
					return;
				}
			} else {
				put(&c->pend, j->whole.p + j->off, j->head_len - j->off);
				j->off = j->head_len;
			}
			j->phase = j->stream ? PH_TTFT : PH_BODY;
			break;
		case PH_BODY:
			put(&c->pend, j->whole.p + j->off, j->cut - j->off);
			j->off = j->cut;
			/* A download: its file in slices, paused while PEND_HIGH
			 * bytes are unsent (never all of it in memory again). */
			while (j->src && j->src_off < j->src_end) {
				size_t k = j->src_end - j->src_off;
				k = k < 256 * 1024 ? k : 256 * 1024;
				put(&c->pend, j->src_data + j->src_off, k);
				j->src_off += k;
				if (j->src_off < j->src_end && c->pend.len + c->tpend.len >= PEND_HIGH) {
					mock_conn_flush(s, c);
					j->wait_send = true;
					return;
				}
			}
			job_done(s, c);
			return;
		case PH_EVENTS: {
			unsigned ev = j->ev++;
			emit_event(s, c, ev);
			if (ev_is_last(j, ev)) {
				job_done(s, c);
				return;
			}
			if (c->pend.len + c->tpend.len >= PEND_HIGH) {
				/* A long unpaced stream (up to MOCK_MAX_TOKENS_CAP
				 * events) waits for the client instead of buffering. */
				mock_conn_flush(s, c);
				j->wait_send = true;
				return;
			}
			if (s->o.itl_ms) {
				mock_conn_flush(s, c); /* one event per send */
				if (ev_kind(j, ev) == EV_TOKEN && ev_kind(j, ev + 1) == EV_TOKEN) {
					if (!j->due_ns)
						j->due_ns = mock_now_ns();
					j->due_ns += mock_itl_us(s, j->n, ev) * 1000;
					mock_timer_arm_at_ns(s, c, j->due_ns);
					return;
				}
			}
			break;
		}
		}
	}
}

void mock_job_whole(struct conn *c, bool close)
{
	struct job *j = &c->job;
	j->active = true;
	j->stream = false;
	j->slow = false;
	j->ttft_us = 0;
	j->phase = PH_HEAD;
	j->off = 0;
	j->cut = j->whole.len;
	j->close_mode = close ? CLOSE_FIN : CLOSE_NONE;
}

void mock_start_stream(struct job *j, uint64_t n, bool close)
{
	enum ctype ct = CT_SSE;
	if (j->text_completion) {
		mock_completion_prefix(j, n);
	} else if (j->dialect == D_OPENAI) {
		j->prefix.len = 0;
		PUTL(&j->prefix, "{\"id\":\"chatcmpl-mock-");
		put_u64(&j->prefix, n);
		PUTL(&j->prefix, "\",\"object\":\"chat.completion.chunk\",\"created\":");
		put_u64(&j->prefix, j->created);
		PUTL(&j->prefix, ",\"model\":\"");
		put(&j->prefix, j->model, j->model_len);
		PUTL(&j->prefix, "\",\"system_fingerprint\":\"fp_mock\",\"choices\":");
	} else if (j->dialect == D_OLLAMA) {
		ct = CT_NDJSON;
	}
	mock_put_head(&j->whole, 200, ct, SIZE_MAX, n, close, NULL, j->dialect);
	j->head_len = j->cut = j->whole.len;
	j->phase = PH_HEAD; /* head at once, then ttft, then events */
}

