/*
 * test_limiter.c -- the concurrency limiter's update rules as exact
 * vectors: for a latency series, the limit (and estimate) after each
 * sample for AIMD, Gradient2 and Vegas. The expected values were worked
 * out from concurrency-limits' published rules (the top of limiter.c) by
 * a separate program, not by this code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "fusebox.h"

/* One sample: with `inflight` calls started (this one last, so its
 * permit says inflight), it ends with rtt and outcome; the others end
 * ignored, which moves nothing. Returns the limit after it. */
static int sample(fb_limiter *l, int inflight, double rtt,
                  fb_limit_outcome outcome) {
  int64_t permits[FB_LIMITER_MAX > 2000 ? 2000 : FB_LIMITER_MAX];
  assert_true(inflight <= fb_limiter_limit(l) && inflight <= 2000);
  for (int i = 0; i < inflight; i++) {
    permits[i] = fb_limiter_acquire(l);
    assert_int_equal(permits[i], i + 1);
  }
  int rc = fb_limiter_release(l, permits[inflight - 1], outcome, rtt, 1.0);
  assert_true(rc == FB_LIMIT_SAME || rc == FB_LIMIT_CHANGED);
  for (int i = inflight - 2; i >= 0; i--)
    assert_int_equal(fb_limiter_release(l, permits[i], FB_LIMIT_IGNORED, 0, 1),
                     FB_LIMIT_SAME);
  assert_int_equal(fb_limiter_inflight(l), 0);
  return fb_limiter_limit(l);
}

/* Every sample feeds the algorithm at once: the update rules alone. */
static void unwindowed(fb_limiter_config *cfg) {
  cfg->min_window = cfg->max_window = 0;
  cfg->min_rtt_threshold = 0;
}

static double estimate(fb_limiter *l) {
  fb_limiter_metrics m;
  fb_limiter_metrics_get(l, &m);
  return m.estimate;
}

typedef struct step {
  int busy;  /* 1: as many in flight as the limit allows; 0: one */
  double rtt;
  int drop;
  int limit; /* expected after the sample */
  double estimate;
} step;

static void run(fb_limiter *l, const step *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int inflight = s[i].busy ? fb_limiter_limit(l) : 1;
    int got = sample(l, inflight, s[i].rtt,
                     s[i].drop ? FB_LIMIT_DROPPED : FB_LIMIT_SUCCESS);
    if (got != s[i].limit || fabs(estimate(l) - s[i].estimate) > 1e-9)
      fail_msg("step %zu: limit %d (want %d), estimate %.15g (want %.15g)", i,
               got, s[i].limit, estimate(l), s[i].estimate);
  }
}

static void aimd_vector(void **state) {
  (void)state;
  fb_limiter_config cfg;
  fb_limiter_config_init(&cfg, FB_LIMIT_AIMD);
  unwindowed(&cfg);
  cfg.initial_limit = 10;
  cfg.min_limit = 5;
  cfg.max_limit = 12;
  cfg.timeout = 1;
  fb_limiter *l = fb_limiter_new(&cfg);
  assert_non_null(l);
  /* inflight given exactly: AIMD grows while inflight * 2 >= limit */
  static const struct { int inflight; double rtt; int drop, limit; } v[] = {
      {5, 0.1, 0, 11},  /* 10 >= 10: +1 */
      {5, 0.1, 0, 11},  /* 10 < 11: unused, kept */
      {6, 0.1, 0, 12},  /* +1 */
      {6, 0.1, 0, 12},  /* 13 capped at max 12 */
      {1, 2.0, 0, 10},  /* rtt over timeout: floor(12 * 0.9) */
      {1, 0.1, 1, 9},   /* a drop: floor(10 * 0.9) */
      {1, 0.1, 1, 8},   {1, 0.1, 1, 7}, {1, 0.1, 1, 6},
      {1, 0.1, 1, 5},   /* floor(6 * 0.9) = 5 */
      {1, 0.1, 1, 5},   /* floor(4.5) = 4, held at min 5 */
      {3, 0.1, 0, 6},   /* 6 >= 5: +1 */
      {1, 1.0, 0, 6},   /* rtt == timeout is no drop; 2 < 6: kept */
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    int got = sample(l, v[i].inflight, v[i].rtt,
                     v[i].drop ? FB_LIMIT_DROPPED : FB_LIMIT_SUCCESS);
    if (got != v[i].limit)
      fail_msg("step %zu: limit %d, want %d", i, got, v[i].limit);
  }
  fb_limiter_metrics m;
  fb_limiter_metrics_get(l, &m);
  assert_int_equal(m.dropped, 6);
  assert_int_equal(m.successes, 7);
  fb_limiter_free(l);
}

/* Gradient2 with the example: initial 20, min 1, max 1000, the
 * rest Netflix's defaults (smoothing 0.2, queue_size 4, rtt_tolerance
 * 1.5, long_window 600). 12 samples at 100 ms, 12 at 200 ms (latency
 * doubled), 2 app-limited ones, then 4 at 50 ms (the long-term average
 * is over twice the sample: it decays by 0.95). */
static const step gradient2_steps[] = {
    {1, 0.1, 0, 20, 20.8},
    {1, 0.1, 0, 21, 21.6},
    {1, 0.1, 0, 22, 22.400000000000002},
    {1, 0.1, 0, 23, 23.200000000000003},
    {1, 0.1, 0, 24, 24.000000000000004},
    {1, 0.1, 0, 24, 24.800000000000004},
    {1, 0.1, 0, 25, 25.600000000000005},
    {1, 0.1, 0, 26, 26.400000000000006},
    {1, 0.1, 0, 27, 27.200000000000006},
    {1, 0.1, 0, 28, 28.000000000000007},
    {1, 0.1, 0, 28, 28.800000000000008},
    {1, 0.1, 0, 29, 29.60000000000001},
    {1, 0.2, 0, 28, 28.93477537437605},
    {1, 0.2, 0, 28, 28.31687517236879},
    {1, 0.2, 0, 27, 27.743295095038448},
    {1, 0.2, 0, 27, 27.21124870915296},
    {1, 0.2, 0, 26, 26.718150692772404},
    {1, 0.2, 0, 26, 26.26160145545743},
    {1, 0.2, 0, 25, 25.8393730142603},
    {1, 0.2, 0, 25, 25.449396017438737},
    {1, 0.2, 0, 25, 25.08974781759341},
    {1, 0.2, 0, 24, 24.75864150476968},
    {1, 0.2, 0, 24, 24.454415818073965},
    {1, 0.2, 0, 24, 24.175525861615633},
    {0, 0.2, 0, 24, 24.175525861615633}, /* 1 < 24 / 2: app-limited */
    {0, 0.2, 0, 24, 24.175525861615633},
    {1, 0.05, 0, 24, 24.975525861615633},
    {1, 0.05, 0, 25, 25.775525861615634},
    {1, 0.05, 0, 26, 26.575525861615635},
    {1, 0.05, 0, 27, 27.375525861615635},
};

static void gradient2_vector(void **state) {
  (void)state;
  fb_limiter_config cfg;
  fb_limiter_config_init(&cfg, FB_LIMIT_GRADIENT2);
  unwindowed(&cfg);
  cfg.min_limit = 1;
  cfg.max_limit = 1000;
  fb_limiter *l = fb_limiter_new(&cfg);
  assert_non_null(l);
  run(l, gradient2_steps, sizeof gradient2_steps / sizeof gradient2_steps[0]);
  fb_limiter_metrics m;
  fb_limiter_metrics_get(l, &m);
  assert_true(m.rtt == 0.05);
  /* every change is in the history, from -> to, stamped with its now */
  assert_true(fb_limiter_changes(l) > FB_LIMITER_HISTORY);
  int from, to;
  double at;
  uint64_t last = fb_limiter_changes(l) - 1;
  assert_int_equal(fb_limiter_change(l, last, &from, &to, &at), 0);
  assert_int_equal(from, 26);
  assert_int_equal(to, 27);
  assert_true(at == 1.0);
  assert_int_equal(fb_limiter_change(l, last + 1, &from, &to, &at), FB_ENOENT);
  assert_int_equal(fb_limiter_change(l, last - FB_LIMITER_HISTORY, &from, &to,
                                     &at), FB_ENOENT);
  fb_limiter_free(l);
}

/* A drop does not move Gradient2: latency alone does. */
static void gradient2_ignores_drops(void **state) {
  (void)state;
  fb_limiter_config cfg;
  fb_limiter_config_init(&cfg, FB_LIMIT_GRADIENT2); /* 20, 20..200 */
  unwindowed(&cfg);
  fb_limiter *l = fb_limiter_new(&cfg);
  assert_int_equal(sample(l, 20, 0.1, FB_LIMIT_DROPPED), 20);
  assert_true(fabs(estimate(l) - 20.8) < 1e-12);
  fb_limiter_free(l);
}

/* Vegas, probing out of the way (probe_multiplier 1000): the first
 * sample is the no-load RTT; then no queue (+beta*L = +6), a growing
 * queue, the sweet spot (alpha*L <= queue <= beta*L: kept), a queue over
 * beta*L (-L), a drop (-L), an app-limited sample, a small queue (+L), a
 * new lower no-load RTT. L = log10(limit) floored, at least 1. */
static const step vegas_steps[] = {
    {1, 0.1, 0, 20, 20},   {1, 0.1, 0, 26, 26},  {1, 0.1, 0, 32, 32},
    {1, 0.12, 0, 32, 32},  {1, 0.15, 0, 31, 31}, {1, 0.2, 0, 30, 30},
    {1, 0.2, 1, 29, 29},   {0, 0.1, 0, 29, 29},  {1, 0.105, 0, 30, 30},
    {1, 0.08, 0, 30, 30},  {1, 0.1, 0, 29, 29},
};

/* The same with smoothing 0.5: each move is halved. */
static const step vegas_smooth_steps[] = {
    {1, 0.1, 0, 20, 20},    {1, 0.1, 0, 23, 23},    {1, 0.1, 0, 26, 26},
    {1, 0.12, 0, 26, 26},   {1, 0.15, 0, 25, 25.5}, {1, 0.2, 0, 25, 25},
    {1, 0.2, 1, 24, 24.5},  {0, 0.1, 0, 24, 24.5},  {1, 0.105, 0, 25, 25},
    {1, 0.08, 0, 25, 25},   {1, 0.1, 0, 25, 25},
};

static fb_limiter *vegas_limiter(double smoothing) {
  fb_limiter_config cfg;
  fb_limiter_config_init(&cfg, FB_LIMIT_VEGAS);
  unwindowed(&cfg);
  cfg.probe_multiplier = 1000;
  cfg.smoothing = smoothing;
  fb_limiter *l = fb_limiter_new(&cfg);
  assert_non_null(l);
  return l;
}

static void vegas_vector(void **state) {
  (void)state;
  fb_limiter *l = vegas_limiter(1);
  run(l, vegas_steps, sizeof vegas_steps / sizeof vegas_steps[0]);
  fb_limiter_metrics m;
  fb_limiter_metrics_get(l, &m);
  assert_true(m.rtt_noload == 0.08);
  fb_limiter_free(l);
  l = vegas_limiter(0.5);
  run(l, vegas_smooth_steps,
      sizeof vegas_smooth_steps / sizeof vegas_smooth_steps[0]);
  fb_limiter_free(l);
}

/* The no-load RTT is probed again after probe_multiplier * limit *
 * jitter samples, jitter in [0.5, 1): with multiplier 1 and a limit of 20
 * held steady (app-limited samples), the 10th to 20th sample takes a
 * higher RTT as the new no-load one. */
static void vegas_probe(void **state) {
  (void)state;
  fb_limiter_config cfg;
  fb_limiter_config_init(&cfg, FB_LIMIT_VEGAS);
  unwindowed(&cfg);
  cfg.probe_multiplier = 1;
  cfg.seed = 7;
  fb_limiter *l = fb_limiter_new(&cfg);
  fb_limiter_metrics m;
  int probed_at = 0;
  sample(l, 1, 0.1, FB_LIMIT_SUCCESS); /* no-load 0.1 */
  for (int i = 2; i <= 21 && !probed_at; i++) {
    sample(l, 1, 0.3, FB_LIMIT_SUCCESS);
    fb_limiter_metrics_get(l, &m);
    if (m.rtt_noload == 0.3)
      probed_at = i;
  }
  assert_int_equal(fb_limiter_limit(l), 20);
  assert_true(probed_at >= 10 && probed_at <= 20);
  fb_limiter_free(l);
}

/* One windowed sample ending at now with `inflight` started. */
static int wsample(fb_limiter *l, int inflight, double rtt, int drop,
                   double now) {
  int64_t p[64];
  for (int i = 0; i < inflight; i++)
    assert_int_equal(p[i] = fb_limiter_acquire(l), i + 1);
  fb_limiter_release(l, p[inflight - 1],
                     drop ? FB_LIMIT_DROPPED : FB_LIMIT_SUCCESS, rtt, now);
  for (int i = inflight - 2; i >= 0; i--)
    fb_limiter_release(l, p[i], FB_LIMIT_IGNORED, 0, now);
  return fb_limiter_limit(l);
}

/* The default window (WindowedLimit's: 1 s, 10 samples, RTTs from 100
 * us): the first sample closes the first window, which never counts; the
 * next window closes with the first sample after 1 s, and feeds AIMD one
 * sample: a drop anywhere in it halves nothing but backs off once, and
 * its most calls in flight decide growth. */
static void window(void **state) {
  (void)state;
  fb_limiter_config cfg;
  fb_limiter_config_init(&cfg, FB_LIMIT_AIMD);
  cfg.initial_limit = 10;
  cfg.min_limit = 1;
  fb_limiter *l = fb_limiter_new(&cfg);
  assert_int_equal(wsample(l, 1, 0.01, 0, 0.5), 10); /* closes window 0 */
  /* window 1 ends at 1.5: 10 samples, one with 5 in flight, one drop */
  for (int i = 0; i < 9; i++)
    assert_int_equal(
        wsample(l, i == 3 ? 5 : 1, 0.01, i == 5, 0.5 + 0.1 * (i + 1)), 10);
  assert_int_equal(wsample(l, 1, 0.00005, 0, 1.5), 10); /* under 100 us */
  assert_int_equal(wsample(l, 1, 0.01, 0, 1.5), 10);    /* not after 1.5 */
  assert_int_equal(wsample(l, 1, 0.01, 0, 1.55), 9);    /* closes it: drop */
  /* window 2 (to 2.55): 10 samples, 5 in flight at most, no drop: +1 */
  for (int i = 0; i < 9; i++)
    assert_int_equal(wsample(l, 5, 0.01, 0, 1.6 + 0.1 * i), 9);
  assert_int_equal(wsample(l, 5, 0.01, 0, 2.6), 10);
  /* window 3: 3 samples only, drops among them: not counted */
  wsample(l, 1, 0.01, 1, 3.0);
  wsample(l, 1, 0.01, 1, 3.3);
  assert_int_equal(wsample(l, 1, 0.01, 1, 3.7), 10);
  /* min_window 0.1, max_window 5: the window is twice its least RTT */
  fb_limiter_free(l);
  fb_limiter_config_init(&cfg, FB_LIMIT_AIMD);
  cfg.initial_limit = 10;
  cfg.min_limit = 1;
  cfg.min_window = 0.1;
  cfg.max_window = 5;
  cfg.window_size = 1;
  cfg.timeout = 1;
  l = fb_limiter_new(&cfg);
  assert_int_equal(wsample(l, 1, 2, 0, 10.0), 9); /* rtt 2 > timeout */
  /* the window now ends at 10 + 2 * 2 = 14 */
  assert_int_equal(wsample(l, 1, 2, 0, 13.9), 9);
  assert_int_equal(wsample(l, 1, 0.01, 0, 14.1), 8); /* the mean, 1.005 */
  assert_int_equal(fb_limiter_release(l, 1, FB_LIMIT_SUCCESS, 0.1, NAN),
                   FB_EINVAL);
  fb_limiter_free(l);
}

/* acquire admits while in flight < limit; the rest are rejected and
 * counted; a release frees a slot at once. */
static void acquire_release(void **state) {
  (void)state;
  fb_limiter_config cfg;
  fb_limiter_config_init(&cfg, FB_LIMIT_AIMD);
  cfg.initial_limit = cfg.min_limit = cfg.max_limit = 3;
  fb_limiter *l = fb_limiter_new(&cfg);
  assert_int_equal(fb_limiter_acquire(l), 1);
  assert_int_equal(fb_limiter_acquire(l), 2);
  assert_int_equal(fb_limiter_acquire(l), 3);
  assert_int_equal(fb_limiter_acquire(l), FB_ELIMIT);
  assert_int_equal(fb_limiter_acquire(l), FB_ELIMIT);
  assert_int_equal(fb_limiter_release(l, 2, FB_LIMIT_SUCCESS, 0.1, 1), 0);
  assert_int_equal(fb_limiter_acquire(l), 3);
  fb_limiter_metrics m;
  fb_limiter_metrics_get(l, &m);
  assert_int_equal(m.rejected, 2);
  assert_int_equal(m.inflight, 3);
  assert_string_equal(fb_strerror(FB_ELIMIT),
                      "concurrency limit reached: as many calls in flight as "
                      "the limit allows");
  fb_limiter_free(l);
}

/* Bad releases change nothing and say FB_EINVAL. */
static void bad_release(void **state) {
  (void)state;
  fb_limiter *l = fb_limiter_new(NULL);
  assert_int_equal(fb_limiter_release(l, 1, FB_LIMIT_SUCCESS, 0.1, 0),
                   FB_EINVAL); /* nothing in flight */
  assert_int_equal(fb_limiter_acquire(l), 1);
  assert_int_equal(fb_limiter_release(l, 1, FB_LIMIT_SUCCESS, NAN, 0),
                   FB_EINVAL);
  assert_int_equal(fb_limiter_release(l, 1, FB_LIMIT_SUCCESS, -1, 0),
                   FB_EINVAL);
  assert_int_equal(fb_limiter_release(l, 0, FB_LIMIT_SUCCESS, 0.1, 0),
                   FB_EINVAL);
  assert_int_equal(fb_limiter_release(l, 201, FB_LIMIT_SUCCESS, 0.1, 0),
                   FB_EINVAL);
  assert_int_equal(fb_limiter_release(l, 1, (fb_limit_outcome)3, 0.1, 0),
                   FB_EINVAL);
  assert_int_equal(fb_limiter_inflight(l), 1);
  fb_limiter_metrics m;
  fb_limiter_metrics_get(l, &m);
  assert_int_equal(m.successes + m.dropped + m.ignored, 0);
  /* an RTT of 0 is a sample Gradient2 skips (it divides by it) */
  assert_int_equal(fb_limiter_release(l, 1, FB_LIMIT_SUCCESS, 0, 0), 0);
  assert_true(estimate(l) == 20);
  assert_int_equal(fb_limiter_acquire(NULL), FB_EINVAL);
  assert_int_equal(fb_limiter_release(NULL, 1, FB_LIMIT_SUCCESS, 0, 0),
                   FB_EINVAL);
  fb_limiter_free(l);
}

static void expect_bad(void (*set)(fb_limiter_config *), const char *field) {
  fb_limiter_config cfg;
  const char *got = NULL;
  fb_limiter_config_init(&cfg, FB_LIMIT_GRADIENT2);
  set(&cfg);
  assert_int_equal(fb_limiter_config_check(&cfg, &got), FB_EINVAL);
  assert_string_equal(got, field);
  assert_null(fb_limiter_new(&cfg));
}

static void bad_magic(fb_limiter_config *c) { c->magic = 0; }
static void bad_algorithm(fb_limiter_config *c) {
  c->algorithm = (fb_limit_algorithm)3;
}
static void bad_max(fb_limiter_config *c) { c->max_limit = FB_LIMITER_MAX + 1; }
static void bad_min(fb_limiter_config *c) { c->min_limit = 0; }
static void min_over_max(fb_limiter_config *c) { c->min_limit = 201; }
static void initial_low(fb_limiter_config *c) { c->initial_limit = 19; }
static void initial_high(fb_limiter_config *c) { c->initial_limit = 201; }
static void bad_smoothing(fb_limiter_config *c) { c->smoothing = 0; }
static void nan_smoothing(fb_limiter_config *c) { c->smoothing = NAN; }
static void bad_queue(fb_limiter_config *c) { c->queue_size = -1; }
static void bad_tolerance(fb_limiter_config *c) { c->rtt_tolerance = 0.9; }
static void bad_window(fb_limiter_config *c) { c->long_window = 0; }
static void bad_backoff(fb_limiter_config *c) { c->backoff_ratio = 1; }
static void low_backoff(fb_limiter_config *c) { c->backoff_ratio = 0.4; }
static void bad_timeout(fb_limiter_config *c) { c->timeout = 0; }
static void bad_alpha(fb_limiter_config *c) { c->alpha = 0; }
static void bad_beta(fb_limiter_config *c) { c->beta = 2; }
static void bad_probe(fb_limiter_config *c) { c->probe_multiplier = 0; }
static void bad_min_window(fb_limiter_config *c) { c->min_window = -1; }
static void bad_max_window(fb_limiter_config *c) { c->max_window = 0.5; }
static void bad_window_size(fb_limiter_config *c) { c->window_size = 0; }
static void bad_threshold(fb_limiter_config *c) { c->min_rtt_threshold = NAN; }

static void config_check(void **state) {
  (void)state;
  fb_limiter_config cfg;
  const char *got = "x";
  fb_limiter_config_init(&cfg, FB_LIMIT_VEGAS);
  assert_int_equal(fb_limiter_config_check(&cfg, &got), 0);
  assert_null(got);
  assert_int_equal(cfg.min_limit, 1);
  assert_int_equal(cfg.max_limit, 1000);
  assert_true(cfg.smoothing == 1.0);
  assert_int_equal(fb_limiter_config_check(NULL, &got), FB_EINVAL);
  assert_string_equal(got, "config");
  expect_bad(bad_magic, "config (not initialised with fb_limiter_config_init)");
  expect_bad(bad_algorithm, "algorithm");
  expect_bad(bad_max, "max_limit");
  expect_bad(bad_min, "min_limit");
  expect_bad(min_over_max, "min_limit");
  expect_bad(initial_low, "initial_limit");
  expect_bad(initial_high, "initial_limit");
  expect_bad(bad_smoothing, "smoothing");
  expect_bad(nan_smoothing, "smoothing");
  expect_bad(bad_queue, "queue_size");
  expect_bad(bad_tolerance, "rtt_tolerance");
  expect_bad(bad_window, "long_window");
  expect_bad(bad_backoff, "backoff_ratio");
  expect_bad(low_backoff, "backoff_ratio");
  expect_bad(bad_timeout, "timeout");
  expect_bad(bad_alpha, "alpha");
  expect_bad(bad_beta, "beta");
  expect_bad(bad_probe, "probe_multiplier");
  expect_bad(bad_min_window, "min_window");
  expect_bad(bad_max_window, "max_window");
  expect_bad(bad_window_size, "window_size");
  expect_bad(bad_threshold, "min_rtt_threshold");
  assert_string_equal(fb_limiter_algorithm_name(FB_LIMIT_VEGAS), "vegas");
}

/* A limiter Lua made and exported, used by a C host through the core API:
 * the same object, the same limit. */
static void from_a_runtime(void **state) {
  (void)state;
  fb_runtime_config cfg;
  fb_runtime_config_init(&cfg);
  cfg.virtual_time = 1;
  fb_runtime *rt = fb_runtime_new(&cfg);
  assert_non_null(rt);
  assert_int_equal(fb_runtime_eval(rt, "local fb = require 'fusebox'\n"
                                       "L = fb.limiter{algorithm = 'aimd', "
                                       "initial = 2, min = 1, max = 5, "
                                       "min_window = 0}\n"
                                       "fb.export('api', L)",
                                   "policy"),
                   0);
  assert_int_equal(fb_runtime_run(rt), 0);
  fb_limiter *l = fb_runtime_limiter(rt, "api");
  assert_non_null(l);
  assert_int_equal(fb_limiter_limit(l), 2);
  int64_t a = fb_limiter_acquire(l), b = fb_limiter_acquire(l);
  assert_int_equal(fb_limiter_acquire(l), FB_ELIMIT);
  assert_int_equal(fb_limiter_release(l, b, FB_LIMIT_SUCCESS, 0.01, 1),
                   FB_LIMIT_CHANGED);
  assert_int_equal(fb_limiter_release(l, a, FB_LIMIT_SUCCESS, 0.01, 1),
                   FB_LIMIT_SAME);
  assert_int_equal(fb_limiter_limit(l), 3);
  assert_int_equal(fb_runtime_eval(rt, "assert(L.limit == 3)", "check"), 0);
  assert_int_equal(fb_runtime_run(rt), 0);
  assert_null(fb_runtime_limiter(rt, "nothing"));
  fb_runtime_free(rt);
}

/* Shared, four threads acquire and release at once: every acquire is
 * counted once, and in flight never passes the limit's bounds. */
enum { THREADS = 4, ROUNDS = 100000 };

static void *hammer(void *arg) {
  fb_limiter *l = arg;
  for (int i = 0; i < ROUNDS; i++) {
    int64_t p = fb_limiter_acquire(l);
    if (p > 0)
      fb_limiter_release(l, p, i % 7 ? FB_LIMIT_SUCCESS : FB_LIMIT_DROPPED,
                         0.001 * (i % 5 + 1), i);
  }
  return NULL;
}

static void threads(void **state) {
  (void)state;
  fb_limiter_config cfg;
  fb_limiter_config_init(&cfg, FB_LIMIT_AIMD);
  cfg.initial_limit = 2;
  cfg.min_limit = 1;
  cfg.max_limit = 3;
  fb_limiter *l = fb_limiter_new(&cfg);
  fb_limiter_set_shared(l, 1);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, hammer, l), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  fb_limiter_metrics m;
  fb_limiter_metrics_get(l, &m);
  assert_int_equal(m.inflight, 0);
  assert_int_equal(m.successes + m.dropped + m.rejected,
                   (uint64_t)THREADS * ROUNDS);
  assert_true(m.limit >= 1 && m.limit <= 3);
  fb_limiter_free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(aimd_vector),
      cmocka_unit_test(gradient2_vector),
      cmocka_unit_test(gradient2_ignores_drops),
      cmocka_unit_test(vegas_vector),
      cmocka_unit_test(vegas_probe),
      cmocka_unit_test(window),
      cmocka_unit_test(acquire_release),
      cmocka_unit_test(bad_release),
      cmocka_unit_test(config_check),
      cmocka_unit_test(from_a_runtime),
      cmocka_unit_test(threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
