/*
 * --svg FILE: the figures of `llmring bench` as one SVG, written by hand
 * (no plotting dependency). Panels: the CDFs of TTFT, TPOT, ITL and E2EL;
 * output tokens and completed requests per second; requests in flight.
 * For --sweep one more panel: throughput against p50 and p99 latency, a
 * point per run. Each panel is a <g class="panel"> with a <title>, so a
 * test can find them; curves are <polyline class="...">.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PANEL_W 560
#define PANEL_H 250
#define MARGIN_L 70
#define MARGIN_B 40
#define MARGIN_T 30
#define MARGIN_R 20
#define CDF_POINTS 400 /* a CDF is drawn through at most this many quantiles */

struct series {
	const double *x, *y;
	size_t n;
	const char *cls, *color, *label;
};

struct panel {
	const char *title, *x_label, *y_label;
	double x_min, x_max, y_max; /* the x axis runs from x_min (a CDF's least value) */
	struct series s[2];
	size_t nseries;
	bool markers; /* a dot at each point (sweeps) */
};

static void xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default:
			if ((unsigned char)*s >= 0x20)
				fputc(*s, f);
		}
	}
}

/* A round step for about 5 ticks up to max. */
static double tick_step(double max)
{
	if (!(max > 0))
		return 1;
	double raw = max / 5, mag = pow(10, floor(log10(raw)));
	double r = raw / mag;
	return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

static void draw_panel(FILE *f, const struct panel *p, double ox, double oy)
{
	double w = PANEL_W - MARGIN_L - MARGIN_R, h = PANEL_H - MARGIN_T - MARGIN_B;
	double x0 = p->x_min, xm = p->x_max > x0 ? p->x_max - x0 : 1;
	double ym = p->y_max > 0 ? p->y_max : 1;
	fprintf(f, "<g class=\"panel\" transform=\"translate(%.0f,%.0f)\">\n<title>", ox, oy);
	xml_text(f, p->title);
	fputs("</title>\n", f);
	fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"14\" font-weight=\"bold\">", MARGIN_L);
	xml_text(f, p->title);
	fputs("</text>\n", f);
	fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
	        "stroke=\"#999\"/>\n", MARGIN_L, MARGIN_T, w, h);
	double xs = tick_step(xm), ys = tick_step(ym);
	for (double t = ceil(x0 / xs) * xs; t <= (x0 + xm) * 1.0001; t += xs) {
		double x = MARGIN_L + (t - x0) / xm * w;
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
		        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%g</text>\n",
		        x, (double)MARGIN_T, x, MARGIN_T + h, x, MARGIN_T + h + 14, t);
	}
	for (double t = 0; t <= ym * 1.0001; t += ys) {
		double y = MARGIN_T + h - t / ym * h;
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
		        "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%g</text>\n",
		        MARGIN_L, y, MARGIN_L + w, y, MARGIN_L - 4, y + 3, t);
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">",
	        MARGIN_L + w / 2, PANEL_H - 6);
	xml_text(f, p->x_label);
	fprintf(f, "</text>\n<text x=\"14\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" "
	        "transform=\"rotate(-90 14 %.1f)\">", MARGIN_T + h / 2, MARGIN_T + h / 2);
	xml_text(f, p->y_label);
	fputs("</text>\n", f);
	for (size_t k = 0; k < p->nseries; k++) {
		const struct series *s = &p->s[k];
		fprintf(f, "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
		        "points=\"", s->cls, s->color);
		for (size_t i = 0; i < s->n; i++) {
			double x = MARGIN_L + fmax(fmin((s->x[i] - x0) / xm, 1), 0) * w;
			double y = MARGIN_T + h - fmin(s->y[i] / ym, 1) * h;
			fprintf(f, "%s%.1f,%.1f", i ? " " : "", x, y);
		}
		fputs("\"/>\n", f);
		if (p->markers)
			for (size_t i = 0; i < s->n; i++)
				fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
				        MARGIN_L + fmax(fmin((s->x[i] - x0) / xm, 1), 0) * w,
				        MARGIN_T + h - fmin(s->y[i] / ym, 1) * h, s->color);
		if (s->label) {
			fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"%s\" "
			        "text-anchor=\"end\">", MARGIN_L + w - 4, MARGIN_T + 14 + 14 * (int)k,
			        s->color);
			xml_text(f, s->label);
			fputs("</text>\n", f);
		}
	}
	fputs("</g>\n", f);
}

/* A CDF through at most CDF_POINTS quantiles of sorted values (ms). The
 * x and y arrays are the caller's, CDF_POINTS long. */
static size_t cdf_points(const double *sorted, size_t n, double *x, double *y)
{
	if (!n)
		return 0;
	size_t k = n < CDF_POINTS ? n : CDF_POINTS;
	for (size_t i = 0; i < k; i++) {
		size_t at = k == 1 ? 0 : i * (n - 1) / (k - 1);
		x[i] = sorted[at];
		y[i] = (double)(at + 1) / (double)n;
	}
	return k;
}

static void cdf_panel(FILE *f, const char *title, const double *sorted, size_t n, double ox,
                      double oy)
{
	double x[CDF_POINTS], y[CDF_POINTS];
	size_t k = cdf_points(sorted, n, x, y);
	/* From the least value to the greatest, widened a little either side. */
	double lo = n ? sorted[0] : 0, hi = n ? sorted[n - 1] : 1, pad = (hi - lo) * 0.05;
	if (!(pad > 0))
		pad = lo > 0 ? lo * 0.05 : 1;
	struct panel p = {.title = title, .x_label = "ms", .y_label = "share of samples",
	                  .x_min = lo - pad > 0 ? lo - pad : 0, .x_max = hi + pad, .y_max = 1,
	                  .nseries = 1,
	                  .s = {{.x = x, .y = y, .n = k, .cls = "cdf", .color = "#1f77b4"}}};
	draw_panel(f, &p, ox, oy);
}

static int timeline_panels(FILE *f, const struct bench_summary *s, double oy)
{
	size_t n = s->timeline_len;
	double *buf = malloc((n ? n : 1) * 5 * sizeof(double)); /* owner: this function */
	if (!buf)
		return -1;
	double *t = buf, *tok = buf + n, *done = buf + 2 * n, *inflight = buf + 3 * n;
	double *done_scaled = buf + 4 * n;
	double tok_max = 0, done_max = 0, in_max = 0;
	for (size_t i = 0; i < n; i++) {
		t[i] = (double)i + 0.5;
		tok[i] = s->timeline[i].output_tokens;
		done[i] = s->timeline[i].completed;
		inflight[i] = s->timeline[i].in_flight;
		tok_max = fmax(tok_max, tok[i]);
		done_max = fmax(done_max, done[i]);
		in_max = fmax(in_max, inflight[i]);
	}
	/* Completed requests share the token axis, scaled to it. */
	double scale = done_max > 0 && tok_max > 0 ? tok_max / done_max : 1;
	for (size_t i = 0; i < n; i++)
		done_scaled[i] = done[i] * scale;
	char done_label[64];
	snprintf(done_label, sizeof done_label, "completed/s (x%.3g)", scale);
	bool few = n <= 20; /* short runs: a dot per second, or one bin shows nothing */
	struct panel thr = {.title = "Throughput over time", .x_label = "s", .markers = few,
	                    .y_label = "output tokens/s", .x_max = (double)n,
	                    .y_max = fmax(tok_max, done_max), .nseries = 2,
	                    .s = {{.x = t, .y = tok, .n = n, .cls = "tokens", .color = "#2ca02c",
	                           .label = "output tokens/s"},
	                          {.x = t, .y = done_scaled, .n = n, .cls = "completed",
	                           .color = "#d62728", .label = done_label}}};
	draw_panel(f, &thr, 0, oy);
	struct panel inf = {.title = "Requests in flight", .x_label = "s", .y_label = "requests",
	                    .markers = few,
	                    .x_max = (double)n, .y_max = in_max, .nseries = 1,
	                    .s = {{.x = t, .y = inflight, .n = n, .cls = "in_flight",
	                           .color = "#9467bd"}}};
	draw_panel(f, &inf, PANEL_W, oy);
	free(buf);
	return 0;
}

static FILE *svg_open(const char *path, int width, double height, const char *model)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "llmring bench: cannot write %s: %s\n", path, strerror(errno));
		return NULL;
	}
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" "
	        "viewBox=\"0 0 %d %.0f\" font-family=\"sans-serif\">\n<title>llmring bench: ",
	        width, height, width, height);
	xml_text(f, model);
	fprintf(f, "</title>\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	return f;
}

static int svg_close(FILE *f, const char *path)
{
	fputs("</svg>\n", f);
	bool bad = ferror(f) != 0;
	bad = fclose(f) != 0 || bad;
	if (bad)
		fprintf(stderr, "llmring bench: writing %s failed\n", path);
	return bad ? -1 : 0;
}

int bench_write_svg(const char *path, const struct bench_options *o, const struct bench_summary *s)
{
	/* The pooled gaps as ms, through at most CDF_POINTS of their quantiles. */
	double itl_ms[CDF_POINTS];
	size_t nitl = s->itl.count < CDF_POINTS ? s->itl.count : CDF_POINTS;
	for (size_t i = 0; i < nitl; i++) {
		size_t at = nitl == s->itl.count ? i : i * (s->itl.count - 1) / (nitl - 1);
		itl_ms[i] = s->itl_us[at] / 1e3;
	}
	FILE *f = svg_open(path, 2 * PANEL_W, 3 * PANEL_H, o->model);
	if (!f)
		return -1;
	cdf_panel(f, "TTFT (CDF)", s->ttft_ms, s->ttft.count, 0, 0);
	cdf_panel(f, "TPOT (CDF)", s->tpot_ms, s->tpot.count, PANEL_W, 0);
	cdf_panel(f, "ITL (CDF)", itl_ms, nitl, 0, PANEL_H);
	cdf_panel(f, "E2EL (CDF)", s->e2el_ms, s->e2el.count, PANEL_W, PANEL_H);
	if (timeline_panels(f, s, 2 * PANEL_H)) {
		fclose(f);
		fprintf(stderr, "llmring bench: out of memory writing %s\n", path);
		return -1;
	}
	return svg_close(f, path);
}

int bench_write_sweep_svg(const char *path, const struct bench_options *o,
                          const struct bench_sweep_point *points, size_t n)
{
	FILE *f = svg_open(path, PANEL_W, PANEL_H, o->model);
	if (!f)
		return -1;
	double thr[BENCH_MAX_SWEEP], p50[BENCH_MAX_SWEEP], p99[BENCH_MAX_SWEEP];
	double x_max = 0, y_max = 0;
	for (size_t i = 0; i < n && i < BENCH_MAX_SWEEP; i++) {
		thr[i] = points[i].output_throughput;
		p50[i] = points[i].e2el_p50_ms;
		p99[i] = points[i].e2el_p99_ms;
		x_max = fmax(x_max, thr[i]);
		y_max = fmax(y_max, p99[i]);
	}
	struct panel p = {.title = "Throughput against latency (one point per run)",
	                  .x_label = "output tokens/s", .y_label = "E2EL ms", .x_max = x_max * 1.05,
	                  .y_max = y_max * 1.05, .nseries = 2, .markers = true,
	                  .s = {{.x = thr, .y = p50, .n = n, .cls = "p50", .color = "#1f77b4",
	                         .label = "p50 E2EL"},
	                        {.x = thr, .y = p99, .n = n, .cls = "p99", .color = "#ff7f0e",
	                         .label = "p99 E2EL"}}};
	draw_panel(f, &p, 0, 0);
	return svg_close(f, path);
}
