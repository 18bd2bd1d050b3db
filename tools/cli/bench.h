/*
 * `llmring bench`: a load generator for inference servers. Private to
 * the CLI.
 *
 *   bench_options.c   flags, their checks, the usage text
 *   bench_dataset.c   the prompts: random, ShareGPT, JSONL bodies
 *   bench_run.c       driving the engine: the closed and open loops, the
 *                     clock of each request and event, warm-up
 *   bench_report.c    the terminal summary, --json, --format vllm,
 *                     --requests-out, the sweep's table
 *   bench_svg.c       --svg: latency CDFs, throughput and in flight over
 *                     time, a sweep's throughput against latency
 *   bench_metrics.c   the figures (vLLM's and ours) from the records
 *   bench_arrivals.c  the open loop's schedule (gamma gaps, seeded)
 *   cli_bench.c       bench_main: the steps in order, the exit status
 */
#ifndef LR_CLI_BENCH_H
#define LR_CLI_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bench_metrics.h"
#include "llmring.h"

#define BENCH_DEFAULT_REQUESTS 1000
#define BENCH_DEFAULT_PROMPT_TOKENS 256
#define BENCH_DEFAULT_MAX_TOKENS 128
#define BENCH_MAX_CONCURRENCY 100000
#define BENCH_LAG_LIMIT_NS 1000000ull /* schedule lag p99 above it: the client lagged */
#define BENCH_CPU_LIMIT 0.80          /* client CPU above this share of a core: lagged */

#define BENCH_MAX_SWEEP 64

enum bench_dataset_kind { BENCH_DATASET_RANDOM, BENCH_DATASET_SHAREGPT, BENCH_DATASET_JSONL };
enum bench_format { BENCH_FORMAT_LLMRING, BENCH_FORMAT_VLLM };
enum bench_sweep_kind { BENCH_SWEEP_NONE, BENCH_SWEEP_RATE, BENCH_SWEEP_CONCURRENCY };

struct bench_options {
	const char *base_url_flag, *model;   /* borrowed: argv */
	const char *cacert;                  /* borrowed: argv */
	bool insecure, quiet, stream, ignore_eos, mock;
	long requests;                       /* 0 with --duration */
	double duration_s;                   /* 0 with --requests */
	long warmup;                         /* requests sent first and not counted */
	long concurrency;                    /* 0: none (open loop without a cap) */
	double rate;                         /* 0: closed loop; INFINITY: all at once */
	double burstiness;                   /* gamma shape (1: Poisson) */
	uint64_t seed;
	enum bench_dataset_kind dataset;
	const char *dataset_path;            /* borrowed: argv */
	long prompt_tokens, max_tokens;
	/* --random-range-ratio: random prompts' lengths and max_tokens drawn
	 * uniformly from [X * (1 - r), X * (1 + r)] as vLLM's (0: fixed). */
	double range_ratio;
	enum lr_endpoint endpoint;           /* chat (default) or completions */
	double timeout_s;                    /* per request; 0: the engine's default */
	struct bench_config metrics;         /* percentiles and SLOs */
	const char *json_path, *requests_out_path, *svg_path; /* borrowed: argv */
	enum bench_format format;
	/* --sweep rate:R1,R2,... or concurrency:C1,C2,...: one run per value. */
	enum bench_sweep_kind sweep;
	double sweep_values[BENCH_MAX_SWEEP];
	size_t sweep_count;
};

/* One run of a sweep, for its table and its SVG. */
struct bench_sweep_point {
	double value;                 /* the rate or the concurrency of the run */
	size_t completed, failed;
	double request_throughput, output_throughput;
	double ttft_p50_ms, ttft_p99_ms, e2el_p50_ms, e2el_p99_ms;
	double schedule_lag_p99_ms;
	bool lagged;
};

/* 0, CLI_EXIT_USAGE after printing why, or -1 when --help was shown. */
int bench_parse_options(int argc, char **argv, struct bench_options *o);

/* ---- the prompts (bench_dataset.c) ----------------------------------- */

struct bench_prompt {
	char *text;          /* owner: the dataset; the user message (NULL for a body) */
	char *body;          /* owner: the dataset; a whole JSON body (jsonl), or NULL */
	size_t body_len;
	int32_t prompt_tokens; /* approximate (see bench_dataset.c), or from the file */
	int32_t max_tokens;    /* from the file (ShareGPT's reply length), or 0: --max-tokens */
};

struct bench_dataset {
	struct bench_prompt *prompts; /* owner: this dataset */
	size_t count;
};

/* The prompts of o's dataset: `need` of them for random (each one
 * different), every entry of a file (used in turn). 0, or -1 after
 * printing why. */
int bench_dataset_load(const struct bench_options *o, size_t need, struct bench_dataset *d);
void bench_dataset_free(struct bench_dataset *d);

/* ---- the run (bench_run.c) -------------------------------------------- */

struct bench_outcome {
	struct bench_record *records; /* owner: this outcome; the counted requests */
	size_t count;
	uint64_t start_ns, end_ns;    /* first send after warm-up, last end */
	double cpu_s;                 /* this process's user + sys over the counted part */
	double wall_s;
	bool interrupted;             /* Ctrl-C: the records so far are reported */
};

/* From before the prompts are made to the end: the first Ctrl-C stops
 * sending and reports what completed, a second ends the process. */
void bench_catch_sigint(bool on);
bool bench_interrupted(void);

/* Runs the benchmark on eng. 0, or -1 after printing why it could not. */
int bench_run(lr_engine *eng, const struct bench_options *o, const struct bench_dataset *d,
              struct bench_outcome *out);
void bench_outcome_free(struct bench_outcome *out);

/* ---- the report (bench_report.c) --------------------------------------- */

/* The terminal table (vLLM's layout, then ours). */
void bench_print_summary(FILE *f, const struct bench_options *o, const struct bench_outcome *out,
                         const struct bench_summary *s, bool lagged);
/* The JSON of one run to f, in our schema or vLLM's (o->format). */
void bench_json_run(FILE *f, const struct bench_options *o, const struct bench_outcome *out,
                    const struct bench_summary *s, bool lagged);
/* Opens path for writing ("-": stdout); NULL after printing why. */
FILE *bench_open_out(const char *path);
/* Closes it; 0, or -1 after printing that writing failed. */
int bench_close_out(FILE *f, const char *path);
/* One JSON line per request of out to f; sweep_point >= 0 adds its index. 0 or -1. */
int bench_write_requests(FILE *f, const struct bench_outcome *out, int sweep_point);
/* The per-point figures of a sweep to f: a table (terminal). */
void bench_print_sweep(FILE *f, const struct bench_options *o,
                       const struct bench_sweep_point *points, size_t n);

/* ---- the SVG (bench_svg.c) -------------------------------------------- */

/* The latency CDFs, throughput and in flight over time. 0, or -1 after
 * printing why. */
int bench_write_svg(const char *path, const struct bench_options *o, const struct bench_summary *s);
/* A sweep: throughput against p50 and p99 E2EL, one point per run. */
int bench_write_sweep_svg(const char *path, const struct bench_options *o,
                          const struct bench_sweep_point *points, size_t n);

/* `llmring bench ...`; argv[0] is "bench". The exit status: 0, 1 when
 * requests failed, 2 for usage, 3 when the client itself lagged. */
int bench_main(int argc, char **argv);

#endif
