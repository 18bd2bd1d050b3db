/*
 * llmring: the command-line front end. Dispatches to the subcommands
 * (batch in cli_batch.c and the batch_*.c files, mock in mock_main.c,
 * chat and bench here); the helpers they share (cli.h) are in cli_shared.c.
 * Only this file is the executable's own: the rest is the CLI library,
 * which the Python binding links too (tools/python/batch/meson.build).
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "format/json.h"
#include "llmring.h"
#include "mock_server.h"

/* ---- usage ---------------------------------------------------------- */

static const char main_usage[] =
	"usage: llmring COMMAND [OPTIONS]\n"
	"\n"
	"Commands:\n"
	"  batch   send every request of a JSONL file (OpenAI Batch format)\n"
	"  chat    send one prompt and print the reply\n"
	"  mock    run the mock OpenAI-compatible server\n"
	"  bench   load-generate against an inference server (vLLM's figures and ours)\n"
	"  help [COMMAND]  show help\n"
	"\n"
	"llmring --version prints the version.\n";

static const char chat_usage[] =
	"usage: llmring chat [--model M] [--base-url URL] [--system TEXT] [--no-stream]\n"
	"                    [--timeout S] [--connect-timeout S] [--idle-timeout S]\n"
	"                    [--cacert FILE] [--insecure] [--cache FILE]\n"
	"                    [--cache-mode readwrite|read|write|off] PROMPT\n"
	"\n"
	"Sends PROMPT to the model's provider and prints the reply.\n"
	"  --model M        provider/model: openai/gpt-4o-mini (the default),\n"
	"                   anthropic/claude-haiku-4-5, ollama/qwen3:4b,\n"
	"                   gemini/gemini-2.0-flash; a name without a known prefix\n"
	"                   goes to the OpenAI-compatible endpoint as it is\n"
	"  --base-url URL   send to this server instead of the provider's own (default:\n"
	"                   OPENAI_BASE_URL / ANTHROPIC_BASE_URL / OLLAMA_HOST /\n"
	"                   GEMINI_BASE_URL, else the provider's public endpoint with\n"
	"                   its key from OPENAI_API_KEY / ANTHROPIC_API_KEY /\n"
	"                   GEMINI_API_KEY)\n"
	"  --system TEXT    a system message before the prompt\n"
	"  --no-stream      print the whole reply at once (default: as tokens arrive)\n"
	"  --cache FILE     answer from, and keep the reply in, this SQLite response\n"
	"                   cache (shared with batch; see the guide for the key)\n"
	"  --cache-mode M   readwrite (the default with --cache), read (never store),\n"
	"                   write (always ask, then store) or off\n"
	"  --timeout S      total seconds for the request (600; fractions allowed,\n"
	"                   at least 0.001)\n"
	"  --connect-timeout S  seconds to connect (10)\n"
	"  --idle-timeout S longest silence inside a response (60; stream comments\n"
	"                   and keep-alives are not progress)\n"
	"  --cacert FILE    CA bundle (PEM) to verify the server with, replacing the\n"
	"                   system one (default: SSL_CERT_FILE, else the system bundle)\n"
	"  --insecure       do not verify TLS certificates at all (prints a warning)\n"
	"Errors go to stderr with exit status 1. On a terminal, control characters in\n"
	"the reply or an error message (escape sequences) are shown as ^[ or U+FFFD;\n"
	"piped output is the server's text byte for byte.\n";

static const char mock_usage[] =
	"usage: llmring mock [--listen HOST:PORT] [--ttft-ms N] [--itl-ms N] [--tokens N]\n"
	"                    [--fault KIND:RATE]... [--tls-cert FILE --tls-key FILE] [--seed N]\n"
	"\n"
	"Runs the mock OpenAI-compatible server; `llmring mock --help` says more.\n";

/* ---- chat ------------------------------------------------------------- */

/*
 * Why a whole reply has no text to print, or NULL when its text is just
 * empty. lr_result.text is NULL both for an empty string and for no
 * content at all (null beside tool calls, no choices): only the body
 * tells them apart, and only these rare replies are parsed here.
 */
static const char *missing_text_reason(const lr_result *r)
{
	struct json_doc doc = {0}; /* owner: this function */
	const char *why = NULL;
	int choices = -1, content = -1;
	if (!r->body || json_parse(&doc, r->body, r->body_len) != 0)
		why = "the reply is not valid JSON";
	else if ((choices = json_object_get(&doc, 0, "choices")) < 0 ||
	         doc.tok[choices].type != JSON_ARRAY || doc.tok[choices].size < 1)
		why = "the reply has no choices";
	else if ((content = json_path(&doc, choices + 1, "message.content")) < 0 ||
	         json_get_string(&doc, content, NULL, 0) < 0)
		why = "the reply has no text content";
	json_doc_free(&doc);
	return why;
}

/* Prints the text of a whole (not streamed) reply: choices[0]'s content. */
static int print_chat_reply(const lr_result *r, bool tty)
{
	const char *why = r->text_len ? NULL : missing_text_reason(r);
	if (why) {
		fprintf(stderr, "llmring chat: %s\n", why);
		return CLI_EXIT_FAILED;
	}
	if (r->text_len)
		cli_write_text(stdout, tty, r->text, r->text_len);
	fputc('\n', stdout);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "llmring chat: cannot write the reply: %s\n", strerror(errno));
		return CLI_EXIT_FAILED;
	}
	return CLI_EXIT_OK;
}

/* Streamed reply: each delta is written as it arrives (engine thread). */
struct chat_stream {
	bool printed;
	bool tty; /* stdout is a terminal: control characters are made visible */
};

static void print_delta(void *user, const lr_delta *d)
{
	struct chat_stream *cs = user;
	if (d->choice != 0 || d->text_len == 0)
		return;
	cli_write_text(stdout, cs->tty, d->text, d->text_len);
	fflush(stdout);
	cs->printed = true;
}

struct chat_options {
	const char *model, *base_url_flag, *system_text, *prompt, *cacert; /* borrowed: argv, or static */
	const char *cache_path; /* borrowed: argv */
	int cache_mode;         /* enum lr_cache_mode */
	bool no_stream, insecure;
	double timeout_s, connect_s, idle_s; /* 0: the engine's default */
};

/* 0, CLI_EXIT_USAGE after printing why, or -1 when --help was shown. */
static int parse_chat_options(int argc, char **argv, struct chat_options *o)
{
	const char *cmd = "chat";
	const char *timeout_text = NULL, *connect_text = NULL, *idle_text = NULL, *mode_text = NULL;
	bool options_done = false;
	*o = (struct chat_options){.model = "gpt-4o-mini"};
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *v = NULL;
		int m;
		if (options_done || arg[0] != '-' || arg[1] == '\0') {
			if (o->prompt) {
				fprintf(stderr, "llmring chat: one PROMPT only (quote it): '%s'\n", arg);
				return CLI_EXIT_USAGE;
			}
			o->prompt = arg;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			options_done = true;
			continue;
		}
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			fputs(chat_usage, stdout);
			return -1;
		}
		CLI_OPTION("--model", true, o->model = v)
		CLI_OPTION("--base-url", true, o->base_url_flag = v)
		CLI_OPTION("--system", true, o->system_text = v)
		CLI_OPTION("--no-stream", false, o->no_stream = true)
		CLI_OPTION("--timeout", true, timeout_text = v)
		CLI_OPTION("--connect-timeout", true, connect_text = v)
		CLI_OPTION("--idle-timeout", true, idle_text = v)
		CLI_OPTION("--cacert", true, o->cacert = v)
		CLI_OPTION("--insecure", false, o->insecure = true)
		CLI_OPTION("--cache", true, o->cache_path = v)
		CLI_OPTION("--cache-mode", true, mode_text = v)
		fprintf(stderr, "llmring chat: unknown option '%s'\n%s", arg, chat_usage);
		return CLI_EXIT_USAGE;
	}
	if ((timeout_text && cli_parse_seconds(cmd, "--timeout", timeout_text, &o->timeout_s)) ||
	    (connect_text && cli_parse_seconds(cmd, "--connect-timeout", connect_text, &o->connect_s)) ||
	    (idle_text && cli_parse_seconds(cmd, "--idle-timeout", idle_text, &o->idle_s)) ||
	    (mode_text && cli_parse_cache_mode(cmd, mode_text, &o->cache_mode)))
		return CLI_EXIT_USAGE;
	if (mode_text && !o->cache_path) {
		fprintf(stderr, "llmring chat: --cache-mode needs --cache FILE\n");
		return CLI_EXIT_USAGE;
	}
	if (o->cache_path && !o->cache_path[0]) {
		fprintf(stderr, "llmring chat: --cache needs a file name\n");
		return CLI_EXIT_USAGE;
	}
	if (!o->prompt) {
		fprintf(stderr, "llmring chat: a PROMPT is needed\n%s", chat_usage);
		return CLI_EXIT_USAGE;
	}
	if (!o->model[0]) {
		fprintf(stderr, "llmring chat: --model may not be empty\n");
		return CLI_EXIT_USAGE;
	}
	return 0;
}

/* Sends the prompt and prints the reply, or the error. The exit status. */
static int send_chat(lr_engine *eng, const struct chat_options *o)
{
	lr_request *rq = lr_request_new(o->model); /* owner: this function until lr_submit */
	if (!rq) {
		fprintf(stderr, "llmring chat: out of memory\n");
		return CLI_EXIT_FAILED;
	}
	int rc = o->system_text ? lr_request_add_message(rq, LR_ROLE_SYSTEM, o->system_text) : 0;
	if (!rc)
		rc = lr_request_add_message(rq, LR_ROLE_USER, o->prompt);
	struct chat_stream stream = {.tty = isatty(STDOUT_FILENO) == 1};
	if (!rc && !o->no_stream)
		rc = lr_request_on_delta(rq, print_delta, &stream);
	if (rc) {
		lr_request_free(rq);
		fprintf(stderr, "llmring chat: cannot build the request: %s\n", lr_strerror(rc));
		return CLI_EXIT_FAILED;
	}
	lr_future *f = lr_submit(eng, rq); /* owner: this function */
	if (!f) {
		fprintf(stderr, "llmring chat: cannot submit the request\n");
		return CLI_EXIT_FAILED;
	}
	lr_future_wait(f, -1);
	const lr_result *r = lr_future_result(f);
	int status = CLI_EXIT_FAILED;
	if (stream.printed)
		putchar('\n'); /* end the streamed line, whatever happened next */
	if (r->error) {
		/* The message may quote the server: made visible on a terminal. */
		const char *msg = r->error_message ? r->error_message : lr_strerror(r->error);
		fprintf(stderr, "llmring chat: %s: ", lr_error_name(r->error));
		cli_write_text(stderr, isatty(STDERR_FILENO) == 1, msg, strlen(msg));
		fputc('\n', stderr);
	} else if (r->streamed || stream.printed) {
		status = CLI_EXIT_OK;
	} else {
		status = print_chat_reply(r, stream.tty);
	}
	lr_future_release(f);
	return status;
}

static int chat_main(int argc, char **argv)
{
	const char *cmd = "chat";
	struct chat_options o;
	int status = parse_chat_options(argc, argv, &o);
	if (status)
		return status < 0 ? CLI_EXIT_OK : status; /* -1: --help was shown */
	const char *base_url, *api_key;
	if (cli_resolve_endpoint(cmd, o.base_url_flag, o.model, &base_url, &api_key) ||
	    cli_check_tls_flags(cmd, o.cacert, o.insecure) || cli_ensure_fds(cmd, 16, NULL) < 0)
		return CLI_EXIT_USAGE;

	lr_config cfg = lr_config_default();
	cfg.on_log = cli_log;
	cfg.base_url = base_url;
	cfg.api_key = api_key;
	cfg.ca_file = o.cacert;
	cfg.insecure = o.insecure;
	cfg.max_in_flight = 1;
	cfg.cache_path = o.cache_path;
	cfg.cache_mode = o.cache_mode;
	if (o.timeout_s > 0)
		cfg.total_timeout_s = o.timeout_s;
	if (o.connect_s > 0)
		cfg.connect_timeout_s = o.connect_s;
	if (o.idle_s > 0)
		cfg.idle_timeout_s = o.idle_s;
	lr_engine *eng = NULL; /* owner: this function */
	lr_error_info why;
	int rc = lr_engine_create(&cfg, &eng, &why);
	if (rc) {
		cli_engine_error(cmd, &why);
		return CLI_EXIT_USAGE;
	}
	status = send_chat(eng, &o);
	lr_engine_destroy(eng);
	return status;
}


/* ---- main ------------------------------------------------------------- */

static int help_main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(main_usage, stdout);
		return CLI_EXIT_OK;
	}
	const char *topic = argv[1];
	if (strcmp(topic, "batch") == 0)
		cli_usage_batch(stdout);
	else if (strcmp(topic, "chat") == 0)
		fputs(chat_usage, stdout);
	else if (strcmp(topic, "mock") == 0)
		fputs(mock_usage, stdout);
	else if (strcmp(topic, "bench") == 0)
		cli_usage_bench(stdout);
	else if (strcmp(topic, "help") == 0)
		fputs(main_usage, stdout);
	else {
		fprintf(stderr, "llmring help: unknown command '%s'\n%s", topic, main_usage);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
	/* Response bodies grow by doubling toward tens of MiB. A fixed mmap
	 * threshold keeps those in their own mappings, returned to the
	 * system when freed; glibc's default raises the threshold after the
	 * first such free, and the freed bodies then stay resident in the
	 * heap (peak RSS 4x the buffered-bytes cap at concurrency 500). */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	if (argc < 2) {
		fputs(main_usage, stderr);
		return CLI_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--version") == 0) {
		printf("llmring %s\n", LR_VERSION_STRING);
		return CLI_EXIT_OK;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
		return help_main(1, argv + 1);
	if (strcmp(cmd, "help") == 0)
		return help_main(argc - 1, argv + 1);
	if (strcmp(cmd, "batch") == 0)
		return batch_main(argc - 1, argv + 1);
	if (strcmp(cmd, "chat") == 0)
		return chat_main(argc - 1, argv + 1);
	if (strcmp(cmd, "mock") == 0)
		return mock_main(argc - 1, argv + 1);
	if (strcmp(cmd, "bench") == 0)
		return bench_main(argc - 1, argv + 1);
	fprintf(stderr, "llmring: unknown command '%s'\n%s", cmd, main_usage);
	return CLI_EXIT_USAGE;
}
