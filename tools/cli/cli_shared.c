/*
 * The helpers the llmring commands share (cli.h): option matching, number
 * parsing, the TLS flags, endpoint and key selection, descriptors, the
 * engine's log and errors, terminal-safe text. Built into the CLI library
 * with the batch command, so that a binding can run the batch job without
 * the executable's main.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "format/utf8.h"
#include "llmring.h"

int cli_match(const char *cmd, int argc, char **argv, int *i, const char *name, bool takes_value,
              const char **value)
{
	const char *arg = argv[*i];
	size_t n = strlen(name);
	if (strncmp(arg, name, n) != 0)
		return 0;
	if (arg[n] == '=') {
		if (!takes_value) {
			fprintf(stderr, "llmring %s: %s takes no value\n", cmd, name);
			return -1;
		}
		*value = arg + n + 1;
		return 1;
	}
	if (arg[n] != '\0')
		return 0;
	if (!takes_value) {
		*value = NULL;
		return 1;
	}
	if (*i + 1 >= argc) {
		fprintf(stderr, "llmring %s: %s needs a value\n", cmd, name);
		return -1;
	}
	*i += 1;
	*value = argv[*i];
	return 1;
}

int cli_parse_positive(const char *cmd, const char *flag, const char *text, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	/* strtod also takes hex, inf and nan: only plain decimals count. */
	bool plain = text[0] != '\0' && strspn(text, "0123456789.eE+-") == strlen(text);
	if (!plain || errno || *end != '\0' || !isfinite(v) || v <= 0 || v > 1e9) {
		fprintf(stderr, "llmring %s: %s wants a positive number, not '%s'\n", cmd,
		        flag, text);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_parse_seconds(const char *cmd, const char *flag, const char *text, double *out)
{
	double v;
	if (cli_parse_positive(cmd, flag, text, &v))
		return -1;
	if (v < CLI_MIN_SECONDS) {
		fprintf(stderr, "llmring %s: %s must be at least %g seconds (1 ms), not '%s'\n", cmd, flag,
		        CLI_MIN_SECONDS, text);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_parse_count(const char *cmd, const char *flag, const char *text, long min, long max,
                    long *out)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	bool digits = text[0] != '\0' && strspn(text, "0123456789") == strlen(text);
	if (!digits || errno || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "llmring %s: %s wants a whole number from %ld to %ld, not '%s'\n", cmd,
		        flag, min, max, text);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_check_tls_flags(const char *cmd, const char *cacert, bool insecure)
{
	if (cacert) {
		if (!cacert[0]) {
			fprintf(stderr, "llmring %s: --cacert needs a file name\n", cmd);
			return -1;
		}
		/* Opened here so that a typo is a usage error (exit 2) rather
		 * than every request failing; the engine reads it later. */
		int fd = open(cacert, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
			int e = fd < 0 ? errno : (S_ISDIR(st.st_mode) ? EISDIR : errno);
			if (fd >= 0)
				close(fd);
			fprintf(stderr, "llmring %s: cannot read the CA bundle given to --cacert, %s: %s\n",
			        cmd, cacert, strerror(e));
			return -1;
		}
		close(fd);
	}
	if (insecure)
		fprintf(stderr, "llmring %s: warning: --insecure: TLS certificates are not verified\n",
		        cmd);
	return 0;
}

/* The provider key variables the CLI reads. */
static const struct {
	const char *provider, *key_env;
} cli_keys[] = {{"openai", "OPENAI_API_KEY"}, {"anthropic", "ANTHROPIC_API_KEY"},
                {"gemini", "GEMINI_API_KEY"}};

/*
 * A key goes into a header line as it is: a newline or other control
 * character (often the newline `cat key.txt` or an editor leaves) would
 * end the header. Refused here with the variable's name (never the
 * value), rather than as a vague engine error later.
 */
static int check_key_env(const char *cmd, const char *env)
{
	const char *key = getenv(env);
	if (!key)
		return 0;
	for (size_t i = 0; key[i]; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c < 0x20 || c == 0x7f) {
			fprintf(stderr, "llmring %s: %s contains a %s (byte %zu of %zu); strip it from the "
			        "variable (keys are sent as they are)\n", cmd, env,
			        c == '\n' ? "newline" : c == '\r' ? "carriage return" : "control character", i + 1, strlen(key));
			return -1;
		}
	}
	return 0;
}

int cli_resolve_endpoint(const char *cmd, const char *base_url_flag, const char *model,
                         const char **base_url, const char **api_key)
{
	*base_url = *api_key = NULL;
	const char *probe = model ? model : "gpt-4o-mini";
	if (!base_url_flag) {
		/* Without --base-url the engine reads every provider's key. */
		for (size_t i = 0; i < sizeof(cli_keys) / sizeof(cli_keys[0]); i++)
			if (check_key_env(cmd, cli_keys[i].key_env))
				return -1;
		char why[256];
		if (lr_config_check_model(NULL, probe, why, sizeof(why))) {
			fprintf(stderr, "llmring %s: %s (for a server without keys give --base-url URL)\n", cmd, why);
			return -1;
		}
		return 0;
	}
	const char *base = base_url_flag;
	size_t scheme = strncasecmp(base, "http://", 7) == 0    ? 7
	                : strncasecmp(base, "https://", 8) == 0 ? 8
	                                                        : 0;
	if (!scheme || base[scheme] == '\0') {
		fprintf(stderr, "llmring %s: the base URL from --base-url must start with http:// or "
		        "https:// and name a host (got '%s')\n", cmd, base);
		return -1;
	}
	/* No key is passed: the engine gives each line the key of its own
	 * provider (a mixed batch must never send one provider's key to
	 * another); each variable is still checked here. */
	for (size_t i = 0; i < sizeof(cli_keys) / sizeof(cli_keys[0]); i++)
		if (check_key_env(cmd, cli_keys[i].key_env))
			return -1;
	/* The URL parser knows what is wrong with a URL (the port, userinfo,
	 * ...): say that, never the URL's credentials. */
	lr_config cfg = lr_config_default();
	cfg.base_url = base;
	char why[256];
	if (lr_config_check_model(&cfg, probe, why, sizeof(why)) == LR_EINVAL) {
		fprintf(stderr, "llmring %s: --base-url: %s\n", cmd, why);
		return -1;
	}
	*base_url = base;
	return 0;
}

/* Descriptors open now (the entries of /proc/self/fd less the one
 * reading it), or 0 when that cannot be read. */
static unsigned long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd"); /* owner: this function */
	if (!d)
		return 0;
	unsigned long count = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			count++;
	closedir(d);
	return count ? count - 1 : 0;
}

long cli_ensure_fds(const char *cmd, unsigned long fds, const char *hint)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return (long)fds;
	unsigned long open_now = open_fds(), need = fds + open_now;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		/* The soft limit is a default meant for select(); io_uring has no
		 * such ceiling, so take what the hard limit allows. */
		struct rlimit up = rl;
		up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		/* Fewer than wanted still works: the pool keeps its sockets
		 * below the limit and queues the rest (engine/http/pool.c). Only a
		 * limit that leaves no room for a few connections is fatal. */
		unsigned long floor = open_now + 8;
		if (rl.rlim_cur >= floor) {
			fprintf(stderr, "llmring %s: note: `ulimit -n` allows %lu file descriptors, fewer "
			        "than the %lu this run could use; it opens fewer connections (raise the "
			        "limit for full speed%s%s)\n", cmd, (unsigned long)rl.rlim_cur, need,
			        hint ? ", or lower " : "", hint ? hint : "");
			return (long)(rl.rlim_cur - open_now);
		}
		fprintf(stderr, "llmring %s: out of file descriptors: `ulimit -n` allows %lu and "
		        "%lu are open already; raise the limit (ulimit -n %lu)\n", cmd,
		        (unsigned long)rl.rlim_cur, open_now, need);
		return -1;
	}
	return (long)fds;
}

int cli_parse_cache_mode(const char *cmd, const char *text, int *mode)
{
	static const char *const names[] = {"readwrite", "read", "write", "off"};
	for (int i = 0; i < 4; i++)
		if (strcmp(text, names[i]) == 0) {
			*mode = i; /* enum lr_cache_mode's order */
			return 0;
		}
	fprintf(stderr, "llmring %s: --cache-mode must be readwrite, read, write or off, not '%s'\n",
	        cmd, text);
	return CLI_EXIT_USAGE;
}

void cli_log(void *user, const char *message)
{
	(void)user;
	fprintf(stderr, "llmring: %s\n", message);
}

void cli_engine_error(const char *cmd, const lr_error_info *why)
{
	int e = why->sys_errno;
	if (e == EMFILE || e == ENFILE)
		fprintf(stderr, "llmring %s: cannot start the engine: out of file descriptors (%s); "
		        "raise `ulimit -n`\n", cmd, strerror(e));
	else
		fprintf(stderr, "llmring %s: cannot start the engine: %s\n", cmd,
		        why->message[0] ? why->message : lr_strerror(why->code));
}

void cli_write_text(FILE *f, bool tty, const char *text, size_t len)
{
	if (!tty) {
		fwrite(text, 1, len, f);
		return;
	}
	static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
	const unsigned char *p = (const unsigned char *)text;
	size_t i = 0, run = 0; /* bytes [run, i) are written as they are */
	while (i < len) {
		unsigned char c = p[i];
		if (c >= 0x20 && c < 0x7f) {
			i++;
			continue;
		}
		if (c == '\n' || c == '\t') {
			i++;
			continue;
		}
		size_t n = c < 0x80 ? 1 : utf8_char_len((const char *)p + i, len - i);
		/* U+0080..U+009F (C2 80..C2 9F) are C1 controls: CSI is U+009B. */
		bool c1 = n == 2 && c == 0xc2 && p[i + 1] < 0xa0;
		if (n > 1 && !c1) {
			i += n;
			continue;
		}
		fwrite(text + run, 1, i - run, f);
		if (c < 0x20 || c == 0x7f) {
			char caret[2] = {'^', (char)(c == 0x7f ? '?' : c + '@')};
			fwrite(caret, 1, 2, f);
		} else {
			fwrite(replacement, 1, 3, f);
		}
		i += n ? n : 1;
		run = i;
	}
	fwrite(text + run, 1, len - run, f);
}
