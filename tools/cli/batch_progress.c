/*
 * The clock and the progress line of `llmring batch`: on a terminal one
 * line redrawn at most 10 times a second from counters the run keeps
 * anyway.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double seconds_since(uint64_t start_ns)
{
	return (double)(now_ns() - start_ns) / 1e9;
}

/* The input's lines, for the progress line: counted only for a regular
 * file (one read at memory speed before the run), 0 otherwise. A last
 * line without its newline counts too. */
uint64_t count_lines(int fd)
{
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	enum { CHUNK = 1 << 16 };
	char *buf = malloc(CHUNK); /* owner: this function (no static: runs may overlap) */
	if (!buf)
		return 0;
	uint64_t lines = 0;
	off_t at = 0;
	char last = '\n';
	for (;;) {
		ssize_t n = pread(fd, buf, CHUNK, at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return 0;
		}
		if (n == 0)
			break;
		for (const char *p = buf, *end = buf + n; (p = memchr(p, '\n', (size_t)(end - p))); p++)
			lines++;
		last = buf[n - 1];
		at += n;
	}
	free(buf);
	return lines + (last != '\n');
}

/* Called by the engine (on this thread: the engine is driven from it)
 * at most every progress_interval_ms: what is on the wire. */
void on_engine_progress(void *user, const lr_progress *p)
{
	struct batch *b = user;
	b->engine_in_flight = p->in_flight;
	b->have_engine_progress = true;
}

static int terminal_width(void)
{
	struct winsize ws;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col < 20)
		return 0;
	return ws.ws_col;
}

/*
 * One line, redrawn in place (carriage return, then erase to the end of
 * the line), at most 10 times a second; cut to the terminal's width so it
 * never wraps. Only the counters kept anyway are read here: drawing is
 * the only cost.
 */
void draw_progress(struct batch *b, bool force)
{
	if (!b->progress)
		return;
	uint64_t now = now_ns();
	if (!force && now - b->last_draw_ns < BATCH_PROGRESS_INTERVAL_NS)
		return;
	b->last_draw_ns = now;
	double wall = (double)(now - b->start_ns) / 1e9;
	uint64_t completed = b->succeeded + b->failed;
	/* Lines finished: read, and not waiting for a response. */
	uint64_t done = b->line_no - (uint64_t)b->outstanding;
	double rate = wall > 0 ? (double)completed / wall : 0.0;
	double tok_rate = wall > 0 ? (double)(b->input_tokens + b->output_tokens) / wall : 0.0;
	char line[320];
	int n = 0;
	if (b->total_lines)
		n = snprintf(line, sizeof line, "\r%" PRIu64 "/%" PRIu64 " lines", done, b->total_lines);
	else
		n = snprintf(line, sizeof line, "\r%" PRIu64 " lines", done);
	/* Outstanding requests are on the wire or wait in the engine (for a
	 * slot, the rate limits, a retry); the engine's split may be a few
	 * milliseconds old, so it is fitted to what is outstanding now. */
	uint64_t outstanding = (uint64_t)b->outstanding;
	uint64_t in_flight = outstanding;
	if (b->have_engine_progress && b->engine_in_flight < in_flight)
		in_flight = b->engine_in_flight;
	n += snprintf(line + n, sizeof line - (size_t)n, ", %" PRIu64 " failed, %" PRIu64 " in flight",
	              b->failed + b->invalid_lines, in_flight);
	if (outstanding > in_flight)
		n += snprintf(line + n, sizeof line - (size_t)n, ", %" PRIu64 " queued",
		              outstanding - in_flight);
	n += snprintf(line + n, sizeof line - (size_t)n, ", %.1f req/s, %.0f tok/s", rate, tok_rate);
	if (b->priced)
		n += snprintf(line + n, sizeof line - (size_t)n, b->cost_usd < 1 ? ", $%.6f" : ", $%.2f",
		              b->cost_usd);
	if (b->total_lines && done <= b->total_lines) {
		if (rate > 0) {
			double eta = (double)(b->total_lines - done) / rate;
			if (eta > 359999)
				eta = 359999;
			unsigned s = (unsigned)(eta + 0.5);
			if (s >= 3600)
				n += snprintf(line + n, sizeof line - (size_t)n, ", ETA %u:%02u:%02u", s / 3600,
				              s / 60 % 60, s % 60);
			else
				n += snprintf(line + n, sizeof line - (size_t)n, ", ETA %u:%02u", s / 60, s % 60);
		} else {
			n += snprintf(line + n, sizeof line - (size_t)n, ", ETA --");
		}
	}
	if (n < 0 || (size_t)n >= sizeof line)
		n = (int)sizeof line - 1;
	int width = terminal_width();
	if (width && n > width) /* the \r takes no column: width - 1 characters */
		n = width;
	memcpy(line + n, "\033[K", 3);
	/* One write: never half a line on the screen. Nothing to do on
	 * failure (stderr is the terminal it went to). */
	(void)!write(STDERR_FILENO, line, (size_t)n + 3);
	b->progress_drawn = true;
}

void clear_progress(struct batch *b)
{
	if (b->progress_drawn)
		(void)!write(STDERR_FILENO, "\r\033[K", 4);
	b->progress_drawn = false;
}
