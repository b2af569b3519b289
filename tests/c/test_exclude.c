/*
 * test_exclude.c -- picks that skip given instances (a retry's peers
 * already tried) for every algorithm, ejection that ends by the clock
 * alone, and a static registry whose instances never expire.
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

static fb_registry *make3(const fb_registry_config *cfg) {
  fb_registry *r = fb_registry_new(cfg);
  assert_non_null(r);
  for (int p = 18081; p <= 18083; p++)
    assert_int_equal(fb_registry_register(r, "svc", "127.0.0.1", p, 0), FB_ADDED);
  return r;
}

static uint64_t id_of(fb_registry *r, int port) {
  fb_instance *i = fb_registry_find(r, "svc", "127.0.0.1", port);
  assert_non_null(i);
  return fb_instance_id(i);
}

static fb_balancer *lb_of(fb_registry *r, const char *algo) {
  fb_balancer *lb = fb_balancer_new(r, algo, 7);
  assert_non_null(lb);
  return lb;
}

/* Every algorithm, with or without a key, never returns an excluded
 * instance, returns the one left when two of three are excluded, and NULL
 * when all are; in-flight counts only what it returned. */
static void test_every_algorithm_skips_excluded(void **state) {
  (void)state;
  for (const char *const *a = fb_balancer_algorithms(); *a; a++) {
    fb_registry *r = make3(NULL);
    fb_balancer *lb = lb_of(r, *a);
    fb_service *s = fb_registry_service(r, "svc");
    uint64_t ex[3] = {id_of(r, 18081), id_of(r, 18082), id_of(r, 18083)};
    for (int k = 0; k < 200; k++) {
      char key[16];
      snprintf(key, sizeof key, "k%d", k);
      const char *kp = k % 2 ? key : NULL;
      fb_instance *i = fb_balancer_pick_excluding(lb, s, kp, kp ? strlen(kp) : 0,
                                                  ex, 1, 1);
      assert_non_null(i);
      assert_int_not_equal(fb_instance_port(i), 18081);
      i = fb_balancer_pick_excluding(lb, s, kp, kp ? strlen(kp) : 0, ex, 2, 1);
      assert_non_null(i);
      assert_int_equal(fb_instance_port(i), 18083);
      assert_null(fb_balancer_pick_excluding(lb, s, kp, kp ? strlen(kp) : 0, ex, 3, 1));
    }
    uint32_t inflight = 0;
    for (int p = 18081; p <= 18083; p++)
      inflight += fb_instance_inflight(fb_registry_find(r, "svc", "127.0.0.1", p));
    assert_int_equal(inflight, 400);
    assert_int_equal(fb_instance_inflight(fb_registry_find(r, "svc", "127.0.0.1", 18081)), 0);
    /* the scratch flags are cleared: a plain pick reaches every instance */
    int seen[3] = {0};
    for (int k = 0; k < 300; k++)
      seen[fb_instance_port(fb_balancer_pick(lb, s, 2)) - 18081] = 1;
    assert_true(seen[0] && seen[1] && seen[2]);
    fb_balancer_free(lb);
    fb_registry_release(r);
  }
}

/* A keyed retry is deterministic: the same key skips to the same place. */
static void test_keyed_retry_is_deterministic(void **state) {
  (void)state;
  const char *algos[] = {"consistent_hash", "maglev"};
  for (int a = 0; a < 2; a++) {
    fb_registry *r = make3(NULL);
    fb_balancer *lb = lb_of(r, algos[a]);
    fb_service *s = fb_registry_service(r, "svc");
    for (int k = 0; k < 50; k++) {
      char key[16];
      snprintf(key, sizeof key, "user%d", k);
      uint64_t first = fb_instance_id(fb_balancer_pick_key(lb, s, key, strlen(key), 1));
      fb_instance *x = fb_balancer_pick_excluding(lb, s, key, strlen(key), &first, 1, 1);
      fb_instance *y = fb_balancer_pick_excluding(lb, s, key, strlen(key), &first, 1, 1);
      assert_ptr_equal(x, y);
      assert_true(fb_instance_id(x) != first);
    }
    fb_balancer_free(lb);
    fb_registry_release(r);
  }
}

/* Ids of other services or of nothing are ignored; too many is NULL. */
static void test_bad_exclusions(void **state) {
  (void)state;
  fb_registry *r = make3(NULL);
  assert_int_equal(fb_registry_register(r, "other", "127.0.0.1", 9, 0), FB_ADDED);
  fb_balancer *lb = lb_of(r, "round_robin");
  fb_service *s = fb_registry_service(r, "svc");
  uint64_t ex[FB_EXCLUDE_MAX + 1];
  for (size_t k = 0; k < FB_EXCLUDE_MAX + 1; k++)
    ex[k] = 123456789 + k;
  ex[0] = fb_instance_id(fb_registry_find(r, "other", "127.0.0.1", 9));
  assert_non_null(fb_balancer_pick_excluding(lb, s, NULL, 0, ex, FB_EXCLUDE_MAX, 0));
  assert_null(fb_balancer_pick_excluding(lb, s, NULL, 0, ex, FB_EXCLUDE_MAX + 1, 0));
  assert_null(fb_balancer_pick_excluding(lb, s, NULL, 0, NULL, 1, 0));
  assert_non_null(fb_balancer_pick_excluding(lb, s, NULL, 0, NULL, 0, 0));
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* eject(i, until) takes i out of every pick until `until` on the caller's
 * clock, and it is back at until with nothing else called. */
static void test_ejection_ends_on_time(void **state) {
  (void)state;
  for (const char *const *a = fb_balancer_algorithms(); *a; a++) {
    fb_registry *r = make3(NULL);
    fb_balancer *lb = lb_of(r, *a);
    fb_service *s = fb_registry_service(r, "svc");
    fb_instance *dead = fb_registry_find(r, "svc", "127.0.0.1", 18082);
    assert_true(fb_instance_ejected_until(dead) == -INFINITY);
    assert_int_equal(fb_instance_eject(dead, 5.0), 0);
    assert_true(fb_instance_ejected_until(dead) == 5.0);
    for (int k = 0; k < 100; k++)
      assert_ptr_not_equal(fb_balancer_pick(lb, s, 1.0 + k * 0.039), dead);
    fb_instance *const *h;
    assert_int_equal(fb_service_healthy(s, 4.999, &h), 2);
    assert_int_equal(fb_service_healthy(s, 5.0, &h), 3);
    int back = 0;
    for (int k = 0; k < 100; k++)
      back += fb_balancer_pick(lb, s, 5.0 + k * 0.01) == dead;
    assert_true(back > 0);
    /* readmitted early; NaN refused */
    assert_int_equal(fb_instance_eject(dead, 100.0), 0);
    assert_int_equal(fb_service_healthy(s, 6, &h), 2);
    assert_int_equal(fb_instance_eject(dead, -INFINITY), 0);
    assert_int_equal(fb_service_healthy(s, 6, &h), 3);
    assert_int_equal(fb_instance_eject(dead, NAN), FB_EINVAL);
    assert_int_equal(fb_instance_eject(NULL, 1), FB_EINVAL);
    fb_balancer_free(lb);
    fb_registry_release(r);
  }
}

/* The earliest of several ejections ends first; the others hold. */
static void test_ejections_end_in_turn(void **state) {
  (void)state;
  fb_registry *r = make3(NULL);
  fb_service *s = fb_registry_service(r, "svc");
  fb_instance_eject(fb_registry_find(r, "svc", "127.0.0.1", 18081), 10);
  fb_instance_eject(fb_registry_find(r, "svc", "127.0.0.1", 18082), 20);
  fb_instance *const *h;
  assert_int_equal(fb_service_healthy(s, 1, &h), 1);
  assert_int_equal(fb_service_healthy(s, 10, &h), 2);
  assert_int_equal(fb_service_healthy(s, 19, &h), 2);
  assert_int_equal(fb_service_healthy(s, 20, &h), 3);
  fb_registry_release(r);
}

/* heartbeat_timeout = INFINITY: instances never expire nor get reaped. */
static void test_static_registry_never_expires(void **state) {
  (void)state;
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout = INFINITY;
  fb_registry *r = make3(&cfg);
  fb_balancer *lb = lb_of(r, "round_robin");
  fb_service *s = fb_registry_service(r, "svc");
  fb_instance *const *live;
  assert_int_equal(fb_service_live(s, 1e12, &live), 3);
  assert_non_null(fb_balancer_pick(lb, s, 1e15));
  fb_registry_sweep(r, 1e300);
  assert_int_equal(fb_registry_ninstances(r), 3);
  assert_int_equal(fb_registry_expirations(r), 0);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_algorithm_skips_excluded),
      cmocka_unit_test(test_keyed_retry_is_deterministic),
      cmocka_unit_test(test_bad_exclusions),
      cmocka_unit_test(test_ejection_ends_on_time),
      cmocka_unit_test(test_ejections_end_in_turn),
      cmocka_unit_test(test_static_registry_never_expires),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
