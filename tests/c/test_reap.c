/*
 * test_reap.c -- a registry stays bounded: expired instances are reaped
 * once they stayed expired for reap_after (a late heartbeat within it
 * still brings one back in its place), max_services and max_instances
 * refuse with FB_EFULL and a message naming the limit, and removing
 * members keeps the registration order at O(1) amortised.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <math.h>

#include "fusebox.h"

static fb_registry *registry(double timeout, double reap_after,
                             uint32_t max_services, uint32_t max_instances) {
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout = timeout;
  cfg.reap_after = reap_after;
  if (max_services)
    cfg.max_services = max_services;
  if (max_instances)
    cfg.max_instances = max_instances;
  fb_registry *r = fb_registry_new(&cfg);
  assert_non_null(r);
  return r;
}

/* The hosts of s's live instances at now, comma-separated. */
static const char *live_hosts(fb_registry *r, const char *s, double now) {
  static char buf[256];
  fb_instance *const *v;
  size_t n = fb_service_live(fb_registry_service(r, s), now, &v);
  buf[0] = 0;
  for (size_t i = 0; i < n; i++)
    snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s",
             i ? "," : "", fb_instance_host(v[i]));
  return buf;
}

typedef struct heard {
  fb_registry *r;
  int reaped, expired;
  char last[32];
} heard;

static void listen(void *ud, fb_registry_event ev, const fb_instance *i,
                   double now) {
  heard *h = ud;
  (void)now;
  if (ev == FB_REG_REAPED) {
    h->reaped++;
    snprintf(h->last, sizeof h->last, "%s", fb_instance_host(i));
    /* gone from the registry by the time its listener hears */
    assert_null(fb_registry_instance(h->r, fb_instance_id(i)));
  }
  if (ev == FB_REG_EXPIRED)
    h->expired++;
}

static void late_heartbeat_within_grace_comes_back_in_place(void **state) {
  (void)state;
  fb_registry *r = registry(10, 20, 0, 0);
  heard h = {r, 0, 0, ""};
  fb_registry_set_listener(r, listen, &h);
  assert_int_equal(fb_registry_reap_after(r), 20);
  fb_registry_register(r, "s", "a", 80, 0);
  fb_registry_register(r, "s", "b", 80, 0);
  fb_registry_register(r, "s", "c", 80, 5);
  assert_string_equal(live_hosts(r, "s", 12), "c"); /* a, b expired at 10 */
  /* a at 29.9: expired for 19.9 s, within the grace: back in its place */
  assert_int_equal(fb_registry_register(r, "s", "a", 80, 29.9), FB_REFRESHED);
  assert_string_equal(live_hosts(r, "s", 29.9), "a");
  assert_int_equal(h.reaped, 0);
  /* b at 30: expired for 20 s (heartbeat 0 + timeout 10 + grace 20) */
  uint64_t b_id = fb_instance_id(fb_registry_find(r, "s", "b", 80));
  fb_registry_sweep(r, 30);
  assert_int_equal(h.reaped, 1);
  assert_string_equal(h.last, "b");
  assert_null(fb_registry_find(r, "s", "b", 80));
  assert_null(fb_registry_instance(r, b_id));
  assert_int_equal(fb_registry_reaped(r), 1);
  assert_int_equal(fb_registry_ninstances(r), 2);
  /* b comes back as a new instance: new id, at the end */
  assert_int_equal(fb_registry_register(r, "s", "b", 80, 31), FB_ADDED);
  assert_true(fb_instance_id(fb_registry_find(r, "s", "b", 80)) != b_id);
  assert_int_equal(fb_registry_register(r, "s", "c", 80, 31), FB_REFRESHED);
  assert_string_equal(live_hosts(r, "s", 31), "a,c,b");
  /* the boundary, as for expiry: at exactly timeout + grace it is gone */
  fb_registry_sweep(r, 61 - 1e-9);
  assert_int_equal(h.reaped, 2); /* a: last heartbeat 29.9 */
  assert_non_null(fb_registry_find(r, "s", "c", 80));
  fb_registry_sweep(r, 61);
  assert_int_equal(h.reaped, 4); /* b and c: last heartbeat 31 */
  assert_int_equal(h.expired, 6); /* a, b at 10, c at 15, then all at 41 or before */
  assert_int_equal(fb_registry_ninstances(r), 0);
  assert_string_equal(live_hosts(r, "s", 100), "");
  fb_registry_release(r);
}

static void reap_after_defaults_to_three_timeouts(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  assert_int_equal(fb_registry_heartbeat_timeout(r), 30);
  assert_int_equal(fb_registry_reap_after(r), 90);
  fb_registry_release(r);
  r = registry(4, 0, 0, 0);
  assert_int_equal(fb_registry_reap_after(r), 12);
  fb_registry_register(r, "s", "a", 80, 0);
  fb_registry_sweep(r, 15.9);
  assert_non_null(fb_registry_find(r, "s", "a", 80));
  fb_registry_sweep(r, 16);
  assert_null(fb_registry_find(r, "s", "a", 80));
  fb_registry_release(r);
  /* an infinite grace: expired instances are kept, as before */
  r = registry(1, INFINITY, 0, 0);
  fb_registry_register(r, "s", "a", 80, 0);
  fb_registry_sweep(r, 1e300);
  assert_non_null(fb_registry_find(r, "s", "a", 80));
  fb_registry_release(r);
}

static void bad_limits_are_refused(void **state) {
  (void)state;
  fb_registry_config cfg;
  double bad_reap[] = {-1, NAN, -INFINITY};
  for (size_t i = 0; i < 3; i++) {
    fb_registry_config_init(&cfg);
    cfg.reap_after = bad_reap[i];
    assert_null(fb_registry_new(&cfg));
  }
  fb_registry_config_init(&cfg);
  cfg.max_services = 0;
  assert_null(fb_registry_new(&cfg));
  fb_registry_config_init(&cfg);
  cfg.max_instances = 0;
  assert_null(fb_registry_new(&cfg));
  fb_registry_config_init(&cfg);
  assert_int_equal(cfg.max_services, 10000);
  assert_int_equal(cfg.max_instances, 100000);
  /* names are bounded too, so max_instances bounds the memory */
  fb_registry *n = registry(10, 0, 0, 0);
  char name[FB_NAME_MAX + 2];
  memset(name, 'h', sizeof name - 1);
  name[sizeof name - 1] = 0; /* FB_NAME_MAX + 1 bytes */
  assert_int_equal(fb_registry_register(n, "s", name, 80, 0), FB_EINVAL);
  assert_int_equal(fb_registry_register(n, name, "h", 80, 0), FB_EINVAL);
  fb_instance_opts o;
  fb_instance_opts_init(&o);
  o.zone = name;
  assert_int_equal(fb_registry_register_with(n, "s", "h", 80, &o, 0),
                   FB_EINVAL);
  name[FB_NAME_MAX] = 0;
  assert_int_equal(fb_registry_register_with(n, name, name, 80, &o, 0),
                   FB_ADDED);
  assert_int_equal(fb_registry_ninstances(n), 1);
  fb_registry_release(n);
  /* a NaN clock judges nothing: nothing registered, nothing expired */
  fb_registry *r = registry(10, 0, 0, 0);
  assert_int_equal(fb_registry_register(r, "s", "a", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "s", "b", 80, NAN), FB_EINVAL);
  fb_registry_sweep(r, NAN);
  assert_int_equal(fb_registry_expirations(r), 0);
  assert_non_null(fb_registry_find(r, "s", "a", 80));
  fb_registry_release(r);
}

static void limits_refuse_with_efull(void **state) {
  (void)state;
  char buf[96];
  fb_registry *r = registry(10, 5, 2, 3);
  assert_int_equal(fb_registry_register(r, "s", "a", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "s", "b", 80, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "t", "a", 80, 0), FB_ADDED);
  /* a fourth instance, in an old or a new service */
  assert_int_equal(fb_registry_register(r, "s", "c", 80, 1), FB_EFULL);
  assert_string_equal(fb_registry_strerror(r, FB_EFULL, buf, sizeof buf),
                      "registry full: max_instances (3) reached");
  assert_int_equal(fb_registry_register(r, "u", "a", 80, 1), FB_EFULL);
  assert_null(fb_registry_service(r, "u")); /* no empty service left */
  assert_null(fb_registry_find(r, "s", "c", 80));
  /* refreshing what is there is no growth */
  assert_int_equal(fb_registry_register(r, "s", "a", 80, 1), FB_REFRESHED);
  assert_int_equal(fb_registry_heartbeat(r, "t", "a", 80, 1), FB_REFRESHED);
  assert_int_equal(fb_registry_ninstances(r), 3);
  /* deregistering makes room; a third service is over max_services */
  assert_int_equal(fb_registry_deregister(r, "s", "b", 80), 1);
  assert_int_equal(fb_registry_register(r, "u", "a", 80, 2), FB_EFULL);
  assert_string_equal(fb_registry_strerror(r, FB_EFULL, buf, sizeof buf),
                      "registry full: max_services (2) reached");
  assert_int_equal(fb_registry_register(r, "s", "c", 80, 2), FB_ADDED);
  /* reaping makes room too: at 16 s, s:a (last at 1) is gone */
  assert_int_equal(fb_registry_register(r, "t", "b", 80, 15), FB_EFULL);
  assert_int_equal(fb_registry_register(r, "t", "b", 80, 16), FB_ADDED);
  assert_null(fb_registry_find(r, "s", "a", 80));
  /* a small buffer is cut, still terminated; other errors read as usual */
  assert_string_equal(fb_registry_strerror(r, FB_EFULL, buf, 14),
                      "registry full");
  assert_string_equal(fb_registry_strerror(r, FB_ENOMEM, buf, sizeof buf),
                      "out of memory");
  assert_string_equal(fb_registry_strerror(NULL, FB_EFULL, buf, sizeof buf),
                      fb_strerror(FB_EFULL));
  assert_true(strstr(fb_strerror(FB_EFULL), "max_instances") != NULL);
  fb_registry_release(r);
}

static void removal_keeps_order_and_compacts(void **state) {
  (void)state;
  fb_registry *r = registry(10, 0, 0, 0);
  char host[16];
  for (int i = 0; i < 10; i++) {
    snprintf(host, sizeof host, "h%d", i);
    fb_registry_register(r, "s", host, 80, 0);
  }
  for (int i = 0; i < 10; i += 2) {
    snprintf(host, sizeof host, "h%d", i);
    assert_int_equal(fb_registry_deregister(r, "s", host, 80), 1);
  }
  assert_string_equal(live_hosts(r, "s", 1), "h1,h3,h5,h7,h9");
  fb_registry_register(r, "s", "h0", 80, 1);
  fb_registry_deregister(r, "s", "h9", 80);
  fb_registry_deregister(r, "s", "h3", 80);
  assert_string_equal(live_hosts(r, "s", 1), "h1,h5,h7,h0");
  fb_registry_release(r);
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* n instances in nsvc services, then n more as the first ones are reaped
 * one per registration; returns the seconds it took. */
static double churn(int n, int nsvc) {
  fb_registry *r = registry(10, 10, 0, 2 * (uint32_t)n);
  char svc[16], host[32];
  double dt = 100.0 / n, t0 = seconds();
  for (int i = 0; i < 2 * n; i++) { /* from 20 s on, each reaps one */
    snprintf(svc, sizeof svc, "s%d", i % nsvc);
    snprintf(host, sizeof host, "10.%d.%d.%d", i >> 16, (i >> 8) & 255,
             i & 255);
    fb_registry_register(r, svc, host, 80, i < n ? i * dt : 20 + (i - n) * dt);
  }
  double took = seconds() - t0;
  assert_true(fb_registry_reaped(r) >= (uint64_t)n - 10); /* rounding */
  fb_instance *const *v;
  size_t live = fb_service_live(fb_registry_service(r, "s0"), 120 - dt, &v);
  size_t want = (size_t)(n / 10 / nsvc);
  assert_true(live + 2 >= want && live <= want + 2);
  fb_registry_sweep(r, 200);
  assert_int_equal(fb_registry_reaped(r), 2 * (uint64_t)n);
  assert_int_equal(fb_registry_ninstances(r), 0);
  assert_int_equal(fb_service_live(fb_registry_service(r, "s0"), 200, &v), 0);
  assert_non_null(v);
  fb_registry_release(r);
  return took;
}

static double quickest(int n, int nsvc) {
  double best = churn(n, nsvc);
  for (int i = 0; i < 2; i++) { /* the quickest of three: less noise */
    double t = churn(n, nsvc);
    best = t < best ? t : best;
  }
  return best;
}

/* Each walk reaps one member of a big service, so reaping (and
 * deregistering) must cost O(1) amortised, not O(members): 100,000
 * instances in one service take about as long as in 1,000 services of
 * 100 (O(members) removal: over 100 times as long). A ratio, so it holds
 * on a loaded machine and under valgrind too. */
static void reaping_one_at_a_time_is_linear(void **state) {
  (void)state;
  double spread = quickest(100000, 1000);
  double one = quickest(100000, 1);
  if (one > 10 * spread)
    fail_msg("one service took %.0fx as long as 1,000 (%.3f s, %.3f s)",
             one / spread, one, spread);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(late_heartbeat_within_grace_comes_back_in_place),
      cmocka_unit_test(reap_after_defaults_to_three_timeouts),
      cmocka_unit_test(bad_limits_are_refused),
      cmocka_unit_test(limits_refuse_with_efull),
      cmocka_unit_test(removal_keeps_order_and_compacts),
      cmocka_unit_test(reaping_one_at_a_time_is_linear),
  };
  return cmocka_run_group_tests_name("reap", tests, NULL, NULL);
}
