/*
 * `llmring bench` flags: the usage text, parsing and checking them. Every
 * refusal is printed here.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "cli.h"

static const char bench_usage[] =
	"usage: llmring bench (--base-url URL | --mock) --model M\n"
	"                     [--requests N | --duration S] [--warmup N]\n"
	"                     [--concurrency N] [--rate R [--burstiness B]] [--seed N]\n"
	"                     [--dataset random | sharegpt:FILE | jsonl:FILE]\n"
	"                     [--prompt-tokens N] [--max-tokens N] [--endpoint chat|completions]\n"
	"                     [--stream | --no-stream] [--ignore-eos]\n"
	"                     [--goodput ttft:MS,tpot:MS,e2el:MS] [--percentiles 50,90,99]\n"
	"                     [--json FILE] [--format llmring|vllm] [--requests-out FILE]\n"
	"                     [--svg FILE] [--sweep rate:R1,R2,... | concurrency:C1,C2,...]\n"
	"                     [--timeout S] [--cacert FILE] [--insecure] [--quiet]\n"
	"\n"
	"A load generator for inference servers. It reports vLLM's figures as\n"
	"`vllm bench serve` computes them (TTFT, TPOT, ITL, E2EL, throughputs, goodput),\n"
	"and beside them each latency from the request's intended send time (no\n"
	"coordinated omission), the schedule lag, the achieved rate, errors by code and\n"
	"the client's own CPU.\n"
	"  --base-url URL     the server (an OpenAI-compatible one, or a provider's:\n"
	"                     the model's prefix picks the dialect, as in batch)\n"
	"  --mock             a built-in mock server instead (no key, no network)\n"
	"  --model M          the model to ask for\n"
	"  --requests N       requests counted (1000), after the warm-up\n"
	"  --duration S       send for S seconds instead of a count\n"
	"  --warmup N         requests sent first and not counted (0)\n"
	"  --concurrency N    closed loop: N requests at a time, each sent when one\n"
	"                     ends; with --rate, the cap of the open loop\n"
	"  --rate R           open loop: R requests per second at absolute times (inf:\n"
	"                     all at once); gaps from a gamma distribution\n"
	"  --burstiness B     the gamma's shape (1: Poisson; below 1 burstier)\n"
	"  --seed N           seed of the schedule and of random prompts (0)\n"
	"  --dataset D        random (default): prompts of about --prompt-tokens tokens\n"
	"                     (one word each); sharegpt:FILE: the first human turn of\n"
	"                     each conversation, its reply's length as max_tokens;\n"
	"                     jsonl:FILE: one OpenAI request body per line (or batch\n"
	"                     input lines), used in turn\n"
	"  --prompt-tokens N  words per random prompt (256)\n"
	"  --max-tokens N     max_tokens of each request (128; ShareGPT: the reply's)\n"
	"  --random-range-ratio R\n"
	"                     random prompts: each prompt's length and max_tokens drawn\n"
	"                     uniformly from [X * (1 - R), X * (1 + R)], 0 <= R < 1 (0)\n"
	"  --endpoint E       chat (/chat/completions, default) or completions\n"
	"                     (/completions, vLLM bench's default)\n"
	"  --stream, --no-stream\n"
	"                     streamed responses (the default) or whole ones (TTFT is\n"
	"                     then the whole latency, as in vLLM)\n"
	"  --ignore-eos       ask the server to generate all max_tokens (vLLM's field)\n"
	"  --goodput SLOS     requests meeting every SLO per second: ttft:MS,tpot:MS,\n"
	"                     e2el:MS (any of them)\n"
	"  --percentiles P    comma-separated percentiles reported (50,90,99)\n"
	"  --json FILE        the whole result as JSON (--format llmring: ours, see the\n"
	"                     guide; vllm: the keys of vllm bench serve --save-result)\n"
	"  --requests-out FILE one JSON line per request with its timestamps\n"
	"  --svg FILE         plots: the latency CDFs, throughput and requests in flight\n"
	"                     over time; with --sweep, throughput against p50 and p99\n"
	"                     latency, a point per run\n"
	"  --sweep K:V,...    one run per value of --rate (rate:) or --concurrency\n"
	"                     (concurrency:), each with the other flags; a table at the end\n"
	"                     (--json: {\"points\": [...]}, one run's object each)\n"
	"  --timeout S        total seconds per request (600)\n"
	"  --cacert FILE, --insecure  as for batch\n"
	"  --quiet            no summary on stdout\n"
	"Exit status: 0 every counted request succeeded, 1 some failed, 2 nothing could\n"
	"be run, 3 the client itself lagged (schedule lag p99 above 1 ms, or more than\n"
	"80 %% of a core): its figures measure the client as much as the server.\n";

void cli_usage_bench(FILE *out)
{
	fputs(bench_usage, out);
}

static int usage_error(const char *why, const char *what)
{
	fprintf(stderr, "llmring bench: %s%s\n", why, what ? what : "");
	return CLI_EXIT_USAGE;
}

/* "ttft:500,tpot:50,e2el:2000" into the config's SLOs. */
static int parse_goodput(const char *text, struct bench_config *c)
{
	const char *p = text;
	while (*p) {
		const char *colon = strchr(p, ':');
		if (!colon)
			return usage_error("--goodput wants NAME:MS pairs, got ", text);
		size_t name_len = (size_t)(colon - p);
		char *end;
		double ms = strtod(colon + 1, &end);
		if (end == colon + 1 || !(ms >= 0) || !isfinite(ms) || (*end && *end != ','))
			return usage_error("--goodput: not a number of milliseconds in ", text);
		if (name_len == 4 && memcmp(p, "ttft", 4) == 0)
			c->slo_ttft_ms = ms;
		else if (name_len == 4 && memcmp(p, "tpot", 4) == 0)
			c->slo_tpot_ms = ms;
		else if (name_len == 4 && memcmp(p, "e2el", 4) == 0)
			c->slo_e2el_ms = ms;
		else
			return usage_error("--goodput: the SLOs are ttft, tpot and e2el, got ", text);
		p = *end ? end + 1 : end;
	}
	return 0;
}

static int parse_percentiles(const char *text, struct bench_config *c)
{
	c->percentile_count = 0;
	const char *p = text;
	while (*p) {
		char *end;
		double v = strtod(p, &end);
		if (end == p || !(v >= 0 && v <= 100) || (*end && *end != ','))
			return usage_error("--percentiles wants numbers from 0 to 100, got ", text);
		if (c->percentile_count == BENCH_MAX_PERCENTILES)
			return usage_error("--percentiles: at most 16, got ", text);
		c->percentiles[c->percentile_count++] = v;
		p = *end ? end + 1 : end;
	}
	if (!c->percentile_count)
		return usage_error("--percentiles is empty", NULL);
	return 0;
}

static int parse_dataset(const char *v, struct bench_options *o)
{
	if (strcmp(v, "random") == 0) {
		o->dataset = BENCH_DATASET_RANDOM;
		return 0;
	}
	if (strncmp(v, "sharegpt:", 9) == 0 && v[9]) {
		o->dataset = BENCH_DATASET_SHAREGPT;
		o->dataset_path = v + 9;
		return 0;
	}
	if (strncmp(v, "jsonl:", 6) == 0 && v[6]) {
		o->dataset = BENCH_DATASET_JSONL;
		o->dataset_path = v + 6;
		return 0;
	}
	return usage_error("--dataset is random, sharegpt:FILE or jsonl:FILE, got ", v);
}

static int parse_sweep(const char *text, struct bench_options *o)
{
	const char *p;
	if (strncmp(text, "rate:", 5) == 0) {
		o->sweep = BENCH_SWEEP_RATE;
		p = text + 5;
	} else if (strncmp(text, "concurrency:", 12) == 0) {
		o->sweep = BENCH_SWEEP_CONCURRENCY;
		p = text + 12;
	} else {
		return usage_error("--sweep is rate:R1,R2,... or concurrency:C1,C2,..., got ", text);
	}
	o->sweep_count = 0;
	while (*p) {
		char *end;
		double v = strtod(p, &end);
		bool whole = v == floor(v);
		if (end == p || !(v > 0) || !isfinite(v) || (*end && *end != ',') ||
		    (o->sweep == BENCH_SWEEP_CONCURRENCY && (!whole || v > BENCH_MAX_CONCURRENCY)))
			return usage_error("--sweep: each value must be a positive number (a whole one "
			                   "for concurrency), got ", text);
		if (o->sweep_count == BENCH_MAX_SWEEP)
			return usage_error("--sweep: at most 64 values, got ", text);
		o->sweep_values[o->sweep_count++] = v;
		p = *end ? end + 1 : end;
	}
	if (!o->sweep_count)
		return usage_error("--sweep has no values: ", text);
	return 0;
}

static int parse_rate(const char *v, double *rate)
{
	if (strcmp(v, "inf") == 0) {
		*rate = INFINITY;
		return 0;
	}
	return cli_parse_positive("bench", "--rate", v, rate) ? CLI_EXIT_USAGE : 0;
}

struct raw_flags {
	const char *requests, *duration, *warmup, *concurrency, *rate, *burstiness, *seed;
	const char *prompt_tokens, *max_tokens, *range_ratio, *endpoint, *timeout, *format;
};

/* The numbers, once every flag is known. */
static int check_numbers(const struct raw_flags *r, struct bench_options *o)
{
	const char *cmd = "bench";
	long n;
	if (r->requests) {
		if (cli_parse_count(cmd, "--requests", r->requests, 1, 1000000000L, &o->requests))
			return CLI_EXIT_USAGE;
	}
	if ((r->duration && cli_parse_seconds(cmd, "--duration", r->duration, &o->duration_s)) ||
	    (r->warmup && cli_parse_count(cmd, "--warmup", r->warmup, 0, 1000000000L, &o->warmup)) ||
	    (r->concurrency && cli_parse_count(cmd, "--concurrency", r->concurrency, 1,
	                                       BENCH_MAX_CONCURRENCY, &o->concurrency)) ||
	    (r->rate && parse_rate(r->rate, &o->rate)) ||
	    (r->burstiness && cli_parse_positive(cmd, "--burstiness", r->burstiness, &o->burstiness)) ||
	    (r->prompt_tokens &&
	     cli_parse_count(cmd, "--prompt-tokens", r->prompt_tokens, 1, 1000000L, &o->prompt_tokens)) ||
	    (r->max_tokens &&
	     cli_parse_count(cmd, "--max-tokens", r->max_tokens, 1, 1000000L, &o->max_tokens)) ||
	    (r->timeout && cli_parse_seconds(cmd, "--timeout", r->timeout, &o->timeout_s)))
		return CLI_EXIT_USAGE;
	if (r->range_ratio) {
		char *end;
		errno = 0;
		double v = strtod(r->range_ratio, &end);
		if (errno || end == r->range_ratio || *end || !(v >= 0 && v < 1))
			return usage_error("--random-range-ratio is a number from 0 up to (not "
			                   "including) 1, got ", r->range_ratio);
		if (o->dataset != BENCH_DATASET_RANDOM)
			return usage_error("--random-range-ratio varies random prompts: the dataset's "
			                   "own lengths are used as they are", NULL);
		o->range_ratio = v;
	}
	if (r->seed) {
		if (cli_parse_count(cmd, "--seed", r->seed, 0, 0x7fffffffffffffffL, &n))
			return CLI_EXIT_USAGE;
		o->seed = (uint64_t)n;
	}
	if (r->requests && r->duration)
		return usage_error("give --requests or --duration, not both", NULL);
	if (!r->requests && !r->duration)
		o->requests = BENCH_DEFAULT_REQUESTS;
	bool rate_swept = o->sweep == BENCH_SWEEP_RATE, conc_swept = o->sweep == BENCH_SWEEP_CONCURRENCY;
	if (!r->rate && !r->concurrency && !o->sweep)
		return usage_error("give --concurrency N (a closed loop), --rate R (an open loop), "
		                   "or both", NULL);
	if ((rate_swept && r->rate) || (conc_swept && r->concurrency))
		return usage_error("--sweep sets what it sweeps: leave out that flag", NULL);
	if (r->burstiness && !r->rate && !rate_swept)
		return usage_error("--burstiness shapes the gaps of --rate: give --rate too", NULL);
	if (r->endpoint) {
		if (strcmp(r->endpoint, "chat") == 0)
			o->endpoint = LR_ENDPOINT_CHAT;
		else if (strcmp(r->endpoint, "completions") == 0)
			o->endpoint = LR_ENDPOINT_COMPLETIONS;
		else
			return usage_error("--endpoint is chat or completions, got ", r->endpoint);
	}
	if (r->format) {
		if (strcmp(r->format, "llmring") == 0)
			o->format = BENCH_FORMAT_LLMRING;
		else if (strcmp(r->format, "vllm") == 0)
			o->format = BENCH_FORMAT_VLLM;
		else
			return usage_error("--format is llmring or vllm, got ", r->format);
	}
	return 0;
}

int bench_parse_options(int argc, char **argv, struct bench_options *o)
{
	const char *cmd = "bench";
	struct raw_flags r = {0};
	memset(o, 0, sizeof(*o));
	o->stream = true;
	o->burstiness = 1.0;
	o->prompt_tokens = BENCH_DEFAULT_PROMPT_TOKENS;
	o->max_tokens = BENCH_DEFAULT_MAX_TOKENS;
	o->endpoint = LR_ENDPOINT_CHAT;
	bench_config_defaults(&o->metrics);
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *v = NULL;
		int m;
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			fputs(bench_usage, stdout);
			return -1;
		}
		CLI_OPTION("--base-url", true, o->base_url_flag = v)
		CLI_OPTION("--mock", false, o->mock = true)
		CLI_OPTION("--model", true, o->model = v)
		CLI_OPTION("--requests", true, r.requests = v)
		CLI_OPTION("--duration", true, r.duration = v)
		CLI_OPTION("--warmup", true, r.warmup = v)
		CLI_OPTION("--concurrency", true, r.concurrency = v)
		CLI_OPTION("--rate", true, r.rate = v)
		CLI_OPTION("--burstiness", true, r.burstiness = v)
		CLI_OPTION("--seed", true, r.seed = v)
		CLI_OPTION("--dataset", true, if (parse_dataset(v, o)) return CLI_EXIT_USAGE)
		CLI_OPTION("--prompt-tokens", true, r.prompt_tokens = v)
		CLI_OPTION("--max-tokens", true, r.max_tokens = v)
		CLI_OPTION("--random-range-ratio", true, r.range_ratio = v)
		CLI_OPTION("--endpoint", true, r.endpoint = v)
		CLI_OPTION("--stream", false, o->stream = true)
		CLI_OPTION("--no-stream", false, o->stream = false)
		CLI_OPTION("--ignore-eos", false, o->ignore_eos = true)
		CLI_OPTION("--goodput", true, if (parse_goodput(v, &o->metrics)) return CLI_EXIT_USAGE)
		CLI_OPTION("--percentiles", true,
		           if (parse_percentiles(v, &o->metrics)) return CLI_EXIT_USAGE)
		CLI_OPTION("--json", true, o->json_path = v)
		CLI_OPTION("--format", true, r.format = v)
		CLI_OPTION("--requests-out", true, o->requests_out_path = v)
		CLI_OPTION("--svg", true, o->svg_path = v)
		CLI_OPTION("--sweep", true, if (parse_sweep(v, o)) return CLI_EXIT_USAGE)
		CLI_OPTION("--timeout", true, r.timeout = v)
		CLI_OPTION("--cacert", true, o->cacert = v)
		CLI_OPTION("--insecure", false, o->insecure = true)
		CLI_OPTION("--quiet", false, o->quiet = true)
		fprintf(stderr, "llmring bench: unexpected argument '%s'\n%s", arg, bench_usage);
		return CLI_EXIT_USAGE;
	}
	if (!o->model)
		return usage_error("--model is needed (run with --help for the flags)", NULL);
	if (!o->base_url_flag && !o->mock)
		return usage_error("--base-url URL (or --mock) is needed", NULL);
	if (o->base_url_flag && o->mock)
		return usage_error("give --base-url or --mock, not both", NULL);
	int rc = check_numbers(&r, o);
	if (rc)
		return rc;
	if (o->endpoint == LR_ENDPOINT_COMPLETIONS && o->dataset == BENCH_DATASET_JSONL)
		return usage_error("--dataset jsonl: holds chat bodies; with --endpoint completions use "
		                   "random or sharegpt prompts", NULL);
	const char *files[3] = {o->json_path, o->requests_out_path, o->svg_path};
	/* An output written over the dataset would destroy it once read. */
	struct stat ds, fs;
	if (o->dataset_path && stat(o->dataset_path, &ds) == 0)
		for (int k = 0; k < 3; k++)
			if (files[k] && stat(files[k], &fs) == 0 && fs.st_dev == ds.st_dev &&
			    fs.st_ino == ds.st_ino)
				return usage_error("an output would overwrite the dataset: ", files[k]);
	for (int a = 0; a < 3; a++)
		for (int b = a + 1; b < 3; b++)
			if (files[a] && files[b] && strcmp(files[a], files[b]) == 0 &&
			    strcmp(files[a], "-") != 0)
				return usage_error("--json, --requests-out and --svg must name different "
				                   "files: ", files[a]);
	if (!o->mock && cli_check_tls_flags(cmd, o->cacert, o->insecure))
		return CLI_EXIT_USAGE;
	return 0;
}
