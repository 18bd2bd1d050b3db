/*
 * `llmring bench`: the steps in order (flags, the server, the prompts,
 * the engine, the run, the figures, the report) and the exit status.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "mock_server.h"

/* The engine for the run: caller-driven (one thread, no hand-offs), no
 * retries (each attempt is a sample), connections for the concurrency. */
static int start_engine(const struct bench_options *o, const char *base_url, const char *api_key,
                        long conns, lr_engine **eng)
{
	lr_config cfg = lr_config_default();
	cfg.on_log = cli_log;
	cfg.base_url = base_url;
	cfg.api_key = api_key;
	cfg.ca_file = o->cacert;
	cfg.insecure = o->insecure;
	cfg.max_in_flight = (unsigned)conns;
	cfg.reap_completions = 1;
	cfg.drive_from_caller = 1;
	cfg.max_retries = 0;
	if (o->timeout_s > 0)
		cfg.total_timeout_s = o->timeout_s;
	lr_error_info why;
	if (lr_engine_create(&cfg, eng, &why)) {
		cli_engine_error("bench", &why);
		return -1;
	}
	return 0;
}

/* How many requests can be on the wire at once: the connections to have. */
static long wanted_connections(const struct bench_options *o)
{
	if (o->sweep == BENCH_SWEEP_CONCURRENCY) {
		double most = 0;
		for (size_t i = 0; i < o->sweep_count; i++)
			most = fmax(most, o->sweep_values[i]);
		return (long)most;
	}
	if (o->concurrency)
		return o->concurrency;
	/* An uncapped open loop: what the rate can put in flight, within reason. */
	return 10000;
}

static bool client_lagged(const struct bench_outcome *out, const struct bench_summary *s)
{
	double share = out->wall_s > 0 ? out->cpu_s / out->wall_s : 0;
	return s->schedule_lag_p99_ms > (double)BENCH_LAG_LIMIT_NS / 1e6 || share > BENCH_CPU_LIMIT;
}

/* A stat's percentile p, when it was asked for (else the median or max). */
static double percentile_of(const struct bench_config *c, const struct bench_stat *s, double p)
{
	for (size_t i = 0; i < c->percentile_count; i++)
		if (c->percentiles[i] == p)
			return s->percentile[i];
	return p == 50 ? s->median : s->max;
}

/* The outputs that stay open across a sweep's runs. */
struct outputs {
	FILE *json, *requests;
	size_t json_runs;
	struct bench_sweep_point points[BENCH_MAX_SWEEP];
	size_t npoints;
};

/* The figures of one run: printed, written, kept for the sweep. Returns
 * the run's exit status. */
static int report(const struct bench_options *o, struct bench_outcome *out, struct outputs *w,
                  double point_value)
{
	struct bench_config c = o->metrics;
	c.target_rate = o->rate;
	c.start_ns = out->start_ns;
	c.end_ns = out->end_ns;
	struct bench_summary s;
	int rc = bench_summarize(out->records, out->count, &c, &s);
	if (rc) {
		fprintf(stderr, "llmring bench: computing the figures failed: %s\n", lr_strerror(rc));
		return CLI_EXIT_USAGE;
	}
	bool lagged = client_lagged(out, &s);
	if (!o->quiet) {
		if (o->sweep)
			printf("\n---- sweep: %s %g ----\n", o->sweep == BENCH_SWEEP_RATE ? "rate" :
			       "concurrency", point_value);
		bench_print_summary(stdout, o, out, &s, lagged);
	}
	int status = lagged ? 3 : s.failed || s.dropped ? CLI_EXIT_FAILED : CLI_EXIT_OK;
	if (w->json) {
		if (o->sweep && w->json_runs++)
			fputc(',', w->json);
		bench_json_run(w->json, o, out, &s, lagged);
	}
	if (w->requests && bench_write_requests(w->requests, out, o->sweep ? (int)w->npoints : -1))
		status = CLI_EXIT_USAGE;
	if (o->svg_path && !o->sweep && bench_write_svg(o->svg_path, o, &s))
		status = CLI_EXIT_USAGE;
	if (w->npoints < BENCH_MAX_SWEEP)
		w->points[w->npoints++] = (struct bench_sweep_point){
			.value = point_value, .completed = s.completed, .failed = s.failed,
			.request_throughput = s.request_throughput, .output_throughput = s.output_throughput,
			.ttft_p50_ms = s.ttft.median, .ttft_p99_ms = percentile_of(&c, &s.ttft, 99),
			.e2el_p50_ms = s.e2el.median, .e2el_p99_ms = percentile_of(&c, &s.e2el, 99),
			.schedule_lag_p99_ms = s.schedule_lag_p99_ms, .lagged = lagged};
	bench_summary_free(&s);
	return status;
}

/* Every run (one, or one per sweep value) and the outputs around them.
 * The exit status: the worst of the runs'. */
static int run_all(lr_engine *eng, const struct bench_options *o, const struct bench_dataset *d)
{
	struct outputs w = {0};
	int status = CLI_EXIT_OK;
	if (o->json_path && !(w.json = bench_open_out(o->json_path)))
		return CLI_EXIT_USAGE;
	if (o->requests_out_path && !(w.requests = bench_open_out(o->requests_out_path))) {
		if (w.json)
			bench_close_out(w.json, o->json_path);
		return CLI_EXIT_USAGE;
	}
	if (w.json && o->sweep)
		fputs(o->format == BENCH_FORMAT_VLLM ? "[" : "{\"schema\":\"llmring.bench.sweep/1\","
		      "\"points\":[", w.json);
	size_t runs = o->sweep ? o->sweep_count : 1;
	for (size_t i = 0; i < runs; i++) {
		struct bench_options point = *o;
		double value = 0;
		if (o->sweep == BENCH_SWEEP_RATE)
			point.rate = value = o->sweep_values[i];
		else if (o->sweep == BENCH_SWEEP_CONCURRENCY)
			point.concurrency = (long)(value = o->sweep_values[i]);
		if (i > 0)
			point.warmup = 0; /* the connections are warm */
		struct bench_outcome out;
		int rc = bench_run(eng, &point, d, &out) ? CLI_EXIT_USAGE : report(&point, &out, &w, value);
		bool stop = out.interrupted || rc == CLI_EXIT_USAGE;
		bench_outcome_free(&out);
		if (rc == CLI_EXIT_USAGE || (rc == 3 && status != CLI_EXIT_USAGE) ||
		    (rc == CLI_EXIT_FAILED && status == CLI_EXIT_OK))
			status = rc;
		if (stop)
			break;
	}
	if (o->sweep) {
		if (w.json)
			fputs(o->format == BENCH_FORMAT_VLLM ? "]\n" : "]}\n", w.json);
		if (!o->quiet) {
			printf("\n");
			bench_print_sweep(stdout, o, w.points, w.npoints);
		}
		if (o->svg_path && bench_write_sweep_svg(o->svg_path, o, w.points, w.npoints))
			status = CLI_EXIT_USAGE;
	}
	if (w.json && bench_close_out(w.json, o->json_path))
		status = CLI_EXIT_USAGE;
	if (w.requests && bench_close_out(w.requests, o->requests_out_path))
		status = CLI_EXIT_USAGE;
	return status;
}

int bench_main(int argc, char **argv)
{
	struct bench_options o;
	int rc = bench_parse_options(argc, argv, &o);
	if (rc)
		return rc < 0 ? CLI_EXIT_OK : rc;
	const char *base_url = NULL, *api_key = NULL;
	struct mock_server *mock = NULL; /* owner: here (--mock) */
	char mock_url[64];
	if (o.mock) {
		struct mock_options mo;
		mock_options_default(&mo);
		mo.host = "127.0.0.1";
		mo.port = 0;
		/* As a benchmark server would be run: replies as long as max_tokens. */
		mo.ignore_eos = 1;
		int mrc = mock_server_start(&mo, &mock);
		if (mrc) {
			fprintf(stderr, "llmring bench: cannot start the mock server: %s\n", strerror(-mrc));
			return CLI_EXIT_USAGE;
		}
		snprintf(mock_url, sizeof mock_url, "http://127.0.0.1:%u",
		         (unsigned)mock_server_port(mock));
		base_url = mock_url;
	} else if (cli_resolve_endpoint("bench", o.base_url_flag, o.model, &base_url, &api_key)) {
		return CLI_EXIT_USAGE;
	}
	long conns = wanted_connections(&o);
	long fds = cli_ensure_fds("bench", (unsigned long)conns * (o.mock ? 2 : 1) + 64,
	                          "--concurrency");
	if (fds < 0) {
		if (mock)
			mock_server_stop(mock);
		return CLI_EXIT_USAGE;
	}
	if (fds < conns + 64)
		conns = fds > 128 ? (fds - 64) / (o.mock ? 2 : 1) : 32;
	struct bench_dataset d;
	size_t need = o.requests ? (size_t)(o.requests + o.warmup) : 10000;
	if (o.dataset == BENCH_DATASET_RANDOM && need > 100000)
		need = 100000; /* past this the prompts repeat, in turn */
	lr_engine *eng = NULL;
	bench_catch_sigint(true);
	if (bench_dataset_load(&o, need, &d)) {
		rc = CLI_EXIT_USAGE;
	} else if (start_engine(&o, base_url, api_key, conns, &eng)) {
		rc = CLI_EXIT_USAGE;
	} else {
		rc = run_all(eng, &o, &d);
	}
	bench_catch_sigint(false);
	if (eng)
		lr_engine_destroy(eng);
	bench_dataset_free(&d);
	if (mock)
		mock_server_stop(mock);
	return rc;
}
