/* Small helpers shared by the C benchmarks: a `llmring mock` process of
 * their own, CPU and wall clocks, memory. */
#ifndef LR_BENCH_UTIL_H
#define LR_BENCH_UTIL_H

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Starts `LLMRING mock --listen 127.0.0.1:0 EXTRA...` (extra is
 * NULL-terminated) and writes its base URL ("http(s)://127.0.0.1:PORT/v1")
 * into url. Exits the benchmark when that fails. */
static inline pid_t bench_spawn_mock(const char *llmring, char *const extra[], char *url, size_t cap)
{
	int pipefd[2];
	if (pipe(pipefd) != 0)
		exit(1);
	char *argv[24] = {(char *)llmring, "mock", "--listen", "127.0.0.1:0"};
	int a = 4;
	for (int i = 0; extra && extra[i] && a < 23; i++)
		argv[a++] = extra[i];
	argv[a] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_addclose(&fa, pipefd[0]);
	pid_t pid;
	if (posix_spawn(&pid, llmring, &fa, NULL, argv, environ) != 0) {
		fprintf(stderr, "cannot start %s mock\n", llmring);
		exit(1);
	}
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	FILE *out = fdopen(pipefd[0], "r");
	char line[256] = "";
	if (!out || !fgets(line, sizeof(line), out) || !strstr(line, "http")) {
		fprintf(stderr, "the mock did not say where it listens\n");
		exit(1);
	}
	fclose(out);
	line[strcspn(line, "\n")] = '\0';
	snprintf(url, cap, "%s/v1", strstr(line, "http"));
	return pid;
}

static inline double bench_self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static inline double bench_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) another process has used so far. */
static inline double bench_proc_cpu_s(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char buf[1024];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (p)
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

#endif
