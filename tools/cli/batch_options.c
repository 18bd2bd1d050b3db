/*
 * `llmring batch` flags: the usage text, parsing and checking them, and
 * refusing file names that would clash. Every refusal is printed here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "batch.h"
#include "cli.h"

static const char batch_usage[] =
	"usage: llmring batch INPUT.jsonl -o OUTPUT.jsonl [--model M] [--base-url URL] [--mock]\n"
	"                     [--concurrency N] [--rpm N] [--tpm N] [--max-retries N]\n"
	"                     [--retry-errors] [--timeout S] [--connect-timeout S]\n"
	"                     [--idle-timeout S] [--cacert FILE] [--insecure] [--stats FILE]\n"
	"                     [--quiet] [--max-line-bytes N] [--cache FILE]\n"
	"                     [--cache-mode readwrite|read|write|off]\n"
	"                     [--via direct|provider-batch] [--poll S] [--cancel]\n"
	"\n"
	"Sends every request of INPUT (OpenAI Batch API JSONL: custom_id, method, url,\n"
	"body) and appends one outcome line per input line to OUTPUT, in completion\n"
	"order. Re-running with the same OUTPUT skips the lines already done.\n"
	"  -o FILE              output JSONL (appended to; resumed when it exists)\n"
	"  --model M            override every body's model\n"
	"                       Models are provider/model (openai/, anthropic/, ollama/,\n"
	"                       gemini/, mock/; no known prefix: openai): each line goes\n"
	"                       to its provider; output bodies are OpenAI-shaped\n"
	"  --base-url URL       send every line here instead of the provider's endpoint\n"
	"                       (default: OPENAI_BASE_URL / ANTHROPIC_BASE_URL /\n"
	"                       OLLAMA_HOST / GEMINI_BASE_URL, else the public endpoint\n"
	"                       with OPENAI_API_KEY / ANTHROPIC_API_KEY / GEMINI_API_KEY)\n"
	"  --mock               send everything to a built-in mock server (no key needed);\n"
	"                       it speaks every provider's dialect\n"
	"  --concurrency N      requests on the wire at once (64)\n"
	"  --rpm N              at most N requests a minute (bursts of at most one\n"
	"                       second's worth; rate-limit headers are honoured too)\n"
	"  --tpm N              at most N tokens a minute (prompt estimate plus\n"
	"                       max_tokens, corrected with the usage reported)\n"
	"  --max-retries N      tries after the first (2), as the official SDKs retry:\n"
	"                       connection errors, 408, 409, 429, 5xx and 529, honouring\n"
	"                       Retry-After; never other 4xx or insufficient_quota\n"
	"  --retry-errors       on resume, first remove the error lines of OUTPUT (the\n"
	"                       file is rewritten atomically), then send them again\n"
	"  --timeout S          total seconds per attempt, from when it goes out (600;\n"
	"                       fractions allowed; waiting for --concurrency, --rpm,\n"
	"                       --tpm or a free file descriptor does not count; every\n"
	"                       deadline is at least 0.001)\n"
	"  --connect-timeout S  seconds to connect (10)\n"
	"  --idle-timeout S     longest silence inside a response (60)\n"
	"  --cacert FILE        CA bundle (PEM) to verify the server with, replacing the\n"
	"                       system one (default: SSL_CERT_FILE, else the system\n"
	"                       bundle)\n"
	"  --insecure           do not verify TLS certificates at all (prints a warning)\n"
	"  --stats FILE         write a JSON summary (checked writable before the run)\n"
	"  --quiet              no progress or summary on stderr (errors still shown)\n"
	"  --cache FILE         a SQLite response cache (created when absent; several\n"
	"                       runs may share it): a request answered before is\n"
	"                       answered from it without being sent, its line marked\n"
	"                       \"cached\":true; successes are stored (with --via\n"
	"                       provider-batch: hits are never batched, batch results\n"
	"                       are stored)\n"
	"  --cache-mode M       readwrite (the default with --cache), read (never\n"
	"                       store), write (always send, then store) or off\n"
	"  --max-line-bytes N   longest input line (16777216); a longer one gets an\n"
	"                       invalid_input line and is skipped without being held\n"
	"                       in memory\n"
	"  --via provider-batch hand the lines to the providers' batch APIs (OpenAI\n"
	"                       Batches, Anthropic Message Batches): about half price,\n"
	"                       results within 24 h. OUTPUT.state.json records every\n"
	"                       batch: a re-run resumes and never submits a line twice.\n"
	"                       Other providers' lines are sent directly (a notice says so)\n"
	"  --via direct         send every request now (the default)\n"
	"  --poll S             with provider-batch: seconds between polls (30; 1 with\n"
	"                       --mock); longer when the provider asks (Retry-After)\n"
	"  --cancel             with provider-batch: cancel the run's batches, keep their\n"
	"                       partial results; the rest become batch_cancelled errors\n"
	"On a terminal a progress line is shown; at the end a summary (requests, tokens,\n"
	"cost, time) goes to stderr.\n"
	"With --mock, --cacert and --insecure have no effect (the mock is plain HTTP).\n"
	"INPUT, OUTPUT and the stats file must be three different files.\n"
	"Exit status: 0 every line succeeded, 1 some line ended in an error (the output\n"
	"is complete), 2 nothing could be attempted or the run stopped early (the input\n"
	"or the output could not be read or written; run again to resume).\n";

void cli_usage_batch(FILE *out)
{
	fputs(batch_usage, out);
}

/* The flags that need or exclude each other, once every flag is read;
 * 0 or CLI_EXIT_USAGE (said on stderr). */
static int check_combinations(struct batch_options *o, const char *cache_mode, const char *via,
                              const char *poll, const char *cacert, bool insecure)
{
	if (cache_mode && !o->cache_path) {
		fprintf(stderr, "llmring batch: --cache-mode needs --cache FILE\n");
		return CLI_EXIT_USAGE;
	}
	if (o->cache_path && !o->cache_path[0]) {
		fprintf(stderr, "llmring batch: --cache needs a file name\n");
		return CLI_EXIT_USAGE;
	}
	if (via && strcmp(via, "provider-batch") == 0) {
		o->via_batch = true;
	} else if (via && strcmp(via, "direct") != 0) {
		fprintf(stderr, "llmring batch: --via takes direct or provider-batch, got '%s'\n", via);
		return CLI_EXIT_USAGE;
	}
	if (!o->via_batch && (poll || o->cancel)) {
		fprintf(stderr, "llmring batch: %s works with --via provider-batch only\n",
		        poll ? "--poll" : "--cancel");
		return CLI_EXIT_USAGE;
	}
	if (o->cancel && o->retry_errors) {
		fprintf(stderr, "llmring batch: --cancel and --retry-errors exclude each other\n");
		return CLI_EXIT_USAGE;
	}

	if (!o->input_path || !o->output_path) {
		fprintf(stderr, "llmring batch: %s is needed\n%s",
		        o->input_path ? "-o OUTPUT" : "an INPUT file", batch_usage);
		return CLI_EXIT_USAGE;
	}
	if (!o->input_path[0] || !o->output_path[0]) {
		fprintf(stderr, "llmring batch: empty file name\n");
		return CLI_EXIT_USAGE;
	}
	if (o->model && !o->model[0]) {
		fprintf(stderr, "llmring batch: --model may not be empty\n");
		return CLI_EXIT_USAGE;
	}
	if (o->mock && o->base_url_flag) {
		fprintf(stderr, "llmring batch: --mock and --base-url exclude each other\n");
		return CLI_EXIT_USAGE;
	}
	/* The mock is plain HTTP: there the TLS flags are accepted and
	 * change nothing (no check, no warning). */
	if (!o->mock) {
		o->cacert = cacert;
		o->insecure = insecure;
	}
	return 0;
}

int parse_options(int argc, char **argv, struct batch_options *o)
{
	const char *cmd = "batch";
	const char *concurrency = NULL, *rpm = NULL, *tpm = NULL, *max_retries = NULL;
	const char *timeout = NULL, *connect_timeout = NULL, *idle_timeout = NULL, *cacert = NULL;
	const char *max_line = NULL, *cache_mode = NULL, *via = NULL, *poll = NULL;
	bool insecure = false, options_done = false;
	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *v = NULL;
		int m;
		if (options_done || arg[0] != '-' || arg[1] == '\0') {
			if (o->input_path) {
				fprintf(stderr, "llmring batch: unexpected argument '%s' (one INPUT only)\n",
				        arg);
				return CLI_EXIT_USAGE;
			}
			o->input_path = arg;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			options_done = true;
			continue;
		}
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			fputs(batch_usage, stdout);
			return -1;
		}
		CLI_OPTION("-o", true, o->output_path = v)
		CLI_OPTION("--model", true, o->model = v)
		CLI_OPTION("--base-url", true, o->base_url_flag = v)
		CLI_OPTION("--mock", false, o->mock = true)
		CLI_OPTION("--concurrency", true, concurrency = v)
		CLI_OPTION("--rpm", true, rpm = v)
		CLI_OPTION("--tpm", true, tpm = v)
		CLI_OPTION("--max-retries", true, max_retries = v)
		CLI_OPTION("--retry-errors", false, o->retry_errors = true)
		CLI_OPTION("--timeout", true, timeout = v)
		CLI_OPTION("--connect-timeout", true, connect_timeout = v)
		CLI_OPTION("--idle-timeout", true, idle_timeout = v)
		CLI_OPTION("--cacert", true, cacert = v)
		CLI_OPTION("--insecure", false, insecure = true)
		CLI_OPTION("--stats", true, o->stats_path = v)
		CLI_OPTION("--quiet", false, o->quiet = true)
		CLI_OPTION("--max-line-bytes", true, max_line = v)
		CLI_OPTION("--cache", true, o->cache_path = v)
		CLI_OPTION("--cache-mode", true, cache_mode = v)
		CLI_OPTION("--via", true, via = v)
		CLI_OPTION("--poll", true, poll = v)
		CLI_OPTION("--cancel", false, o->cancel = true)
		fprintf(stderr, "llmring batch: unknown option '%s'\n%s", arg, batch_usage);
		return CLI_EXIT_USAGE;
	}

	o->concurrency = BATCH_DEFAULT_CONCURRENCY;
	o->max_retries = 2;
	o->max_line = BATCH_DEFAULT_MAX_LINE;
	if ((max_line && cli_parse_count(cmd, "--max-line-bytes", max_line, 1, BATCH_MAX_MAX_LINE,
	                                 &o->max_line)) ||
	    (concurrency && cli_parse_count(cmd, "--concurrency", concurrency, 1,
	                                    BATCH_MAX_CONCURRENCY, &o->concurrency)) ||
	    (rpm && cli_parse_count(cmd, "--rpm", rpm, 1, 1000000000L, &o->rpm)) ||
	    (tpm && cli_parse_count(cmd, "--tpm", tpm, 1, 1000000000000L, &o->tpm)) ||
	    (max_retries && cli_parse_count(cmd, "--max-retries", max_retries, 0, 100, &o->max_retries)) ||
	    (timeout && cli_parse_seconds(cmd, "--timeout", timeout, &o->timeout_s)) ||
	    (connect_timeout &&
	     cli_parse_seconds(cmd, "--connect-timeout", connect_timeout, &o->connect_timeout_s)) ||
	    (idle_timeout && cli_parse_seconds(cmd, "--idle-timeout", idle_timeout, &o->idle_timeout_s)) ||
	    (cache_mode && cli_parse_cache_mode(cmd, cache_mode, &o->cache_mode)) ||
	    (poll && cli_parse_seconds(cmd, "--poll", poll, &o->poll_s)))
		return CLI_EXIT_USAGE;
	return check_combinations(o, cache_mode, via, poll, cacert, insecure);
}

/* Whether a and b name one file: the same device and inode, or (when
 * either does not exist yet) the same name in the same directory. */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	bool ha = stat(a, &sa) == 0, hb = stat(b, &sb) == 0;
	if (ha && hb)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	if (ha != hb)
		return false;
	const char *na = strrchr(a, '/'), *nb = strrchr(b, '/');
	na = na ? na + 1 : a;
	nb = nb ? nb + 1 : b;
	if (strcmp(na, nb) != 0)
		return false;
	char *da = na == a ? strdup(".") : strndup(a, (size_t)(na - a)); /* owner: this function */
	char *db = nb == b ? strdup(".") : strndup(b, (size_t)(nb - b)); /* owner: this function */
	bool same = da && db && stat(da, &sa) == 0 && stat(db, &sb) == 0 && sa.st_dev == sb.st_dev &&
	            sa.st_ino == sb.st_ino;
	free(da);
	free(db);
	return same;
}

/* Whether path exists and is the file of *in_st (its stat into *st). */
static bool is_input(const char *path, const struct stat *in_st, struct stat *st)
{
	return stat(path, st) == 0 && st->st_dev == in_st->st_dev && st->st_ino == in_st->st_ino;
}

/*
 * Output as input would skip every line as done (or, with --retry-errors,
 * replace the input), and the stats file would overwrite either. The
 * provider batches' state file beside the output (OUTPUT.state.json,
 * which a direct run reads too) must be neither the input, which it would
 * replace, nor the stats file. Nor may the cache be any of them.
 */
int check_distinct_files(const struct batch_options *o, const struct stat *in_st)
{
	struct stat st = {0}; /* the clashing file's, for the S_ISCHR test */
	const char *clash = NULL;
	size_t state_len = strlen(o->output_path) + sizeof ".state.json";
	char *state = malloc(state_len); /* owner: this function */
	if (!state) {
		fprintf(stderr, "llmring batch: out of memory\n");
		return -1;
	}
	snprintf(state, state_len, "%s.state.json", o->output_path);
	if (is_input(o->output_path, in_st, &st))
		clash = "the output (-o) is the input file";
	else if (o->stats_path && is_input(o->stats_path, in_st, &st))
		clash = "the stats file (--stats) is the input file";
	else if (o->stats_path && same_file(o->stats_path, o->output_path))
		clash = "the stats file (--stats) is the output file (-o)";
	else if (is_input(state, in_st, &st))
		clash = "the input is the provider batches' state file of this output "
		        "(OUTPUT.state.json, which --via provider-batch writes)";
	else if (o->stats_path && same_file(o->stats_path, state))
		clash = "the stats file (--stats) is the provider batches' state file of this "
		        "output (OUTPUT.state.json)";
	/* SQLite refuses a file that is not a database, but a cache named as
	 * the output or stats file would be truncated by them first. */
	else if (o->cache_path && is_input(o->cache_path, in_st, &st))
		clash = "the cache (--cache) is the input file";
	else if (o->cache_path && same_file(o->cache_path, o->output_path))
		clash = "the cache (--cache) is the output file (-o)";
	else if (o->cache_path && o->stats_path && same_file(o->cache_path, o->stats_path))
		clash = "the cache (--cache) is the stats file (--stats)";
	/* /dev/null or a terminal may well be named twice. */
	if (clash && S_ISCHR(st.st_mode))
		clash = NULL;
	free(state);
	if (clash) {
		fprintf(stderr, "llmring batch: %s; name a different file\n", clash);
		return -1;
	}
	return 0;
}
