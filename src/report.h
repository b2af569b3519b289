/*
 * report.h -- a run's event log drawn as one self-contained HTML page
 * (internal).
 *
 * fb_report_line() takes the lines of an events file (see events.h) one
 * at a time and aggregates them into a fixed amount of memory, whatever
 * the run's length: time buckets that double in width (pairs merge) when
 * the run outgrows them, request counts per series and outcome in each
 * bucket, and a log-bucketed latency histogram per bucket (allocated on
 * its first latency). Breaker states and registry membership are kept as
 * exact intervals. fb_report_html() writes the page: inline SVG and CSS,
 * a few lines of JavaScript for hover details, nothing fetched. No Lua, no
 * clock, no I/O but the FILE given.
 *
 * Hostile input: every line, string and count is bounded (the limits
 * below), a line that breaks one is counted as skipped, and the page is
 * under FB_REPORT_PAGE_MAX bytes whatever the file holds. Memory grows
 * only with the distinct breakers and instances and their state changes,
 * which the file itself has to spell out one by one.
 */
#ifndef FB_REPORT_H
#define FB_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cJSON.h>

#include "events.h"

#define FB_REPORT_BUCKETS 512  /* time buckets kept while reading */
#define FB_REPORT_BINS 512     /* latency histogram bins per bucket */
#define FB_REPORT_SERIES 24    /* request series drawn; the rest are pooled */
#define FB_REPORT_FIRST 5      /* first bad line numbers remembered */
#define FB_REPORT_W0 (1.0 / 1024) /* the first bucket width, seconds */
#define FB_REPORT_LINE_MAX (1 << 20) /* longer lines are skipped, unparsed */
/* |t| above this is skipped as out of range: 31,700 years, and a double
 * still resolves 122 us there, finer than the finest bucket. With it
 * (t - t0) / width < 2^51, so widening doubles at most 42 times. */
#define FB_REPORT_T_MAX 1e12
#define FB_REPORT_STR_MAX 1024 /* script, seed, error, each argument: cut */
#define FB_REPORT_ARGS 64      /* script arguments kept for the replay */
#define FB_REPORT_ROWS 100     /* breakers, instances drawn; the rest counted */
#define FB_REPORT_SHAPES 8000  /* intervals and marks drawn per such panel */
/* The page is never larger, whatever the events file holds (a test
 * draws the worst file the limits allow and checks it). */
#define FB_REPORT_PAGE_MAX (16u << 20)
/* Latency bins: bin 0 holds [0, LAT_MIN], bin b >= 1 holds
 * [LAT_MIN * G^(b-1), LAT_MIN * G^b), the last bin everything above. A
 * percentile is reported as its bin's geometric middle: within
 * sqrt(G) - 1 = 2.5% of the exact sample, from 1 us to 17.7 hours. */
#define FB_REPORT_LAT_MIN 1e-6
#define FB_REPORT_LAT_G 1.05
#define FB_REPORT_KINDS 8 /* rejection kinds counted; the rest as "other" */
#define FB_REPORT_REQUESTS "requests (policy)" /* the request events' series */

enum { FB_OUT_SUCCESS, FB_OUT_FAILURE, FB_OUT_TIMEOUT, FB_OUT_REJECTED, FB_OUT_N };

/* Requests of one target per bucket and outcome: a service model
 * (call_end), a breaker (its outcome and reject events) or, for picks,
 * an instance. */
/* Where a series' counts come from: a service model or instance
 * (call_end: the load offered to it, retries and hedges included), a guard
 * (a breaker: outcome, reject; a limiter: limiter_reject), or the policy's
 * requests (request). */
enum { FB_SRC_CALL, FB_SRC_GUARD, FB_SRC_REQUEST };

typedef struct fb_report_series {
  char *name;
  int source; /* FB_SRC_*: the first event that named it */
  uint32_t (*counts)[FB_OUT_N]; /* [FB_REPORT_BUCKETS] */
  uint64_t total[FB_OUT_N];
} fb_report_series;

typedef struct fb_report_span {
  double t;       /* start; it ends where the next one starts */
  char state[24]; /* as the log names it, cut to fit */
} fb_report_span;

typedef struct fb_report_mark {
  double t;
  char what[24]; /* an instance action, or "came back" */
} fb_report_mark;

/* A breaker's states or an instance's membership over time. */
typedef struct fb_report_track {
  char *name;
  fb_report_span *spans;
  size_t nspans, capspans;
  fb_report_mark *marks;
  size_t nmarks, capmarks;
} fb_report_track;

/* Tracks by name: open addressing, slot i holds a track's index + 1 or
 * 0 (empty); at most half full, so a probe always ends. */
typedef struct fb_report_index {
  size_t *slots;
  size_t nslots; /* 0 or a power of two */
  size_t room;   /* tracks the array has room for (it grows by doubling) */
} fb_report_index;

typedef struct fb_report_list {
  uint64_t count;
  long first[FB_REPORT_FIRST]; /* line numbers */
} fb_report_list;

typedef struct fb_report {
  int started;          /* an event set t0 */
  double t0, t_end;     /* the first event's t, the latest t seen */
  double width;         /* bucket width, seconds (FB_REPORT_W0 * 2^k) */
  size_t nbuckets;      /* buckets in use */
  uint64_t lines, events, calls, picks, outcomes;
  uint64_t call_totals[FB_OUT_N];    /* call_end outcomes */
  uint64_t late;                     /* call_end late: its caller gave up */
  uint64_t breaker_totals[FB_OUT_N]; /* breaker outcomes and rejections */
  /* request events (fb.sim.policy's calls, what callers saw): totals,
   * the whole run's latency histogram (NULL until one), rejections by
   * the kind fb.rejection names (the last slot pools the rest) */
  uint64_t requests, request_totals[FB_OUT_N];
  uint32_t *request_latency;
  char reject_kinds[FB_REPORT_KINDS][32];
  uint64_t reject_counts[FB_REPORT_KINDS];
  size_t nreject_kinds;
  fb_report_series *series, *pick_series; /* in order of first appearance */
  size_t nseries, npick_series;
  /* per bucket, FB_REPORT_BINS counts each, or NULL while all are 0 (a
   * short log costs little: a fuzzer reads millions of them) */
  uint32_t *latency[FB_REPORT_BUCKETS];   /* call_end latencies */
  uint32_t *durations[FB_REPORT_BUCKETS]; /* breaker outcome durations */
  fb_report_track *breakers, *members; /* in order of first appearance */
  size_t nbreakers, nmembers;
  fb_report_index breaker_index, member_index;
  uint64_t seed_hash;   /* hash seed: a file cannot be made to collide */
  /* the header: from run_start and run_end */
  char *script, *seed, *run_error;
  char **args;
  size_t nargs;
  int cut;              /* a header string or argument was cut or dropped */
  int virtual_time;     /* -1 unknown */
  int run_starts, run_ends, run_ok;
  double duration;      /* run_end's summary, or t_end - t0 */
  /* what could not be used */
  fb_report_list bad_json, bad_event, unknown;
  fb_report_list too_long; /* over FB_REPORT_LINE_MAX bytes */
  fb_report_list bad_time; /* t not finite, or |t| > FB_REPORT_T_MAX */
  char unknown_kinds[FB_REPORT_FIRST][24];
  size_t nunknown_kinds;
  int oom;              /* an allocation failed: the report is partial */
} fb_report;

/* Returns a new, empty report, or NULL when out of memory. */
fb_report *fb_report_new(void);

/* Aggregates one line (without its newline; len bytes, any bytes) of an
 * events file; lineno names it in the list of skipped lines. Never fails:
 * a line that cannot be used is counted as skipped. */
void fb_report_line(fb_report *r, const char *line, size_t len, long lineno);

/* Aggregates one event already parsed (as fb_report_line does after
 * parsing it) or made with fixed fields (events.h); lineno names it in
 * the list of skipped lines. */
void fb_report_event(fb_report *r, const fb_event *e, long lineno);

/* An fb_events tap (events.h) for arg, an fb_report: each event
 * aggregated as it is written, numbered from 1. */
void fb_report_tap(void *arg, const fb_event *e);

/* Reads every line of f into r, at most FB_REPORT_LINE_MAX + 1 bytes of
 * each held at once; returns 0, or -1 on a read error or out of memory. */
int fb_report_read(fb_report *r, FILE *f);

/* Feeds the lines of data (len bytes, split at '\n', the last one with
 * or without) to r, numbered from 1: fb_report_read without a FILE. */
void fb_report_buffer(fb_report *r, const char *data, size_t len);

/* The p-quantile (0 < p <= 1) of histogram h, as its bin's geometric
 * middle (0 for the first bin); NAN when h is empty. */
double fb_report_quantile(const uint32_t h[FB_REPORT_BINS], double p);

/* The histogram bin a latency falls into. */
int fb_report_bin(double seconds);

/* Seconds breakers spent OPEN (FORCED_OPEN too), summed over breakers,
 * each open stretch ending at the next state or at the run's end. */
double fb_report_open_time(const fb_report *r);

/* Writes the page for r to f, titled by source (the events file's name);
 * returns 0, or -1 if a write failed. */
int fb_report_html(fb_report *r, const char *source, FILE *f);

/* Writes one page with the n reports side by side on one time axis,
 * each under its name, after the text table (preformatted; NULL: none),
 * titled by title; no script. Under n * FB_REPORT_PAGE_MAX bytes plus
 * the table. Returns 0, or -1 if a write failed. */
int fb_report_compare_html(fb_report *const *r, const char *const *names,
                           size_t n, const char *title, const char *table,
                           FILE *f);

/* Prints on f what r skipped (bad lines, unknown kinds, a missing
 * run_end), one line each, naming the events file source. */
void fb_report_warn(const fb_report *r, const char *source, FILE *f);

/* Frees r and everything it holds. */
void fb_report_free(fb_report *r);

/* Renders events file in to HTML file out ("-": stdout), printing what it
 * skipped and any error on err; the page names the events file label
 * (NULL: in). Returns 0, or -1 when in cannot be read or out cannot be
 * written. */
int fb_report_file(const char *in, const char *label, const char *out,
                   FILE *err);

#endif
