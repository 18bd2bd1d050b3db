/*
 * What `llmring bench` prints and writes: the terminal summary in vLLM's
 * layout followed by ours, --json in our schema (docs/guide.md, "bench")
 * or in vLLM's --save-result keys, and --requests-out, one JSON line per
 * request.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

/* One metric's lines, vLLM's labels: "Mean TTFT (ms):", "P99 TTFT (ms):". */
static void stat_lines(FILE *f, const struct bench_config *c, const char *abbr,
                       const struct bench_stat *s)
{
	char label[64];
	snprintf(label, sizeof label, "Mean %s (ms):", abbr);
	fprintf(f, "%-40s %-10.2f\n", label, s->mean);
	snprintf(label, sizeof label, "Median %s (ms):", abbr);
	fprintf(f, "%-40s %-10.2f\n", label, s->median);
	for (size_t i = 0; i < c->percentile_count; i++) {
		snprintf(label, sizeof label, "P%g %s (ms):", c->percentiles[i], abbr);
		fprintf(f, "%-40s %-10.2f\n", label, s->percentile[i]);
	}
}

/* A centred heading inside a 50-column rule of '-', as vLLM prints. */
static void section(FILE *f, const char *title)
{
	int n = (int)strlen(title) + 2, left = n < 50 ? (50 - n) / 2 : 0;
	int right = n < 50 ? 50 - n - left : 0;
	fprintf(f, "%.*s %s %.*s\n", left, "--------------------------------------------------",
	        title, right, "--------------------------------------------------");
}

void bench_print_summary(FILE *f, const struct bench_options *o, const struct bench_outcome *out,
                         const struct bench_summary *s, bool lagged)
{
	const struct bench_config *c = &o->metrics;
	fprintf(f, "%s\n", "============ Serving Benchmark Result ============");
	fprintf(f, "%-40s %-10zu\n", "Successful requests:", s->completed);
	fprintf(f, "%-40s %-10zu\n", "Failed requests:", s->failed);
	if (o->concurrency)
		fprintf(f, "%-40s %-10ld\n", "Maximum request concurrency:", o->concurrency);
	if (o->rate > 0 && isfinite(o->rate))
		fprintf(f, "%-40s %-10.2f\n", "Request rate configured (RPS):", o->rate);
	fprintf(f, "%-40s %-10.2f\n", "Benchmark duration (s):", s->duration_s);
	fprintf(f, "%-40s %-10" PRId64 "\n", "Total input tokens:", s->total_input);
	fprintf(f, "%-40s %-10" PRId64 "\n", "Total generated tokens:", s->total_output);
	fprintf(f, "%-40s %-10.2f\n", "Request throughput (req/s):", s->request_throughput);
	if (s->goodput_enabled)
		fprintf(f, "%-40s %-10.2f\n", "Request goodput (req/s):", s->request_goodput);
	fprintf(f, "%-40s %-10.2f\n", "Output token throughput (tok/s):", s->output_throughput);
	fprintf(f, "%-40s %-10.2f\n", "Peak output token throughput (tok/s):",
	        s->max_output_tokens_per_s);
	fprintf(f, "%-40s %-10zu\n", "Peak concurrent requests:", s->max_concurrent_requests);
	fprintf(f, "%-40s %-10.2f\n", "Total token throughput (tok/s):", s->total_token_throughput);
	section(f, "Time to First Token");
	stat_lines(f, c, "TTFT", &s->ttft);
	section(f, "Time per Output Token (excl. 1st token)");
	stat_lines(f, c, "TPOT", &s->tpot);
	section(f, "Inter-token Latency");
	stat_lines(f, c, "ITL", &s->itl);
	section(f, "End-to-end Latency");
	stat_lines(f, c, "E2EL", &s->e2el);
	fprintf(f, "%s\n", "==================================================");

	fprintf(f, "%s\n", "============ What the client saw (llmring) =======");
	section(f, "From the intended send time");
	stat_lines(f, c, "TTFT", &s->ttft_from_intended);
	stat_lines(f, c, "E2EL", &s->e2el_from_intended);
	section(f, "The schedule");
	fprintf(f, "%-40s %-10.3f\n", "Schedule lag p50 (ms):", s->schedule_lag.median);
	fprintf(f, "%-40s %-10.3f\n", "Schedule lag p99 (ms):", s->schedule_lag_p99_ms);
	fprintf(f, "%-40s %-10.3f\n", "Schedule lag max (ms):", s->schedule_lag.max);
	fprintf(f, "%-40s %-10.2f\n", "Mean wait for a slot (ms):", s->queue_wait.mean);
	fprintf(f, "%-40s %-10zu\n", "Late sends (> 1 ms):", s->late_arrivals);
	if (o->rate > 0 && isfinite(o->rate))
		fprintf(f, "%-40s %-10.2f\n", "Achieved rate (req/s):", s->achieved_rate);
	fprintf(f, "%-40s %-10zu\n", "Requests not sent:", s->dropped);
	fprintf(f, "%-40s %-10.2f\n", "Tokens per event:", s->tokens_per_event);
	if (s->output_tokens_counted)
		fprintf(f, "%-40s %-10zu\n", "Tokens counted as events (no usage):",
		        s->output_tokens_counted);
	double share = out->wall_s > 0 ? out->cpu_s / out->wall_s : 0;
	fprintf(f, "%-40s %-10.1f\n", "Client CPU (% of a core):", 100 * share);
	if (s->completed)
		fprintf(f, "%-40s %-10.2f\n", "Client CPU per request (us):",
		        out->cpu_s * 1e6 / (double)(s->completed + s->failed));
	for (size_t i = 0; i < s->error_kinds; i++) {
		char label[64];
		snprintf(label, sizeof label, "Errors %s:", bench_error_name(s->errors[i].code));
		fprintf(f, "%-40s %-10zu\n", label, s->errors[i].count);
	}
	if (out->interrupted)
		fprintf(f, "Interrupted: the figures cover the requests that completed.\n");
	if (lagged)
		fprintf(f, "THE CLIENT LAGGED (schedule lag p99 over 1 ms or more than 80 %% of a "
		        "core): these figures measure the client as well as the server.%s\n",
		        o->mock ? " Expected with --mock: an instant server in this process keeps "
		                  "the client busy." : "");
	fprintf(f, "%s\n", "==================================================");
}

/* ---- JSON ----------------------------------------------------------- */

static void json_number(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
}

static void json_stat(FILE *f, const struct bench_config *c, const char *prefix,
                      const struct bench_stat *s, bool vllm_keys, const char *abbr)
{
	if (vllm_keys) {
		/* vLLM: mean_ttft_ms, median_ttft_ms, std_ttft_ms, p99_ttft_ms. */
		fprintf(f, ",\"mean_%s_ms\":", abbr);
		json_number(f, s->mean);
		fprintf(f, ",\"median_%s_ms\":", abbr);
		json_number(f, s->median);
		fprintf(f, ",\"std_%s_ms\":", abbr);
		json_number(f, s->std);
		for (size_t i = 0; i < c->percentile_count; i++) {
			fprintf(f, ",\"p%g_%s_ms\":", c->percentiles[i], abbr);
			json_number(f, s->percentile[i]);
		}
		return;
	}
	fprintf(f, ",\"%s\":{\"count\":%zu,\"mean\":", prefix, s->count);
	json_number(f, s->mean);
	fputs(",\"median\":", f);
	json_number(f, s->median);
	fputs(",\"std\":", f);
	json_number(f, s->std);
	fputs(",\"min\":", f);
	json_number(f, s->min);
	fputs(",\"max\":", f);
	json_number(f, s->max);
	fputs(",\"percentiles\":{", f);
	for (size_t i = 0; i < c->percentile_count; i++) {
		fprintf(f, "%s\"%g\":", i ? "," : "", c->percentiles[i]);
		json_number(f, s->percentile[i]);
	}
	fputs("}}", f);
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* vLLM's per-request lists (seconds; a failed request: 0 and []), in the
 * records' order: input_lens, output_lens, ttfts, itls, errors. */
static void vllm_lists(FILE *f, const struct bench_outcome *out)
{
	const char *names[] = {"input_lens", "output_lens", "ttfts", "itls", "errors"};
	for (int k = 0; k < 5; k++) {
		fprintf(f, ",\"%s\":[", names[k]);
		for (size_t i = 0; i < out->count; i++) {
			const struct bench_record *r = &out->records[i];
			bool ok = r->error == 0;
			if (i)
				fputc(',', f);
			if (k == 0) {
				fprintf(f, "%d", r->prompt_tokens);
			} else if (k == 1) {
				fprintf(f, "%" PRId64, ok ? bench_record_output_tokens(r, NULL) : 0);
			} else if (k == 2) {
				json_number(f, ok && r->event_count ? (double)(r->first_event_ns - r->sent_ns) / 1e9
				                                    : 0);
			} else if (k == 3) {
				fputc('[', f);
				for (uint32_t e = 1; ok && e < r->event_count; e++) {
					double gap = (double)(bench_record_event_ns(r, e) -
					                      bench_record_event_ns(r, e - 1)) / 1e9;
					fprintf(f, "%s", e > 1 ? "," : "");
					json_number(f, gap);
				}
				fputc(']', f);
			} else {
				json_string(f, ok ? "" : bench_error_name(r->error));
			}
		}
		fputc(']', f);
	}
}

/* The keys both schemas share (vLLM's names): counts, tokens, throughputs,
 * goodput (null without SLOs), the peaks. */
static void json_totals(FILE *f, const struct bench_summary *s)
{
	fprintf(f, ",\"completed\":%zu,\"failed\":%zu,\"total_input_tokens\":%" PRId64
	        ",\"total_output_tokens\":%" PRId64, s->completed, s->failed, s->total_input,
	        s->total_output);
	const struct { const char *key; double v; } nums[] = {
		{"request_throughput", s->request_throughput},
		{"output_throughput", s->output_throughput},
		{"total_token_throughput", s->total_token_throughput},
		{"max_output_tokens_per_s", s->max_output_tokens_per_s},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		fprintf(f, ",\"%s\":", nums[i].key);
		json_number(f, nums[i].v);
	}
	fputs(",\"request_goodput\":", f);
	if (s->goodput_enabled)
		json_number(f, s->request_goodput);
	else
		fputs("null", f);
	fprintf(f, ",\"max_concurrent_requests\":%zu", s->max_concurrent_requests);
}

static void write_vllm(FILE *f, const struct bench_options *o, const struct bench_outcome *out,
                       const struct bench_summary *s)
{
	const struct bench_config *c = &o->metrics;
	fputs("{\"backend\":\"openai-chat\",\"model_id\":", f);
	json_string(f, o->model);
	fputs(",\"request_rate\":", f);
	if (o->rate > 0 && isfinite(o->rate))
		json_number(f, o->rate);
	else
		fputs("\"inf\"", f);
	fputs(",\"burstiness\":", f);
	json_number(f, o->burstiness);
	fputs(",\"max_concurrency\":", f);
	if (o->concurrency)
		fprintf(f, "%ld", o->concurrency);
	else
		fputs("null", f);
	fprintf(f, ",\"duration\":");
	json_number(f, s->duration_s);
	json_totals(f, s);
	json_stat(f, c, NULL, &s->ttft, true, "ttft");
	json_stat(f, c, NULL, &s->tpot, true, "tpot");
	json_stat(f, c, NULL, &s->itl, true, "itl");
	json_stat(f, c, NULL, &s->e2el, true, "e2el");
	vllm_lists(f, out);
	fputs("}\n", f);
}

static void write_ours(FILE *f, const struct bench_options *o, const struct bench_outcome *out,
                       const struct bench_summary *s, bool lagged)
{
	const struct bench_config *c = &o->metrics;
	fputs("{\"schema\":\"llmring.bench/1\",\"model\":", f);
	json_string(f, o->model);
	fprintf(f, ",\"stream\":%s,\"concurrency\":%ld,\"rate\":", o->stream ? "true" : "false",
	        o->concurrency);
	if (o->rate > 0 && isfinite(o->rate))
		json_number(f, o->rate);
	else
		fputs(o->rate > 0 ? "\"inf\"" : "null", f);
	fputs(",\"burstiness\":", f);
	json_number(f, o->burstiness);
	fprintf(f, ",\"seed\":%" PRIu64 ",\"requests\":%zu,\"sent\":%zu,\"dropped\":%zu", o->seed,
	        s->requests, s->sent, s->dropped);
	fputs(",\"duration_s\":", f);
	json_number(f, s->duration_s);
	fprintf(f, ",\"output_tokens_counted\":%zu", s->output_tokens_counted);
	json_totals(f, s);
	json_stat(f, c, "ttft_ms", &s->ttft, false, NULL);
	json_stat(f, c, "tpot_ms", &s->tpot, false, NULL);
	json_stat(f, c, "itl_ms", &s->itl, false, NULL);
	json_stat(f, c, "e2el_ms", &s->e2el, false, NULL);
	json_stat(f, c, "ttft_from_intended_ms", &s->ttft_from_intended, false, NULL);
	json_stat(f, c, "e2el_from_intended_ms", &s->e2el_from_intended, false, NULL);
	json_stat(f, c, "schedule_lag_ms", &s->schedule_lag, false, NULL);
	json_stat(f, c, "queue_wait_ms", &s->queue_wait, false, NULL);
	fprintf(f, ",\"late_sends\":%zu,\"achieved_rate\":", s->late_arrivals);
	json_number(f, s->achieved_rate);
	fputs(",\"tokens_per_event\":", f);
	json_number(f, s->tokens_per_event);
	fputs(",\"client_cpu_s\":", f);
	json_number(f, out->cpu_s);
	fputs(",\"client_cpu_share\":", f);
	json_number(f, out->wall_s > 0 ? out->cpu_s / out->wall_s : 0);
	fprintf(f, ",\"client_lagged\":%s,\"interrupted\":%s,\"errors\":{", lagged ? "true" : "false",
	        out->interrupted ? "true" : "false");
	for (size_t i = 0; i < s->error_kinds; i++) {
		fprintf(f, "%s", i ? "," : "");
		json_string(f, bench_error_name(s->errors[i].code));
		fprintf(f, ":%zu", s->errors[i].count);
	}
	fprintf(f, "},\"errors_other\":%zu,\"timeline\":[", s->errors_other);
	for (size_t i = 0; i < s->timeline_len; i++) {
		const struct bench_second *t = &s->timeline[i];
		fprintf(f, "%s{\"second\":%zu,\"sent\":%u,\"completed\":%u,\"failed\":%u,"
		        "\"in_flight\":%u,\"events\":%" PRIu64 ",\"output_tokens\":",
		        i ? "," : "", i, t->sent, t->completed, t->failed, t->in_flight, t->events);
		json_number(f, t->output_tokens);
		fputc('}', f);
	}
	fputs("]}\n", f);
}

FILE *bench_open_out(const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
	if (!f)
		fprintf(stderr, "llmring bench: cannot write %s: %s\n", path, strerror(errno));
	return f;
}

int bench_close_out(FILE *f, const char *path)
{
	bool bad = ferror(f) != 0;
	if (f != stdout)
		bad = fclose(f) != 0 || bad;
	else
		bad = fflush(f) != 0 || bad;
	if (bad) {
		fprintf(stderr, "llmring bench: writing %s failed\n", path);
		return -1;
	}
	return 0;
}

void bench_json_run(FILE *f, const struct bench_options *o, const struct bench_outcome *out,
                    const struct bench_summary *s, bool lagged)
{
	if (o->format == BENCH_FORMAT_VLLM)
		write_vllm(f, o, out, s);
	else
		write_ours(f, o, out, s, lagged);
}

void bench_print_sweep(FILE *f, const struct bench_options *o,
                       const struct bench_sweep_point *points, size_t n)
{
	fprintf(f, "%-12s %9s %7s %10s %12s %10s %10s %10s %10s %9s\n",
	        o->sweep == BENCH_SWEEP_RATE ? "rate" : "concurrency", "completed", "failed",
	        "req/s", "out tok/s", "TTFT p50", "TTFT p99", "E2EL p50", "E2EL p99", "lag p99");
	for (size_t i = 0; i < n; i++) {
		const struct bench_sweep_point *p = &points[i];
		fprintf(f, "%-12g %9zu %7zu %10.2f %12.2f %10.2f %10.2f %10.2f %10.2f %9.3f%s\n",
		        p->value, p->completed, p->failed, p->request_throughput, p->output_throughput,
		        p->ttft_p50_ms, p->ttft_p99_ms, p->e2el_p50_ms, p->e2el_p99_ms,
		        p->schedule_lag_p99_ms, p->lagged ? "  (client lagged)" : "");
	}
}

static double ms_between(uint64_t from, uint64_t to)
{
	return from && to >= from ? (double)(to - from) / 1e6 : -1;
}

int bench_write_requests(FILE *f, const struct bench_outcome *out, int sweep_point)
{
	for (size_t i = 0; i < out->count; i++) {
		const struct bench_record *r = &out->records[i];
		bool counted;
		int64_t tokens = bench_record_output_tokens(r, &counted);
		uint64_t base = out->start_ns;
		fputc('{', f);
		if (sweep_point >= 0)
			fprintf(f, "\"sweep_point\":%d,", sweep_point);
		fprintf(f, "\"intended_ms\":%.3f,\"sent_ms\":%.3f,", ms_between(base, r->intended_ns),
		        ms_between(base, r->sent_ns));
		fprintf(f, "\"admitted_ms\":%.3f,\"first_event_ms\":%.3f,\"last_event_ms\":%.3f,"
		        "\"end_ms\":%.3f,",
		        r->admitted_ns ? ms_between(base, r->admitted_ns) : ms_between(base, r->intended_ns),
		        r->event_count ? ms_between(base, r->first_event_ns) : -1,
		        r->event_count ? ms_between(base, bench_record_last_event_ns(r)) : -1,
		        ms_between(base, r->end_ns));
		fprintf(f, "\"events\":%u,\"text_events\":%u,\"output_tokens\":%" PRId64
		        ",\"output_tokens_counted\":%s,\"prompt_tokens\":%d,\"http_status\":%d,\"error\":",
		        r->event_count, r->text_events, tokens, counted ? "true" : "false",
		        r->prompt_tokens, r->http_status);
		if (r->error)
			json_string(f, bench_error_name(r->error));
		else
			fputs("null", f);
		fputs("}\n", f);
	}
	return ferror(f) ? -1 : 0;
}
