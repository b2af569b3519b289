/*
 * report_html.c -- the report page: a header, then panels of inline SVG
 * that share one time axis (same margins, same x for the same t).
 *
 * The page's size depends on the number of buckets, series and state
 * changes, never on the number of requests: rates are drawn as one step
 * path per outcome and series, latencies as one path per percentile.
 * Every string that came from the log is HTML-escaped (esc); the hover
 * data is JSON from cJSON with '<' escaped, so no string can end the
 * <script> element it sits in.
 *
 * Bounded whatever the log holds: each loop runs a count fixed before it
 * starts (buckets, series, at most 12 axis ticks, 100 rows per panel,
 * FB_REPORT_SHAPES intervals and marks per panel), and every string drawn
 * was cut to its field's size when read (names 255 bytes, states 23,
 * header strings FB_REPORT_STR_MAX), so the page stays under
 * FB_REPORT_PAGE_MAX. The axis is at least FB_REPORT_W0 long, so rates
 * and positions are finite numbers.
 */
#include "report.h"
#include "util.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define B FB_REPORT_BUCKETS
#define WIDTH 1200
#define LEFT 190     /* room for row labels */
#define PLOTW 980    /* WIDTH - LEFT - 30 */
#define ROW_H 54     /* one request series */
#define BAND_H 20    /* one breaker or instance */
#define LAT_H 180
#define MAX_BANDS 600 /* more intervals than this: drawn sampled per column */
#define MAX_TICKS 12  /* 1, 2 or 5 times a power of ten: at most 11, and one for rounding */
#define TIME_BUF 48   /* fmt_time: "-2000000000000 s (-555555555.6 h)" fits */

static const char *const out_names[FB_OUT_N] = {"success", "failure", "timeout",
                                                "rejected"};

/* The drawing's time axis: render buckets are g read buckets wide. */
typedef struct view {
  const fb_report *r;
  FILE *f;
  double t0, span; /* the axis covers [t0, t0 + span] */
  size_t g, m;     /* group size, render buckets */
  double w;        /* render bucket width, seconds */
} view;

static double x_of(const view *v, double t) {
  double x = (t - v->t0) / v->span;
  x = x < 0 ? 0 : x > 1 ? 1 : x;
  return LEFT + x * PLOTW;
}

/* Seconds of render bucket i that lie on the axis (the last is partial). */
static double bucket_len(const view *v, size_t i) {
  double rest = v->span - (double)i * v->w;
  return rest < v->w ? (rest > 0 ? rest : v->w) : v->w;
}

static void esc(FILE *f, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&#39;", f); break;
    default: fputc((unsigned char)*s < 0x20 ? '?' : *s, f);
    }
  }
}

/* A duration for people: 0, 850 us, 12.5 ms, 3.2 s. */
static const char *fmt_time(char *buf, size_t size, double s) {
  if (isnan(s))
    snprintf(buf, size, "-");
  else if (s == 0)
    snprintf(buf, size, "0");
  else if (fabs(s) < 1e-3)
    snprintf(buf, size, "%.3g us", s * 1e6);
  else if (fabs(s) < 1)
    snprintf(buf, size, "%.3g ms", s * 1e3);
  else if (fabs(s) < 1000)
    snprintf(buf, size, "%.4g s", s);
  else
    snprintf(buf, size, "%.0f s (%.1f h)", s, s / 3600);
  return buf;
}

/* The CSS class of a state; names from the log only ever reach data-
 * attributes and text, escaped. */
static const char *state_class(const char *state) {
  static const char *const known[][2] = {
      {"CLOSED", "s-closed"},         {"OPEN", "s-open"},
      {"HALF_OPEN", "s-half"},        {"FORCED_OPEN", "s-forced"},
      {"DISABLED", "s-disabled"},     {"registered", "m-registered"},
      {"silent", "m-silent"},         {"expired", "m-expired"},
      {"deregistered", "m-deregistered"}};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(state, known[i][0]) == 0)
      return known[i][1];
  return "s-other";
}

/* A row's name, cut at the plot's edge (the whole name on hover). */
static void label(FILE *f, const char *name, int y) {
  fprintf(f, "<text class=\"label\" x=\"4\" y=\"%d\" "
             "clip-path=\"url(#label-clip)\"><title>", y);
  esc(f, name);
  fputs("</title>", f);
  esc(f, name);
  fputs("</text>", f);
}

/* ------------------------------------------------------------ the view */

/* Non-empty cells (series x render bucket) with groups of g buckets. */
static uint64_t cells(const fb_report_series *v, size_t n, int nout,
                      size_t nbuckets, size_t g) {
  uint64_t cells = 0;
  for (size_t s = 0; s < n; s++)
    for (size_t i = 0; i < nbuckets; i += g) {
      uint64_t k = 0;
      for (size_t j = i; j < i + g && j < nbuckets; j++)
        for (int o = 0; o < nout; o++)
          k += v[s].counts[j][o];
      cells += k > 0;
    }
  return cells;
}

/* Merges read buckets in twos while a series' non-empty bucket holds
 * fewer than 5 requests on average (with at least 16 buckets left): a 5 s
 * run with 10 calls is drawn in half seconds, not in 1/64 s spikes, and
 * a steady 3 calls a second does not alias into 1-2-1-2 stripes. */
static size_t group_size(const fb_report *r) {
  uint64_t total = r->picks;
  for (size_t s = 0; s < r->nseries; s++)
    for (int o = 0; o < FB_OUT_N; o++)
      total += r->series[s].total[o];
  size_t g = 1;
  while (r->nbuckets / g > 16) {
    uint64_t n = cells(r->series, r->nseries, FB_OUT_N, r->nbuckets, g) +
                 cells(r->pick_series, r->npick_series, 1, r->nbuckets, g);
    if (n == 0 || total >= 5 * n)
      break;
    g *= 2;
  }
  return g;
}

static void make_view(view *v, const fb_report *r, FILE *f) {
  v->r = r;
  v->f = f;
  v->t0 = r->started ? r->t0 : 0;
  double span = r->t_end - v->t0;
  if (r->duration > span)
    span = r->duration;
  /* no shorter than a bucket: a 1e-310 s axis made rates infinite */
  v->span = span > 0 ? (span > FB_REPORT_W0 ? span : FB_REPORT_W0) : 1;
  v->g = group_size(r);
  v->w = r->width * (double)v->g;
  size_t m = r->nbuckets ? (r->nbuckets + v->g - 1) / v->g : 0;
  /* buckets wholly past the axis (the run ended mid-bucket) are empty */
  while (m > 0 && (double)(m - 1) * v->w >= v->span)
    m--;
  v->m = m;
}

static void sum_counts(const view *v, const fb_report_series *s, size_t i,
                       uint64_t out[FB_OUT_N]) {
  memset(out, 0, FB_OUT_N * sizeof *out);
  for (size_t j = i * v->g; j < (i + 1) * v->g && j < v->r->nbuckets; j++)
    for (int o = 0; o < FB_OUT_N; o++)
      out[o] += s->counts[j][o];
}

/* The histogram of render bucket i in out; 0 when it is empty. */
static int sum_hist(const view *v, uint32_t *const *h, size_t i,
                    uint32_t out[FB_REPORT_BINS]) {
  int any = 0;
  memset(out, 0, FB_REPORT_BINS * sizeof *out);
  for (size_t j = i * v->g; j < (i + 1) * v->g && j < v->r->nbuckets; j++) {
    if (!h[j])
      continue;
    any = 1;
    for (int b = 0; b < FB_REPORT_BINS; b++)
      out[b] = out[b] > UINT32_MAX - h[j][b] ? UINT32_MAX : out[b] + h[j][b];
  }
  return any;
}

/* The latencies drawn: the calls' (call_end), or, in a log with none,
 * the durations breakers recorded. */
static uint32_t *const *latency_source(const fb_report *r, const char **what) {
  for (size_t i = 0; i < r->nbuckets; i++)
    if (r->latency[i]) { /* a row exists once it counts one */
      *what = "call latency (call_end)";
      return r->latency;
    }
  *what = "call duration recorded by breakers (outcome)";
  return r->durations;
}

/* ---------------------------------------------------------- svg pieces */

static void svg_open(const view *v, const char *id, int height) {
  fprintf(v->f,
          "<svg class=\"timeline\" id=\"%s\" width=\"%d\" height=\"%d\" "
          "viewBox=\"0 0 %d %d\" data-left=\"%d\" data-plotw=\"%d\">\n",
          id, WIDTH, height, WIDTH, height, LEFT, PLOTW);
}

/* Grid lines and time labels (1, 2 or 5 times a power of ten apart), by
 * count: far from 0, t += step can stop advancing. Where telling ticks
 * apart takes more than 8 digits (1e11 + 0.2), the first label is whole
 * and the others are offsets from it ("+0.2s"), which fit. */
static void svg_axis(const view *v, int top, int bottom) {
  double raw = v->span / 10, mag = pow(10, floor(log10(raw))), step = mag;
  if (raw > 5 * mag)
    step = 10 * mag;
  else if (raw > 2 * mag)
    step = 5 * mag;
  else if (raw > mag)
    step = 2 * mag;
  double first = ceil(v->t0 / step);
  double ticks = floor((v->t0 + v->span) / step + 1e-9) - first + 1;
  int n = ticks > MAX_TICKS ? MAX_TICKS : ticks > 0 ? (int)ticks : 0;
  double far = fmax(fabs(v->t0), fabs(v->t0 + v->span));
  double digits = far > step ? ceil(log10(far / step)) + 1 : 1;
  int prec = digits < 6 ? 6 : digits > 17 ? 17 : (int)digits;
  fprintf(v->f, "<g class=\"axis\">");
  for (int i = 0; i < n; i++) {
    double t = (first + i) * step, x = x_of(v, t);
    fprintf(v->f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>"
                  "<text x=\"%.1f\" y=\"%d\">", x, x, top, bottom, x,
            bottom + 12);
    if (i > 0 && prec > 8)
      fprintf(v->f, "+%.6gs</text>", i * step);
    else
      fprintf(v->f, "%.*gs</text>", prec, t);
  }
  fprintf(v->f,
          "<line class=\"cursor\" x1=\"0\" x2=\"0\" y1=\"%d\" y2=\"%d\" "
          "style=\"display:none\"/></g>\n",
          top, bottom);
}

/* One step path per outcome, each filled from the baseline up to the
 * running sum of the outcomes under it; drawn top-down so each covers
 * the one before only where it belongs. */
static void stacked_row(const view *v, const fb_report_series *s, int nout,
                        int y0, const char *cls, const char *attr) {
  double max = 0;
  uint64_t c[FB_OUT_N], all = 0;
  for (size_t i = 0; i < v->m; i++) {
    sum_counts(v, s, i, c);
    double n = 0;
    for (int o = 0; o < nout; o++)
      n += (double)c[o];
    if (n / bucket_len(v, i) > max)
      max = n / bucket_len(v, i);
  }
  for (int o = 0; o < nout; o++)
    all += s->total[o];
  int base = y0 + ROW_H - 6;
  fprintf(v->f, "<g class=\"%s\" %s=\"", cls, attr);
  esc(v->f, s->name);
  fprintf(v->f, "\" data-total=\"%llu\"", (unsigned long long)all);
  for (int o = 0; nout == FB_OUT_N && o < nout; o++) /* picks have none */
    fprintf(v->f, " data-%s=\"%llu\"", out_names[o],
            (unsigned long long)s->total[o]);
  fputc('>', v->f);
  label(v->f, s->name, y0 + 18);
  fprintf(v->f,
          "<text class=\"small\" x=\"4\" y=\"%d\">%llu, peak %.4g/s</text>",
          y0 + 34, (unsigned long long)all, max);
  for (int top = nout - 1; top >= 0 && max > 0; top--) {
    if (s->total[top] == 0)
      continue;
    fprintf(v->f, "<path class=\"o-%s\" d=\"M%.1f,%d", out_names[top],
            x_of(v, v->t0), base);
    for (size_t i = 0; i < v->m; i++) {
      sum_counts(v, s, i, c);
      double n = 0;
      for (int o = 0; o <= top; o++)
        n += (double)c[o];
      double y = base - n / bucket_len(v, i) / max * (ROW_H - 14);
      fprintf(v->f, "V%.1fH%.1f", y, x_of(v, v->t0 + (double)(i + 1) * v->w));
    }
    fprintf(v->f, "V%dZ\"/>", base);
  }
  fprintf(v->f, "<line class=\"base\" x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/></g>\n",
          LEFT, LEFT + PLOTW, base, base);
}

static void panel_requests(const view *v) {
  const fb_report *r = v->r;
  int h = (int)r->nseries * ROW_H + 20;
  fprintf(v->f, "<section id=\"requests\" data-series=\"%zu\"><h2>Requests "
                "per second, by outcome</h2>\n", r->nseries);
  if (r->nseries == 0) {
    fputs("<p class=\"empty\">No calls, outcomes or rejections in this log."
          "</p></section>\n", v->f);
    return;
  }
  svg_open(v, "requests-svg", h);
  svg_axis(v, 0, h - 20);
  for (size_t s = 0; s < r->nseries; s++)
    stacked_row(v, &r->series[s], FB_OUT_N, (int)s * ROW_H, "series",
                "data-series");
  fputs("</svg>\n<p class=\"legend\">", v->f);
  for (int o = 0; o < FB_OUT_N; o++)
    fprintf(v->f, "<span class=\"key o-%s\"></span>%s ", out_names[o],
            out_names[o]);
  fputs("&middot; a service's row counts its calls (call_end) as their "
        "callers saw them (an answer after the caller's timeout is a "
        "timeout, at the answer's time); a breaker's row counts what it let "
        "through (outcome) and what it rejected.</p></section>\n", v->f);
}

static void panel_picks(const view *v) {
  const fb_report *r = v->r;
  if (r->npick_series == 0)
    return;
  int h = (int)r->npick_series * ROW_H + 20;
  fprintf(v->f, "<section id=\"picks\" data-series=\"%zu\"><h2>Balancer "
                "picks per second, per instance</h2>\n", r->npick_series);
  svg_open(v, "picks-svg", h);
  svg_axis(v, 0, h - 20);
  for (size_t s = 0; s < r->npick_series; s++)
    stacked_row(v, &r->pick_series[s], 1, (int)s * ROW_H, "pick-series",
                "data-instance");
  fputs("</svg></section>\n", v->f);
}

static double lat_y(double value, double lo, double hi) {
  double l = value > 0 ? log10(value) : lo;
  if (l < lo)
    l = lo;
  return 10 + (hi - l) / (hi - lo) * (LAT_H - 40);
}

/* One percentile as a step path, broken where a bucket has no calls. */
static void lat_path(const view *v, const double *q, const char *cls,
                     double lo, double hi) {
  fprintf(v->f, "<path class=\"%s\" d=\"", cls);
  int pen = 0;
  for (size_t i = 0; i < v->m; i++) {
    if (isnan(q[i])) {
      pen = 0;
      continue;
    }
    double y = lat_y(q[i], lo, hi);
    if (pen)
      fprintf(v->f, "V%.1f", y);
    else
      fprintf(v->f, "M%.1f,%.1f", x_of(v, v->t0 + (double)i * v->w), y);
    fprintf(v->f, "H%.1f", x_of(v, v->t0 + (double)(i + 1) * v->w));
    pen = 1;
  }
  fputs("\"/>\n", v->f);
}

static void panel_latency(const view *v, const double *p50, const double *p99,
                          const char *what) {
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < v->m; i++)
    for (int k = 0; k < 2; k++) {
      double q = k ? p99[i] : p50[i];
      if (q > 0 && log10(q) < lo)
        lo = log10(q);
      if (q > 0 && log10(q) > hi)
        hi = log10(q);
    }
  fprintf(v->f, "<section id=\"latency\"><h2>Latency p50 and p99</h2>\n");
  if (!(hi >= lo)) {
    fprintf(v->f, "<p class=\"empty\">No latencies above 1 us in this log: "
                  "%s.</p></section>\n", what);
    return;
  }
  lo = floor(lo);
  hi = ceil(hi) > floor(lo) ? ceil(hi) : floor(lo) + 1;
  svg_open(v, "latency-svg", LAT_H);
  svg_axis(v, 0, LAT_H - 30);
  char buf[TIME_BUF];
  /* the bins span 1 us .. 17.7 h: lo >= -6, hi <= 5 */
  for (int d = 0; d <= (int)(hi - lo); d++)
    fprintf(v->f, "<text class=\"small\" x=\"%d\" y=\"%.1f\" "
                  "text-anchor=\"end\">%s</text>",
            LEFT - 6, lat_y(pow(10, lo + d), lo, hi) + 4,
            fmt_time(buf, sizeof buf, pow(10, lo + d)));
  lat_path(v, p50, "lat-p50", lo, hi);
  lat_path(v, p99, "lat-p99", lo, hi);
  fprintf(v->f, "</svg>\n<p class=\"legend\"><span class=\"key lat-p50\">"
                "</span>p50 <span class=\"key lat-p99\"></span>p99 &middot; "
                "%s, per bucket, log scale; from a histogram of %d bins a "
                "factor of %.2f wide: within %.1f%% of the exact value</p>"
                "</section>\n",
          what, FB_REPORT_BINS, FB_REPORT_LAT_G,
          (sqrt(FB_REPORT_LAT_G) - 1) * 100);
}

/* --------------------------------------------------------------- bands */

static void band(const view *v, double a, double b, int y, const char *state,
                 const char *tip) {
  double x0 = x_of(v, a), x1 = x_of(v, b);
  char t0[TIME_BUF], t1[TIME_BUF], len[TIME_BUF];
  fprintf(v->f, "<rect class=\"band %s\" data-state=\"", state_class(state));
  esc(v->f, state);
  fprintf(v->f, "\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\"><title>",
          x0, y, x1 - x0 > 1 ? x1 - x0 : 1, BAND_H - 4);
  esc(v->f, state);
  fprintf(v->f, "%s from t=%s to t=%s (%s)</title></rect>", tip,
          fmt_time(t0, sizeof t0, a), fmt_time(t1, sizeof t1, b),
          fmt_time(len, sizeof len, b - a));
}

/* The span holding time t (spans are in log order); -1 before the first. */
static long span_at(const fb_report_track *tr, double t) {
  long lo = 0, hi = (long)tr->nspans - 1, found = -1;
  while (lo <= hi) {
    long mid = (lo + hi) / 2;
    if (tr->spans[mid].t <= t) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

static const char *state_at(const fb_report_track *tr, double t) {
  long s = span_at(tr, t);
  return s < 0 ? NULL : tr->spans[s].state;
}

static int same_state(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

/* Too many intervals to draw one by one: the state at the middle of each
 * 2-pixel column, equal neighbours merged. Returns the bands: drawn, or
 * (draw 0) only counted. */
static size_t sampled_bands(const view *v, const fb_report_track *tr, int y,
                            int draw) {
  int cols = PLOTW / 2;
  double dt = v->span / cols;
  size_t n = 0;
  for (int c = 0; c < cols;) {
    const char *state = state_at(tr, v->t0 + (c + 0.5) * dt);
    int e = c + 1;
    while (e < cols && same_state(state_at(tr, v->t0 + (e + 0.5) * dt), state))
      e++;
    if (state && draw)
      band(v, v->t0 + c * dt, v->t0 + e * dt, y, state, " (sampled)");
    n += state != NULL;
    c = e;
  }
  return n;
}

static void track_row(const view *v, const fb_report_track *tr, int y,
                      const char *cls, const char *attr, int sampled) {
  fprintf(v->f, "<g class=\"%s\" %s=\"", cls, attr);
  esc(v->f, tr->name);
  fprintf(v->f, "\" data-intervals=\"%zu\" data-sampled=\"%d\" "
                "data-marks=\"%zu\">", tr->nspans, sampled, tr->nmarks);
  label(v->f, tr->name, y + BAND_H - 7);
  if (sampled) {
    sampled_bands(v, tr, y, 1);
  } else {
    for (size_t i = 0; i < tr->nspans; i++) {
      double end = i + 1 < tr->nspans ? tr->spans[i + 1].t : v->t0 + v->span;
      band(v, tr->spans[i].t, end, y, tr->spans[i].state, "");
    }
    for (size_t i = 1; i < tr->nspans; i++) {
      double x = x_of(v, tr->spans[i].t);
      fprintf(v->f, "<line class=\"transition\" x1=\"%.1f\" x2=\"%.1f\" "
                    "y1=\"%d\" y2=\"%d\"><title>", x, x, y - 1, y + BAND_H - 3);
      esc(v->f, tr->spans[i - 1].state);
      fputs(" &#8594; ", v->f);
      esc(v->f, tr->spans[i].state);
      fprintf(v->f, " at t=%.6g</title></line>", tr->spans[i].t);
    }
  }
  for (size_t i = 0; i < tr->nmarks && i < MAX_BANDS; i++) {
    double x = x_of(v, tr->marks[i].t);
    fprintf(v->f, "<path class=\"mark\" d=\"M%.1f,%dl-4,-5h8z\"><title>", x,
            y + 1);
    esc(v->f, tr->marks[i].what);
    fprintf(v->f, " at t=%.6g</title></path>", tr->marks[i].t);
  }
  fputs("</g>\n", v->f);
}

/* How many of the n tracks the panel draws, and which of them sampled:
 * in log order, while they fit in FB_REPORT_ROWS rows and FB_REPORT_SHAPES
 * shapes (an interval drawn exactly costs a band and a transition line;
 * a mark, one; a row that does not fit exactly is drawn sampled). */
static size_t plan_rows(const view *v, const fb_report_track *t, size_t n,
                        char sampled[FB_REPORT_ROWS]) {
  size_t left = FB_REPORT_SHAPES, k = 0;
  for (; k < n && k < FB_REPORT_ROWS; k++) {
    size_t marks = t[k].nmarks < MAX_BANDS ? t[k].nmarks : MAX_BANDS;
    size_t exact = 2 * t[k].nspans + marks;
    sampled[k] = t[k].nspans > MAX_BANDS || exact > left;
    size_t cost = sampled[k] ? sampled_bands(v, &t[k], 0, 0) + marks : exact;
    if (cost > left)
      break;
    left -= cost;
  }
  return k;
}

static void panel_tracks(const view *v, const fb_report_track *tracks, size_t n,
                         const char *id, const char *title, const char *cls,
                         const char *attr, const char *legend) {
  char sampled[FB_REPORT_ROWS];
  size_t drawn = plan_rows(v, tracks, n, sampled);
  fprintf(v->f, "<section id=\"%s\" data-count=\"%zu\" data-drawn=\"%zu\">"
                "<h2>%s</h2>\n", id, n, drawn, title);
  if (n == 0) {
    fputs("<p class=\"empty\">None in this log.</p></section>\n", v->f);
    return;
  }
  int h = (int)drawn * BAND_H + 28;
  char svg_id[48];
  snprintf(svg_id, sizeof svg_id, "%s-svg", id);
  svg_open(v, svg_id, h);
  svg_axis(v, 0, h - 20);
  for (size_t i = 0; i < drawn; i++)
    track_row(v, &tracks[i], 6 + (int)i * BAND_H, cls, attr, sampled[i]);
  fputs("</svg>\n", v->f);
  if (drawn < n)
    fprintf(v->f, "<p class=\"warn\" id=\"%s-left-out\" data-count=\"%zu\">"
                  "%zu more not drawn: a panel draws at most %d rows and %d "
                  "intervals and marks, the first in the log.</p>\n",
            id, n - drawn, n - drawn, FB_REPORT_ROWS, FB_REPORT_SHAPES);
  fprintf(v->f, "<p class=\"legend\">%s</p></section>\n", legend);
}

/* -------------------------------------------------------------- header */

/* Appends arg to the command, quoted for a POSIX shell if it needs it. */
static void shell_word(FILE *f, const char *arg) {
  int plain = *arg != 0;
  for (const char *p = arg; *p; p++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "0123456789_./:=,+-@%", *p))
      plain = 0;
  fputc(' ', f);
  if (plain) {
    esc(f, arg);
    return;
  }
  fputs("&#39;", f);
  for (const char *p = arg; *p; p++) {
    if (*p == '\'')
      fputs("&#39;\\&#39;&#39;", f);
    else {
      char c[2] = {*p, 0};
      esc(f, c);
    }
  }
  fputs("&#39;", f);
}

static void replay_command(const fb_report *r, FILE *f) {
  if (!r->script) {
    fputs("<span class=\"empty\">unknown: the log has no run_start naming the "
          "script</span>", f);
    return;
  }
  fputs("<code id=\"replay\">fusebox run", f);
  if (r->virtual_time == 1)
    fputs(" --virtual-time", f);
  if (r->seed) {
    fputs(" --seed", f);
    shell_word(f, r->seed);
  }
  shell_word(f, r->script);
  for (size_t i = 0; i < r->nargs; i++)
    shell_word(f, r->args[i]);
  fputs("</code>", f);
  if (r->cut)
    fprintf(f, " <span class=\"warn\" id=\"replay-cut\">(cut: the log's "
               "run_start has a string over %d bytes or over %d arguments)"
               "</span>", FB_REPORT_STR_MAX, FB_REPORT_ARGS);
  if (r->virtual_time != 1)
    fputs(" <span class=\"small\">(real time: the same random draws, not the "
          "same timing)</span>", f);
}

static void row(FILE *f, const char *id, const char *label, unsigned long long n) {
  fprintf(f, "<tr><th>%s</th><td id=\"%s\">%llu</td></tr>", label, id, n);
}

static void header(const view *v, const char *source) {
  const fb_report *r = v->r;
  FILE *f = v->f;
  char buf[TIME_BUF];
  fputs("<header id=\"header\" data-seed=\"", f);
  esc(f, r->seed ? r->seed : "");
  fputs("\" data-script=\"", f);
  esc(f, r->script ? r->script : "");
  fputs("\"><h1>fusebox run report: ", f);
  esc(f, r->script ? r->script : source);
  fputs("</h1>\n<table class=\"facts\"><tr><th>script</th><td id=\"script\">", f);
  esc(f, r->script ? r->script : "(unknown)");
  fputs("</td></tr><tr><th>seed</th><td id=\"seed\">", f);
  esc(f, r->seed ? r->seed : "(unknown)");
  fprintf(f, "</td></tr><tr><th>clock</th><td id=\"clock\">%s</td></tr>"
             "<tr><th>duration</th><td id=\"duration\">%s</td></tr>",
          r->virtual_time == 1 ? "virtual" : r->virtual_time == 0 ? "real"
                                                                   : "(unknown)",
          fmt_time(buf, sizeof buf, v->r->duration > 0 ? v->r->duration
                                                        : r->t_end - r->t0));
  fputs("<tr><th>outcome</th><td id=\"outcome\">", f);
  if (r->run_ends == 0)
    fputs("<span class=\"warn\">no run_end: the run did not finish, or the "
          "file was cut</span>", f);
  else if (r->run_ok)
    fputs("finished", f);
  else {
    fputs("<span class=\"warn\">failed: ", f);
    esc(f, r->run_error ? r->run_error : "(no message)");
    fputs("</span>", f);
  }
  fputs("</td></tr><tr><th>replay</th><td>", f);
  replay_command(r, f);
  fputs("</td></tr><tr><th>events file</th><td id=\"source\">", f);
  esc(f, source);
  fputs("</td></tr></table>\n<table class=\"facts totals\">", f);
  row(f, "total-events", "events drawn", r->events);
  row(f, "total-calls", "calls", r->calls);
  row(f, "total-success", "&#8230; succeeded", r->call_totals[FB_OUT_SUCCESS]);
  row(f, "total-failure", "&#8230; failed", r->call_totals[FB_OUT_FAILURE]);
  row(f, "total-timeout", "&#8230; timed out", r->call_totals[FB_OUT_TIMEOUT]);
  row(f, "total-late", "&#8230;&#8230; of them answered late", r->late);
  row(f, "total-outcomes", "breaker outcomes", r->outcomes);
  row(f, "total-breaker-success", "&#8230; succeeded",
      r->breaker_totals[FB_OUT_SUCCESS]);
  row(f, "total-breaker-failure", "&#8230; failed",
      r->breaker_totals[FB_OUT_FAILURE]);
  row(f, "total-breaker-timeout", "&#8230; timed out",
      r->breaker_totals[FB_OUT_TIMEOUT]);
  row(f, "total-rejected", "breaker rejections",
      r->breaker_totals[FB_OUT_REJECTED]);
  row(f, "total-picks", "balancer picks", r->picks);
  row(f, "total-breakers", "breakers", r->nbreakers);
  row(f, "total-instances", "instances", r->nmembers);
  fputs("</table></header>\n", f);
}

/* "1 event", "2 events": the word for a count of n. */
static const char *noun(uint64_t n, const char *one, const char *many) {
  return n == 1 ? one : many;
}

static void list_lines(FILE *f, const fb_report_list *l) {
  for (uint64_t i = 0; i < l->count && i < FB_REPORT_FIRST; i++)
    fprintf(f, "%s%ld", i ? ", " : "", l->first[i]);
  if (l->count > FB_REPORT_FIRST)
    fputs(", ...", f);
}

/* <p class="warn">Skipped 2 lines <why>: lines 3, 5.</p>, if any were. */
static void warn_skipped(FILE *f, const fb_report_list *l, const char *one,
                         const char *many, const char *why) {
  if (!l->count)
    return;
  fprintf(f, "<p class=\"warn\">Skipped %llu %s %s: lines ",
          (unsigned long long)l->count, noun(l->count, one, many), why);
  list_lines(f, l);
  fputs(".</p>", f);
}

static void skipped(const fb_report *r, FILE *f) {
  uint64_t n = r->bad_json.count + r->bad_event.count + r->too_long.count +
               r->bad_time.count;
  fprintf(f, "<section id=\"skipped\" data-count=\"%llu\" data-unknown="
             "\"%llu\">", (unsigned long long)n,
          (unsigned long long)r->unknown.count);
  if (r->lines == 0)
    fputs("<p class=\"warn\" id=\"empty-log\">The events file is empty: "
          "there is nothing to draw.</p>", f);
  char why[80];
  warn_skipped(f, &r->bad_json, "line", "lines",
               "that are not JSON (a cut or corrupted file)");
  warn_skipped(f, &r->bad_event, "event", "events",
               "without the fields they need (t, kind, or their kind's own)");
  snprintf(why, sizeof why, "longer than %d bytes, unread", FB_REPORT_LINE_MAX);
  warn_skipped(f, &r->too_long, "line", "lines", why);
  snprintf(why, sizeof why, "whose time t is out of range (beyond &#177;%g s)",
           FB_REPORT_T_MAX);
  warn_skipped(f, &r->bad_time, "event", "events", why);
  if (r->unknown.count) {
    fprintf(f, "<p class=\"note\">Not drawn: %llu %s of other kinds (",
            (unsigned long long)r->unknown.count,
            noun(r->unknown.count, "event", "events"));
    for (size_t i = 0; i < r->nunknown_kinds; i++) {
      fputs(i ? ", " : "", f);
      esc(f, r->unknown_kinds[i]);
    }
    fputs(r->unknown.count > r->nunknown_kinds ? ", ...)" : ")", f);
    fputs(", lines ", f);
    list_lines(f, &r->unknown);
    fputs(".</p>", f);
  }
  if (r->oom)
    fputs("<p class=\"warn\">Out of memory while reading: this report is "
          "partial.</p>", f);
  fputs("</section>\n", f);
}

/* ---------------------------------------------------------- hover data */

static double round4(double x) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.4g", x);
  return strtod(buf, NULL);
}

/* Adds item to array; 0, or -1 (item freed) when out of memory. */
static int push(cJSON *array, cJSON *item) {
  if (cJSON_AddItemToArray(array, item))
    return 0;
  cJSON_Delete(item);
  return -1;
}

/* The hover data: NULL (nothing left allocated) when out of memory. */
static cJSON *hover_data(const view *v, const double *p50, const double *p99) {
  cJSON *d = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(d, "series");
  int bad = !list || !cJSON_AddNumberToObject(d, "t0", v->t0) ||
            !cJSON_AddNumberToObject(d, "span", v->span) ||
            !cJSON_AddNumberToObject(d, "w", v->w);
  for (size_t s = 0; s < v->r->nseries && !bad; s++) {
    cJSON *one = cJSON_CreateObject(), *c;
    bad = push(list, one) < 0 || !(c = cJSON_AddArrayToObject(one, "c")) ||
          !cJSON_AddStringToObject(one, "name", v->r->series[s].name);
    for (size_t i = 0; i < v->m && !bad; i++) {
      uint64_t n[FB_OUT_N];
      sum_counts(v, &v->r->series[s], i, n);
      double k[FB_OUT_N] = {(double)n[0], (double)n[1], (double)n[2], (double)n[3]};
      bad = push(c, n[0] + n[1] + n[2] + n[3] ? cJSON_CreateDoubleArray(k, FB_OUT_N)
                                              : cJSON_CreateNumber(0)) < 0;
    }
  }
  cJSON *a = bad ? NULL : cJSON_AddArrayToObject(d, "p50");
  cJSON *b = a ? cJSON_AddArrayToObject(d, "p99") : NULL;
  bad = bad || !b;
  for (size_t i = 0; i < v->m && !bad; i++)
    bad = push(a, isnan(p50[i]) ? cJSON_CreateNull()
                                : cJSON_CreateNumber(round4(p50[i]))) < 0 ||
          push(b, isnan(p99[i]) ? cJSON_CreateNull()
                                : cJSON_CreateNumber(round4(p99[i]))) < 0;
  if (bad) {
    cJSON_Delete(d);
    return NULL;
  }
  return d;
}

/* The data as JSON inside <script>: '<' as \u003c (it only occurs in
 * strings), so nothing in it can close the element. Out of memory: an
 * empty object (no hover details) and -1. */
static int script_data(const view *v, const double *p50, const double *p99) {
  cJSON *d = hover_data(v, p50, p99);
  char *text = d ? cJSON_PrintUnformatted(d) : NULL;
  int rc = text ? 0 : -1;
  fputs("<script type=\"application/json\" id=\"fb-data\">", v->f);
  for (const char *p = text ? text : "{}"; *p; p++)
    if (*p == '<')
      fputs("\\u003c", v->f);
    else
      fputc(*p, v->f);
  fputs("</script>\n", v->f);
  cJSON_free(text);
  cJSON_Delete(d);
  return rc;
}

static const char css[] =
    "body{font:13px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222;"
    "max-width:1220px}h1{font-size:20px;margin:0 0 8px}h2{font-size:15px;"
    "margin:18px 0 4px}table.facts{border-collapse:collapse;display:inline-"
    "table;vertical-align:top;margin-right:24px}.facts th{text-align:left;"
    "font-weight:600;padding:1px 12px 1px 0;color:#555}.facts td{padding:1px 0}"
    "code{background:#f3f3f3;padding:2px 4px}.warn{color:#b00020}.note,.small,"
    ".empty{color:#666}svg{display:block;overflow:visible}.axis line{stroke:"
    "#e4e4e4}.axis text,.small{font-size:11px;fill:#777}.axis text{text-"
    "anchor:middle}line.cursor{stroke:#333;stroke-dasharray:3 3}.label{font-"
    "size:12px;fill:#222}line.base{stroke:#bbb}.o-success{fill:#43a047}"
    ".o-failure{fill:#e53935}.o-timeout{fill:#fb8c00}.o-rejected{fill:#7e57c2}"
    ".pick-series path{fill:#1e88e5}.lat-p50{fill:none;stroke:#1e88e5;"
    "stroke-width:1.5}.lat-p99{fill:none;stroke:#d81b60;stroke-width:1.5}"
    ".s-closed{fill:#66bb6a}.s-open{fill:#e53935}.s-half{fill:#ffb300}"
    ".s-forced{fill:#6a1b9a}.s-disabled{fill:#9e9e9e}.s-other{fill:#90a4ae}"
    ".m-registered{fill:#66bb6a}.m-silent{fill:#fdd835}.m-expired{fill:"
    "#e53935}.m-deregistered{fill:#cfd8dc}line.transition{stroke:#000;"
    "stroke-width:1.5}path.mark{fill:#000}.key{display:inline-block;width:"
    "12px;height:10px;margin:0 4px 0 10px;vertical-align:middle}.key.o-success"
    "{background:#43a047}.key.o-failure{background:#e53935}.key.o-timeout"
    "{background:#fb8c00}.key.o-rejected{background:#7e57c2}.key.lat-p50"
    "{background:#1e88e5}.key.lat-p99{background:#d81b60}.key.s-closed,"
    ".key.m-registered{background:#66bb6a}.key.s-open,.key.m-expired{"
    "background:#e53935}.key.s-half{background:#ffb300}.key.s-forced{"
    "background:#6a1b9a}.key.s-disabled{background:#9e9e9e}.key.m-silent{"
    "background:#fdd835}.key.m-deregistered{background:#cfd8dc}#tip{position:"
    "fixed;display:none;background:#fff;border:1px solid #999;padding:4px "
    "8px;font-size:12px;pointer-events:none;white-space:pre}";

/* Hover: a cursor across every panel and the bucket's numbers. Names go
 * in through textContent, never as markup. */
static const char js[] =
    "(function(){var d=JSON.parse(document.getElementById('fb-data')"
    ".textContent),tip=document.getElementById('tip'),o=['ok','failed',"
    "'timeout','rejected'];function f(s){return s==null?'-':s<1e-3?(s*1e6)"
    ".toPrecision(3)+' us':s<1?(s*1e3).toPrecision(3)+' ms':s.toPrecision(4)"
    "+' s'}function show(e,svg){var b=svg.getBoundingClientRect(),x=(e."
    "clientX-b.left)*svg.viewBox.baseVal.width/b.width,L=+svg.dataset.left,"
    "W=+svg.dataset.plotw;if(x<L||x>L+W){hide();return}var t=d.t0+(x-L)/W*"
    "d.span,i=Math.floor((t-d.t0)/d.w),l=['t = '+(d.t0+i*d.w).toPrecision(6)"
    "+' .. '+(d.t0+(i+1)*d.w).toPrecision(6)+' s'];d.series.forEach(function"
    "(s){var c=s.c[i];if(c)l.push(s.name+': '+c.map(function(n,k){return n?"
    "n+' '+o[k]:''}).filter(String).join(', '))});if(d.p50[i]!=null)l.push("
    "'p50 '+f(d.p50[i])+', p99 '+f(d.p99[i]));tip.textContent=l.join('\\n');"
    "tip.style.display='block';tip.style.left=(e.clientX+14)+'px';tip.style."
    "top=(e.clientY+14)+'px';document.querySelectorAll('line.cursor')."
    "forEach(function(c){c.setAttribute('x1',x);c.setAttribute('x2',x);c."
    "style.display=''})}function hide(){tip.style.display='none';document."
    "querySelectorAll('line.cursor').forEach(function(c){c.style.display="
    "'none'})}document.querySelectorAll('svg.timeline').forEach(function(s)"
    "{s.addEventListener('mousemove',function(e){show(e,s)});s."
    "addEventListener('mouseleave',hide)})})();";

static void legends_and_panels(const view *v, const double *p50,
                               const double *p99, const char *what) {
  panel_requests(v);
  panel_latency(v, p50, p99, what);
  panel_tracks(v, v->r->breakers, v->r->nbreakers, "breakers",
               "Breaker states", "breaker", "data-breaker",
               "<span class=\"key s-closed\"></span>CLOSED<span class=\"key "
               "s-open\"></span>OPEN<span class=\"key s-half\"></span>"
               "HALF_OPEN<span class=\"key s-forced\"></span>FORCED_OPEN"
               "<span class=\"key s-disabled\"></span>DISABLED &middot; "
               "black lines: transitions (hover for details)");
  panel_tracks(v, v->r->members, v->r->nmembers, "members",
               "Registry membership", "member", "data-instance",
               "<span class=\"key m-registered\"></span>registered<span "
               "class=\"key m-silent\"></span>missed heartbeats (last "
               "heartbeat to expiry)<span class=\"key m-expired\"></span>"
               "expired<span class=\"key m-deregistered\"></span>deregistered"
               " &middot; triangles: instance actions (crash, partition, "
               "stop, restart) and comebacks");
  panel_picks(v);
}

/* p50 and p99 of each of v's render buckets (NAN where empty) in new
 * arrays; -1 when out of memory. */
static int percentiles(const view *v, uint32_t *const *h, double **p50,
                       double **p99) {
  uint32_t hist[FB_REPORT_BINS];
  *p50 = fb__malloc((v->m + 1) * sizeof **p50);
  *p99 = fb__malloc((v->m + 1) * sizeof **p99);
  if (!*p50 || !*p99) {
    fb__free(*p50);
    fb__free(*p99);
    return -1;
  }
  for (size_t i = 0; i < v->m; i++) {
    int any = sum_hist(v, h, i, hist);
    (*p50)[i] = any ? fb_report_quantile(hist, 0.5) : NAN;
    (*p99)[i] = any ? fb_report_quantile(hist, 0.99) : NAN;
  }
  return 0;
}

static void page_head(FILE *f, const char *what, const char *title) {
  fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             "<title>fusebox %s: ", what);
  esc(f, title);
  fprintf(f, "</title>\n<style>%s</style></head>\n<body>\n", css);
  fprintf(f, "<svg width=\"0\" height=\"0\" style=\"position:absolute\">"
             "<clipPath id=\"label-clip\" clipPathUnits=\"userSpaceOnUse\">"
             "<rect x=\"0\" y=\"-100000\" width=\"%d\" height=\"200000\"/>"
             "</clipPath></svg>\n", LEFT - 8);
}

int fb_report_html(fb_report *r, const char *source, FILE *f) {
  view v;
  make_view(&v, r, f);
  const char *what;
  uint32_t *const *h = latency_source(r, &what);
  double *p50, *p99;
  if (percentiles(&v, h, &p50, &p99) < 0)
    return -1;
  page_head(f, "report", r->script ? r->script : source);
  header(&v, source);
  skipped(r, f);
  legends_and_panels(&v, p50, p99, what);
  char bw[TIME_BUF];
  fprintf(f, "<p class=\"note\" id=\"buckets\" data-buckets=\"%zu\">%zu time "
             "buckets of %s; rates are counts per bucket divided by its "
             "length.</p>\n<div id=\"tip\"></div>\n",
          v.m, v.m, fmt_time(bw, sizeof bw, v.w));
  int rc = script_data(&v, p50, p99);
  fprintf(f, "<script>%s</script>\n</body></html>\n", js);
  fb__free(p50);
  fb__free(p99);
  return ferror(f) || rc < 0 ? -1 : 0;
}

/* One policy's panels in the compare page, on the axis [t0, t0 + span]
 * every policy shares. */
static int compare_section(fb_report *r, const char *name, double span,
                           FILE *f) {
  view v;
  make_view(&v, r, f);
  v.span = span;
  v.m = r->nbuckets ? (r->nbuckets + v.g - 1) / v.g : 0;
  while (v.m > 0 && (double)(v.m - 1) * v.w >= v.span)
    v.m--;
  const char *what;
  uint32_t *const *h = latency_source(r, &what);
  double *p50, *p99;
  if (percentiles(&v, h, &p50, &p99) < 0)
    return -1;
  fputs("<section class=\"policy\" data-policy=\"", f);
  esc(f, name);
  fputs("\"><h2 class=\"policy\">policy ", f);
  esc(f, name);
  fputs("</h2>\n", f);
  skipped(r, f);
  panel_requests(&v);
  panel_latency(&v, p50, p99, what);
  panel_tracks(&v, r->breakers, r->nbreakers, "breakers", "Breaker states",
               "breaker", "data-breaker",
               "<span class=\"key s-closed\"></span>CLOSED<span class=\"key "
               "s-open\"></span>OPEN<span class=\"key s-half\"></span>"
               "HALF_OPEN");
  fputs("</section>\n", f);
  fb__free(p50);
  fb__free(p99);
  return 0;
}

int fb_report_compare_html(fb_report *const *r, const char *const *names,
                           size_t n, const char *title, const char *table,
                           FILE *f) {
  double span = FB_REPORT_W0;
  for (size_t i = 0; i < n; i++) {
    double s = r[i]->t_end - (r[i]->started ? r[i]->t0 : 0);
    if (r[i]->duration > s)
      s = r[i]->duration;
    if (s > span)
      span = s;
  }
  page_head(f, "compare", title);
  fputs("<h1>fusebox compare: ", f);
  esc(f, title);
  fputs("</h1>\n", f);
  if (table) { /* esc line by line: it turns control characters to '?' */
    fputs("<pre id=\"table\" style=\"overflow-x:auto;font-size:12px\">", f);
    for (const char *line = table; *line;) {
      size_t len = strcspn(line, "\n");
      char buf[512];
      for (size_t k = 0; k < len; k += sizeof buf - 1) {
        size_t m = len - k < sizeof buf - 1 ? len - k : sizeof buf - 1;
        memcpy(buf, line + k, m);
        buf[m] = 0;
        esc(f, buf);
      }
      fputc('\n', f);
      line += len + (line[len] == '\n');
    }
    fputs("</pre>\n", f);
  }
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = compare_section(r[i], names[i], span, f);
  fputs("</body></html>\n", f);
  return ferror(f) || rc < 0 ? -1 : 0;
}

void fb_report_warn(const fb_report *r, const char *source, FILE *f) {
  if (r->lines == 0)
    fprintf(f, "fusebox: report: '%s' is empty\n", source);
  if (r->bad_json.count)
    fprintf(f, "fusebox: report: skipped %llu %s of '%s' that are not "
               "JSON (first: line %ld)\n",
            (unsigned long long)r->bad_json.count,
            noun(r->bad_json.count, "line", "lines"), source, r->bad_json.first[0]);
  if (r->bad_event.count)
    fprintf(f, "fusebox: report: skipped %llu %s of '%s' missing fields "
               "(first: line %ld)\n",
            (unsigned long long)r->bad_event.count,
            noun(r->bad_event.count, "event", "events"), source,
            r->bad_event.first[0]);
  if (r->too_long.count)
    fprintf(f, "fusebox: report: skipped %llu %s of '%s' longer than %d "
               "bytes (first: line %ld)\n",
            (unsigned long long)r->too_long.count,
            noun(r->too_long.count, "line", "lines"), source, FB_REPORT_LINE_MAX,
            r->too_long.first[0]);
  if (r->bad_time.count)
    fprintf(f, "fusebox: report: skipped %llu %s of '%s' with t out of "
               "range (beyond +-%g s; first: line %ld)\n",
            (unsigned long long)r->bad_time.count,
            noun(r->bad_time.count, "event", "events"), source, FB_REPORT_T_MAX,
            r->bad_time.first[0]);
  if (r->lines > 0 && r->run_ends == 0)
    fprintf(f, "fusebox: report: '%s' has no run_end (an unfinished run or a "
               "cut file)\n", source);
}
