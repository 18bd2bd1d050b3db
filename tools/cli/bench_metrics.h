/*
 * The figures of `llmring bench`, computed from what happened to each
 * request: pure computation, no clock and no I/O. The driver fills one
 * struct bench_record per request as the engine reports it (hot path:
 * bench_record_event, an append of 4 bytes), then hands them all to
 * bench_summarize once the run is over.
 *
 * vLLM's figures are computed as vLLM computes them, matched against
 *   vllm/benchmarks/serve.py (calculate_metrics, benchmark)
 *       at commit 009e6d4a1cd6ba3fb2a9fc00f4ec06f5297232a1
 *   vllm/benchmarks/lib/endpoint_request_func.py
 *       (async_request_openai_completions / _chat_completions)
 *       at commit 02cfb534df5674737558730b10f23d1b7aef9b7c
 * What those define, and this file follows:
 *   - A "choice event" is a stream message whose JSON has a non-empty
 *     `choices` array, whatever its text: the role-only first chunk of
 *     a chat stream and a final chunk with only finish_reason count.
 *     The usage-only chunk and [DONE] do not.
 *   - TTFT = first choice event - send time.
 *   - E2EL ("latency") = LAST CHOICE EVENT - send time: not the end of
 *     the response; the trailing usage chunk and [DONE] are left out.
 *   - ITL = the gaps between successive choice events of a request,
 *     pooled over all successful requests.
 *   - output tokens = usage.completion_tokens; when the server gave none
 *     (or 0) vLLM retokenizes the text; we count the events that carried
 *     text instead and say so (bench_summary.output_tokens_counted).
 *   - TPOT = (E2EL - TTFT) / (output tokens - 1), only for requests with
 *     more than one output token; those with one count as TPOT 0 for
 *     goodput but are left out of the TPOT statistics.
 *   - A request succeeded when the HTTP status was 200, nothing failed,
 *     and at least one choice event came ("Never received a valid
 *     chunk" otherwise). Failed requests are left out of every latency,
 *     token count and throughput; they only count in `failed`.
 *   - input tokens = usage.prompt_tokens when reported, else the
 *     dataset's prompt length: the driver puts the right one in
 *     prompt_tokens.
 *   - throughputs divide by the benchmark's duration: from just before
 *     the first request's schedule starts (so the first gap is inside)
 *     to the last completion, warm-up excluded; the driver passes both
 *     ends in bench_config.
 *   - goodput = requests meeting EVERY given SLO (value <= SLO, in ms) /
 *     duration.
 *   - mean, median, std (numpy's np.std: population, ddof = 0) and
 *     percentiles by numpy's default linear interpolation; an empty set
 *     gives 0 for all (vLLM passes `values or 0` to numpy).
 *   - max_output_tokens_per_s and max_concurrent_requests as vLLM's
 *     calculate_metrics (each choice event counted as one token, seconds
 *     counted from the earliest successful send).
 *
 * Times are CLOCK_MONOTONIC nanoseconds (0 means "never"); statistics are
 * in milliseconds, as vLLM prints them.
 */
#ifndef LR_CLI_BENCH_METRICS_H
#define LR_CLI_BENCH_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- one request (the driver fills it) ---------------------------------- */

#define BENCH_NO_USAGE (-1)             /* output_tokens: the server reported none */
#define BENCH_ENOCHOICE (-1000)         /* error: HTTP 200 but no choice event came */
#define BENCH_LATE_NS 1000000ull        /* a send more than 1 ms behind schedule is late */

struct bench_record {
	/* When the schedule meant it to go: its open-loop arrival time; with
	 * no --rate (all at once, as vLLM's rate inf) the run's start, so that
	 * the from-intended figures include the wait for a slot. */
	uint64_t intended_ns;
	uint64_t admitted_ns;    /* when a concurrency slot let it go (>= intended); 0: = intended */
	uint64_t sent_ns;        /* when the request was handed to the engine; 0: never sent (dropped) */
	uint64_t first_event_ns; /* the first choice event (when event_count > 0) */
	uint64_t end_ns;         /* when the response (or the failure) was complete */
	/* Choice events 2..event_count, as µs after the first (uint32: 71
	 * minutes of stream; later ones are clamped). 4 bytes an event keep
	 * 10,000 streams of millions of events in memory. Owner: this record
	 * (bench_record_release); grown by bench_record_event. */
	uint32_t *later_event_us;
	uint32_t event_count;    /* choice events, the first included */
	uint32_t event_cap;      /* room in later_event_us */
	uint32_t text_events;    /* choice events that carried output text */
	int32_t output_tokens;   /* usage.completion_tokens, or BENCH_NO_USAGE */
	int32_t prompt_tokens;   /* usage.prompt_tokens if reported, else the dataset's count */
	int32_t error;           /* 0: success; else an LR_E* code or BENCH_ENOCHOICE */
	int32_t http_status;     /* 0 when no response came */
};

/* A record about to be scheduled at intended_ns: everything else 0. */
void bench_record_init(struct bench_record *r, uint64_t intended_ns);
/* A choice event at now_ns (had_text: it carried output text). 0, or
 * LR_ENOMEM, or LR_ETOOLARGE past 2^32 - 1 events (the event is then not
 * recorded; the record stays valid). */
int bench_record_event(struct bench_record *r, uint64_t now_ns, bool had_text);
/* The response is over at end_ns with `error` (0, LR_E*). Gives back the
 * unused room of the event array (a failed shrink keeps it). A success
 * without any choice event becomes BENCH_ENOCHOICE, as in vLLM. */
void bench_record_finish(struct bench_record *r, uint64_t end_ns, int error);
/* Frees the event array; the record reads as having no later events. */
void bench_record_release(struct bench_record *r);
/* The time of choice event i (0 <= i < event_count). */
uint64_t bench_record_event_ns(const struct bench_record *r, uint32_t i);
/* vLLM's E2EL: the last choice event (first_event_ns if just one). */
uint64_t bench_record_last_event_ns(const struct bench_record *r);
/* Its output tokens as vLLM counts them: usage, else text_events.
 * *counted set when the count came from events (may be NULL). */
int64_t bench_record_output_tokens(const struct bench_record *r, bool *counted);

/* ---- what to compute ---------------------------------------------------- */

#define BENCH_MAX_PERCENTILES 16

struct bench_config {
	double percentiles[BENCH_MAX_PERCENTILES]; /* 0..100, e.g. 50, 90, 99 (vLLM's default: 99) */
	size_t percentile_count;
	/* --goodput SLOs in ms; a negative value means not given. */
	double slo_ttft_ms, slo_tpot_ms, slo_e2el_ms;
	double target_rate;         /* --rate; INFINITY all at once; 0: closed loop (none) */
	uint64_t start_ns;          /* benchmark start (vLLM's benchmark_start_time) */
	uint64_t end_ns;            /* benchmark end: duration = end_ns - start_ns */
};

/* Percentiles 50, 90, 99; no SLO; no target rate; start and end 0. */
void bench_config_defaults(struct bench_config *c);

/* ---- results ------------------------------------------------------------ */

/* One latency figure over a set of values, in ms. count 0: all zero. */
struct bench_stat {
	size_t count;
	double mean, median, std, min, max;
	double percentile[BENCH_MAX_PERCENTILES]; /* at bench_config.percentiles[i] */
};

struct bench_error_count {
	int32_t code;   /* LR_E* or BENCH_ENOCHOICE */
	size_t count;
};

/* One second of the run, [start_ns + i s, start_ns + (i + 1) s). */
struct bench_second {
	uint32_t sent;          /* requests handed to the engine in it */
	uint32_t completed;     /* successful responses ended in it */
	uint32_t failed;        /* failed responses ended in it */
	uint32_t in_flight;     /* sent and not ended at the second's end */
	uint64_t events;        /* choice events in it */
	double output_tokens;   /* each request's tokens spread evenly over its choice events */
};

#define BENCH_MAX_ERROR_KINDS 32

struct bench_summary {
	/* -- vLLM's, under its names -- */
	size_t completed, failed;
	int64_t total_input, total_output;
	double duration_s;
	double request_throughput, output_throughput, total_token_throughput; /* per second */
	bool goodput_enabled;      /* some SLO was given */
	size_t good_completed;
	double request_goodput;    /* req/s; 0 without SLOs (vLLM: null) */
	struct bench_stat ttft, tpot, itl, e2el;
	double max_output_tokens_per_s;
	size_t max_concurrent_requests;

	/* -- ours -- */
	size_t requests;           /* records given */
	size_t sent, dropped;      /* dropped: never sent (sent_ns 0) */
	size_t output_tokens_counted;  /* completed requests whose tokens were counted events */
	struct bench_stat ttft_from_intended, e2el_from_intended; /* completed requests */
	struct bench_stat schedule_lag;  /* sent - max(intended, admitted), every sent request */
	struct bench_stat queue_wait;    /* admitted - intended (waiting for a slot) */
	double schedule_lag_p99_ms; /* whatever the percentiles asked: the "client lagged" test */
	size_t late_arrivals;      /* schedule lag > BENCH_LATE_NS */
	double target_rate;        /* as configured */
	double achieved_rate;      /* sent / (last send - timeline_start_ns), req/s; 0 if undefined */
	double tokens_per_event;   /* reported tokens / text events, requests with usage; 0 if none */
	struct bench_error_count errors[BENCH_MAX_ERROR_KINDS]; /* most frequent first */
	size_t error_kinds;
	size_t errors_other;       /* failures of kinds beyond BENCH_MAX_ERROR_KINDS */

	/* Sorted samples, for CDFs. Owner: this summary (bench_summary_free). */
	double *ttft_ms, *tpot_ms, *e2el_ms; /* counts: ttft.count, tpot.count, e2el.count */
	uint32_t *itl_us;                   /* count: itl.count */
	/* Per-second timeline, timeline_len seconds from timeline_start_ns
	 * (config start_ns, or the earliest send without one) up to the last
	 * end. Owner: this summary. */
	struct bench_second *timeline;
	size_t timeline_len;
	uint64_t timeline_start_ns;
};

/*
 * Everything above from records[0..count) under `config`. 0, or
 * LR_ENOMEM, or LR_EINVAL (a percentile outside 0..100 or too many).
 * On failure *out holds nothing to free. Records are not changed.
 */
int bench_summarize(const struct bench_record *records, size_t count, const struct bench_config *config,
                    struct bench_summary *out);
void bench_summary_free(struct bench_summary *s);

/* "timeout", "no_choice_event", ... for an error code of a record. */
const char *bench_error_name(int32_t code);

/* ---- the statistics, on their own (also what the tests check) ----------- */

/* numpy's np.percentile(sorted[0..n), p) with the default "linear"
 * method; n > 0, 0 <= p <= 100. */
double bench_percentile_sorted(const double *sorted, size_t n, double p);
/* mean, median, std (ddof 0), min, max and the percentiles of
 * values[0..n), sorting them in place. n 0: all zero. */
void bench_stat_of(double *values, size_t n, const struct bench_config *config, struct bench_stat *out);

#endif
