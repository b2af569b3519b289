/*
 * test_breaker.c -- the breaker's state machine, step by step, on an
 * explicit clock: every mode and option, with the exact state after each
 * call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>

#include "fusebox.h"

static fb_breaker *make(const fb_breaker_config *cfg) {
  fb_breaker *b = fb_breaker_new(cfg);
  assert_non_null(b);
  return b;
}

/* One call at now: acquire, then record outcome with duration. */
static int call(fb_breaker *b, double now, fb_outcome outcome, double dur) {
  int64_t p = fb_breaker_acquire(b, now);
  if (p < 0)
    return (int)p;
  return fb_breaker_record(b, p, outcome, dur, now + dur);
}

#define OK(b, now) call((b), (now), FB_SUCCESS, 0)
#define FAIL(b, now) call((b), (now), FB_FAILURE, 0)
#define STATE(b) fb_breaker_state_of(b)

static void expect_bad(void (*set)(fb_breaker_config *), const char *field) {
  fb_breaker_config cfg;
  const char *got = NULL;
  fb_breaker_config_init(&cfg);
  set(&cfg);
  assert_int_equal(fb_breaker_config_check(&cfg, &got), FB_EINVAL);
  assert_string_equal(got, field);
  assert_null(fb_breaker_new(&cfg));
}

static void bad_threshold(fb_breaker_config *c) { c->failure_threshold = 0; }
static void bad_timeout(fb_breaker_config *c) { c->timeout = NAN; }
static void bad_mode(fb_breaker_config *c) { c->mode = (fb_breaker_mode)7; }
static void bad_count_window(fb_breaker_config *c) {
  c->mode = FB_MODE_COUNT;
  c->window = 2.5;
}
static void bad_minimum(fb_breaker_config *c) {
  c->mode = FB_MODE_COUNT;
  c->window = 5;
  c->minimum_calls = 6;
}
static void bad_rate(fb_breaker_config *c) { c->failure_rate = 0; }
static void bad_slow_rate(fb_breaker_config *c) { c->slow_call_rate = 1.5; }
static void bad_slow_dur(fb_breaker_config *c) { c->slow_call_duration = 0; }
static void bad_mult(fb_breaker_config *c) { c->timeout_multiplier = 0.5; }
static void bad_max(fb_breaker_config *c) { c->timeout_max = 10; }
static void bad_calls(fb_breaker_config *c) { c->half_open_max_calls = -1; }
static void bad_wait(fb_breaker_config *c) { c->half_open_max_wait = -1; }

static void test_config_check_names_the_field(void **state) {
  (void)state;
  fb_breaker_config cfg;
  const char *field = "x";
  fb_breaker_config_init(&cfg);
  assert_int_equal(fb_breaker_config_check(&cfg, &field), 0);
  assert_null(field);
  assert_int_equal(fb_breaker_config_check(NULL, &field), FB_EINVAL);
  assert_string_equal(field, "config");
  expect_bad(bad_threshold, "failure_threshold");
  expect_bad(bad_timeout, "timeout");
  expect_bad(bad_mode, "mode");
  expect_bad(bad_count_window, "window");
  expect_bad(bad_minimum, "minimum_calls");
  expect_bad(bad_rate, "failure_rate");
  expect_bad(bad_slow_rate, "slow_call_rate");
  expect_bad(bad_slow_dur, "slow_call_duration");
  expect_bad(bad_mult, "timeout_multiplier");
  expect_bad(bad_max, "timeout_max");
  expect_bad(bad_calls, "half_open_max_calls");
  expect_bad(bad_wait, "half_open_max_wait");
}

/* The document's breaker: 3 in a row open it, a success resets the count,
 * OPEN lasts strictly more than timeout, 3 successes close HALF_OPEN. */
static void test_consecutive_document_semantics(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 3;
  cfg.timeout = 5;
  fb_breaker *b = make(&cfg);
  FAIL(b, 0);
  FAIL(b, 1);
  OK(b, 2); /* resets the streak */
  FAIL(b, 3);
  FAIL(b, 4);
  assert_int_equal(STATE(b), FB_CLOSED);
  assert_int_equal(FAIL(b, 5), FB_CHANGED);
  assert_int_equal(STATE(b), FB_OPEN);
  assert_int_equal(fb_breaker_acquire(b, 10), FB_EREJECTED); /* == timeout */
  assert_true(fb_breaker_retry_after(b, 10) == 0);
  assert_true(fb_breaker_retry_after(b, 7) == 3);
  assert_int_equal(STATE(b), FB_OPEN);
  assert_int_equal(OK(b, 10.001), FB_RECORDED);
  assert_int_equal(STATE(b), FB_HALF_OPEN);
  OK(b, 11);
  assert_int_equal(STATE(b), FB_HALF_OPEN);
  OK(b, 12);
  assert_int_equal(STATE(b), FB_CLOSED);
  FAIL(b, 13);
  FAIL(b, 14);
  assert_int_equal(STATE(b), FB_CLOSED); /* the count restarted on close */
  fb_breaker_free(b);
}

static void test_half_open_failure_reopens(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 1;
  cfg.timeout = 5;
  fb_breaker *b = make(&cfg);
  FAIL(b, 0);
  OK(b, 6);
  assert_int_equal(STATE(b), FB_HALF_OPEN);
  FAIL(b, 7);
  assert_int_equal(STATE(b), FB_OPEN);
  assert_int_equal(fb_breaker_acquire(b, 12), FB_EREJECTED); /* from 7 */
  assert_true(fb_breaker_acquire(b, 12.5) >= 0);
  assert_int_equal(fb_breaker_transitions(b), 4);
  fb_breaker_state from, to;
  double at;
  assert_int_equal(fb_breaker_transition(b, 2, &from, &to, &at), 0);
  assert_int_equal(from, FB_HALF_OPEN);
  assert_int_equal(to, FB_OPEN);
  assert_true(at == 7);
  assert_int_equal(fb_breaker_transition(b, 4, &from, &to, &at), FB_ENOENT);
  fb_breaker_free(b);
}

static fb_breaker *count_breaker(int window, int minimum, double rate) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_COUNT;
  cfg.window = window;
  cfg.minimum_calls = minimum;
  cfg.failure_rate = rate;
  cfg.timeout = 10;
  return make(&cfg);
}

static void test_count_waits_for_minimum_calls(void **state) {
  (void)state;
  fb_breaker *b = count_breaker(10, 4, 0.5);
  fb_breaker_metrics m;
  FAIL(b, 0);
  FAIL(b, 1);
  FAIL(b, 2);
  assert_int_equal(STATE(b), FB_CLOSED); /* 3/3 failed, but 3 < 4 calls */
  fb_breaker_metrics_get(b, 2, &m);
  assert_true(m.failure_rate == -1);
  assert_int_equal(m.buffered, 3);
  assert_int_equal(m.failed, 3);
  /* a success that trips it: the 4th call brings the rate into judgement
   * and 3/4 >= 0.5 */
  OK(b, 3);
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_metrics_get(b, 3, &m);
  assert_true(m.failure_rate == 0.75);
  fb_breaker_free(b);
}

static void test_count_rate_boundary_is_inclusive(void **state) {
  (void)state;
  fb_breaker *b = count_breaker(10, 10, 0.3);
  for (int i = 0; i < 7; i++)
    OK(b, i);
  FAIL(b, 7);
  FAIL(b, 8);
  assert_int_equal(STATE(b), FB_CLOSED);
  FAIL(b, 9); /* 3/10 >= 0.3 exactly */
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_free(b);
}

static void test_count_window_forgets_oldest(void **state) {
  (void)state;
  fb_breaker *b = count_breaker(4, 4, 0.75);
  FAIL(b, 0);
  FAIL(b, 1);
  OK(b, 2);
  OK(b, 3); /* F F S S: 0.5 */
  OK(b, 4); /* F S S S: the first failure left */
  OK(b, 5); /* S S S S */
  FAIL(b, 6);
  FAIL(b, 7); /* S S F F: 0.5 */
  assert_int_equal(STATE(b), FB_CLOSED);
  FAIL(b, 8); /* S F F F: 0.75 */
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_free(b);
}

static void test_count_slow_calls(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_COUNT;
  cfg.window = 4;
  cfg.minimum_calls = 4;
  cfg.slow_call_duration = 1;
  cfg.slow_call_rate = 0.5;
  cfg.timeout = 10;
  fb_breaker *b = make(&cfg);
  call(b, 0, FB_SUCCESS, 1); /* exactly the limit: not slow */
  call(b, 1, FB_SUCCESS, 2);
  call(b, 3, FB_SUCCESS, 0.5);
  assert_int_equal(STATE(b), FB_CLOSED);
  call(b, 4, FB_SUCCESS, 1.5); /* 2 slow of 4 */
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 5.5, &m);
  assert_true(m.slow_rate == 0.5);
  assert_true(m.failure_rate == 0);
  assert_int_equal(m.slow_calls, 2);
  /* in HALF_OPEN a slow probe reopens, like a failure */
  call(b, 16, FB_SUCCESS, 3);
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_free(b);
}

static fb_breaker *time_breaker(double window, int minimum, double rate) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_TIME;
  cfg.window = window;
  cfg.minimum_calls = minimum;
  cfg.failure_rate = rate;
  cfg.timeout = 10;
  return make(&cfg);
}

static void test_time_buckets_slide_out(void **state) {
  (void)state;
  fb_breaker *b = time_breaker(10, 2, 0.6); /* 10 buckets of 1 s */
  fb_breaker_metrics m;
  FAIL(b, 0.5);
  for (int i = 0; i < 3; i++)
    OK(b, 1.5);
  fb_breaker_metrics_get(b, 9.9, &m);
  assert_int_equal(m.buffered, 4);
  assert_true(m.failure_rate == 0.25);
  fb_breaker_metrics_get(b, 10.0, &m); /* bucket [0, 1) slid out */
  assert_int_equal(m.buffered, 3);
  assert_int_equal(m.failed, 0);
  fb_breaker_metrics_get(b, 11.0, &m); /* and [1, 2) */
  assert_int_equal(m.buffered, 0);
  assert_true(m.failure_rate == -1);
  FAIL(b, 11.2);
  assert_int_equal(STATE(b), FB_CLOSED); /* 1 call < minimum 2 */
  FAIL(b, 30); /* 11.2 is long gone: again 1 call */
  assert_int_equal(STATE(b), FB_CLOSED);
  FAIL(b, 30.9);
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_free(b);
}

/* Old successes sliding out raise the rate: the next call, even a
 * success, judges it. */
static void test_time_slide_raises_rate(void **state) {
  (void)state;
  fb_breaker *b = time_breaker(10, 4, 0.5);
  for (int i = 0; i < 10; i++)
    OK(b, 0);
  for (int i = 0; i < 4; i++)
    FAIL(b, 5);
  for (int i = 0; i < 3; i++)
    OK(b, 5);
  assert_int_equal(STATE(b), FB_CLOSED); /* 4/17 */
  OK(b, 10); /* the t=0 bucket left: 4/8 */
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_free(b);
}

static void test_time_bucket_width(void **state) {
  (void)state;
  fb_breaker *b = time_breaker(2, 1, 1); /* min 10 buckets: 0.2 s each */
  fb_breaker_metrics m;
  OK(b, 0.1);
  fb_breaker_metrics_get(b, 1.9, &m);
  assert_int_equal(m.buffered, 1);
  fb_breaker_metrics_get(b, 2.05, &m);
  assert_int_equal(m.buffered, 0);
  fb_breaker_free(b);
}

static void test_timeout_grows_and_resets(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 1;
  cfg.success_threshold = 1;
  cfg.timeout = 10;
  cfg.timeout_multiplier = 2;
  cfg.timeout_max = 25;
  fb_breaker *b = make(&cfg);
  FAIL(b, 0); /* OPEN for 10 */
  assert_true(fb_breaker_retry_after(b, 0) == 10);
  FAIL(b, 11); /* probe fails: OPEN for 20 */
  assert_int_equal(STATE(b), FB_OPEN);
  assert_true(fb_breaker_retry_after(b, 11) == 20);
  assert_int_equal(fb_breaker_acquire(b, 31), FB_EREJECTED);
  FAIL(b, 31.5); /* OPEN for 40, capped at 25 */
  assert_true(fb_breaker_retry_after(b, 31.5) == 25);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 31.5, &m);
  assert_true(m.open_timeout == 25);
  OK(b, 57); /* closes */
  assert_int_equal(STATE(b), FB_CLOSED);
  FAIL(b, 58); /* opens from CLOSED: back to 10 */
  assert_true(fb_breaker_retry_after(b, 58) == 10);
  fb_breaker_free(b);
}

static fb_breaker *probe_breaker(int max_calls, double max_wait) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 1;
  cfg.success_threshold = 2;
  cfg.timeout = 10;
  cfg.half_open_max_calls = max_calls;
  cfg.half_open_max_wait = max_wait;
  fb_breaker *b = make(&cfg);
  FAIL(b, 0);
  return b;
}

static void test_half_open_probe_limit(void **state) {
  (void)state;
  fb_breaker *b = probe_breaker(2, INFINITY);
  int64_t p1 = fb_breaker_acquire(b, 11);
  int64_t p2 = fb_breaker_acquire(b, 11);
  assert_true(p1 >= 0 && p2 >= 0);
  assert_int_equal(STATE(b), FB_HALF_OPEN);
  assert_int_equal(fb_breaker_acquire(b, 11), FB_EREJECTED);
  assert_int_equal(fb_breaker_record(b, p1, FB_IGNORED, 0, 12), FB_RECORDED);
  int64_t p3 = fb_breaker_acquire(b, 12); /* the ignored one freed a slot */
  assert_true(p3 >= 0);
  assert_int_equal(fb_breaker_acquire(b, 12), FB_EREJECTED);
  assert_int_equal(fb_breaker_record(b, p2, FB_SUCCESS, 0, 13), FB_RECORDED);
  assert_int_equal(STATE(b), FB_HALF_OPEN); /* ignored: no success */
  assert_int_equal(fb_breaker_record(b, p3, FB_SUCCESS, 0, 13), FB_CHANGED);
  assert_int_equal(STATE(b), FB_CLOSED);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 13, &m);
  assert_int_equal(m.rejected, 2);
  assert_int_equal(m.ignored, 1);
  fb_breaker_free(b);
}

/* Permits dropped as stale held slots of a dead state: the next
 * HALF_OPEN starts with all its slots free. */
static void test_stale_probes_do_not_leak_slots(void **state) {
  (void)state;
  fb_breaker *b = probe_breaker(2, INFINITY);
  int64_t p1 = fb_breaker_acquire(b, 11);
  int64_t p2 = fb_breaker_acquire(b, 11);
  assert_int_equal(fb_breaker_record(b, p1, FB_FAILURE, 0, 12), FB_CHANGED);
  assert_int_equal(STATE(b), FB_OPEN);
  assert_int_equal(fb_breaker_record(b, p2, FB_FAILURE, 0, 12), FB_ESTALE);
  assert_true(fb_breaker_acquire(b, 22.5) >= 0);
  assert_true(fb_breaker_acquire(b, 22.5) >= 0);
  assert_int_equal(fb_breaker_acquire(b, 22.5), FB_EREJECTED);
  fb_breaker_free(b);
}

static void test_stuck_half_open_reopens(void **state) {
  (void)state;
  fb_breaker *b = probe_breaker(1, 5);
  int64_t stuck = fb_breaker_acquire(b, 11); /* never reported */
  assert_true(stuck >= 0);
  assert_int_equal(fb_breaker_acquire(b, 16), FB_EREJECTED); /* slot held */
  assert_int_equal(STATE(b), FB_HALF_OPEN); /* 16 - 11 == 5: not yet */
  assert_int_equal(fb_breaker_acquire(b, 16.5), FB_EREJECTED);
  assert_int_equal(STATE(b), FB_OPEN); /* reopened at 16.5 */
  assert_true(fb_breaker_retry_after(b, 16.5) == 10);
  assert_int_equal(fb_breaker_record(b, stuck, FB_SUCCESS, 9, 20), FB_ESTALE);
  assert_true(fb_breaker_acquire(b, 27) >= 0); /* a fresh slot */
  assert_int_equal(STATE(b), FB_HALF_OPEN);
  fb_breaker_free(b);
}

static void test_ignored_outcomes_count_nowhere(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 2;
  fb_breaker *b = make(&cfg);
  FAIL(b, 0);
  call(b, 1, FB_IGNORED, 0); /* does not reset the streak */
  FAIL(b, 2);
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_free(b);

  b = count_breaker(4, 2, 0.5);
  FAIL(b, 0);
  call(b, 1, FB_IGNORED, 100);
  call(b, 2, FB_IGNORED, 0);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 2, &m);
  assert_int_equal(m.buffered, 1);
  assert_int_equal(m.calls, 3);
  assert_int_equal(m.ignored, 2);
  assert_int_equal(m.slow_calls, 0);
  assert_int_equal(STATE(b), FB_CLOSED);
  fb_breaker_free(b);
}

/* A timeout opens the breaker as a failure does, in every mode and in
 * HALF_OPEN, and is counted apart from failures (issue 14). */
static void test_timeouts_fail_and_count_apart(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 3;
  cfg.timeout = 5;
  fb_breaker *b = make(&cfg);
  FAIL(b, 0);
  call(b, 1, FB_TIMEOUT, 1);
  assert_int_equal(STATE(b), FB_CLOSED);
  call(b, 2, FB_TIMEOUT, 1); /* three in a row: one failure, two timeouts */
  assert_int_equal(STATE(b), FB_OPEN);
  int64_t probe = fb_breaker_acquire(b, 9);
  assert_int_equal(STATE(b), FB_HALF_OPEN);
  assert_int_equal(fb_breaker_record(b, probe, FB_TIMEOUT, 1, 10), FB_CHANGED);
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 10, &m);
  assert_int_equal(m.calls, 4);
  assert_int_equal(m.successes, 0);
  assert_int_equal(m.failures, 1);
  assert_int_equal(m.timeouts, 3);
  fb_breaker_free(b);

  b = count_breaker(4, 2, 0.5);
  call(b, 0, FB_SUCCESS, 0);
  call(b, 1, FB_TIMEOUT, 0); /* 1 of 2 failed: the rate is reached */
  fb_breaker_metrics_get(b, 1, &m);
  assert_int_equal(m.failed, 1);
  assert_int_equal(m.timeouts, 1);
  assert_int_equal(m.failures, 0);
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_free(b);
}

static void test_forced_states(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_COUNT;
  cfg.window = 4;
  cfg.minimum_calls = 2;
  fb_breaker *b = make(&cfg);
  int64_t before = fb_breaker_acquire(b, 0);
  fb_breaker_force_open(b, 1);
  assert_int_equal(STATE(b), FB_FORCED_OPEN);
  assert_int_equal(fb_breaker_acquire(b, 1e9), FB_EREJECTED); /* no timeout */
  assert_true(isinf(fb_breaker_retry_after(b, 1)));
  assert_int_equal(fb_breaker_record(b, before, FB_FAILURE, 0, 2), FB_ESTALE);

  fb_breaker_disable(b, 3);
  assert_int_equal(STATE(b), FB_DISABLED);
  for (int i = 0; i < 4; i++)
    assert_int_equal(FAIL(b, 4 + i), FB_RECORDED);
  assert_int_equal(STATE(b), FB_DISABLED); /* measured, never judged */
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 8, &m);
  assert_true(m.failure_rate == 1);
  assert_int_equal(m.buffered, 4);

  int64_t old = fb_breaker_acquire(b, 8);
  fb_breaker_reset(b, 9);
  assert_int_equal(STATE(b), FB_CLOSED);
  assert_int_equal(fb_breaker_record(b, old, FB_FAILURE, 0, 9), FB_ESTALE);
  fb_breaker_metrics_get(b, 9, &m);
  assert_int_equal(m.buffered, 0);
  assert_int_equal(m.failures, 4); /* lifetime totals stay */
  assert_int_equal(m.stale, 2);
  assert_int_equal(fb_breaker_transitions(b), 3);

  /* reset of a CLOSED breaker clears it without a state change */
  FAIL(b, 10);
  old = fb_breaker_acquire(b, 10);
  fb_breaker_reset(b, 11);
  assert_int_equal(fb_breaker_transitions(b), 3);
  assert_int_equal(fb_breaker_record(b, old, FB_FAILURE, 0, 11), FB_ESTALE);
  FAIL(b, 12);
  assert_int_equal(STATE(b), FB_CLOSED); /* the failure before the reset is gone */
  fb_breaker_free(b);
}

static void test_late_results_are_dropped(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 2;
  cfg.timeout = 5;
  cfg.success_threshold = 1;
  fb_breaker *b = make(&cfg);
  int64_t slow1 = fb_breaker_acquire(b, 0);
  int64_t slow2 = fb_breaker_acquire(b, 0);
  FAIL(b, 1);
  FAIL(b, 2);
  assert_int_equal(STATE(b), FB_OPEN);
  /* a success from CLOSED arriving while OPEN does not count */
  assert_int_equal(fb_breaker_record(b, slow1, FB_SUCCESS, 3, 3), FB_ESTALE);
  assert_int_equal(STATE(b), FB_OPEN);
  OK(b, 8); /* HALF_OPEN, then CLOSED */
  assert_int_equal(STATE(b), FB_CLOSED);
  /* nor a failure from the earlier CLOSED in the new one */
  assert_int_equal(fb_breaker_record(b, slow2, FB_FAILURE, 9, 9), FB_ESTALE);
  FAIL(b, 10);
  assert_int_equal(STATE(b), FB_CLOSED); /* one failure so far, not two */
  assert_int_equal(fb_breaker_record(b, 1000, FB_SUCCESS, 0, 11), FB_EINVAL);
  assert_int_equal(fb_breaker_record(b, -1, FB_SUCCESS, 0, 11), FB_EINVAL);
  int64_t p = fb_breaker_acquire(b, 11);
  assert_int_equal(fb_breaker_record(b, p, (fb_outcome)9, 0, 11), FB_EINVAL);
  fb_breaker_free(b);
}

/* A permit counts once (issue 13): replaying one cannot open a breaker,
 * exactly for the newest permits and by count for older ones. */
static void test_permits_count_once(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 3;
  cfg.success_threshold = 2;
  cfg.timeout = 1;
  fb_breaker *b = make(&cfg);
  int64_t p = fb_breaker_acquire(b, 0);
  assert_int_equal(fb_breaker_record(b, p, FB_FAILURE, 0, 0), FB_RECORDED);
  assert_int_equal(fb_breaker_record(b, p, FB_FAILURE, 0, 0), FB_ESTALE);
  assert_int_equal(fb_breaker_record(b, p, FB_FAILURE, 0, 0), FB_ESTALE);
  assert_int_equal(STATE(b), FB_CLOSED);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 0, &m);
  assert_int_equal(m.calls, 1);
  assert_int_equal(m.stale, 2);
  /* a replay among other permits out takes none of theirs */
  int64_t q[10];
  for (int i = 0; i < 10; i++)
    q[i] = fb_breaker_acquire(b, 0);
  assert_int_equal(fb_breaker_record(b, q[5], FB_SUCCESS, 0, 0), FB_RECORDED);
  assert_int_equal(fb_breaker_record(b, q[5], FB_SUCCESS, 0, 0), FB_ESTALE);
  for (int i = 0; i < 10; i++)
    if (i != 5)
      assert_int_equal(fb_breaker_record(b, q[i], FB_SUCCESS, 0, 0),
                       FB_RECORDED);
  assert_int_equal(fb_breaker_record(b, q[9] + 1, FB_SUCCESS, 0, 0),
                   FB_EINVAL); /* not issued yet */
  /* a HALF_OPEN probe's success, replayed, does not close it */
  for (int i = 0; i < 3; i++)
    FAIL(b, 1);
  assert_int_equal(STATE(b), FB_OPEN);
  p = fb_breaker_acquire(b, 3);
  assert_int_equal(STATE(b), FB_HALF_OPEN);
  assert_int_equal(fb_breaker_record(b, p, FB_SUCCESS, 0, 3), FB_RECORDED);
  assert_int_equal(fb_breaker_record(b, p, FB_SUCCESS, 0, 3), FB_ESTALE);
  assert_int_equal(STATE(b), FB_HALF_OPEN);
  fb_breaker_free(b);
}

/* With more permits out than are remembered one by one, replays of old
 * ones are bounded by count: never more results than permits. */
static void test_many_permits_out_count_once(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 1000000;
  fb_breaker *b = make(&cfg);
  enum { OUT = 1000 };
  int64_t p[OUT];
  for (int i = 0; i < OUT; i++)
    p[i] = fb_breaker_acquire(b, 0);
  int accepted = 0;
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < OUT; i++)
      accepted += fb_breaker_record(b, p[i], FB_FAILURE, 0, 0) == FB_RECORDED;
  assert_int_equal(accepted, OUT);
  /* the newest ones were refused exactly: every late replay of them */
  for (int i = OUT - 64; i < OUT; i++)
    assert_int_equal(fb_breaker_record(b, p[i], FB_FAILURE, 0, 0), FB_ESTALE);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 0, &m);
  assert_int_equal(m.calls, OUT);
  assert_int_equal(m.failures, OUT);
  fb_breaker_free(b);
}

static void test_metrics_snapshot(void **state) {
  (void)state;
  fb_breaker *b = count_breaker(10, 2, 0.9);
  fb_breaker_metrics m;
  OK(b, 0);
  FAIL(b, 1);
  OK(b, 2);
  fb_breaker_metrics_get(b, 4, &m);
  assert_int_equal(m.state, FB_CLOSED);
  assert_int_equal(m.buffered, 3);
  assert_int_equal(m.failed, 1);
  assert_true(fabs(m.failure_rate - 1.0 / 3) < 1e-12);
  assert_true(m.slow_rate == 0);
  assert_int_equal(m.calls, 3);
  assert_int_equal(m.successes, 2);
  assert_int_equal(m.failures, 1);
  assert_true(m.time_in_state == 4);
  assert_true(m.open_timeout == 10);
  fb_breaker_free(b);
}

/* now = NaN ("not read"): answered where no time is needed, FB_ENOW and
 * nothing changed anywhere else (issue 15). */
static void test_unread_clock(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 2;
  cfg.timeout = 5;
  cfg.success_threshold = 1;
  fb_breaker *b = make(&cfg);
  int64_t p = fb_breaker_acquire(b, NAN);
  assert_true(p >= 0);
  assert_int_equal(fb_breaker_record(b, p, FB_SUCCESS, NAN, NAN), FB_RECORDED);
  p = fb_breaker_acquire(b, NAN); /* a failure that cannot open it */
  assert_int_equal(fb_breaker_record(b, p, FB_FAILURE, NAN, NAN), FB_RECORDED);
  p = fb_breaker_acquire(b, NAN); /* one that opens it: stamped, so asked */
  assert_int_equal(fb_breaker_record(b, p, FB_FAILURE, NAN, NAN), FB_ENOW);
  assert_int_equal(STATE(b), FB_CLOSED);
  assert_int_equal(fb_breaker_record(b, p, FB_FAILURE, 0, 1), FB_CHANGED);
  assert_int_equal(STATE(b), FB_OPEN);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 1, &m);
  uint64_t rejected = m.rejected;
  /* OPEN tests its timeout: no answer, no rejection counted */
  assert_int_equal(fb_breaker_acquire(b, NAN), FB_ENOW);
  fb_breaker_metrics_get(b, 1, &m);
  assert_int_equal(m.rejected, rejected);
  assert_int_equal(STATE(b), FB_OPEN);
  p = fb_breaker_acquire(b, 7);
  assert_int_equal(STATE(b), FB_HALF_OPEN);
  assert_int_equal(fb_breaker_acquire(b, NAN), FB_ENOW);
  assert_int_equal(fb_breaker_record(b, p, FB_SUCCESS, NAN, NAN), FB_ENOW);
  assert_int_equal(fb_breaker_record(b, p, FB_SUCCESS, 0, 7), FB_CHANGED);
  assert_int_equal(STATE(b), FB_CLOSED);
  fb_breaker_free(b);
  /* a slow-call rule needs every duration; other modes the time */
  fb_breaker_config_init(&cfg);
  cfg.slow_call_duration = 1;
  b = make(&cfg);
  p = fb_breaker_acquire(b, NAN);
  assert_int_equal(fb_breaker_record(b, p, FB_SUCCESS, NAN, NAN), FB_ENOW);
  fb_breaker_free(b);
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_TIME;
  b = make(&cfg);
  p = fb_breaker_acquire(b, NAN);
  assert_int_equal(fb_breaker_record(b, p, FB_SUCCESS, NAN, NAN), FB_ENOW);
  assert_int_equal(fb_breaker_record(b, p, FB_SUCCESS, 0, 1), FB_RECORDED);
  fb_breaker_free(b);
  assert_string_equal(fb_strerror(FB_ENOW), "the time is needed: call again with now");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_check_names_the_field),
      cmocka_unit_test(test_unread_clock),
      cmocka_unit_test(test_consecutive_document_semantics),
      cmocka_unit_test(test_half_open_failure_reopens),
      cmocka_unit_test(test_count_waits_for_minimum_calls),
      cmocka_unit_test(test_count_rate_boundary_is_inclusive),
      cmocka_unit_test(test_count_window_forgets_oldest),
      cmocka_unit_test(test_count_slow_calls),
      cmocka_unit_test(test_time_buckets_slide_out),
      cmocka_unit_test(test_time_slide_raises_rate),
      cmocka_unit_test(test_time_bucket_width),
      cmocka_unit_test(test_timeout_grows_and_resets),
      cmocka_unit_test(test_half_open_probe_limit),
      cmocka_unit_test(test_stale_probes_do_not_leak_slots),
      cmocka_unit_test(test_stuck_half_open_reopens),
      cmocka_unit_test(test_ignored_outcomes_count_nowhere),
      cmocka_unit_test(test_timeouts_fail_and_count_apart),
      cmocka_unit_test(test_forced_states),
      cmocka_unit_test(test_late_results_are_dropped),
      cmocka_unit_test(test_metrics_snapshot),
      cmocka_unit_test(test_permits_count_once),
      cmocka_unit_test(test_many_permits_out_count_once),
  };
  return cmocka_run_group_tests_name("breaker", tests, NULL, NULL);
}
