/*
 * test_counters.c -- what blocking queries and metrics read from the
 * core: the registry's modification index (bumped by add, expiry,
 * revival, removal; not by a plain heartbeat), expirations, picks per
 * instance, and the breaker's call counters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fusebox.h"

static void index_moves_with_membership(void **state) {
  (void)state;
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout = 10;
  fb_registry *r = fb_registry_new(&cfg);
  assert_int_equal(fb_registry_index(r), 0);
  fb_registry_register(r, "a", "h", 1, 0);
  fb_service *a = fb_registry_service(r, "a");
  assert_int_equal(fb_registry_index(r), 1);
  assert_int_equal(fb_service_index(a), 1);
  fb_registry_heartbeat(r, "a", "h", 1, 5); /* live already: no change */
  assert_int_equal(fb_registry_index(r), 1);
  fb_registry_register(r, "b", "h", 2, 6);
  assert_int_equal(fb_registry_index(r), 2);
  assert_int_equal(fb_service_index(a), 1); /* b's change is not a's */
  fb_registry_sweep(r, 15);                 /* a:h:1 expires at 15 */
  assert_int_equal(fb_service_index(a), 3);
  assert_int_equal(fb_registry_expirations(r), 1);
  fb_registry_heartbeat(r, "a", "h", 1, 15.5); /* revives; b lives to 16 */
  assert_int_equal(fb_service_index(a), 4);
  assert_int_equal(fb_registry_deregister(r, "a", "h", 1), 1);
  assert_int_equal(fb_service_index(a), 5);
  assert_int_equal(fb_registry_index(r), 5);
  fb_registry_release(r);
}

static void picks_are_counted_per_instance(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  fb_registry_register(r, "s", "h", 1, 0);
  fb_registry_register(r, "s", "h", 2, 0);
  fb_balancer *lb = fb_balancer_new(r, "round_robin", 1);
  fb_service *s = fb_registry_service(r, "s");
  for (int i = 0; i < 5; i++)
    fb_balancer_pick(lb, s, 1);
  assert_int_equal(fb_instance_picks(fb_registry_find(r, "s", "h", 1)), 3);
  assert_int_equal(fb_instance_picks(fb_registry_find(r, "s", "h", 2)), 2);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

static void breaker_counts_outcomes_and_rejections(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 1;
  cfg.timeout = 10;
  fb_breaker *b = fb_breaker_new(&cfg);
  fb_breaker_record(b, fb_breaker_acquire(b, 0), FB_SUCCESS, 0, 0);
  fb_breaker_record(b, fb_breaker_acquire(b, 1), FB_FAILURE, 0, 1);
  assert_int_equal(fb_breaker_acquire(b, 2), FB_EREJECTED);
  assert_int_equal(fb_breaker_acquire(b, 3), FB_EREJECTED);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 3, &m);
  assert_int_equal(m.successes, 1);
  assert_int_equal(m.failures, 1);
  assert_int_equal(m.rejected, 2);
  fb_breaker_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(index_moves_with_membership),
      cmocka_unit_test(picks_are_counted_per_instance),
      cmocka_unit_test(breaker_counts_outcomes_and_rejections),
  };
  return cmocka_run_group_tests_name("counters", tests, NULL, NULL);
}
