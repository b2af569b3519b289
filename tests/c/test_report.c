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

/* The page for r as a string (free it). */
static char *page(fb_report *r) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  assert_int_equal(fb_report_html(r, "test.jsonl", f), 0);
  fclose(f);
  return buf;
}

static int occurrences(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
    n++;
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
    for (int b = 0; b < FB_REPORT_BINS; b++)
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(counts_calls_per_bucket_and_outcome),
      cmocka_unit_test(buckets_double_and_merge_as_the_run_grows),
      cmocka_unit_test(quantiles_are_within_the_error_bound),
      cmocka_unit_test(breaker_states_become_intervals),
      cmocka_unit_test(membership_becomes_intervals_and_marks),
      cmocka_unit_test(skipped_lines_are_counted_with_their_numbers),
      cmocka_unit_test(strings_from_the_log_are_escaped),
      cmocka_unit_test(an_empty_log_still_gives_a_page),
      cmocka_unit_test(many_series_are_pooled),
      cmocka_unit_test(many_intervals_are_drawn_sampled),
  };
  return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
