/*
 * test_outlier.c -- outlier detection and slow start as exact vectors on
 * an explicit clock: ejection-time growth and decay, the success-rate cut,
 * failure percentage, max_ejection_percent, the events, done() feeding a
 * detector, and slow-start weights over time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fusebox.h"

static const char *host_of(int i) {
  static char buf[8][32];
  static int next;
  char *b = buf[next++ % 8];
  snprintf(b, 32, "10.0.%d.%d", i / 256, i % 256);
  return b;
}

/* A static registry (no expiry): a test's clock jumps freely. */
static fb_registry *fixed(void) {
  fb_registry_config rc;
  fb_registry_config_init(&rc);
  rc.heartbeat_timeout = INFINITY;
  fb_registry *r = fb_registry_new(&rc);
  assert_non_null(r);
  return r;
}

static fb_registry *make(int n) {
  fb_registry *r = fixed();
  for (int i = 0; i < n; i++)
    assert_int_equal(fb_registry_register(r, "svc", host_of(i), 80, 0), FB_ADDED);
  return r;
}

static fb_instance *inst(fb_registry *r, int i) {
  fb_instance *x = fb_registry_find(r, "svc", host_of(i), 80);
  assert_non_null(x);
  return x;
}

/* Every detection off: a test turns on what it checks. */
static void quiet(fb_outlier_config *c) {
  fb_outlier_config_init(c);
  c->consecutive_5xx = 0;
  c->consecutive_gateway_failure = 0;
  c->enforcing_success_rate = 0;
  c->max_ejection_percent = 100;
}

static void record_n(fb_outlier *d, fb_instance *i, int ok, int fail, double t) {
  for (int k = 0; k < ok; k++)
    assert_int_equal(fb_outlier_record(d, i, FB_LB_SUCCESS, t), 0);
  for (int k = 0; k < fail; k++)
    assert_true(fb_outlier_record(d, i, FB_LB_FAILURE, t) >= 0);
}

static void test_defaults_are_envoys(void **state) {
  (void)state;
  fb_outlier_config c;
  fb_outlier_config_init(&c);
  assert_true(c.interval == 10 && c.base_ejection_time == 30 &&
              c.max_ejection_time == 300 && c.max_ejection_percent == 10);
  assert_int_equal(c.consecutive_5xx, 5);
  assert_int_equal(c.consecutive_gateway_failure, 5);
  assert_true(c.enforcing_consecutive_5xx == 100 &&
              c.enforcing_consecutive_gateway_failure == 0);
  assert_true(c.success_rate_stdev_factor == 1.9 && c.enforcing_success_rate == 100);
  assert_int_equal(c.success_rate_minimum_hosts, 5);
  assert_int_equal(c.success_rate_request_volume, 100);
  assert_true(c.failure_percentage_threshold == 85 && c.enforcing_failure_percentage == 0);
  const char *field = NULL;
  assert_int_equal(fb_outlier_config_check(&c, &field), 0);
  c.interval = 0;
  assert_int_equal(fb_outlier_config_check(&c, &field), FB_EINVAL);
  assert_string_equal(field, "interval");
  c.interval = 10;
  c.max_ejection_percent = NAN;
  assert_int_equal(fb_outlier_config_check(&c, &field), FB_EINVAL);
  assert_string_equal(field, "max_ejection_percent");
  fb_registry *r = make(1);
  assert_null(fb_outlier_new(r, &c));
  fb_registry_release(r);
}

/* base x times ejected, capped by max_ejection_time: 10, 20, 30, 35, 35. */
static void test_ejection_time_grows_and_caps(void **state) {
  (void)state;
  fb_registry *r = make(10);
  fb_outlier_config c;
  quiet(&c);
  c.consecutive_5xx = 1;
  c.base_ejection_time = 10;
  c.max_ejection_time = 35;
  c.interval = 1000; /* no interval end: no decay */
  fb_outlier *d = fb_outlier_new(r, &c);
  fb_instance *a = inst(r, 0);
  const double at[] = {0, 10, 30, 60, 95};
  const double want[] = {10, 30, 60, 95, 130};
  const uint32_t mult[] = {1, 2, 3, 4, 4};
  for (int k = 0; k < 5; k++) {
    assert_int_equal(fb_outlier_record(d, a, FB_LB_FAILURE, at[k]), 1); /* events */
    assert_true(fb_instance_ejected_until(a) == want[k]);
    assert_int_equal(fb_outlier_multiplier(d, a), mult[k]);
  }
  /* an ejected host's failures do not eject it again */
  assert_int_equal(fb_outlier_record(d, a, FB_LB_FAILURE, 100), 1);
  fb_outlier_event ev;
  while (fb_outlier_next_event(d, &ev))
    ;
  assert_int_equal(fb_outlier_record(d, a, FB_LB_FAILURE, 101), 0);
  assert_int_equal(fb_outlier_record(d, a, FB_LB_GATEWAY + 1, 101), FB_EINVAL);
  assert_int_equal(fb_outlier_record(d, a, FB_LB_FAILURE, INFINITY), FB_EINVAL);
  assert_int_equal(fb_outlier_record(d, a, FB_LB_FAILURE, NAN), FB_EINVAL);
  assert_true(fb_instance_ejected_until(a) == 130);
  fb_outlier_stats st;
  fb_outlier_get_stats(d, &st);
  assert_int_equal(st.ejections[FB_OUTLIER_CONSECUTIVE_5XX], 5);
  fb_outlier_release(d);
  fb_registry_release(r);
}

/* The multiplier goes down by one at each interval end the host spends
 * admitted, not counting the end at which it was readmitted (Envoy's
 * uneject check). */
static void test_multiplier_decays(void **state) {
  (void)state;
  fb_registry *r = make(10);
  fb_outlier_config c;
  quiet(&c);
  c.consecutive_5xx = 1;
  c.base_ejection_time = 10;
  c.interval = 10;
  fb_outlier *d = fb_outlier_new(r, &c);
  fb_instance *a = inst(r, 0);
  fb_outlier_record(d, a, FB_LB_FAILURE, 0); /* x1: until 10 */
  fb_outlier_record(d, a, FB_LB_FAILURE, 10); /* end 10 readmits: x2 */
  assert_true(fb_instance_ejected_until(a) == 30);
  fb_outlier_record(d, a, FB_LB_SUCCESS, 30); /* ends 20, 30: none counts */
  assert_int_equal(fb_outlier_multiplier(d, a), 2);
  fb_outlier_record(d, a, FB_LB_SUCCESS, 40); /* end 40 counts */
  assert_int_equal(fb_outlier_multiplier(d, a), 1);
  fb_outlier_record(d, a, FB_LB_FAILURE, 40);
  assert_true(fb_instance_ejected_until(a) == 60); /* x2 again */
  /* a long quiet spell: every end after the readmitting one counts */
  fb_outlier_record(d, a, FB_LB_SUCCESS, 1000);
  assert_int_equal(fb_outlier_multiplier(d, a), 0);
  fb_outlier_record(d, a, FB_LB_FAILURE, 1000);
  assert_true(fb_instance_ejected_until(a) == 1010);
  fb_outlier_release(d);
  fb_registry_release(r);
}

/* Consecutive failures count any failure; gateway ones only gateway
 * failures in a row; a success resets both. */
static void test_consecutive(void **state) {
  (void)state;
  fb_registry *r = make(10);
  fb_outlier_config c;
  quiet(&c);
  c.consecutive_5xx = 3;
  c.consecutive_gateway_failure = 2;
  c.enforcing_consecutive_gateway_failure = 100;
  fb_outlier *d = fb_outlier_new(r, &c);
  fb_instance *a = inst(r, 0), *b = inst(r, 1);
  fb_outlier_record(d, a, FB_LB_FAILURE, 0);
  fb_outlier_record(d, a, FB_LB_FAILURE, 0);
  fb_outlier_record(d, a, FB_LB_SUCCESS, 0);
  fb_outlier_record(d, a, FB_LB_FAILURE, 0);
  fb_outlier_record(d, a, FB_LB_FAILURE, 0);
  assert_true(fb_instance_ejected_until(a) == -INFINITY);
  fb_outlier_record(d, a, FB_LB_FAILURE, 1);
  assert_true(fb_instance_ejected_until(a) == 31);
  fb_outlier_record(d, b, FB_LB_GATEWAY, 2);
  fb_outlier_record(d, b, FB_LB_FAILURE, 2); /* breaks the gateway run */
  fb_outlier_record(d, b, FB_LB_SUCCESS, 2);
  fb_outlier_record(d, b, FB_LB_GATEWAY, 2);
  assert_true(fb_instance_ejected_until(b) == -INFINITY);
  fb_outlier_record(d, b, FB_LB_GATEWAY, 3); /* 2 gateway in a row */
  assert_true(fb_instance_ejected_until(b) == 33);
  fb_outlier_event ev;
  assert_int_equal(fb_outlier_next_event(d, &ev), 1);
  assert_true(ev.eject && ev.reason == FB_OUTLIER_CONSECUTIVE_5XX &&
              ev.id == fb_instance_id(a) && ev.at == 1 && ev.until == 31);
  assert_int_equal(fb_outlier_next_event(d, &ev), 1);
  assert_true(ev.eject && ev.reason == FB_OUTLIER_CONSECUTIVE_GATEWAY &&
              ev.id == fb_instance_id(b));
  assert_int_equal(fb_outlier_next_event(d, &ev), 0);
  /* the ends of the ejections are noticed at the next call past them */
  assert_int_equal(fb_outlier_tick(d, 40), 0);
  assert_int_equal(fb_outlier_next_event(d, &ev), 1);
  assert_true(!ev.eject && ev.id == fb_instance_id(a) && ev.at == 31);
  assert_int_equal(fb_outlier_next_event(d, &ev), 1);
  assert_true(!ev.eject && ev.id == fb_instance_id(b) && ev.at == 33 &&
              ev.reason == FB_OUTLIER_CONSECUTIVE_GATEWAY);
  fb_outlier_stats st;
  fb_outlier_get_stats(d, &st);
  assert_int_equal(st.ejected, 0);
  fb_outlier_release(d);
  fb_registry_release(r);
}

/* Six hosts, 100 calls each in the first interval, success rates 100,
 * 100, 100, 100, 80, 50: mean 88.33, stdev 18.63, cut 88.33 - 1.9 x
 * 18.63 = 52.93: only the 50% host goes. With a factor of 1 the cut is
 * 69.70 and the 80% host stays. */
static void test_success_rate_cut(void **state) {
  (void)state;
  const int fails[] = {0, 0, 0, 0, 20, 50};
  const double factor[] = {1.9, 1.0, 0.3};
  const int ejected[][6] = {{0, 0, 0, 0, 0, 1}, {0, 0, 0, 0, 0, 1}, {0, 0, 0, 0, 1, 1}};
  for (int f = 0; f < 3; f++) {
    fb_registry *r = make(6);
    fb_outlier_config c;
    quiet(&c);
    c.enforcing_success_rate = 100;
    c.success_rate_stdev_factor = factor[f];
    fb_outlier *d = fb_outlier_new(r, &c);
    for (int i = 0; i < 6; i++)
      record_n(d, inst(r, i), 100 - fails[i], fails[i], 1);
    fb_outlier_tick(d, 11); /* the first interval, 1..11, ends */
    for (int i = 0; i < 6; i++)
      assert_int_equal(fb_instance_ejected_until(inst(r, i)) == 41, ejected[f][i]);
    fb_outlier_release(d);
    fb_registry_release(r);
  }
}

/* Below the request volume a host is not counted; below minimum_hosts
 * counted hosts, no cut at all. */
static void test_success_rate_minimums(void **state) {
  (void)state;
  fb_registry *r = make(6);
  fb_outlier_config c;
  quiet(&c);
  c.enforcing_success_rate = 100;
  fb_outlier *d = fb_outlier_new(r, &c);
  for (int i = 0; i < 4; i++)
    record_n(d, inst(r, i), 100, 0, 0);
  record_n(d, inst(r, 4), 99, 0, 0);   /* 99 calls: not counted */
  record_n(d, inst(r, 5), 50, 50, 0);  /* 4 + this one: 5 hosts */
  fb_outlier_tick(d, 10);
  assert_true(fb_instance_ejected_until(inst(r, 5)) == 40);
  fb_outlier_release(d);
  fb_registry_release(r);
  r = make(6);
  d = fb_outlier_new(r, &c);
  for (int i = 0; i < 3; i++)
    record_n(d, inst(r, i), 100, 0, 0);
  record_n(d, inst(r, 4), 99, 0, 0);
  record_n(d, inst(r, 5), 50, 50, 0);  /* 4 hosts counted: no cut */
  fb_outlier_tick(d, 10);
  assert_true(fb_instance_ejected_until(inst(r, 5)) == -INFINITY);
  /* the counts are per interval: the next one starts from zero */
  record_n(d, inst(r, 0), 100, 0, 15);
  fb_outlier_tick(d, 20);
  assert_true(fb_instance_ejected_until(inst(r, 5)) == -INFINITY);
  fb_outlier_release(d);
  fb_registry_release(r);
}

/* The analysis leaves out the hosts already ejected (here by someone
 * else): rates 100 x4 and 90 with the 0% one out give mean 98, stdev 4,
 * cut 90.4, and the 90% one goes; counted, the 0% one would have pulled
 * the cut down to 11.9 and nobody would have gone. */
static void test_success_rate_skips_ejected(void **state) {
  (void)state;
  const int fails[] = {0, 0, 0, 0, 10, 100};
  fb_registry *r = make(6);
  fb_outlier_config c;
  quiet(&c);
  c.enforcing_success_rate = 100;
  fb_outlier *d = fb_outlier_new(r, &c);
  for (int i = 0; i < 6; i++)
    record_n(d, inst(r, i), 100 - fails[i], fails[i], 0);
  fb_instance_eject(inst(r, 5), 1000);
  fb_outlier_tick(d, 10);
  assert_true(fb_instance_ejected_until(inst(r, 4)) == 40);
  assert_true(fb_instance_ejected_until(inst(r, 5)) == 1000);
  fb_outlier_release(d);
  fb_registry_release(r);
}

/* Failure percentage: at least the threshold goes (50 and 90 of 50%),
 * 49 stays; with fewer than minimum_hosts at volume nothing goes. */
static void test_failure_percentage(void **state) {
  (void)state;
  const int fails[] = {0, 0, 10, 49, 50, 90};
  fb_registry *r = make(6);
  fb_outlier_config c;
  quiet(&c);
  c.enforcing_failure_percentage = 100;
  c.failure_percentage_threshold = 50;
  c.failure_percentage_request_volume = 100;
  fb_outlier *d = fb_outlier_new(r, &c);
  for (int i = 0; i < 6; i++)
    record_n(d, inst(r, i), 100 - fails[i], fails[i], 0);
  fb_outlier_tick(d, 10);
  for (int i = 0; i < 6; i++)
    assert_int_equal(fb_instance_ejected_until(inst(r, i)) == 40, i >= 4);
  fb_outlier_stats st;
  fb_outlier_get_stats(d, &st);
  assert_int_equal(st.ejections[FB_OUTLIER_FAILURE_PERCENTAGE], 2);
  assert_int_equal(st.ejected, 2);
  fb_outlier_release(d);
  fb_registry_release(r);
  r = make(6);
  c.failure_percentage_minimum_hosts = 7;
  d = fb_outlier_new(r, &c);
  for (int i = 0; i < 6; i++)
    record_n(d, inst(r, i), 100 - fails[i], fails[i], 0);
  fb_outlier_tick(d, 10);
  for (int i = 0; i < 6; i++)
    assert_true(fb_instance_ejected_until(inst(r, i)) == -INFINITY);
  fb_outlier_release(d);
  fb_registry_release(r);
}

/* Ten hosts failing one after another: max_ejection_percent 30 lets
 * three out, 25 lets three (20% < 25% before the third), 0 lets one
 * (one is always allowed), 100 lets all ten; refusals are counted. */
static void test_max_ejection_percent(void **state) {
  (void)state;
  const double pct[] = {30, 25, 0, 100, 10};
  const uint32_t out[] = {3, 3, 1, 10, 1};
  for (int k = 0; k < 5; k++) {
    fb_registry *r = make(10);
    fb_outlier_config c;
    quiet(&c);
    c.consecutive_5xx = 1;
    c.max_ejection_percent = pct[k];
    fb_outlier *d = fb_outlier_new(r, &c);
    for (int i = 0; i < 10; i++)
      fb_outlier_record(d, inst(r, i), FB_LB_FAILURE, 1);
    fb_outlier_stats st;
    fb_outlier_get_stats(d, &st);
    assert_int_equal(st.ejected, out[k]);
    assert_int_equal(st.overflow, 10 - out[k]);
    fb_instance *const *h;
    assert_int_equal(fb_service_healthy(fb_registry_service(r, "svc"), 2, &h),
                     10 - out[k]);
    /* a host kept in is detected again after another run of failures */
    fb_outlier_record(d, inst(r, 9), FB_LB_FAILURE, 1);
    fb_outlier_get_stats(d, &st);
    assert_int_equal(st.overflow, 10 - out[k] + (out[k] < 10));
    /* when they come back the room is there again */
    fb_outlier_record(d, inst(r, 9), FB_LB_SUCCESS, 31);
    fb_outlier_record(d, inst(r, 9), FB_LB_FAILURE, 31);
    fb_outlier_get_stats(d, &st);
    assert_int_equal(st.ejected, 1);
    fb_outlier_release(d);
    fb_registry_release(r);
  }
}

/* done() feeds the attached detector: a failing instance leaves the
 * candidates after consecutive_5xx failures and is back on time. */
static void test_balancer_done_feeds_detector(void **state) {
  (void)state;
  fb_registry *r = make(10);
  fb_balancer *lb = fb_balancer_new(r, "round_robin", 1);
  fb_outlier_config c;
  fb_outlier_config_init(&c);
  c.consecutive_5xx = 3;
  fb_outlier *d = fb_outlier_new(r, &c);
  assert_int_equal(fb_balancer_set_outlier(lb, d), 0);
  fb_outlier_release(d); /* the balancer holds it */
  assert_ptr_equal(fb_balancer_outlier(lb), d);
  fb_service *s = fb_registry_service(r, "svc");
  fb_instance *bad = inst(r, 0);
  int first_event = -1, seen_after = 0;
  for (int k = 0; k < 100; k++) {
    double t = k * 0.1;
    fb_instance *i = fb_balancer_pick(lb, s, t);
    int rc = fb_balancer_done(lb, i, i != bad, 0.01, t);
    assert_true(rc == 0 || rc == 1); /* 1: events to read */
    if (rc == 1 && first_event < 0)
      first_event = k;
    if (k > 30 && i == bad)
      seen_after++;
  }
  assert_int_equal(first_event, 20); /* bad's third failure */
  assert_int_equal(seen_after, 0);
  assert_true(fb_instance_ejected_until(bad) > 20);
  fb_outlier_event ev;
  assert_int_equal(fb_outlier_next_event(d, &ev), 1);
  assert_true(ev.eject && ev.id == fb_instance_id(bad));
  /* back after base_ejection_time */
  int back = 0;
  for (int k = 0; k < 10; k++) {
    fb_instance *i = fb_balancer_pick(lb, s, 40);
    back += i == bad;
    fb_balancer_done_outcome(lb, i, FB_LB_SUCCESS, 0.01, 40);
  }
  assert_int_equal(back, 1);
  assert_int_equal(fb_outlier_next_event(d, &ev), 1);
  assert_true(!ev.eject && ev.id == fb_instance_id(bad));
  assert_int_equal(fb_balancer_done_outcome(lb, bad, 7, 0, 40), FB_EINVAL);
  fb_registry *other = make(1);
  fb_outlier *d2 = fb_outlier_new(other, &c);
  assert_int_equal(fb_balancer_set_outlier(lb, d2), FB_EINVAL);
  fb_outlier_release(d2);
  fb_registry_release(other);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* An instance deregistered while ejected frees its ejection's room when
 * its slot's new instance is seen, or at the ejection's end. */
static void test_gone_instance(void **state) {
  (void)state;
  fb_registry *r = make(10);
  fb_outlier_config c;
  quiet(&c);
  c.consecutive_5xx = 1;
  fb_outlier *d = fb_outlier_new(r, &c);
  fb_outlier_record(d, inst(r, 0), FB_LB_FAILURE, 0);
  assert_int_equal(fb_registry_deregister(r, "svc", host_of(0), 80), 1);
  assert_int_equal(fb_registry_register(r, "svc", "10.9.9.9", 80, 1), FB_ADDED);
  fb_instance *n = fb_registry_find(r, "svc", "10.9.9.9", 80);
  fb_outlier_record(d, n, FB_LB_SUCCESS, 1);
  fb_outlier_stats st;
  fb_outlier_get_stats(d, &st);
  assert_int_equal(st.ejected, 0);
  assert_int_equal(fb_outlier_multiplier(d, n), 0);
  fb_outlier_release(d);
  fb_registry_release(r);
}

/* ---------------------------------------------------------- slow start */

static fb_balancer *ramped(fb_registry *r, const char *algo, double window,
                           double aggression, double min_pct) {
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  cfg.algorithm = algo;
  cfg.seed = 7;
  cfg.slow_start_window = window;
  cfg.slow_start_aggression = aggression;
  cfg.slow_start_min_weight_percent = min_pct;
  fb_balancer *lb = fb_balancer_new_config(r, &cfg);
  assert_non_null(lb);
  return lb;
}

/* weight x max(min%, (max(t, 1) / window) ^ (1 / aggression)). */
static void test_slow_start_weights(void **state) {
  (void)state;
  fb_registry *r = fixed();
  fb_instance_opts o;
  fb_instance_opts_init(&o);
  o.weight = 4;
  fb_registry_register_with(r, "svc", "a", 1, &o, 100);
  fb_service *s = fb_registry_service(r, "svc");
  fb_instance *const *h;
  fb_service_healthy(s, 100, &h); /* the first refresh sees it: since 100 */
  fb_instance *a = h[0];
  assert_true(fb_instance_since(a) == 100);
  struct { double aggr, min, t, want; } v[] = {
      {1, 10, 100, 0.4},  {1, 10, 100.5, 0.4}, {1, 10, 102, 0.8},
      {1, 10, 105, 2},    {1, 10, 109, 3.6},   {1, 10, 110, 4},
      {1, 10, 200, 4},    {2, 10, 101, 4 * sqrt(0.1)},
      {2, 10, 105, 4 * sqrt(0.5)}, {2, 50, 101, 2}, {2, 50, 103, 4 * sqrt(0.3)},
      {0.5, 10, 105, 1},  {0.5, 10, 102, 0.4}, {0.5, 10, 108, 4 * 0.64},
  };
  for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
    fb_balancer *lb = ramped(r, "weighted_round_robin", 10, v[k].aggr, v[k].min);
    double w = fb_balancer_weight_at(lb, a, v[k].t);
    if (fabs(w - v[k].want) > 1e-9)
      fail_msg("vector %zu: weight %.12g, want %.12g", k, w, v[k].want);
    fb_balancer_free(lb);
  }
  fb_balancer *rr = ramped(r, "round_robin", 10, 1, 10); /* none: weights ignored */
  assert_true(fb_balancer_weight_at(rr, a, 100) == 4);
  fb_balancer_free(rr);
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  cfg.slow_start_min_weight_percent = 0;
  const char *field;
  assert_int_equal(fb_balancer_config_check(&cfg, &field), FB_EINVAL);
  assert_string_equal(field, "slow_start_min_weight_percent");
  fb_registry_release(r);
}

/* Smooth WRR with a newcomer: at factor 0.1 it gets 10 of every 110
 * picks, half way through the window 50 of every 150, then its share. */
static void test_slow_start_wrr(void **state) {
  (void)state;
  fb_registry *r = fixed();
  fb_registry_register(r, "svc", "a", 1, 0);
  fb_service *s = fb_registry_service(r, "svc");
  fb_balancer *lb = ramped(r, "weighted_round_robin", 10, 1, 10);
  fb_balancer_done(lb, fb_balancer_pick(lb, s, 0), 1, 0, 0);
  fb_registry_register(r, "svc", "b", 1, 100);
  const double at[] = {100, 105, 111};
  const int total[] = {110, 150, 200}, want_b[] = {10, 50, 100};
  for (int k = 0; k < 3; k++) {
    int nb = 0;
    for (int p = 0; p < total[k]; p++) {
      fb_instance *i = fb_balancer_pick(lb, s, at[k]);
      nb += strcmp(fb_instance_host(i), "b") == 0;
      fb_balancer_done(lb, i, 1, 0, at[k]);
    }
    assert_int_equal(nb, want_b[k]);
  }
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* least_request compares (in flight + 1) / factor: a newcomer at 0.1
 * with nothing in flight loses to a busy peer with 3 in flight; without
 * slow start it wins. random's shares follow the factors. */
static void test_slow_start_load_aware(void **state) {
  (void)state;
  for (int on = 0; on < 2; on++) {
    fb_registry *r = fixed();
    fb_registry_register(r, "svc", "a", 1, 0);
    fb_service *s = fb_registry_service(r, "svc");
    fb_balancer_config cfg;
    fb_balancer_config_init(&cfg);
    cfg.algorithm = "least_request";
    cfg.choices = 64;
    cfg.slow_start_window = on ? 10 : 0;
    fb_balancer *lb = fb_balancer_new_config(r, &cfg);
    for (int k = 0; k < 3; k++)
      fb_balancer_pick(lb, s, 0); /* a: 3 in flight */
    fb_registry_register(r, "svc", "b", 1, 100);
    fb_instance *i = fb_balancer_pick(lb, s, 100);
    assert_string_equal(fb_instance_host(i), on ? "a" : "b");
    fb_balancer_free(lb);
    fb_registry_release(r);
  }
  fb_registry *r = fixed();
  for (int k = 0; k < 9; k++)
    fb_registry_register(r, "svc", host_of(k), 1, 0);
  fb_service *s = fb_registry_service(r, "svc");
  fb_balancer *lb = ramped(r, "random", 10, 1, 10);
  fb_balancer_done(lb, fb_balancer_pick(lb, s, 0), 1, 0, 0);
  fb_registry_register(r, "svc", "new", 1, 100);
  int n = 0;
  for (int p = 0; p < 91000; p++) {
    fb_instance *i = fb_balancer_pick(lb, s, 100);
    n += strcmp(fb_instance_host(i), "new") == 0;
    fb_balancer_done(lb, i, 1, 0, 100);
  }
  /* 0.1 / 9.1 of the picks: 1,000 expected */
  assert_in_range(n, 900, 1100);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* A readmitted instance starts its ramp at the end of its ejection. */
static void test_slow_start_after_ejection(void **state) {
  (void)state;
  fb_registry *r = make(2);
  fb_service *s = fb_registry_service(r, "svc");
  fb_balancer *lb = ramped(r, "weighted_round_robin", 10, 1, 10);
  fb_instance *a = inst(r, 0);
  fb_balancer_done(lb, fb_balancer_pick(lb, s, 0), 1, 0, 0);
  fb_instance_eject(a, 50);
  fb_balancer_done(lb, fb_balancer_pick(lb, s, 20), 1, 0, 20);
  fb_balancer_done(lb, fb_balancer_pick(lb, s, 50), 1, 0, 50);
  assert_true(fb_instance_since(a) == 50);
  assert_true(fabs(fb_balancer_weight_at(lb, a, 55) - 0.5) < 1e-12);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_are_envoys),
      cmocka_unit_test(test_ejection_time_grows_and_caps),
      cmocka_unit_test(test_multiplier_decays),
      cmocka_unit_test(test_consecutive),
      cmocka_unit_test(test_success_rate_cut),
      cmocka_unit_test(test_success_rate_minimums),
      cmocka_unit_test(test_success_rate_skips_ejected),
      cmocka_unit_test(test_failure_percentage),
      cmocka_unit_test(test_max_ejection_percent),
      cmocka_unit_test(test_balancer_done_feeds_detector),
      cmocka_unit_test(test_gone_instance),
      cmocka_unit_test(test_slow_start_weights),
      cmocka_unit_test(test_slow_start_wrr),
      cmocka_unit_test(test_slow_start_load_aware),
      cmocka_unit_test(test_slow_start_after_ejection),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
