/*
 * test_core.c -- the reference design's semantics, from C: every breaker
 * transition (strict > at the open timeout, half-open failure), registry
 * expiry at the exact boundary, heartbeat refresh without duplicates,
 * round robin across joins and expiries, and the timer queue's order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fusebox.h"
#include "timerq.h"

/* ------------------------------------------------------------ breaker */

static fb_breaker *doc_breaker(int failures, double timeout, int successes) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = failures;
  cfg.timeout = timeout;
  cfg.success_threshold = successes;
  fb_breaker *b = fb_breaker_new(&cfg);
  assert_non_null(b);
  return b;
}

static void call(fb_breaker *b, fb_outcome o, double now) {
  int64_t p = fb_breaker_acquire(b, now);
  assert_true(p >= 0);
  assert_true(fb_breaker_record(b, p, o, 0, now) >= 0);
}

static void breaker_defaults(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  assert_int_equal(cfg.failure_threshold, 5);
  assert_true(cfg.timeout == 60);
  assert_int_equal(cfg.success_threshold, 3);
}

static void breaker_opens_on_consecutive_failures(void **state) {
  (void)state;
  fb_breaker *b = doc_breaker(3, 5, 3);
  call(b, FB_FAILURE, 0);
  call(b, FB_FAILURE, 0);
  call(b, FB_SUCCESS, 0); /* a success resets the count */
  call(b, FB_FAILURE, 1);
  call(b, FB_FAILURE, 1);
  assert_int_equal(fb_breaker_state_of(b), FB_CLOSED);
  call(b, FB_FAILURE, 2);
  assert_int_equal(fb_breaker_state_of(b), FB_OPEN);
  assert_int_equal(fb_breaker_acquire(b, 2.5), FB_EREJECTED);
  fb_breaker_free(b);
}

static void breaker_timeout_is_strict(void **state) {
  (void)state;
  fb_breaker *b = doc_breaker(1, 5, 1);
  call(b, FB_FAILURE, 10);
  assert_int_equal(fb_breaker_acquire(b, 15), FB_EREJECTED); /* == timeout */
  assert_int_equal(fb_breaker_state_of(b), FB_OPEN);
  assert_true(fb_breaker_retry_after(b, 12) == 3);
  int64_t p = fb_breaker_acquire(b, 15.000001);
  assert_true(p >= 0);
  assert_int_equal(fb_breaker_state_of(b), FB_HALF_OPEN);
  assert_int_equal(fb_breaker_record(b, p, FB_SUCCESS, 0, 15.1), FB_CHANGED);
  assert_int_equal(fb_breaker_state_of(b), FB_CLOSED);
  fb_breaker_free(b);
}

static void breaker_half_open_needs_successes(void **state) {
  (void)state;
  fb_breaker *b = doc_breaker(1, 1, 3);
  call(b, FB_FAILURE, 0);
  call(b, FB_SUCCESS, 2); /* OPEN -> HALF_OPEN, 1 success */
  call(b, FB_SUCCESS, 2);
  assert_int_equal(fb_breaker_state_of(b), FB_HALF_OPEN);
  call(b, FB_SUCCESS, 2);
  assert_int_equal(fb_breaker_state_of(b), FB_CLOSED);
  /* closing reset the failure count: one failure (threshold 1) reopens */
  call(b, FB_FAILURE, 3);
  assert_int_equal(fb_breaker_state_of(b), FB_OPEN);
  fb_breaker_free(b);
}

static void breaker_drops_stale_results(void **state) {
  (void)state;
  fb_breaker *b = doc_breaker(1, 5, 1);
  int64_t early = fb_breaker_acquire(b, 0);
  call(b, FB_FAILURE, 1); /* opens: a new generation */
  assert_int_equal(fb_breaker_record(b, early, FB_FAILURE, 0, 2), FB_ESTALE);
  /* the late failure did not extend the open period */
  assert_true(fb_breaker_acquire(b, 6.5) >= 0);
  assert_int_equal(fb_breaker_record(b, 999, FB_SUCCESS, 0, 7), FB_EINVAL);
  fb_breaker_free(b);
}

static void breaker_rejects_bad_config(void **state) {
  (void)state;
  fb_breaker_config cfg;
  const char *field;
  fb_breaker_config_init(&cfg);
  cfg.timeout = 0;
  assert_int_equal(fb_breaker_config_check(&cfg, &field), FB_EINVAL);
  assert_string_equal(field, "timeout");
  assert_null(fb_breaker_new(&cfg));
  fb_breaker_config_init(&cfg);
  cfg.success_threshold = 0;
  assert_int_equal(fb_breaker_config_check(&cfg, &field), FB_EINVAL);
  assert_string_equal(field, "success_threshold");
  assert_int_equal(fb_breaker_config_check(NULL, &field), FB_EINVAL);
  memset(&cfg, 0xab, sizeof cfg); /* garbage, never initialised */
  assert_int_equal(fb_breaker_config_check(&cfg, &field), FB_EINVAL);
  assert_string_equal(field, "config (not initialised with fb_breaker_config_init)");
  assert_null(fb_breaker_new(&cfg));
}

static void null_pointers_are_errors(void **state) {
  (void)state;
  assert_int_equal(fb_breaker_acquire(NULL, 0), FB_EINVAL);
  assert_int_equal(fb_breaker_record(NULL, 0, FB_SUCCESS, 0, 0), FB_EINVAL);
  assert_int_equal(fb_breaker_state_of(NULL), FB_CLOSED);
  assert_int_equal(fb_breaker_transitions(NULL), 0);
  fb_breaker_force_open(NULL, 0);
  fb_breaker_reset(NULL, 0);
  fb_breaker_free(NULL);
  assert_int_equal(fb_registry_register(NULL, "s", "h", 1, 0), FB_EINVAL);
  assert_int_equal(fb_registry_deregister(NULL, "s", "h", 1), FB_EINVAL);
  assert_null(fb_registry_service(NULL, "s"));
  assert_null(fb_registry_find(NULL, "s", "h", 1));
  fb_instance *const *v;
  assert_int_equal(fb_service_live(NULL, 0, &v), 0);
  assert_null(fb_balancer_new(NULL, "round_robin", 0));
  assert_null(fb_balancer_pick(NULL, NULL, 0));
  assert_string_equal(fb_instance_host(NULL), "");
  fb_registry_release(NULL);
  fb_balancer_free(NULL);
  fb_runtime_config rc;
  memset(&rc, 0, sizeof rc); /* never initialised */
  assert_null(fb_runtime_new(&rc));
}

/* ----------------------------------------------------------- registry */

static size_t live(fb_registry *r, const char *svc, double now,
                   fb_instance *const **out) {
  return fb_service_live(fb_registry_service(r, svc), now, out);
}

static void registry_expiry_boundary(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  fb_instance *const *v;
  assert_true(fb_registry_heartbeat_timeout(r) == 30);
  assert_int_equal(fb_registry_register(r, "s", "a", 1, 100), FB_ADDED);
  assert_int_equal(live(r, "s", 129.999, &v), 1);
  assert_int_equal(live(r, "s", 130, &v), 0); /* now - last == timeout */
  fb_registry_release(r);
}

static void registry_refresh_keeps_order(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  fb_instance *const *v;
  assert_int_equal(fb_registry_register(r, "s", "a", 1, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "s", "b", 1, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "s", "a", 2, 0), FB_ADDED);
  assert_int_equal(fb_registry_heartbeat(r, "s", "a", 1, 10), FB_REFRESHED);
  assert_int_equal(live(r, "s", 10, &v), 3);
  assert_string_equal(fb_instance_host(v[0]), "a");
  assert_int_equal(fb_instance_port(v[0]), 1);
  assert_string_equal(fb_instance_host(v[1]), "b");
  assert_int_equal(fb_instance_port(v[2]), 2);
  assert_true(fb_instance_last_heartbeat(v[0]) == 10);
  /* b and a:2 expire at 30; a:1 (refreshed at 10) lives until 40 */
  assert_int_equal(live(r, "s", 35, &v), 1);
  assert_int_equal(fb_instance_port(v[0]), 1);
  /* an expired instance comes back in its old place */
  assert_int_equal(fb_registry_heartbeat(r, "s", "b", 1, 36), FB_REFRESHED);
  assert_int_equal(live(r, "s", 36, &v), 2);
  assert_string_equal(fb_instance_host(v[0]), "a");
  assert_string_equal(fb_instance_host(v[1]), "b");
  fb_registry_release(r);
}

static void registry_deregister_and_errors(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  fb_instance *const *v;
  fb_registry_register(r, "s", "a", 1, 0);
  fb_registry_register(r, "s", "b", 1, 0);
  uint64_t id_b = 0;
  live(r, "s", 0, &v);
  id_b = fb_instance_id(v[1]);
  assert_int_equal(fb_registry_deregister(r, "s", "a", 1), 1);
  assert_int_equal(fb_registry_deregister(r, "s", "a", 1), 0);
  assert_int_equal(fb_registry_deregister(r, "nope", "a", 1), 0);
  assert_int_equal(live(r, "s", 1, &v), 1);
  assert_int_equal(fb_instance_id(v[0]), id_b);
  assert_null(fb_registry_service(r, "nope"));
  assert_int_equal(live(r, "nope", 0, &v), 0);
  assert_int_equal(fb_registry_register(r, "", "a", 1, 0), FB_EINVAL);
  assert_int_equal(fb_registry_register(r, "s", "a", 0, 0), FB_EINVAL);
  assert_int_equal(fb_registry_register(r, "s", "a", 65536, 0), FB_EINVAL);
  assert_int_equal(fb_registry_register(r, "s", NULL, 1, 0), FB_EINVAL);
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout = -1;
  assert_null(fb_registry_new(&cfg));
  memset(&cfg, 0, sizeof cfg); /* never initialised */
  cfg.heartbeat_timeout = 30;
  assert_null(fb_registry_new(&cfg));
  fb_registry_release(r);
}

static void registry_many_instances(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  fb_instance *const *v;
  char host[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(host, sizeof host, "10.0.%d.%d", i / 256, i % 256);
    assert_int_equal(fb_registry_register(r, i % 2 ? "odd" : "even", host,
                                          8080, i < 2500 ? 0 : 20),
                     FB_ADDED);
  }
  assert_int_equal(live(r, "odd", 29, &v), 2500);
  assert_int_equal(live(r, "even", 31, &v), 1250); /* the first half expired */
  for (int i = 0; i < 5000; i += 2) {
    snprintf(host, sizeof host, "10.0.%d.%d", i / 256, i % 256);
    assert_int_equal(fb_registry_deregister(r, "even", host, 8080), 1);
  }
  assert_int_equal(live(r, "even", 31, &v), 0);
  assert_int_equal(live(r, "odd", 31, &v), 1250);
  fb_registry_release(r);
}

/* ----------------------------------------------------------- balancer */

static const char *pick_host(fb_balancer *lb, fb_registry *r, double now) {
  fb_instance *i = fb_balancer_pick(lb, fb_registry_service(r, "s"), now);
  return i ? fb_instance_host(i) : NULL;
}

static void round_robin_follows_live_set(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  fb_balancer *lb = fb_balancer_new(r, "round_robin", 1);
  assert_non_null(lb);
  assert_null(fb_balancer_pick(lb, fb_registry_service(r, "s"), 0));
  fb_registry_register(r, "s", "a", 1, 0);
  fb_registry_register(r, "s", "b", 1, 0);
  assert_string_equal(pick_host(lb, r, 0), "a"); /* counter 0 */
  assert_string_equal(pick_host(lb, r, 0), "b"); /* counter 1 */
  fb_registry_register(r, "s", "c", 1, 10);      /* joins */
  assert_string_equal(pick_host(lb, r, 10), "c"); /* 2 % 3 */
  assert_string_equal(pick_host(lb, r, 10), "a"); /* 3 % 3 */
  /* a and b expire at 30: live = [c], counter 4 */
  assert_string_equal(pick_host(lb, r, 30), "c");
  fb_registry_register(r, "s", "a", 1, 31); /* back in its old place */
  assert_string_equal(pick_host(lb, r, 31), "c"); /* live [a, c], 5 % 2 */
  assert_string_equal(pick_host(lb, r, 31), "a");
  /* the counter does not move while nothing is live */
  assert_null(pick_host(lb, r, 100));
  fb_registry_register(r, "s", "b", 1, 100);
  assert_string_equal(pick_host(lb, r, 100), "b");
  fb_balancer_free(lb);
  fb_registry_release(r);
}

static void random_is_seeded_and_uniform(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  fb_registry_register(r, "s", "a", 1, 0);
  fb_registry_register(r, "s", "b", 1, 0);
  fb_registry_register(r, "s", "c", 1, 0);
  fb_balancer *x = fb_balancer_new(r, "random", 42);
  fb_balancer *y = fb_balancer_new(r, "random", 42);
  int counts[3] = {0};
  for (int i = 0; i < 30000; i++) {
    const char *h = pick_host(x, r, 1);
    assert_string_equal(h, pick_host(y, r, 1));
    counts[h[0] - 'a']++;
  }
  for (int i = 0; i < 3; i++)
    assert_in_range(counts[i], 9500, 10500);
  fb_balancer_free(x);
  fb_balancer_free(y);
  fb_registry_release(r);
}

static void balancer_outlives_registry(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  fb_balancer *lb = fb_balancer_new(r, "round_robin", 0);
  fb_registry_register(r, "s", "a", 1, 0);
  fb_service *s = fb_registry_service(r, "s");
  fb_registry_release(r); /* the balancer still holds it */
  assert_non_null(fb_balancer_pick(lb, s, 1));
  assert_null(fb_balancer_new(fb_balancer_registry(lb), "nope", 0));
  assert_string_equal(fb_balancer_algorithm(lb), "round_robin");
  assert_null(fb_balancer_algorithm(NULL));
  fb_balancer_free(lb);
}

/* ------------------------------------------------------ timerq, rng */

static void timerq_orders_by_deadline_then_seq(void **state) {
  (void)state;
  fb_timerq q = {0};
  double deadlines[] = {5, 1, 3, 1, 5, 0, 3};
  for (int i = 0; i < 7; i++)
    assert_int_equal(fb_timerq_push(&q, deadlines[i], i, 0), 0);
  int expect[] = {5, 1, 3, 2, 6, 0, 4};
  fb_timer t;
  for (int i = 0; i < 7; i++) {
    assert_int_equal(fb_timerq_pop(&q, &t), 0);
    assert_int_equal(t.ref, expect[i]);
  }
  assert_int_equal(fb_timerq_pop(&q, &t), -1);
  fb_timerq_free(&q);
}

static int drop_odd(void *ctx, const fb_timer *t) {
  (void)ctx;
  return t->ref % 2;
}

/* Dropping entries keeps the others in (deadline, seq) order. */
static void timerq_drop_keeps_the_order_of_the_rest(void **state) {
  (void)state;
  fb_timerq q = {0};
  double deadlines[] = {5, 1, 3, 1, 5, 0, 3, 2, 4, 0};
  for (int i = 0; i < 10; i++)
    assert_int_equal(fb_timerq_push(&q, deadlines[i], i, 0), 0);
  assert_int_equal(fb_timerq_drop(&q, drop_odd, NULL), 5);
  int expect[] = {2, 6, 8, 0, 4}; /* deadlines 3, 3, 4, 5, 5 (ties by seq) */
  fb_timer t;
  for (int i = 0; i < 5; i++) {
    assert_int_equal(fb_timerq_pop(&q, &t), 0);
    assert_int_equal(t.ref, expect[i]);
  }
  assert_int_equal(fb_timerq_pop(&q, &t), -1);
  fb_timerq_free(&q);
}

/* The lanes (runs of rising deadlines) and the heap together pop exactly
 * in (deadline, seq) order: waves of equal deadlines as sleepers make
 * them, wakes due at once, scattered ones, pops and drops in between,
 * checked against a plain list kept in that order. */
typedef struct { double deadline; int ref; } ref_entry;

static int ref_before(const ref_entry *a, const ref_entry *b) {
  return a->deadline < b->deadline || (a->deadline == b->deadline && a->ref < b->ref);
}

static int drop_every_seventh(void *ctx, const fb_timer *t) {
  (void)ctx;
  return t->ref % 7 == 3;
}

static void timerq_lanes_keep_the_heap_order(void **state) {
  (void)state;
  enum { N = 20000 };
  static ref_entry live[N];
  int nlive = 0, next_ref = 0;
  fb_timerq q = {0};
  fb_rng r;
  fb_rng_seed(&r, 7);
  double now = 0;
  fb_timer t;
  for (int step = 0; step < 60000; step++) {
    uint64_t dice = fb_rng_below(&r, 100);
    if (dice < 55 && nlive < N) { /* mostly waves: few distinct paces */
      double d = dice < 40   ? now + 0.5 * (double)(1 + fb_rng_below(&r, 3))
                 : dice < 48 ? now /* a wake: due at once */
                             : now + (double)fb_rng_below(&r, 1000) / 7.0;
      assert_int_equal(fb_timerq_push(&q, d, next_ref, 0), 0);
      live[nlive++] = (ref_entry){d, next_ref++}; /* refs rise as seqs do */
    } else if (dice < 99 && nlive > 0) {
      int best = 0;
      for (int i = 1; i < nlive; i++)
        if (ref_before(&live[i], &live[best]))
          best = i;
      assert_int_equal(fb_timerq_pop(&q, &t), 0);
      assert_int_equal(t.ref, live[best].ref);
      now = t.deadline;
      live[best] = live[--nlive];
    } else {
      size_t went = fb_timerq_drop(&q, drop_every_seventh, NULL);
      int kept = 0;
      for (int i = 0; i < nlive; i++)
        if (live[i].ref % 7 != 3)
          live[kept++] = live[i];
      assert_int_equal(went, (size_t)(nlive - kept));
      nlive = kept;
    }
    assert_int_equal(q.n, (size_t)nlive);
  }
  fb_timerq_free(&q);
}

static void rng_is_reproducible_and_bounded(void **state) {
  (void)state;
  fb_rng a, b, c;
  fb_rng_seed(&a, 7);
  fb_rng_seed(&b, 7);
  fb_rng_seed(&c, 8);
  int differ = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = fb_rng_next(&a);
    assert_true(x == fb_rng_next(&b));
    differ += x != fb_rng_next(&c);
  }
  for (int i = 0; i < 1000; i++) {
    double d = fb_rng_double(&a);
    assert_true(d >= 0 && d < 1);
    assert_true(fb_rng_below(&a, 3) < 3);
  }
  assert_true(differ > 990);
  assert_string_equal(fb_strerror(FB_EREJECTED), "circuit open: call rejected");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(breaker_defaults),
      cmocka_unit_test(breaker_opens_on_consecutive_failures),
      cmocka_unit_test(breaker_timeout_is_strict),
      cmocka_unit_test(breaker_half_open_needs_successes),
      cmocka_unit_test(breaker_drops_stale_results),
      cmocka_unit_test(breaker_rejects_bad_config),
      cmocka_unit_test(null_pointers_are_errors),
      cmocka_unit_test(registry_expiry_boundary),
      cmocka_unit_test(registry_refresh_keeps_order),
      cmocka_unit_test(registry_deregister_and_errors),
      cmocka_unit_test(registry_many_instances),
      cmocka_unit_test(round_robin_follows_live_set),
      cmocka_unit_test(random_is_seeded_and_uniform),
      cmocka_unit_test(balancer_outlives_registry),
      cmocka_unit_test(timerq_orders_by_deadline_then_seq),
      cmocka_unit_test(timerq_drop_keeps_the_order_of_the_rest),
      cmocka_unit_test(timerq_lanes_keep_the_heap_order),
      cmocka_unit_test(rng_is_reproducible_and_bounded),
  };
  return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
