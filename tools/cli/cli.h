/*
 * Shared pieces of the llmring command line: option matching, number
 * parsing, endpoint and key selection. Every function that rejects
 * something prints why to stderr, prefixed with the command ("llmring
 * batch: ..."), so callers only map the failure to exit status 2.
 */
#ifndef LR_CLI_H
#define LR_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "llmring.h"
#include "mock_server.h"

/* Exit statuses shared by every subcommand. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAILED = 1,  /* something was attempted and failed */
	CLI_EXIT_USAGE = 2,   /* nothing could be attempted */
};

/*
 * Matches argv[*i] against option `name` ("--model"), written either as
 * "--model VALUE" or "--model=VALUE" (takes_value), or as the bare flag.
 * Returns 1 on a match (*value set, NULL for a flag; *i moved to the last
 * argument consumed), 0 when argv[*i] is some other option, -1 after
 * printing an error (missing value, or a value given to a flag).
 */
int cli_match(const char *cmd, int argc, char **argv, int *i, const char *name, bool takes_value,
              const char **value);

/*
 * In an option loop over argv with `cmd`, `argc`, `argv`, index `i`, and
 * locals `const char *v` and `int m`: on a match of `name` runs `store`
 * (which may use v) and goes on with the next argument; on a bad one
 * returns CLI_EXIT_USAGE.
 */
#define CLI_OPTION(name, takes_value, store)                                  \
	if ((m = cli_match(cmd, argc, argv, &i, name, takes_value, &v)) != 0) { \
		if (m < 0)                                                     \
			return CLI_EXIT_USAGE;                                 \
		store;                                                         \
		continue;                                                      \
	}

/* A positive decimal (seconds, rates), fractions allowed. 0 or -1 after
 * printing an error. */
int cli_parse_positive(const char *cmd, const char *flag, const char *text, double *out);
/*
 * A deadline or interval in seconds (--timeout, --connect-timeout,
 * --idle-timeout, --poll): a plain decimal from 0.001 to 1e9. Shorter
 * ones are refused rather than rounded: a timer that fires at once would
 * turn the wait into a busy loop. 0 or -1 after printing an error.
 */
#define CLI_MIN_SECONDS 0.001
int cli_parse_seconds(const char *cmd, const char *flag, const char *text, double *out);
/* A decimal integer in [min, max]. 0 or -1 after printing an error. */
int cli_parse_count(const char *cmd, const char *flag, const char *text, long min, long max,
                    long *out);

/*
 * --cacert FILE / --insecure, before anything is sent: 0 when FILE (if
 * given) can be opened for reading, -1 after printing why not. With
 * --insecure prints the warning that certificates are not verified (once,
 * whatever --quiet says). The caller then sets lr_config's ca_file and
 * insecure.
 */
/* --cache-mode's value as an enum lr_cache_mode. 0, or CLI_EXIT_USAGE
 * after printing why. */
int cli_parse_cache_mode(const char *cmd, const char *text, int *mode);

int cli_check_tls_flags(const char *cmd, const char *cacert, bool insecure);

/*
 * The endpoint and key for model (NULL: an OpenAI model). With --base-url
 * every request goes there, with the key of the model's provider from its
 * variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) or none. Without it
 * both stay NULL and the engine routes each model to its provider's own
 * endpoint. Results are borrowed (argv or the environment); the key is
 * never printed. 0, or -1 after printing why nothing can be sent (a
 * missing key for the provider's own endpoint, a base URL that is not
 * http:// or https://).
 */
int cli_resolve_endpoint(const char *cmd, const char *base_url_flag, const char *model,
                         const char **base_url, const char **api_key);

/*
 * File descriptors for `fds` more than are open now: raises the soft
 * RLIMIT_NOFILE toward the hard one when needed. When still short, prints
 * a note (the engine then runs fewer connections; `hint` names the flag
 * that lowers the need, or NULL). Returns the descriptors there is room
 * for (at most fds), or -1 after an error when not even a few fit.
 */
long cli_ensure_fds(const char *cmd, unsigned long fds, const char *hint);

/*
 * After lr_engine_create failed: prints "cannot start the engine: " and
 * what it said (which file, variable or setup step), or the advice for
 * running out of file descriptors.
 */
void cli_engine_error(const char *cmd, const lr_error_info *why);

/* lr_config.on_log for the commands: "llmring: MESSAGE" on stderr. */
void cli_log(void *user, const char *message);

/*
 * Writes text to f; when f is a terminal, control characters other than
 * newline and tab (C0, DEL, C1 and ESC) and bytes that are not valid
 * UTF-8 are shown as visible substitutes (^[ for ESC, U+FFFD for C1 and
 * bad bytes), so that server text cannot drive the terminal. Otherwise
 * the bytes go out unchanged.
 */
void cli_write_text(FILE *f, bool tty, const char *text, size_t len);

void cli_usage_batch(FILE *out);
void cli_usage_bench(FILE *out);

/* What the flags of `llmring mock` ask for (mock_main.c). */
struct mock_flags {
	struct mock_options o;
	char host[256];                 /* o.host points here once parsed */
	const char *tls_cert, *tls_key; /* borrowed: argv */
	double rate_sum;                /* of the fault rates: at most 1 */
	bool print_errors;              /* also print why on stderr, as the command does */
	char error[512];                /* why the flags were refused (may be cut short) */
};
/* Parses `llmring mock` flags (argv[0] is "mock"); keeps no state of its
 * own, so a binding can call it as often as it likes. 0; 2 with the
 * reason in mf->error (no "llmring mock: " prefix, no newline), also
 * printed in full as the command prints it when print_errors is set; -1
 * when --help was shown on stdout. */
int mock_parse_flags(int argc, char **argv, bool print_errors, struct mock_flags *mf);

/* `llmring batch ...`; argv[0] is "batch". Returns the exit status. */
int batch_main(int argc, char **argv);
/* `llmring bench ...`; argv[0] is "bench" (cli_bench.c). */
int bench_main(int argc, char **argv);

#endif
