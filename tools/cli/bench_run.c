/*
 * Driving the engine for `llmring bench`. One thread does everything: the
 * engine is caller-driven, so the clock read at each send and each event
 * is the clock of the thread that parsed it, and the process's CPU is the
 * client's alone (an in-process mock runs on its own thread and is not
 * counted: RUSAGE_THREAD).
 *
 * Each request has an intended send time:
 *   closed loop (--concurrency alone)  when a slot became free (the
 *       start for the first N): latencies from it include no waiting;
 *   open loop (--rate)  its time in the schedule (bench_arrivals.c),
 *       absolute from the start, so a late send never shifts the rest;
 *   both  the schedule's time; a request due while every slot is busy
 *       waits in a FIFO, and that wait is recorded (admitted_ns).
 * The loop sleeps in ppoll on the engine's completion fd until the next
 * send is due or the engine has work, with 1 ns timer slack, so the
 * schedule lag measures the client, not the kernel's timer coalescing.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_arrivals.h"

#define REAP_MAX 256
#define SEND_FLUSH 16 /* requests made before the engine is run to write them */

/* A request on the wire: its record, until it is complete. */
struct in_flight {
	struct bench_record rec;
	bool counted;          /* false for a warm-up request */
};

struct run {
	lr_engine *eng;
	const struct bench_options *o;
	const struct bench_dataset *d;
	struct bench_outcome *out;
	size_t records_cap;
	size_t next_prompt;
	long in_flight;
	long cap;                     /* concurrency limit (LONG_MAX: none) */
	uint64_t *schedule;           /* owner: this run; --requests with --rate */
	struct arrival_schedule arrivals; /* --duration with --rate */
	uint64_t start_ns, stop_sending_ns;
	int completion_fd;            /* readable when the ring has completions */
	const char *why;              /* what failed, when a turn of the loop did (static text) */
	bool progress;                /* a progress line on stderr (a terminal, not --quiet) */
	uint64_t last_draw_ns;
	size_t sent, completed, failed_requests; /* the counted part's, for the progress line */
	bool failed;                  /* out of memory: stop */
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
	signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process */
}

void bench_catch_sigint(bool on)
{
	static struct sigaction old;
	if (on) {
		interrupted = 0;
		struct sigaction sa = {.sa_handler = on_sigint};
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, &old);
	} else {
		sigaction(SIGINT, &old, NULL);
	}
}

bool bench_interrupted(void)
{
	return interrupted != 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double thread_cpu_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Each streamed event that carries a choice (the engine hands out one
 * delta per such event, an empty one for OpenAI's role-only first chunk):
 * its time, as vLLM's client takes it. */
static void on_delta(void *user, const lr_delta *d)
{
	struct in_flight *r = user;
	(void)bench_record_event(&r->rec, now_ns(), d->text_len > 0);
}

static lr_request *build_request(struct run *run, const struct bench_prompt *p, struct in_flight *r)
{
	const struct bench_options *o = run->o;
	lr_request *rq = lr_request_new(o->model); /* owner: here until lr_submit */
	if (!rq)
		return NULL;
	int rc = 0;
	if (p->body) {
		rc = lr_request_set_body(rq, p->body, p->body_len);
	} else {
		int max_tokens = p->max_tokens > 0 ? p->max_tokens : (int)o->max_tokens;
		if (o->endpoint == LR_ENDPOINT_COMPLETIONS) {
			rc = lr_request_set_endpoint(rq, LR_ENDPOINT_COMPLETIONS);
			if (!rc)
				rc = lr_request_set_prompt(rq, p->text);
		} else {
			rc = lr_request_add_message(rq, LR_ROLE_USER, p->text);
		}
		if (!rc)
			rc = lr_request_set_max_tokens(rq, max_tokens);
		if (!rc && o->ignore_eos)
			rc = lr_request_set_param(rq, "ignore_eos", "true");
	}
	if (!rc && o->stream)
		rc = lr_request_on_delta(rq, on_delta, r);
	if (!rc && o->timeout_s > 0)
		rc = lr_request_set_timeouts(rq, 0, 0, o->timeout_s);
	/* Every attempt is its own sample: a retry would hide a failure. */
	if (!rc)
		rc = lr_request_set_max_retries(rq, 0);
	if (!rc)
		lr_request_set_user_data(rq, r);
	if (rc) {
		lr_request_free(rq);
		return NULL;
	}
	return rq;
}

/* Sends the next request, intended at intended_ns; waited_for_slot: it
 * was due while every slot was busy (admitted now, not when due). */
static void send_one(struct run *run, uint64_t intended_ns, bool waited_for_slot, bool counted)
{
	const struct bench_prompt *p = &run->d->prompts[run->next_prompt++ % run->d->count];
	struct in_flight *r = malloc(sizeof(*r)); /* owner: the request, freed at its completion */
	if (!r) {
		run->failed = true;
		return;
	}
	bench_record_init(&r->rec, intended_ns);
	r->counted = counted;
	r->rec.prompt_tokens = p->prompt_tokens;
	lr_request *rq = build_request(run, p, r);
	if (!rq) {
		free(r);
		run->failed = true;
		return;
	}
	uint64_t t = now_ns();
	r->rec.admitted_ns = waited_for_slot && t > intended_ns ? t : 0;
	r->rec.sent_ns = t;
	lr_future *f = lr_submit(run->eng, rq); /* takes rq over */
	if (!f) {
		free(r);
		run->failed = true;
		return;
	}
	lr_future_release(f); /* the reaped handle is the one we read */
	run->in_flight++;
}

static int keep_record(struct run *run, const struct bench_record *rec)
{
	struct bench_outcome *out = run->out;
	if (out->count == run->records_cap) {
		size_t ncap = run->records_cap ? run->records_cap * 2 : 4096;
		struct bench_record *nr = realloc(out->records, ncap * sizeof(*nr));
		if (!nr)
			return -1;
		out->records = nr;
		run->records_cap = ncap;
	}
	out->records[out->count++] = *rec;
	return 0;
}

static void complete_one(struct run *run, lr_future *f)
{
	struct in_flight *r = lr_future_user_data(f);
	const lr_result *res = lr_future_result(f);
	uint64_t t = now_ns();
	/* A whole response (asked for, or a body that did not stream) is one
	 * event at its end, as vLLM times it. */
	if (res->error == LR_OK && !res->streamed && r->rec.event_count == 0)
		(void)bench_record_event(&r->rec, t, res->text && res->text[0]);
	r->rec.http_status = res->http_status;
	r->rec.output_tokens = res->usage.output_tokens > 0 ? (int32_t)res->usage.output_tokens
	                                                    : BENCH_NO_USAGE;
	if (res->usage.input_tokens > 0)
		r->rec.prompt_tokens = (int32_t)res->usage.input_tokens;
	bench_record_finish(&r->rec, t, res->error);
	if (r->counted) {
		if (r->rec.error)
			run->failed_requests++;
		else
			run->completed++;
		if (keep_record(run, &r->rec)) {
			bench_record_release(&r->rec);
			run->failed = true;
		}
	} else {
		bench_record_release(&r->rec);
	}
	free(r);
	lr_future_release(f);
	run->in_flight--;
}

/* Runs the engine and takes what completed. wait_ns: how long the loop
 * may sleep (UINT64_MAX: until something happens). */
static int turn(struct run *run, uint64_t wait_ns)
{
	int rc = lr_engine_run(run->eng, 0);
	if (rc < 0) {
		run->why = lr_strerror(rc);
		return -1;
	}
	int deadline_ms = lr_engine_next_deadline_ms(run->eng);
	if (deadline_ms >= 0 && (uint64_t)deadline_ms * 1000000ull < wait_ns)
		wait_ns = (uint64_t)deadline_ms * 1000000ull;
	struct pollfd pfd = {.fd = run->completion_fd, .events = POLLIN};
	struct timespec ts = {.tv_sec = (time_t)(wait_ns / 1000000000ull),
	                      .tv_nsec = (long)(wait_ns % 1000000000ull)};
	/* Bounded, so that Ctrl-C and the end of --duration are seen. */
	if (wait_ns > 100000000ull) {
		ts.tv_sec = 0;
		ts.tv_nsec = 100000000L;
	}
	if (ppoll(&pfd, 1, &ts, NULL) < 0 && errno != EINTR) {
		run->why = strerror(errno);
		return -1;
	}
	if ((rc = lr_engine_run(run->eng, 0)) < 0) {
		run->why = lr_strerror(rc);
		return -1;
	}
	lr_future *done[REAP_MAX];
	int n;
	while ((n = lr_engine_reap(run->eng, done, REAP_MAX, 0)) > 0) {
		for (int k = 0; k < n; k++)
			complete_one(run, done[k]);
		if (n < REAP_MAX)
			break;
	}
	if (n < 0) {
		run->why = lr_strerror(n);
		return -1;
	}
	return 0;
}

/* Warm-up: o->warmup requests at the concurrency (or 64), not counted.
 * It ends when the last of them is sent, not when they complete: the
 * counted part takes their slots as they free, so it starts from the
 * steady state. Draining first would send the counted part's first
 * wave all at once, in lock-step, a burst no steady load has (measured:
 * TTFT +50 ms at 2,000 streams against the mock). */
static int warm_up(struct run *run)
{
	long cap = run->o->concurrency ? run->o->concurrency : 64;
	long left = run->o->warmup;
	while (left > 0 && !interrupted && !run->failed) {
		while (left > 0 && run->in_flight < cap && !run->failed) {
			send_one(run, now_ns(), false, false);
			left--;
			if (left % SEND_FLUSH == 0 && lr_engine_run(run->eng, 0) < 0)
				run->failed = true;
		}
		if (left > 0 && turn(run, UINT64_MAX))
			return -1;
	}
	return 0;
}

/* The intended time of request i of the counted part, or UINT64_MAX when
 * no more are to be sent. */
static uint64_t intended_of(struct run *run, size_t i, uint64_t slot_free_ns)
{
	const struct bench_options *o = run->o;
	if (o->requests && i >= (size_t)o->requests)
		return UINT64_MAX;
	uint64_t t;
	if (o->rate <= 0)
		t = slot_free_ns; /* closed loop */
	else if (run->schedule)
		t = run->start_ns + run->schedule[i];
	else
		t = run->start_ns + arrival_schedule_next_ns(&run->arrivals);
	if (o->duration_s > 0 && t >= run->stop_sending_ns)
		return UINT64_MAX;
	return t;
}

/* "[#####-----]  412/1000  done 380  failed 2  in flight 30  4.1 s", at
 * most 10 times a second; final: the last one, then a newline. */
static void draw_progress(struct run *run, bool final)
{
	const struct bench_options *o = run->o;
	uint64_t t = now_ns();
	if (!run->progress || (!final && t - run->last_draw_ns < 100000000ull))
		return;
	run->last_draw_ns = t;
	double elapsed = (double)(t - run->start_ns) / 1e9;
	double share = o->requests ? (double)(run->completed + run->failed_requests) / (double)o->requests
	                           : elapsed / o->duration_s;
	if (share > 1)
		share = 1;
	int filled = (int)(share * 20);
	char bar[21];
	for (int i = 0; i < 20; i++)
		bar[i] = i < filled ? '#' : '-';
	bar[20] = '\0';
	fprintf(stderr, "\r[%s] %zu sent  done %zu  failed %zu  in flight %ld  %.1f s\033[K%s", bar,
	        run->sent, run->completed, run->failed_requests, run->in_flight, elapsed,
	        final ? "\n" : "");
}

static int counted_part(struct run *run)
{
	const struct bench_options *o = run->o;
	size_t sent = 0;
	uint64_t next = intended_of(run, 0, run->start_ns);
	bool blocked = false; /* next came due while every slot was busy */
	for (;;) {
		uint64_t t = now_ns();
		if (interrupted || run->failed ||
		    (o->duration_s > 0 && t >= run->stop_sending_ns && o->rate <= 0))
			next = UINT64_MAX; /* what is on the wire still completes */
		/* Everything due, as far as the cap allows; the rest waits. */
		while (next != UINT64_MAX && next <= t && run->in_flight < run->cap && !run->failed) {
			send_one(run, next, blocked, true);
			blocked = false;
			sent++;
			run->sent = sent;
			/* A burst (a closed loop's slots freeing together, --rate
			 * inf) goes out as it is made: the engine writes every
			 * SEND_FLUSH requests, so none waits behind thousands
			 * more after its clock started. */
			if (sent % SEND_FLUSH == 0 && lr_engine_run(run->eng, 0) < 0)
				run->failed = true;
			next = intended_of(run, sent, t);
			t = now_ns();
		}
		if (next != UINT64_MAX && next <= t)
			blocked = true;
		if (next == UINT64_MAX && run->in_flight == 0)
			break;
		uint64_t wait = UINT64_MAX;
		if (next != UINT64_MAX && run->in_flight < run->cap)
			wait = next > t ? next - t : 0;
		if (turn(run, wait))
			return -1;
		draw_progress(run, false);
		/* Closed loop: the request waiting for a slot is intended when
		 * the slot freed, not when the last one was sent. */
		if (o->rate <= 0 && blocked && run->in_flight < run->cap) {
			next = now_ns();
			blocked = false;
		}
	}
	return 0;
}

int bench_run(lr_engine *eng, const struct bench_options *o, const struct bench_dataset *d,
              struct bench_outcome *out)
{
	memset(out, 0, sizeof(*out));
	/* Asked before anything is sent: the fd is readable from this call on. */
	struct run run = {.eng = eng, .o = o, .d = d, .out = out,
	                  .completion_fd = lr_engine_completion_fd(eng)};
	run.cap = o->concurrency ? o->concurrency : 0x7fffffffL;
	/* The kernel may otherwise fire our timers up to 50 µs late. */
	(void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	int rc = warm_up(&run);
	if (!rc && o->rate > 0) {
		if (o->requests) {
			run.schedule = malloc((size_t)o->requests * sizeof(*run.schedule));
			if (!run.schedule ||
			    arrival_schedule_fill(run.schedule, (size_t)o->requests, o->rate,
			                          o->burstiness, o->seed))
				run.failed = true;
		} else if (arrival_schedule_init(&run.arrivals, o->rate, o->burstiness, o->seed)) {
			run.failed = true;
		}
	}
	double cpu0 = thread_cpu_s();
	run.start_ns = now_ns();
	run.stop_sending_ns = run.start_ns + (uint64_t)(o->duration_s * 1e9);
	run.progress = !o->quiet && isatty(STDERR_FILENO);
	if (!rc && !run.failed) {
		rc = counted_part(&run);
		draw_progress(&run, true);
	}
	out->end_ns = now_ns();
	out->start_ns = run.start_ns;
	out->cpu_s = thread_cpu_s() - cpu0;
	out->wall_s = (double)(out->end_ns - out->start_ns) / 1e9;
	out->interrupted = interrupted;
	free(run.schedule);
	if (rc) {
		fprintf(stderr, "llmring bench: the engine failed: %s\n", run.why ? run.why : "?");
		return -1;
	}
	if (run.failed) {
		fprintf(stderr, "llmring bench: out of memory\n");
		return -1;
	}
	return 0;
}

void bench_outcome_free(struct bench_outcome *out)
{
	for (size_t i = 0; i < out->count; i++)
		bench_record_release(&out->records[i]);
	free(out->records);
	memset(out, 0, sizeof(*out));
}
