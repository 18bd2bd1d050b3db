/*
 * The figures of `llmring bench` (bench_metrics.h): per-request records,
 * numpy's statistics, vLLM's calculate_metrics, and what vLLM leaves out
 * (latency from the intended send time, schedule lag, errors by code, a
 * per-second timeline).
 */
#include "bench_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llmring.h"

#define NS_PER_MS 1e6
#define NS_PER_S 1000000000ull
#define FIRST_EVENT_ROOM 16
#define MAX_TIMELINE_SECONDS (1u << 20) /* 12 days; later times land in the last second */

/* ---- one request -------------------------------------------------------- */

void bench_record_init(struct bench_record *r, uint64_t intended_ns)
{
	memset(r, 0, sizeof(*r));
	r->intended_ns = intended_ns;
	r->output_tokens = BENCH_NO_USAGE;
}

int bench_record_event(struct bench_record *r, uint64_t now_ns, bool had_text)
{
	if (r->event_count == 0) {
		r->first_event_ns = now_ns;
	} else {
		if (r->event_count == UINT32_MAX)
			return LR_ETOOLARGE;
		uint32_t later = r->event_count - 1; /* index in later_event_us */
		if (later == r->event_cap) {
			uint32_t cap = r->event_cap ? r->event_cap * 2 : FIRST_EVENT_ROOM;
			if (cap < r->event_cap)
				cap = UINT32_MAX;
			uint32_t *grown = realloc(r->later_event_us, (size_t)cap * sizeof(*grown));
			if (!grown)
				return LR_ENOMEM;
			r->later_event_us = grown;
			r->event_cap = cap;
		}
		uint64_t after_ns = now_ns > r->first_event_ns ? now_ns - r->first_event_ns : 0;
		uint64_t after_us = (after_ns + 500) / 1000;
		r->later_event_us[later] = after_us > UINT32_MAX ? UINT32_MAX : (uint32_t)after_us;
	}
	r->event_count++;
	if (had_text)
		r->text_events++;
	return 0;
}

void bench_record_finish(struct bench_record *r, uint64_t end_ns, int error)
{
	r->end_ns = end_ns;
	r->error = error;
	if (error == 0 && r->event_count == 0)
		r->error = BENCH_ENOCHOICE;
	uint32_t later = r->event_count ? r->event_count - 1 : 0;
	if (later == 0) {
		bench_record_release(r);
	} else if (later < r->event_cap) {
		uint32_t *fit = realloc(r->later_event_us, (size_t)later * sizeof(*fit));
		if (fit) {
			r->later_event_us = fit;
			r->event_cap = later;
		}
	}
}

void bench_record_release(struct bench_record *r)
{
	free(r->later_event_us);
	r->later_event_us = NULL;
	r->event_cap = 0;
	if (r->event_count > 1)
		r->event_count = 1;
}

uint64_t bench_record_event_ns(const struct bench_record *r, uint32_t i)
{
	if (i == 0)
		return r->first_event_ns;
	return r->first_event_ns + (uint64_t)r->later_event_us[i - 1] * 1000;
}

uint64_t bench_record_last_event_ns(const struct bench_record *r)
{
	return r->event_count ? bench_record_event_ns(r, r->event_count - 1) : 0;
}

int64_t bench_record_output_tokens(const struct bench_record *r, bool *counted)
{
	/* vLLM: `if not output_len:` -- None and 0 both fall back. */
	bool from_events = r->output_tokens <= 0;
	if (counted)
		*counted = from_events;
	return from_events ? (int64_t)r->text_events : (int64_t)r->output_tokens;
}

static bool record_succeeded(const struct bench_record *r)
{
	return r->sent_ns != 0 && r->error == 0 && r->event_count > 0;
}

static double ns_to_ms(int64_t ns)
{
	return (double)ns / NS_PER_MS;
}

/* ---- numpy's statistics ------------------------------------------------- */

/* numpy's _lerp: a + (b - a) t, computed from b's side when t >= 0.5 so
 * that the result is monotonic in t. */
static double numpy_lerp(double a, double b, double t)
{
	double diff_b_a = b - a;
	return t >= 0.5 ? b - diff_b_a * (1 - t) : a + diff_b_a * t;
}

/* Values reached through an accessor, so that the double samples and the
 * uint32 µs ITL pool share one implementation. */
struct sorted_view {
	const void *base;
	size_t n;
	double (*at)(const void *base, size_t i); /* in ms */
};

static double double_at(const void *base, size_t i)
{
	return ((const double *)base)[i];
}

static double us_at(const void *base, size_t i)
{
	return ((const uint32_t *)base)[i] / 1000.0;
}

static double view_percentile(const struct sorted_view *v, double p)
{
	/* numpy's method "linear": virtual index (n - 1) q, q = p / 100. */
	double q = p / 100.0;
	double virtual_index = (double)(v->n - 1) * q;
	if (virtual_index >= (double)(v->n - 1))
		return v->at(v->base, v->n - 1);
	if (virtual_index <= 0)
		return v->at(v->base, 0);
	double below = floor(virtual_index);
	size_t i = (size_t)below;
	return numpy_lerp(v->at(v->base, i), v->at(v->base, i + 1), virtual_index - below);
}

static void view_stat(const struct sorted_view *v, const struct bench_config *config,
                      struct bench_stat *out)
{
	memset(out, 0, sizeof(*out));
	out->count = v->n;
	if (v->n == 0)
		return; /* vLLM: np.mean(values or 0) and the rest give 0 */
	double sum = 0;
	for (size_t i = 0; i < v->n; i++)
		sum += v->at(v->base, i);
	double mean = sum / (double)v->n;
	double squares = 0;
	for (size_t i = 0; i < v->n; i++) {
		double d = v->at(v->base, i) - mean;
		squares += d * d;
	}
	out->mean = mean;
	out->std = sqrt(squares / (double)v->n); /* np.std: ddof = 0 */
	size_t mid = v->n / 2;
	out->median = v->n % 2 ? v->at(v->base, mid) : (v->at(v->base, mid - 1) + v->at(v->base, mid)) / 2;
	out->min = v->at(v->base, 0);
	out->max = v->at(v->base, v->n - 1);
	for (size_t k = 0; k < config->percentile_count; k++)
		out->percentile[k] = view_percentile(v, config->percentiles[k]);
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double bench_percentile_sorted(const double *sorted, size_t n, double p)
{
	struct sorted_view v = {sorted, n, double_at};
	return view_percentile(&v, p);
}

void bench_stat_of(double *values, size_t n, const struct bench_config *config, struct bench_stat *out)
{
	if (n > 1)
		qsort(values, n, sizeof(*values), compare_doubles);
	struct sorted_view v = {values, n, double_at};
	view_stat(&v, config, out);
}

/* LSD radix sort, a byte a pass, skipping bytes every key shares (the
 * high bytes of µs gaps usually). scratch holds n values. */
static void radix_sort_u32(uint32_t *keys, uint32_t *scratch, size_t n)
{
	uint32_t *from = keys, *to = scratch;
	for (int shift = 0; shift < 32; shift += 8) {
		size_t counts[256] = {0};
		for (size_t i = 0; i < n; i++)
			counts[(from[i] >> shift) & 0xff]++;
		if (counts[(from[0] >> shift) & 0xff] == n)
			continue;
		size_t offset = 0;
		for (int b = 0; b < 256; b++) {
			size_t c = counts[b];
			counts[b] = offset;
			offset += c;
		}
		for (size_t i = 0; i < n; i++)
			to[counts[(from[i] >> shift) & 0xff]++] = from[i];
		uint32_t *t = from;
		from = to;
		to = t;
	}
	if (from != keys)
		memcpy(keys, from, n * sizeof(*keys));
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* ---- configuration and error names -------------------------------------- */

void bench_config_defaults(struct bench_config *c)
{
	memset(c, 0, sizeof(*c));
	c->percentiles[0] = 50;
	c->percentiles[1] = 90;
	c->percentiles[2] = 99;
	c->percentile_count = 3;
	c->slo_ttft_ms = c->slo_tpot_ms = c->slo_e2el_ms = -1;
}

const char *bench_error_name(int32_t code)
{
	if (code == BENCH_ENOCHOICE)
		return "no_choice_event";
	return lr_error_name(code);
}

static void count_error(struct bench_summary *s, int32_t code)
{
	for (size_t i = 0; i < s->error_kinds; i++) {
		if (s->errors[i].code == code) {
			s->errors[i].count++;
			return;
		}
	}
	if (s->error_kinds == BENCH_MAX_ERROR_KINDS) {
		s->errors_other++;
		return;
	}
	s->errors[s->error_kinds++] = (struct bench_error_count){code, 1};
}

static int compare_error_counts(const void *a, const void *b)
{
	const struct bench_error_count *x = a, *y = b;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return (x->code < y->code) - (x->code > y->code); /* then by code, -1 first */
}

/* ---- the summary -------------------------------------------------------- */

/* Per-request values gathered before the statistics sort them. Each
 * array is owned here until handed to the summary (the four kept for
 * CDFs) or freed by free_samples. */
struct samples {
	double *ttft, *tpot, *e2el;           /* owner: the summary once summarize succeeds */
	uint32_t *itl_us;                     /* owner: the summary once summarize succeeds */
	double *ttft_intended, *e2el_intended; /* owner: this struct (freed by free_samples) */
	double *lag, *queue_wait;             /* owner: this struct (freed by free_samples) */
	size_t completed, tpots, itls, sent;
};

static void free_samples(struct samples *m)
{
	free(m->ttft);
	free(m->tpot);
	free(m->e2el);
	free(m->itl_us);
	free(m->ttft_intended);
	free(m->e2el_intended);
	free(m->lag);
	free(m->queue_wait);
	memset(m, 0, sizeof(*m));
}

static int alloc_samples(struct samples *m, const struct bench_record *records, size_t count)
{
	memset(m, 0, sizeof(*m));
	size_t gaps = 0;
	for (size_t i = 0; i < count; i++) {
		if (records[i].sent_ns)
			m->sent++;
		if (record_succeeded(&records[i])) {
			m->completed++;
			gaps += records[i].event_count - 1;
		}
	}
	/* calloc of at least one element, so that NULL always means failure. */
	size_t c = m->completed ? m->completed : 1, sent = m->sent ? m->sent : 1;
	m->ttft = calloc(c, sizeof(double));
	m->tpot = calloc(c, sizeof(double));
	m->e2el = calloc(c, sizeof(double));
	m->ttft_intended = calloc(c, sizeof(double));
	m->e2el_intended = calloc(c, sizeof(double));
	m->itl_us = calloc(gaps ? gaps : 1, sizeof(uint32_t));
	m->lag = calloc(sent, sizeof(double));
	m->queue_wait = calloc(sent, sizeof(double));
	if (!m->ttft || !m->tpot || !m->e2el || !m->ttft_intended || !m->e2el_intended || !m->itl_us ||
	    !m->lag || !m->queue_wait) {
		free_samples(m);
		return LR_ENOMEM;
	}
	return 0;
}

static bool meets_slos(const struct bench_config *c, double ttft_ms, double tpot_ms, double e2el_ms)
{
	/* vLLM: `all([s >= r for s, r in zip(slo_values, req_metric)])`. */
	return (c->slo_ttft_ms < 0 || ttft_ms <= c->slo_ttft_ms) &&
	       (c->slo_tpot_ms < 0 || tpot_ms <= c->slo_tpot_ms) &&
	       (c->slo_e2el_ms < 0 || e2el_ms <= c->slo_e2el_ms);
}

/* One successful request into the samples and the vLLM totals. */
static void add_completed(const struct bench_record *r, const struct bench_config *c, struct samples *m,
                          struct bench_summary *s)
{
	uint64_t first = r->first_event_ns, last = bench_record_last_event_ns(r);
	double ttft = ns_to_ms((int64_t)(first - r->sent_ns));
	double e2el = ns_to_ms((int64_t)(last - r->sent_ns));
	bool counted;
	int64_t output_len = bench_record_output_tokens(r, &counted);
	if (counted)
		s->output_tokens_counted++;
	s->total_output += output_len;
	s->total_input += r->prompt_tokens;
	double tpot = 0; /* vLLM: "if output_len <= 1, we regard tpot as 0 for goodput" */
	if (output_len > 1) {
		tpot = (e2el - ttft) / (double)(output_len - 1);
		m->tpot[m->tpots++] = tpot;
	}
	if (s->goodput_enabled && meets_slos(c, ttft, tpot, e2el))
		s->good_completed++;
	size_t k = s->completed++;
	m->ttft[k] = ttft;
	m->e2el[k] = e2el;
	m->ttft_intended[k] = ns_to_ms((int64_t)(first - r->intended_ns));
	m->e2el_intended[k] = ns_to_ms((int64_t)(last - r->intended_ns));
	uint32_t previous_us = 0;
	for (uint32_t e = 1; e < r->event_count; e++) {
		uint32_t at_us = r->later_event_us[e - 1];
		m->itl_us[m->itls++] = at_us - previous_us;
		previous_us = at_us;
	}
}

/* Every request: who was sent, how late, what failed. */
static void gather(const struct bench_record *records, size_t count, const struct bench_config *c,
                   struct samples *m, struct bench_summary *s)
{
	uint64_t last_sent_ns = 0;
	uint64_t reported_tokens = 0, reported_events = 0;
	size_t sent = 0;
	for (size_t i = 0; i < count; i++) {
		const struct bench_record *r = &records[i];
		if (!r->sent_ns) {
			s->dropped++;
			continue;
		}
		uint64_t admitted = r->admitted_ns > r->intended_ns ? r->admitted_ns : r->intended_ns;
		m->lag[sent] = ns_to_ms((int64_t)(r->sent_ns - admitted));
		m->queue_wait[sent] = ns_to_ms((int64_t)(admitted - r->intended_ns));
		sent++;
		if ((int64_t)(r->sent_ns - admitted) > (int64_t)BENCH_LATE_NS)
			s->late_arrivals++;
		if (r->sent_ns > last_sent_ns)
			last_sent_ns = r->sent_ns;
		if (!record_succeeded(r)) {
			s->failed++;
			count_error(s, r->error ? r->error : BENCH_ENOCHOICE);
			continue;
		}
		add_completed(r, c, m, s);
		if (r->output_tokens > 0 && r->text_events > 0) {
			reported_tokens += (uint64_t)r->output_tokens;
			reported_events += r->text_events;
		}
	}
	s->sent = sent;
	if (last_sent_ns > s->timeline_start_ns)
		s->achieved_rate = (double)sent / ((double)(last_sent_ns - s->timeline_start_ns) / 1e9);
	if (reported_events)
		s->tokens_per_event = (double)reported_tokens / (double)reported_events;
	qsort(s->errors, s->error_kinds, sizeof(s->errors[0]), compare_error_counts);
}

/*
 * vLLM's max_output_tokens_per_s and max_concurrent_requests, over the
 * successful requests only: one-second buckets from the earliest send,
 * each choice event one token; the peak of [send, last event) intervals
 * by a sweep where an end at the same instant as a start comes first.
 */
static int vllm_peaks(const struct bench_record *records, size_t count, struct bench_summary *s)
{
	if (s->completed == 0)
		return 0;
	uint64_t min_start = UINT64_MAX, max_end = 0;
	for (size_t i = 0; i < count; i++) {
		const struct bench_record *r = &records[i];
		if (!record_succeeded(r))
			continue;
		uint64_t end = bench_record_last_event_ns(r);
		if (r->sent_ns < min_start)
			min_start = r->sent_ns;
		if (end > max_end)
			max_end = end;
	}
	/* int(np.ceil(max_end_time - min_start_time)) + 1 */
	uint64_t seconds = (max_end - min_start + NS_PER_S - 1) / NS_PER_S + 1;
	if (seconds > MAX_TIMELINE_SECONDS)
		seconds = MAX_TIMELINE_SECONDS;
	uint64_t *tokens = calloc(seconds, sizeof(*tokens));            /* owner: this function */
	uint64_t *starts = malloc(s->completed * sizeof(*starts));      /* owner: this function */
	uint64_t *ends = malloc(s->completed * sizeof(*ends));          /* owner: this function */
	if (!tokens || !starts || !ends) {
		free(tokens);
		free(starts);
		free(ends);
		return LR_ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < count; i++) {
		const struct bench_record *r = &records[i];
		if (!record_succeeded(r))
			continue;
		for (uint32_t e = 0; e < r->event_count; e++) {
			uint64_t bucket = (bench_record_event_ns(r, e) - min_start) / NS_PER_S;
			if (bucket < seconds)
				tokens[bucket]++;
		}
		starts[n] = r->sent_ns;
		ends[n] = bench_record_last_event_ns(r);
		n++;
	}
	uint64_t peak_tokens = 0;
	for (uint64_t b = 0; b < seconds; b++)
		if (tokens[b] > peak_tokens)
			peak_tokens = tokens[b];
	s->max_output_tokens_per_s = (double)peak_tokens;
	qsort(starts, n, sizeof(*starts), compare_u64);
	qsort(ends, n, sizeof(*ends), compare_u64);
	long long in_flight = 0, peak = 0; /* may dip below 0, as vLLM's does, for zero-length requests */
	for (size_t a = 0, d = 0; a < n;) {
		if (d < n && ends[d] <= starts[a]) {
			in_flight--;
			d++;
		} else {
			in_flight++;
			a++;
			if (in_flight > peak)
				peak = in_flight;
		}
	}
	s->max_concurrent_requests = (size_t)peak;
	free(tokens);
	free(starts);
	free(ends);
	return 0;
}

static size_t second_of(uint64_t t_ns, uint64_t start_ns, size_t len)
{
	uint64_t b = t_ns > start_ns ? (t_ns - start_ns) / NS_PER_S : 0;
	return b < len ? (size_t)b : len - 1;
}

/* config start_ns, or without one the earliest send. */
static uint64_t run_start_ns(const struct bench_record *records, size_t count, const struct bench_config *c)
{
	if (c->start_ns)
		return c->start_ns;
	uint64_t first = 0;
	for (size_t i = 0; i < count; i++)
		if (records[i].sent_ns && (!first || records[i].sent_ns < first))
			first = records[i].sent_ns;
	return first;
}

/* Our per-second timeline from the run's start to the last end. */
static int build_timeline(const struct bench_record *records, size_t count, uint64_t start_ns,
                          const struct bench_config *c, struct bench_summary *s)
{
	s->timeline_start_ns = start_ns;
	uint64_t last = c->end_ns;
	for (size_t i = 0; i < count; i++) {
		if (records[i].end_ns > last)
			last = records[i].end_ns;
		if (records[i].sent_ns > last)
			last = records[i].sent_ns;
	}
	if (last <= start_ns && s->sent == 0)
		return 0;
	uint64_t len = last > start_ns ? (last - start_ns + NS_PER_S - 1) / NS_PER_S : 1;
	if (len == 0)
		len = 1;
	if (len > MAX_TIMELINE_SECONDS)
		len = MAX_TIMELINE_SECONDS;
	s->timeline = calloc(len, sizeof(*s->timeline)); /* owner: the summary */
	if (!s->timeline)
		return LR_ENOMEM;
	s->timeline_len = len;
	uint32_t *ended = calloc(len, sizeof(*ended)); /* owner: this function */
	if (!ended) {
		free(s->timeline);
		s->timeline = NULL;
		s->timeline_len = 0;
		return LR_ENOMEM;
	}
	for (size_t i = 0; i < count; i++) {
		const struct bench_record *r = &records[i];
		if (!r->sent_ns)
			continue;
		s->timeline[second_of(r->sent_ns, start_ns, len)].sent++;
		if (r->end_ns) {
			size_t b = second_of(r->end_ns, start_ns, len);
			ended[b]++;
			if (record_succeeded(r))
				s->timeline[b].completed++;
			else
				s->timeline[b].failed++;
		}
		if (!record_succeeded(r))
			continue;
		double share = (double)bench_record_output_tokens(r, NULL) / (double)r->event_count;
		for (uint32_t e = 0; e < r->event_count; e++) {
			struct bench_second *sec = &s->timeline[second_of(bench_record_event_ns(r, e), start_ns, len)];
			sec->events++;
			sec->output_tokens += share;
		}
	}
	uint64_t sent_so_far = 0, ended_so_far = 0;
	for (size_t b = 0; b < len; b++) {
		sent_so_far += s->timeline[b].sent;
		ended_so_far += ended[b];
		s->timeline[b].in_flight = (uint32_t)(sent_so_far - ended_so_far);
	}
	free(ended);
	return 0;
}

static int check_config(const struct bench_config *c)
{
	if (c->percentile_count > BENCH_MAX_PERCENTILES)
		return LR_EINVAL;
	for (size_t k = 0; k < c->percentile_count; k++)
		if (!(c->percentiles[k] >= 0 && c->percentiles[k] <= 100))
			return LR_EINVAL;
	return 0;
}

static void compute_stats(struct samples *m, const struct bench_config *c, struct bench_summary *s)
{
	bench_stat_of(m->ttft, m->completed, c, &s->ttft);
	bench_stat_of(m->tpot, m->tpots, c, &s->tpot);
	bench_stat_of(m->e2el, m->completed, c, &s->e2el);
	bench_stat_of(m->ttft_intended, m->completed, c, &s->ttft_from_intended);
	bench_stat_of(m->e2el_intended, m->completed, c, &s->e2el_from_intended);
	bench_stat_of(m->lag, m->sent, c, &s->schedule_lag); /* sorts m->lag */
	s->schedule_lag_p99_ms = m->sent ? bench_percentile_sorted(m->lag, m->sent, 99) : 0;
	bench_stat_of(m->queue_wait, m->sent, c, &s->queue_wait);
	struct sorted_view itl = {m->itl_us, m->itls, us_at};
	view_stat(&itl, c, &s->itl);
}

int bench_summarize(const struct bench_record *records, size_t count, const struct bench_config *config,
                    struct bench_summary *out)
{
	memset(out, 0, sizeof(*out));
	int err = check_config(config);
	if (err)
		return err;
	struct samples m;
	if ((err = alloc_samples(&m, records, count)))
		return err;
	out->requests = count;
	out->target_rate = config->target_rate;
	out->goodput_enabled = config->slo_ttft_ms >= 0 || config->slo_tpot_ms >= 0 || config->slo_e2el_ms >= 0;
	out->timeline_start_ns = run_start_ns(records, count, config);
	gather(records, count, config, &m, out);

	if (m.itls > 1) {
		uint32_t *scratch = malloc(m.itls * sizeof(*scratch)); /* owner: this block */
		if (!scratch) {
			free_samples(&m);
			memset(out, 0, sizeof(*out));
			return LR_ENOMEM;
		}
		radix_sort_u32(m.itl_us, scratch, m.itls);
		free(scratch);
	}
	compute_stats(&m, config, out);

	if (config->end_ns > config->start_ns)
		out->duration_s = (double)(config->end_ns - config->start_ns) / 1e9;
	if (out->duration_s > 0) {
		out->request_throughput = (double)out->completed / out->duration_s;
		out->output_throughput = (double)out->total_output / out->duration_s;
		out->total_token_throughput = (double)(out->total_input + out->total_output) / out->duration_s;
		if (out->goodput_enabled)
			out->request_goodput = (double)out->good_completed / out->duration_s;
	}
	err = vllm_peaks(records, count, out);
	if (!err)
		err = build_timeline(records, count, out->timeline_start_ns, config, out);
	if (err) {
		free_samples(&m);
		memset(out, 0, sizeof(*out));
		return err;
	}
	/* The four sorted sample sets move to the summary; the rest go. */
	out->ttft_ms = m.ttft;
	out->tpot_ms = m.tpot;
	out->e2el_ms = m.e2el;
	out->itl_us = m.itl_us;
	m.ttft = m.tpot = m.e2el = NULL;
	m.itl_us = NULL;
	free_samples(&m);
	return 0;
}

void bench_summary_free(struct bench_summary *s)
{
	free(s->ttft_ms);
	free(s->tpot_ms);
	free(s->e2el_ms);
	free(s->itl_us);
	free(s->timeline);
	memset(s, 0, sizeof(*s));
}
