/*
 * test_report.c -- the report's aggregation on small hand-made event
 * logs: buckets, percentiles, state and membership intervals, skipped
 * lines, and a page that survives hostile input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <cJSON.h>

#include "report.h"

/* Feeds the lines of text (newline-separated) to a new report. */
static fb_report *feed(const char *text) {
  fb_report *r = fb_report_new();
  assert_non_null(r);
  FILE *f = fmemopen((void *)text, strlen(text), "r");
  assert_non_null(f);
  assert_int_equal(fb_report_read(r, f), 0);
  fclose(f);
  return r;
}

/* A page in memory that refuses to grow past FB_REPORT_PAGE_MAX: a
 * writer that never stops fails its writes instead of filling memory. */
typedef struct sink {
  char *buf;
  size_t len;
} sink;

static ssize_t sink_write(void *cookie, const char *data, size_t n) {
  sink *s = cookie;
  if (n > FB_REPORT_PAGE_MAX - s->len)
    return -1;
  memcpy(s->buf + s->len, data, n);
  s->len += n;
  return (ssize_t)n;
}

/* The page for r as a string (free it); it must fit the bound. */
static char *page(fb_report *r) {
  sink s = {malloc(FB_REPORT_PAGE_MAX + 1), 0};
  assert_non_null(s.buf);
  FILE *f = fopencookie(&s, "w", (cookie_io_functions_t){NULL, sink_write,
                                                          NULL, NULL});
  assert_non_null(f);
  assert_int_equal(fb_report_html(r, "test.jsonl", f), 0);
  assert_int_equal(fclose(f), 0);
  s.buf[s.len] = 0;
  return s.buf;
}

/* Kills the test (SIGVTALRM) after s seconds of CPU, 0: never. CPU, not
 * wall time: a loaded machine or valgrind slows it, a hang never ends. */
static void cpu_limit(int s) {
  struct itimerval t = {{0, 0}, {s, 0}};
  setitimer(ITIMER_VIRTUAL, &t, NULL);
}

/* A page that the limits bound: the run ended (each test runs under
 * cpu_limit), the page is whole, under FB_REPORT_PAGE_MAX, and every number
 * drawn is finite. */
static void assert_sane_page(const char *html) {
  size_t len = strlen(html);
  assert_true(len < FB_REPORT_PAGE_MAX);
  assert_non_null(strstr(html, "</html>"));
  assert_null(strstr(html, "nan"));
  assert_null(strstr(html, "inf\""));
  assert_null(strstr(html, "infH"));
  assert_null(strstr(html, "infs<"));
}

/* By hand: ASan's strstr measures the whole rest of s on every call. */
static int occurrences(const char *s, const char *what) {
  int n = 0;
  size_t len = strlen(what);
  for (const char *p = s; *p;)
    if (strncmp(p, what, len) == 0) {
      n++;
      p += len;
    } else {
      p++;
    }
  return n;
}

static const fb_report_series *find(const fb_report *r, const char *name) {
  for (size_t i = 0; i < r->nseries; i++)
    if (strcmp(r->series[i].name, name) == 0)
      return &r->series[i];
  return NULL;
}

static void counts_calls_per_bucket_and_outcome(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":0,\"kind\":\"run_start\",\"seed\":7,\"script\":\"x.lua\","
      "\"virtual_time\":true,\"args\":[\"a b\"]}\n"
      "{\"t\":0.0001,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\",\"latency\":0.01}\n"
      "{\"t\":0.0002,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"failure\",\"error\":\"refused\"}\n"
      "{\"t\":0.0015,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"failure\",\"error\":\"timeout\"}\n"
      "{\"t\":0.0016,\"kind\":\"reject\",\"breaker\":1}\n"
      "{\"t\":0.0017,\"kind\":\"outcome\",\"breaker\":1,\"outcome\":\"success\",\"duration\":0.5}\n"
      "{\"t\":0.0018,\"kind\":\"outcome\",\"breaker\":1,\"outcome\":\"ignored\"}\n");
  /* the first buckets are 1/1024 s wide: 0.0015 s falls into bucket 1 */
  assert_true(r->width == FB_REPORT_W0);
  assert_int_equal(r->nbuckets, 2);
  const fb_report_series *s = find(r, "s"), *b = find(r, "breaker 1");
  assert_non_null(s);
  assert_non_null(b);
  assert_int_equal(s->counts[0][FB_OUT_SUCCESS], 1);
  assert_int_equal(s->counts[0][FB_OUT_FAILURE], 1);
  assert_int_equal(s->counts[1][FB_OUT_TIMEOUT], 1);
  assert_int_equal(b->counts[1][FB_OUT_REJECTED], 1);
  assert_int_equal(b->counts[1][FB_OUT_SUCCESS], 1); /* ignored: not counted */
  assert_int_equal(r->calls, 3);
  assert_int_equal(r->outcomes, 1);
  assert_int_equal(r->call_totals[FB_OUT_FAILURE], 1);
  assert_int_equal(r->breaker_totals[FB_OUT_REJECTED], 1);
  assert_int_equal(r->latency[0][fb_report_bin(0.01)], 1);
  assert_int_equal(r->durations[1][fb_report_bin(0.5)], 1);
  assert_string_equal(r->seed, "7");
  assert_string_equal(r->script, "x.lua");
  assert_int_equal(r->virtual_time, 1);
  assert_int_equal(r->nargs, 1);
  char *html = page(r);
  assert_non_null(strstr(html, "<code id=\"replay\">fusebox run --virtual-time "
                               "--seed 7 x.lua &#39;a b&#39;</code>"));
  assert_int_equal(occurrences(html, "class=\"series\""), 2);
  free(html);
  fb_report_free(r);
}

/* A timeout is an outcome of its own in the header and the rows: the
 * breaker's apart from its failures, late answers counted (issue 14). */
static void timeouts_are_counted_apart(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":0.2,\"kind\":\"outcome\",\"breaker\":1,\"outcome\":\"timeout\",\"duration\":0.2}\n"
      "{\"t\":0.3,\"kind\":\"outcome\",\"breaker\":1,\"outcome\":\"failure\",\"duration\":0.1}\n"
      "{\"t\":0.5,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"timeout\","
      "\"late\":true,\"result\":\"success\",\"latency\":0.5}\n"
      "{\"t\":0.6,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\",\"latency\":0.1}\n");
  assert_int_equal(r->late, 1);
  assert_int_equal(r->call_totals[FB_OUT_TIMEOUT], 1);
  assert_int_equal(r->breaker_totals[FB_OUT_TIMEOUT], 1);
  assert_int_equal(r->breaker_totals[FB_OUT_FAILURE], 1);
  char *html = page(r);
  assert_non_null(strstr(html, "<td id=\"total-timeout\">1</td>"));
  assert_non_null(strstr(html, "<td id=\"total-late\">1</td>"));
  assert_non_null(strstr(html, "<td id=\"total-breaker-failure\">1</td>"));
  assert_non_null(strstr(html, "<td id=\"total-breaker-timeout\">1</td>"));
  assert_non_null(strstr(html, "data-series=\"s\" data-total=\"2\" "
                               "data-success=\"1\" data-failure=\"0\" "
                               "data-timeout=\"1\" data-rejected=\"0\""));
  assert_non_null(strstr(html, "data-series=\"breaker 1\" data-total=\"2\" "
                               "data-success=\"0\" data-failure=\"1\" "
                               "data-timeout=\"1\" data-rejected=\"0\""));
  free(html);
  fb_report_free(r);
}

static void buckets_double_and_merge_as_the_run_grows(void **state) {
  (void)state;
  fb_report *r = fb_report_new();
  char line[128];
  /* one call every 0.1 s for 100 s: 1000 calls */
  for (int i = 0; i < 1000; i++) {
    snprintf(line, sizeof line,
             "{\"t\":%.1f,\"kind\":\"call_end\",\"service\":\"s\","
             "\"outcome\":\"success\",\"latency\":%g}",
             i * 0.1, i < 500 ? 0.001 : 0.1);
    fb_report_line(r, line, strlen(line), i + 1);
  }
  /* 99.9 s needs 2^17 / 1024 = 128 s of buckets: width 0.25 s */
  assert_true(r->width == 0.25);
  assert_true(r->nbuckets > FB_REPORT_BUCKETS / 2 &&
              r->nbuckets <= FB_REPORT_BUCKETS);
  uint64_t sum = 0;
  for (size_t i = 0; i < r->nbuckets; i++)
    sum += r->series[0].counts[i][FB_OUT_SUCCESS];
  assert_int_equal(sum, 1000);
  /* 0.1 s apart in 0.25 s buckets: 2 or 3 calls in each */
  assert_int_equal(r->series[0].counts[0][FB_OUT_SUCCESS], 3); /* 0, .1, .2 */
  assert_int_equal(r->series[0].counts[1][FB_OUT_SUCCESS], 2); /* .3, .4 */
  uint32_t all[FB_REPORT_BINS] = {0};
  for (size_t i = 0; i < r->nbuckets; i++)
    for (int b = 0; b < FB_REPORT_BINS && r->latency[i]; b++)
      all[b] += r->latency[i][b];
  /* half at 1 ms, half at 100 ms: within the documented 2.5% */
  assert_true(fabs(fb_report_quantile(all, 0.5) - 0.001) / 0.001 < 0.025);
  assert_true(fabs(fb_report_quantile(all, 0.51) - 0.1) / 0.1 < 0.025);
  assert_true(fabs(fb_report_quantile(all, 0.99) - 0.1) / 0.1 < 0.025);
  fb_report_free(r);
}

static void quantiles_are_within_the_error_bound(void **state) {
  (void)state;
  uint32_t h[FB_REPORT_BINS] = {0};
  assert_true(isnan(fb_report_quantile(h, 0.5)));
  /* 1..100 ms: p50 is 50 ms, p99 is 99 ms */
  for (int i = 1; i <= 100; i++)
    h[fb_report_bin(i * 1e-3)]++;
  assert_true(fabs(fb_report_quantile(h, 0.5) - 0.050) / 0.050 <= 0.025);
  assert_true(fabs(fb_report_quantile(h, 0.99) - 0.099) / 0.099 <= 0.025);
  assert_int_equal(fb_report_bin(0), 0);
  assert_int_equal(fb_report_bin(-1), 0);
  assert_int_equal(fb_report_bin(1e9), FB_REPORT_BINS - 1);
  /* every value in range lands in a bin whose middle is within 2.5% */
  for (double v = 2e-6; v < 6e4; v *= 1.37) {
    uint32_t one[FB_REPORT_BINS] = {0};
    one[fb_report_bin(v)] = 1;
    assert_true(fabs(fb_report_quantile(one, 0.5) - v) / v <= 0.0247);
  }
}

static void breaker_states_become_intervals(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":0,\"kind\":\"run_start\",\"seed\":1,\"script\":\"b.lua\",\"virtual_time\":true}\n"
      "{\"t\":1.5,\"kind\":\"state_change\",\"breaker\":1,\"from\":\"CLOSED\",\"to\":\"OPEN\"}\n"
      "{\"t\":6.5,\"kind\":\"state_change\",\"breaker\":1,\"from\":\"OPEN\",\"to\":\"HALF_OPEN\"}\n"
      "{\"t\":7,\"kind\":\"state_change\",\"breaker\":1,\"from\":\"HALF_OPEN\",\"to\":\"CLOSED\"}\n"
      "{\"t\":8,\"kind\":\"state_change\",\"breaker\":2,\"from\":\"CLOSED\",\"to\":\"FORCED_OPEN\"}\n"
      "{\"t\":10,\"kind\":\"run_end\",\"ok\":true,\"summary\":{\"duration\":10}}\n");
  assert_int_equal(r->nbreakers, 2);
  const fb_report_track *b = &r->breakers[0];
  assert_string_equal(b->name, "breaker 1");
  assert_int_equal(b->nspans, 4);
  const char *states[] = {"CLOSED", "OPEN", "HALF_OPEN", "CLOSED"};
  const double starts[] = {0, 1.5, 6.5, 7};
  for (int i = 0; i < 4; i++) {
    assert_string_equal(b->spans[i].state, states[i]);
    assert_true(b->spans[i].t == starts[i]);
  }
  assert_int_equal(r->breakers[1].nspans, 2);
  assert_true(r->duration == 10);
  char *html = page(r);
  /* one band per interval, one mark per transition */
  assert_int_equal(occurrences(html, "<rect class=\"band "), 6);
  assert_int_equal(occurrences(html, "class=\"transition\""), 4);
  assert_non_null(strstr(html, "data-breaker=\"breaker 1\" data-intervals=\"4\""));
  assert_non_null(strstr(html, "class=\"band s-forced\" data-state=\"FORCED_OPEN\""));
  free(html);
  fb_report_free(r);
}

static void membership_becomes_intervals_and_marks(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":0,\"kind\":\"register\",\"service\":\"api\",\"host\":\"h\",\"port\":80}\n"
      "{\"t\":12,\"kind\":\"instance\",\"action\":\"crash\",\"service\":\"api\",\"host\":\"h\",\"port\":80}\n"
      "{\"t\":40,\"kind\":\"expire\",\"service\":\"api\",\"host\":\"h\",\"port\":80,\"last_heartbeat\":10}\n"
      "{\"t\":50,\"kind\":\"register\",\"service\":\"api\",\"host\":\"h\",\"port\":80,\"rejoined\":true}\n"
      "{\"t\":60,\"kind\":\"deregister\",\"service\":\"api\",\"host\":\"h\",\"port\":80}\n");
  assert_int_equal(r->nmembers, 1);
  const fb_report_track *m = &r->members[0];
  assert_string_equal(m->name, "api h:80");
  const char *states[] = {"registered", "silent", "expired", "registered",
                          "deregistered"};
  const double starts[] = {0, 10, 40, 50, 60};
  assert_int_equal(m->nspans, 5);
  for (int i = 0; i < 5; i++) {
    assert_string_equal(m->spans[i].state, states[i]);
    assert_true(m->spans[i].t == starts[i]);
  }
  assert_int_equal(m->nmarks, 2);
  assert_string_equal(m->marks[0].what, "crash");
  assert_string_equal(m->marks[1].what, "came back");
  assert_true(m->marks[1].t == 50);
  fb_report_free(r);
}

static void skipped_lines_are_counted_with_their_numbers(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":0,\"kind\":\"run_start\",\"seed\":1,\"script\":\"s.lua\"}\n"
      "not json at all\n"
      "\n"
      "[1,2,3]\n"
      "{\"kind\":\"pick\"}\n"
      "{\"t\":1,\"kind\":\"note\",\"text\":\"mine\"}\n"
      "{\"t\":2,\"kind\":\"call_end\",\"service\":\"s\"}\n"
      "{\"t\":3,\"kind\":\"state_change\",\"breaker\":1,\"from\":\"CLOSED\"}\n"
      "{\"t\":4,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"succ");
  assert_int_equal(r->lines, 9);
  assert_int_equal(r->bad_json.count, 2); /* line 2 and the cut last line */
  assert_int_equal(r->bad_json.first[0], 2);
  assert_int_equal(r->bad_json.first[1], 9);
  assert_int_equal(r->bad_event.count, 4); /* no t, no outcome, no to */
  assert_int_equal(r->bad_event.first[0], 4);
  assert_int_equal(r->bad_event.first[1], 5);
  assert_int_equal(r->bad_event.first[2], 7);
  assert_int_equal(r->bad_event.first[3], 8);
  assert_int_equal(r->unknown.count, 1);
  assert_string_equal(r->unknown_kinds[0], "note");
  assert_int_equal(r->events, 1);
  char *html = page(r);
  assert_non_null(strstr(html, "<section id=\"skipped\" data-count=\"6\" data-unknown=\"1\">"));
  assert_non_null(strstr(html, "Skipped 2 lines that are not JSON (a cut or corrupted file): lines 2, 9."));
  assert_non_null(strstr(html, "no run_end"));
  free(html);
  fb_report_free(r);
}

static void strings_from_the_log_are_escaped(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":0,\"kind\":\"run_start\",\"seed\":\"<b>1</b>\",\"script\":\"</script><script>alert(1)</script>\"}\n"
      "{\"t\":1,\"kind\":\"call_end\",\"service\":\"<img src=x onerror=alert(1)>\",\"outcome\":\"success\"}\n"
      "{\"t\":2,\"kind\":\"state_change\",\"breaker\":\"\\\"><svg>\",\"from\":\"<i>\",\"to\":\"&amp;\"}\n"
      "{\"t\":3,\"kind\":\"<evil>\"}\n");
  char *html = page(r);
  assert_null(strstr(html, "<img"));
  assert_null(strstr(html, "alert(1)</script>"));
  assert_null(strstr(html, "<b>"));
  assert_null(strstr(html, "<i>"));
  assert_null(strstr(html, "<evil>"));
  assert_null(strstr(html, "\"><svg>"));
  assert_non_null(strstr(html, "&lt;img src=x onerror=alert(1)&gt;"));
  /* the hover data keeps the name, with '<' escaped inside <script> */
  assert_non_null(strstr(html, "\\u003cimg src=x"));
  assert_int_equal(occurrences(html, "<script"), 2);
  assert_int_equal(occurrences(html, "</script>"), 2);
  free(html);
  fb_report_free(r);
}

static void an_empty_log_still_gives_a_page(void **state) {
  (void)state;
  fb_report *r = feed("");
  char *html = page(r);
  assert_non_null(strstr(html, "id=\"empty-log\""));
  assert_non_null(strstr(html, "</html>"));
  free(html);
  fb_report_free(r);
  FILE *quiet = fopen("/dev/null", "w");
  assert_int_equal(fb_report_file("/nonexistent/x.jsonl", NULL, "/dev/null",
                                  quiet), -1);
  fclose(quiet);
}

static void many_series_are_pooled(void **state) {
  (void)state;
  fb_report *r = fb_report_new();
  char line[128];
  for (int i = 0; i < 40; i++) {
    snprintf(line, sizeof line,
             "{\"t\":%d,\"kind\":\"call_end\",\"service\":\"s%d\","
             "\"outcome\":\"success\"}", i, i);
    fb_report_line(r, line, strlen(line), i + 1);
  }
  assert_int_equal(r->nseries, FB_REPORT_SERIES);
  const fb_report_series *o = find(r, "(others)");
  assert_non_null(o);
  assert_int_equal(o->total[FB_OUT_SUCCESS], 40 - FB_REPORT_SERIES + 1);
  fb_report_free(r);
}

static void many_intervals_are_drawn_sampled(void **state) {
  (void)state;
  fb_report *r = fb_report_new();
  char line[160];
  for (int i = 0; i < 5000; i++) {
    snprintf(line, sizeof line,
             "{\"t\":%d,\"kind\":\"state_change\",\"breaker\":1,\"from\":"
             "\"%s\",\"to\":\"%s\"}", i, i % 2 ? "OPEN" : "CLOSED",
             i % 2 ? "CLOSED" : "OPEN");
    fb_report_line(r, line, strlen(line), i + 1);
  }
  assert_int_equal(r->breakers[0].nspans, 5001);
  char *html = page(r);
  assert_non_null(strstr(html, "data-intervals=\"5001\" data-sampled=\"1\""));
  assert_true(occurrences(html, "<rect class=\"band ") <= 490);
  assert_true(strlen(html) < 200000);
  free(html);
  fb_report_free(r);
}


/* Times far apart, far from 0, tiny, or past the range: each either
 * drawn on an axis of a few labels or skipped as out of range, never a
 * hang (bucket_of and svg_axis looped forever on some) or a NaN. */
static void hostile_times_end_and_stay_bounded(void **state) {
  (void)state;
  static const struct {
    const char *text;
    uint64_t bad_time;
  } files[] = {
      /* an axis at 1e11 one second long: t += step stopped advancing */
      {"{\"t\":1e11,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n"
       "{\"t\":1e11,\"kind\":\"run_end\",\"ok\":true,\"summary\":{\"duration\":1}}\n", 0},
      {"{\"t\":1e17,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n"
       "{\"t\":1e17,\"kind\":\"run_end\",\"ok\":true,\"summary\":{\"duration\":1}}\n", 2},
      /* (t - t0) / width infinite: widening never ended */
      {"{\"t\":-1e308,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n"
       "{\"t\":1e308,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n", 2},
      /* the widest range allowed, and a duration past it */
      {"{\"t\":-1e12,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n"
       "{\"t\":1e12,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n"
       "{\"t\":1e12,\"kind\":\"run_end\",\"ok\":true,\"summary\":{\"duration\":1e300}}\n", 0},
      /* subnormal: a 1e-310 s axis drew rates of n / 1e-310 as NaN */
      {"{\"t\":0,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\",\"latency\":0.1}\n"
       "{\"t\":1e-310,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n"
       "{\"t\":5e-324,\"kind\":\"state_change\",\"breaker\":1,\"from\":\"CLOSED\",\"to\":\"OPEN\"}\n", 0},
      {"{\"t\":1.0000001e12,\"kind\":\"register\",\"host\":\"h\",\"port\":1}\n"
       "{\"t\":1e400,\"kind\":\"register\",\"host\":\"h\",\"port\":1}\n"
       "{\"t\":-1e400,\"kind\":\"pick\",\"host\":\"h\",\"port\":1}\n", 3},
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    cpu_limit(30);
    fb_report *r = feed(files[i].text);
    assert_int_equal(r->bad_time.count, files[i].bad_time);
    assert_true(r->nbuckets <= FB_REPORT_BUCKETS);
    assert_true(isfinite(r->width));
    char *html = page(r);
    cpu_limit(0);
    assert_sane_page(html);
    /* 1, 2 or 5 times a power of ten apart: at most 12 grid lines */
    const char *axis = strstr(html, "<g class=\"axis\">");
    if (axis) {
      const char *end = strstr(axis, "</g>");
      int n = 0;
      for (const char *p = axis; (p = strstr(p, "<text")) && p < end; p++)
        n++;
      assert_true(n >= 2 && n <= 12);
    }
    if (files[i].bad_time)
      assert_non_null(strstr(html, "out of range"));
    free(html);
    fb_report_free(r);
  }
}

/* The page at 1e11 labels its ticks so they can be told apart, not ten
 * times "1e+11s": the first whole, the others as offsets from it. */
static void far_times_keep_distinct_axis_labels(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":100000000000,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n"
      "{\"t\":100000000002,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n");
  char *html = page(r);
  assert_non_null(strstr(html, ">100000000000s<"));
  assert_non_null(strstr(html, ">+0.2s<"));
  assert_non_null(strstr(html, ">+2s<"));
  assert_null(strstr(html, "e+11s<"));
  free(html);
  fb_report_free(r);
}

/* Counts saturate instead of wrapping when buckets merge. */
static void merged_counts_saturate(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":0,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\",\"latency\":0.01}\n"
      "{\"t\":0.001,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\",\"latency\":0.01}\n");
  assert_int_equal(r->nbuckets, 2);
  r->series[0].counts[0][FB_OUT_SUCCESS] = UINT32_MAX - 1;
  r->series[0].counts[1][FB_OUT_SUCCESS] = UINT32_MAX - 1;
  int bin = fb_report_bin(0.01);
  r->latency[0][bin] = UINT32_MAX - 1;
  r->latency[1][bin] = UINT32_MAX - 1;
  const char *far = "{\"t\":10,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}";
  fb_report_line(r, far, strlen(far), 3);
  assert_true(r->width > FB_REPORT_W0);
  assert_true(r->series[0].counts[0][FB_OUT_SUCCESS] == UINT32_MAX);
  assert_true(r->latency[0][bin] == UINT32_MAX);
  char *html = page(r);
  assert_sane_page(html);
  free(html);
  fb_report_free(r);
}

/* A line over FB_REPORT_LINE_MAX is skipped unparsed (and not held
 * whole in memory); the lines around it still count. */
static void overlong_lines_are_skipped(void **state) {
  (void)state;
  size_t pad = FB_REPORT_LINE_MAX;
  const char *head = "{\"t\":1,\"kind\":\"call_end\",\"service\":\"";
  const char *tail = "\",\"outcome\":\"success\"}\n";
  const char *ok = "{\"t\":2,\"kind\":\"call_end\",\"service\":\"s\",\"outcome\":\"success\"}\n";
  size_t len = strlen(ok) + strlen(head) + pad + strlen(tail) + strlen(ok);
  char *text = malloc(len + 1), *p = text;
  p += sprintf(p, "%s%s", ok, head);
  memset(p, 'x', pad);
  p += pad;
  sprintf(p, "%s%s", tail, ok);
  fb_report *r = feed(text);
  assert_int_equal(r->too_long.count, 1);
  assert_int_equal(r->too_long.first[0], 2);
  assert_int_equal(r->calls, 2);
  assert_int_equal(r->lines, 3);
  char *html = page(r);
  assert_sane_page(html);
  assert_non_null(strstr(html, "Skipped 1 line longer than"));
  free(html);
  fb_report_free(r);
  /* the same through fb_report_buffer, without a FILE */
  r = fb_report_new();
  fb_report_buffer(r, text, strlen(text));
  assert_int_equal(r->too_long.count, 1);
  assert_int_equal(r->calls, 2);
  assert_int_equal(r->lines, 3);
  fb_report_free(r);
  free(text);
}

/* fb_report_buffer numbers lines as fb_report_read does. */
static void a_buffer_reads_like_a_file(void **state) {
  (void)state;
  const char *text = "{\"t\":0,\"kind\":\"run_start\",\"seed\":1}\n\nnot json\n"
                     "{\"t\":1,\"kind\":\"pick\",\"host\":\"h\",\"port\":1}";
  fb_report *a = feed(text), *b = fb_report_new();
  fb_report_buffer(b, text, strlen(text));
  assert_int_equal(a->lines, 4);
  assert_int_equal(b->lines, 4);
  assert_int_equal(b->bad_json.count, 1);
  assert_int_equal(b->bad_json.first[0], a->bad_json.first[0]);
  assert_int_equal(b->picks, 1);
  fb_report_buffer(b, "", 0);
  assert_int_equal(b->lines, 4);
  fb_report_free(a);
  fb_report_free(b);
}

/* A run_start with a huge script name and 100,000 arguments: cut to the
 * limits, said so on the page, and read in linear time. */
static void header_strings_and_arguments_are_cut(void **state) {
  (void)state;
  size_t nargs = 100000, len = 64 + 2 * FB_REPORT_STR_MAX + nargs * 4 + 16;
  char *line = malloc(len), *p = line;
  p += sprintf(p, "{\"t\":0,\"kind\":\"run_start\",\"script\":\"");
  for (int i = 0; i < 2 * FB_REPORT_STR_MAX; i++)
    *p++ = '\'';
  p += sprintf(p, "\",\"args\":[");
  for (size_t i = 0; i < nargs; i++)
    p += sprintf(p, "%s\"'\"", i ? "," : "");
  p += sprintf(p, "]}");
  cpu_limit(30);
  fb_report *r = fb_report_new();
  fb_report_line(r, line, (size_t)(p - line), 1);
  cpu_limit(0);
  assert_int_equal(r->events, 1);
  assert_int_equal(strlen(r->script), FB_REPORT_STR_MAX);
  assert_int_equal(r->nargs, FB_REPORT_ARGS);
  assert_true(r->cut);
  char *html = page(r);
  assert_sane_page(html);
  assert_true(strlen(html) < 500000);
  assert_non_null(strstr(html, "id=\"replay-cut\""));
  free(html);
  fb_report_free(r);
  free(line);
}

/* Deep nesting is cJSON's to refuse (its limit: 1000), not a crash. */
static void deep_json_is_a_bad_line(void **state) {
  (void)state;
  size_t depth = 200000;
  char *line = malloc(2 * depth);
  memset(line, '[', depth);
  memset(line + depth, ']', depth);
  fb_report *r = fb_report_new();
  fb_report_line(r, line, 2 * depth, 1);
  assert_int_equal(r->bad_json.count, 1);
  fb_report_free(r);
  free(line);
}

/* CPU seconds to read n register events for n distinct instances. */
static double read_instances(int n, fb_report **out) {
  fb_report *r = fb_report_new();
  char line[160];
  clock_t c0 = clock();
  for (int i = 0; i < n; i++) {
    int len = snprintf(line, sizeof line,
                       "{\"t\":%d,\"kind\":\"register\",\"service\":\"api\","
                       "\"host\":\"10.%d.%d.%d\",\"port\":80}",
                       i, i >> 16, (i >> 8) & 255, i & 255);
    fb_report_line(r, line, (size_t)len, i + 1);
  }
  double s = (double)(clock() - c0) / CLOCKS_PER_SEC;
  if (out)
    *out = r;
  else
    fb_report_free(r);
  return s;
}

/* Tracks are found by hash: twice the instances take about twice the
 * time (a linear search took four times: 3.3 s for 40,000). The page
 * draws FB_REPORT_ROWS of them and says how many it left out. */
static void many_instances_are_linear_and_drawn_bounded(void **state) {
  (void)state;
  fb_report *r;
  cpu_limit(120);
  double small = read_instances(20000, NULL);
  double big = read_instances(40000, &r);
  cpu_limit(0);
  assert_int_equal(r->nmembers, 40000);
  assert_true(big < 3 * small + 0.05);
  /* every instance stays its own track */
  assert_string_equal(r->members[39999].name, "api 10.0.156.63:80");
  assert_int_equal(r->members[39999].nspans, 1);
  char *html = page(r);
  assert_sane_page(html);
  assert_int_equal(occurrences(html, "<g class=\"member\""), FB_REPORT_ROWS);
  assert_non_null(strstr(html, "id=\"members-left-out\" data-count=\"39900\""));
  assert_true(strlen(html) < 2000000);
  free(html);
  fb_report_free(r);
}

/* The worst file the limits allow: every series, row and interval
 * drawn, each name and state as long as kept and made of characters
 * that escape to the longest entities. The page stays under
 * FB_REPORT_PAGE_MAX and carries no markup from the file. */
static void the_worst_page_is_under_the_bound(void **state) {
  (void)state;
  fb_report *r = fb_report_new();
  /* qq: 260 quotes in JSON (the longest entity, &quot;), past a name's 255 */
  char qq[521], st[2][47], line[2048];
  for (int i = 0; i < 260; i++)
    memcpy(qq + 2 * i, "\\\"", 2);
  qq[520] = 0;
  long n = 0;
  cpu_limit(300);
  /* header strings at their limit, all quotes (16 bytes each quoted) */
  {
    char *big = malloc(FB_REPORT_LINE_MAX), *p = big;
    p += sprintf(p, "{\"t\":0,\"kind\":\"run_start\",\"seed\":\"");
    for (int i = 0; i < FB_REPORT_STR_MAX; i++)
      p += sprintf(p, "'");
    p += sprintf(p, "\",\"script\":\"");
    for (int i = 0; i < FB_REPORT_STR_MAX; i++)
      p += sprintf(p, "'");
    p += sprintf(p, "\",\"args\":[");
    for (int a = 0; a < FB_REPORT_ARGS; a++) {
      p += sprintf(p, "%s\"", a ? "," : "");
      for (int i = 0; i < FB_REPORT_STR_MAX; i++)
        p += sprintf(p, "'");
      p += sprintf(p, "\"");
    }
    p += sprintf(p, "]}");
    fb_report_line(r, big, (size_t)(p - big), ++n);
    p = big;
    p += sprintf(p, "{\"t\":0,\"kind\":\"run_end\",\"ok\":false,\"error\":\"");
    for (int i = 0; i < FB_REPORT_STR_MAX; i++)
      p += sprintf(p, "\\\"");
    p += sprintf(p, "\"}");
    fb_report_line(r, big, (size_t)(p - big), ++n);
    free(big);
  }
  /* two states of 23 quotes, the second ending in '&' */
  for (int i = 0; i < 2; i++) {
    memcpy(st[i], qq, 44);
    snprintf(st[i] + 44, 3, "%s", i ? "&" : "\\\"");
  }
  /* series: every bucket of 2 * FB_REPORT_SERIES series, all outcomes */
  static const char *const outs[] = {"success", "failure", "timeout"};
  for (int s = 0; s < FB_REPORT_SERIES; s++)
    for (int b = 0; b < FB_REPORT_BUCKETS; b++) {
      for (int o = 0; o < 3; o++) {
        int len = snprintf(line, sizeof line,
            "{\"t\":%d,\"kind\":\"call_end\",\"service\":\"%d%s\",\"outcome\":"
            "\"%s\",\"latency\":%g}", b, s, qq, outs[o], 1e-6 * (b * 7 % 500 + 1) * (s + 1));
        fb_report_line(r, line, (size_t)len, ++n);
      }
      int len = snprintf(line, sizeof line,
          "{\"t\":%d,\"kind\":\"reject\",\"breaker\":\"%d%s\"}", b, s, qq);
      fb_report_line(r, line, (size_t)len, ++n);
      len = snprintf(line, sizeof line,
          "{\"t\":%d,\"kind\":\"pick\",\"host\":\"%d%s\",\"port\":1}", b, s, qq);
      fb_report_line(r, line, (size_t)len, ++n);
    }
  /* tracks: more than FB_REPORT_ROWS of each, each flapping */
  for (int k = 0; k < FB_REPORT_ROWS + 20; k++)
    for (int i = 0; i < 650; i++) {
      double t = i * 0.7;
      int len = snprintf(line, sizeof line,
          "{\"t\":%g,\"kind\":\"state_change\",\"breaker\":\"%d%s\","
          "\"from\":\"%s\",\"to\":\"%s\"}", t, k, qq, st[i % 2], st[1 - i % 2]);
      fb_report_line(r, line, (size_t)len, ++n);
      len = snprintf(line, sizeof line,
          "{\"t\":%g,\"kind\":\"%s\",\"host\":\"%d%s\",\"port\":1}", t,
          i % 2 ? "expire" : "register", k, qq);
      fb_report_line(r, line, (size_t)len, ++n);
      len = snprintf(line, sizeof line,
          "{\"t\":%g,\"kind\":\"instance\",\"action\":\"%s\",\"host\":"
          "\"%d%s\",\"port\":1}", t + 0.1, st[1], k, qq);
      fb_report_line(r, line, (size_t)len, ++n);
    }
  for (int i = 0; i < 10; i++) {
    int len = snprintf(line, sizeof line, "{\"t\":1,\"kind\":\"%d%s\"}", i, qq);
    fb_report_line(r, line, (size_t)len, ++n);
  }
  char *html = page(r);
  cpu_limit(0);
  size_t len = strlen(html);
  print_message("# worst page: %zu bytes (bound %u)\n", len, FB_REPORT_PAGE_MAX);
  assert_sane_page(html);
  assert_true(len > FB_REPORT_PAGE_MAX / 8); /* it is a worst case */
  assert_null(strstr(html, "<<"));
  assert_null(strstr(html, ">>"));
  /* an attribute value cut short by a quote from the log would leave ""
   * (the hover JSON after it has \" next to ", rightly) */
  char *data = strstr(html, "<script type=\"application/json\"");
  assert_non_null(data);
  *data = 0;
  assert_null(strstr(html, "\"\""));
  assert_true(occurrences(html, "&quot;") > 100000);
  free(html);
  fb_report_free(r);
}

/* cJSON allocations that fail from the n-th on, counted while live. */
static long alloc_left, alloc_live;
static void *failing_malloc(size_t size) {
  if (alloc_left-- <= 0)
    return NULL;
  void *p = malloc(size);
  alloc_live += p != NULL;
  return p;
}
static void counted_free(void *p) {
  alloc_live -= p != NULL;
  free(p);
}

/* The hover data out of memory at each of its allocations in turn: the
 * page says it failed (-1), is still whole, and nothing is left
 * allocated (a partly built array leaked its item). */
static void hover_data_out_of_memory_fails_cleanly(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":0,\"kind\":\"call_end\",\"service\":\"a\",\"outcome\":\"success\",\"latency\":0.01}\n"
      "{\"t\":0.5,\"kind\":\"call_end\",\"service\":\"b\",\"outcome\":\"failure\",\"latency\":0.2}\n"
      "{\"t\":1,\"kind\":\"call_end\",\"service\":\"a\",\"outcome\":\"timeout\"}\n");
  int failed = 0;
  for (long n = 0;; n++) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cJSON_Hooks hooks = {failing_malloc, counted_free};
    alloc_left = n;
    alloc_live = 0;
    cJSON_InitHooks(&hooks);
    int rc = fb_report_html(r, "oom.jsonl", f);
    cJSON_InitHooks(NULL);
    fclose(f);
    assert_int_equal(alloc_live, 0);
    assert_non_null(strstr(buf, "</html>"));
    free(buf);
    if (rc == 0)
      break;
    failed++;
  }
  assert_true(failed > 10);
  fb_report_free(r);
}

/* fb.sim.policy's request events: what callers saw, rejections by kind
 * (the kinds past FB_REPORT_KINDS - 1 pooled as "other"), apart from the
 * load offered to the backends (call_end); breakers' open time. */
static void requests_rejections_and_open_time(void **state) {
  (void)state;
  fb_report *r = feed(
      "{\"t\":0,\"kind\":\"request\",\"outcome\":\"success\",\"latency\":0.01}\n"
      "{\"t\":1,\"kind\":\"call_end\",\"service\":\"a\",\"outcome\":\"failure\"}\n"
      "{\"t\":1,\"kind\":\"call_end\",\"service\":\"a\",\"outcome\":\"success\"}\n"
      "{\"t\":1,\"kind\":\"request\",\"outcome\":\"failure\",\"latency\":0.02,"
      "\"rejection\":\"timeout\"}\n"
      "{\"t\":2,\"kind\":\"request\",\"outcome\":\"failure\",\"latency\":0,"
      "\"rejection\":\"circuit open\"}\n"
      "{\"t\":2,\"kind\":\"request\",\"outcome\":\"failure\",\"latency\":0}\n"
      "{\"t\":2,\"kind\":\"request\"}\n"
      "{\"t\":3,\"kind\":\"state_change\",\"breaker\":1,\"from\":\"CLOSED\",\"to\":\"OPEN\"}\n"
      "{\"t\":5,\"kind\":\"state_change\",\"breaker\":1,\"from\":\"OPEN\",\"to\":\"HALF_OPEN\"}\n"
      "{\"t\":6,\"kind\":\"state_change\",\"breaker\":1,\"from\":\"HALF_OPEN\",\"to\":\"OPEN\"}\n"
      "{\"t\":9,\"kind\":\"state_change\",\"breaker\":2,\"from\":\"CLOSED\",\"to\":\"FORCED_OPEN\"}\n"
      "{\"t\":10,\"kind\":\"run_end\",\"ok\":true,\"summary\":{\"duration\":10}}\n");
  assert_int_equal(r->requests, 4);
  assert_int_equal(r->bad_event.count, 1); /* no outcome */
  assert_int_equal(r->request_totals[FB_OUT_SUCCESS], 1);
  assert_int_equal(r->request_totals[FB_OUT_TIMEOUT], 1);
  assert_int_equal(r->request_totals[FB_OUT_REJECTED], 1);
  assert_int_equal(r->request_totals[FB_OUT_FAILURE], 1);
  assert_int_equal(r->calls, 2); /* the backend's calls are apart */
  assert_int_equal(r->nreject_kinds, 2);
  assert_string_equal(r->reject_kinds[0], "timeout");
  assert_string_equal(r->reject_kinds[1], "circuit open");
  assert_int_equal(r->reject_counts[1], 1);
  assert_non_null(r->request_latency);
  assert_true(fabs(fb_report_quantile(r->request_latency, 1) - 0.02) < 0.02 * 0.025);
  int calls = 0, requests = 0;
  for (size_t i = 0; i < r->nseries; i++) {
    calls += r->series[i].source == FB_SRC_CALL && !strcmp(r->series[i].name, "a");
    requests += r->series[i].source == FB_SRC_REQUEST &&
                !strcmp(r->series[i].name, FB_REPORT_REQUESTS);
  }
  assert_int_equal(calls, 1);
  assert_int_equal(requests, 1);
  /* breaker 1: open 3..5 and 6..10 (the run's end); breaker 2: 9..10 */
  assert_true(fabs(fb_report_open_time(r) - 7) < 1e-9);
  /* more kinds than slots: the last slot pools them */
  char line[128];
  for (int k = 0; k < FB_REPORT_KINDS + 3; k++) {
    int len = snprintf(line, sizeof line, "{\"t\":3,\"kind\":\"request\","
                       "\"outcome\":\"failure\",\"rejection\":\"kind%d\"}", k);
    fb_report_line(r, line, (size_t)len, 100 + k);
  }
  assert_int_equal(r->nreject_kinds, FB_REPORT_KINDS);
  assert_string_equal(r->reject_kinds[FB_REPORT_KINDS - 1], "other");
  uint64_t pooled = r->reject_counts[FB_REPORT_KINDS - 1];
  assert_int_equal(pooled, (FB_REPORT_KINDS + 3) - (FB_REPORT_KINDS - 3));
  fb_report_free(r);
}

/* The compare page: one section per report, the table's lines kept and
 * escaped, no script. */
static void compare_page_puts_reports_side_by_side(void **state) {
  (void)state;
  fb_report *r[2] = {
      feed("{\"t\":0,\"kind\":\"request\",\"outcome\":\"success\",\"latency\":0.01}\n"),
      feed("{\"t\":0,\"kind\":\"request\",\"outcome\":\"failure\",\"latency\":0.01}\n"
           "{\"t\":50,\"kind\":\"request\",\"outcome\":\"success\",\"latency\":0.01}\n")};
  const char *names[2] = {"a.json", "<b>.lua"};
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_int_equal(fb_report_compare_html(r, names, 2, "x.lua", "row 1\nrow <2>\n", f), 0);
  fclose(f);
  assert_non_null(strstr(buf, "<pre id=\"table\" style=\"overflow-x:auto;font-size:12px\">row 1\nrow &lt;2&gt;\n</pre>"));
  assert_non_null(strstr(buf, "data-policy=\"a.json\""));
  assert_non_null(strstr(buf, "data-policy=\"&lt;b&gt;.lua\""));
  assert_null(strstr(buf, "<b>"));
  assert_null(strstr(buf, "<script"));
  /* one axis: the first report's, 0 s long, is drawn to 50 s too */
  const char *second = strstr(buf, "data-policy=\"&lt;b&gt;.lua\"");
  char *first_part = strndup(buf, (size_t)(second - buf));
  assert_non_null(strstr(first_part, ">50s</text>"));
  free(first_part);
  assert_sane_page(buf);
  free(buf);
  fb_report_free(r[0]);
  fb_report_free(r[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(counts_calls_per_bucket_and_outcome),
      cmocka_unit_test(timeouts_are_counted_apart),
      cmocka_unit_test(buckets_double_and_merge_as_the_run_grows),
      cmocka_unit_test(quantiles_are_within_the_error_bound),
      cmocka_unit_test(breaker_states_become_intervals),
      cmocka_unit_test(membership_becomes_intervals_and_marks),
      cmocka_unit_test(skipped_lines_are_counted_with_their_numbers),
      cmocka_unit_test(strings_from_the_log_are_escaped),
      cmocka_unit_test(an_empty_log_still_gives_a_page),
      cmocka_unit_test(many_series_are_pooled),
      cmocka_unit_test(many_intervals_are_drawn_sampled),
      cmocka_unit_test(hostile_times_end_and_stay_bounded),
      cmocka_unit_test(far_times_keep_distinct_axis_labels),
      cmocka_unit_test(merged_counts_saturate),
      cmocka_unit_test(overlong_lines_are_skipped),
      cmocka_unit_test(a_buffer_reads_like_a_file),
      cmocka_unit_test(header_strings_and_arguments_are_cut),
      cmocka_unit_test(deep_json_is_a_bad_line),
      cmocka_unit_test(many_instances_are_linear_and_drawn_bounded),
      cmocka_unit_test(the_worst_page_is_under_the_bound),
      cmocka_unit_test(hover_data_out_of_memory_fails_cleanly),
      cmocka_unit_test(requests_rejections_and_open_time),
      cmocka_unit_test(compare_page_puts_reports_side_by_side),
  };
  return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
