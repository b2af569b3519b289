/*
 * test_services.c -- services that lose their last instance: kept by
 * default (fb_service pointers live as long as the registry), removed
 * with remove_empty_services when a new name needs the room, so churned
 * names never lock a registry out for good; balancers over the registry
 * never serve a removed service's table for the service after it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fusebox.h"

static fb_registry *registry(uint32_t max_services, int remove_empty) {
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout = 10;
  cfg.reap_after = 10;
  cfg.max_services = max_services;
  cfg.remove_empty_services = remove_empty;
  fb_registry *r = fb_registry_new(&cfg);
  assert_non_null(r);
  return r;
}

static void empty_services_stay_by_default(void **state) {
  (void)state;
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  assert_int_equal(cfg.remove_empty_services, 0);
  fb_registry *r = registry(2, 0);
  assert_int_equal(fb_registry_register(r, "a", "h", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "b", "h", 80, 0), FB_ADDED);
  fb_service *a = fb_registry_service(r, "a");
  assert_int_equal(fb_registry_deregister(r, "a", "h", 80), 1);
  assert_int_equal(fb_registry_register(r, "c", "h", 80, 1), FB_EFULL);
  assert_ptr_equal(fb_registry_service(r, "a"), a); /* still valid */
  assert_string_equal(fb_service_name(a), "a");
  assert_int_equal(fb_registry_services_removed(r), 0);
  fb_registry_release(r);
}

/* 10,000 names through a registry of 3 services, each name gone before
 * the next comes: by deregistration, or by reaping. */
static void churned_names_never_lock_out(void **state) {
  (void)state;
  char name[32];
  fb_registry *r = registry(3, 1);
  assert_int_equal(fb_registry_register(r, "kept", "h", 80, 0), FB_ADDED);
  for (int k = 0; k < 10000; k++) {
    snprintf(name, sizeof name, "churn%d", k);
    assert_int_equal(fb_registry_register(r, name, "h", 80, 0), FB_ADDED);
    assert_int_equal(fb_registry_deregister(r, name, "h", 80), 1);
  }
  double t = 12.5;
  for (int k = 0; k < 1000; k++, t += 25) { /* each reaped 20 s later */
    snprintf(name, sizeof name, "reaped%d", k);
    assert_int_equal(fb_registry_heartbeat(r, "kept", "h", 80, t - 12.5),
                     FB_REFRESHED);
    assert_int_equal(fb_registry_heartbeat(r, "kept", "h", 80, t),
                     FB_REFRESHED);
    assert_int_equal(fb_registry_register(r, name, "h", 80, t), FB_ADDED);
  }
  assert_true(fb_registry_services_removed(r) >= 10999 - 2);
  assert_non_null(fb_registry_service(r, "kept"));
  assert_non_null(fb_registry_find(r, "kept", "h", 80));
  assert_null(fb_registry_service(r, "churn0"));
  /* three services with instances: a fourth name is refused */
  t -= 20; /* reaped999 (at t - 25) is live still */
  assert_int_equal(fb_registry_register(r, "x", "h", 80, t), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "y", "h", 80, t), FB_EFULL);
  char buf[96];
  assert_string_equal(fb_registry_strerror(r, FB_EFULL, buf, sizeof buf),
                      "registry full: max_services (3) reached");
  fb_registry_release(r);
}

/* Removal happens only when a new name needs the room: below the limit
 * an emptied service is still there (and comes back in place). */
static void removal_only_under_pressure(void **state) {
  (void)state;
  fb_registry *r = registry(3, 1);
  assert_int_equal(fb_registry_register(r, "a", "h", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_deregister(r, "a", "h", 80), 1);
  fb_service *a = fb_registry_service(r, "a");
  assert_non_null(a);
  assert_int_equal(fb_registry_register(r, "b", "h", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "a", "h", 81, 0), FB_ADDED);
  assert_ptr_equal(fb_registry_service(r, "a"), a);
  assert_int_equal(fb_registry_services_removed(r), 0);
  fb_registry_release(r);
}

static const char *pick_host(fb_balancer *lb, fb_registry *r,
                             const char *service, double now) {
  fb_instance *i = fb_balancer_pick(lb, fb_registry_service(r, service), now);
  assert_non_null(i);
  const char *host = fb_instance_host(i);
  assert_int_equal(fb_balancer_done(lb, i, 1, 0.001, now), 0);
  return host;
}

/* A balancer keeps a table per service id: a new service in a removed
 * one's id, or a service moved into it, gets its own table, never the
 * old one (whose instances are freed: ASan would see it). */
static void balancers_never_serve_a_removed_services_table(void **state) {
  (void)state;
  fb_registry *r = registry(3, 1);
  fb_balancer *lb = fb_balancer_new(r, "weighted_round_robin", 1);
  assert_non_null(lb);
  fb_instance_opts o;
  fb_instance_opts_init(&o);
  o.weight = 2;
  assert_int_equal(fb_registry_register_with(r, "a", "a1", 80, &o, 0),
                   FB_ADDED);
  assert_int_equal(fb_registry_register(r, "a", "a2", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "b", "b1", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "c", "c1", 80, 0), FB_ADDED);
  assert_int_equal(pick_host(lb, r, "a", 1)[0], 'a');
  assert_string_equal(pick_host(lb, r, "b", 1), "b1");
  assert_string_equal(pick_host(lb, r, "c", 1), "c1");
  /* a empties; d takes the room, c moves into a's id */
  assert_int_equal(fb_registry_deregister(r, "a", "a1", 80), 1);
  assert_int_equal(fb_registry_deregister(r, "a", "a2", 80), 1);
  for (int k = 1; k <= 3; k++) {
    char host[8];
    snprintf(host, sizeof host, "d%d", k);
    assert_int_equal(fb_registry_register(r, "d", host, 80, 2), FB_ADDED);
  }
  assert_int_equal(fb_registry_services_removed(r), 1);
  assert_null(fb_registry_service(r, "a"));
  for (int k = 0; k < 4; k++) {
    assert_string_equal(pick_host(lb, r, "c", 3), "c1");
    assert_string_equal(pick_host(lb, r, "b", 3), "b1");
    assert_int_equal(pick_host(lb, r, "d", 3)[0], 'd'); /* a table of 3 */
  }
  /* again: e lands in d's id, with as many changes behind it as d had
   * when its table was built (were versions per service, e's would be
   * the table's, and a pick would index past e's 2 instances) */
  assert_int_equal(fb_registry_deregister(r, "d", "d1", 80), 1);
  assert_int_equal(fb_registry_deregister(r, "d", "d2", 80), 1);
  assert_int_equal(fb_registry_deregister(r, "d", "d3", 80), 1);
  assert_int_equal(fb_registry_register_with(r, "e", "e1", 80, &o, 4),
                   FB_ADDED);
  assert_int_equal(fb_registry_register(r, "e", "e2", 80, 4), FB_ADDED);
  assert_int_equal(fb_registry_services_removed(r), 2);
  int e1 = 0;
  for (int k = 0; k < 6; k++) {
    const char *host = pick_host(lb, r, "e", 5);
    assert_int_equal(host[0], 'e');
    e1 += strcmp(host, "e1") == 0;
  }
  assert_int_equal(e1, 4); /* weights 2:1 */
  assert_string_equal(pick_host(lb, r, "c", 5), "c1");
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* Versions are never shared, not even by a service and the one created
 * in its place under the same name. */
static void versions_are_never_shared(void **state) {
  (void)state;
  fb_registry *r = registry(1, 1);
  assert_int_equal(fb_registry_register(r, "s", "h1", 80, 0), FB_ADDED);
  uint64_t v1 = fb_service_version(fb_registry_service(r, "s"));
  assert_int_equal(fb_registry_deregister(r, "s", "h1", 80), 1);
  assert_int_equal(fb_registry_register(r, "t", "h1", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_deregister(r, "t", "h1", 80), 1);
  assert_int_equal(fb_registry_register(r, "s", "h1", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_services_removed(r), 2);
  assert_true(fb_service_version(fb_registry_service(r, "s")) > v1);
  fb_registry_release(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(empty_services_stay_by_default),
      cmocka_unit_test(churned_names_never_lock_out),
      cmocka_unit_test(removal_only_under_pressure),
      cmocka_unit_test(balancers_never_serve_a_removed_services_table),
      cmocka_unit_test(versions_are_never_shared),
  };
  return cmocka_run_group_tests_name("services", tests, NULL, NULL);
}
