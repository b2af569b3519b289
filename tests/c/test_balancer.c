/*
 * test_balancer.c -- the balancers on an explicit clock: exact sequences
 * for round robin and smooth WRR, seeded statistics for the random ones,
 * key remapping for the hashing ones, health, panic mode and feedback.
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

#define SEED 42

static const char *host_of(int i) {
  static char buf[8][32];
  static int next;
  char *b = buf[next++ % 8];
  snprintf(b, 32, "10.0.%d.%d", i / 256, i % 256);
  return b;
}

/* A registry with n instances of "svc" (weights w, or 1), at t = 0. */
static fb_registry *make(int n, const uint32_t *w) {
  fb_registry *r = fb_registry_new(NULL);
  assert_non_null(r);
  for (int i = 0; i < n; i++) {
    fb_instance_opts o;
    fb_instance_opts_init(&o);
    o.weight = w ? w[i] : 1;
    assert_int_equal(fb_registry_register_with(r, "svc", host_of(i), 80, &o, 0),
                     FB_ADDED);
  }
  return r;
}

static fb_balancer *lb_new(fb_registry *r, const char *algo) {
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  cfg.algorithm = algo;
  cfg.seed = SEED;
  fb_balancer *lb = fb_balancer_new_config(r, &cfg);
  assert_non_null(lb);
  return lb;
}

/* Index of the instance (hosts are 10.0.x.y), or -1. */
static int idx(const fb_instance *i) {
  if (!i)
    return -1;
  int a, b;
  assert_int_equal(sscanf(fb_instance_host(i), "10.0.%d.%d", &a, &b), 2);
  return a * 256 + b;
}

/* Picks and reports at once (zero latency), so in-flight stays 0. */
static int pick_done(fb_balancer *lb, fb_service *s, double now) {
  fb_instance *i = fb_balancer_pick(lb, s, now);
  if (!i)
    return -1;
  assert_int_equal(fb_balancer_done(lb, i, 1, 0, now), 0);
  return idx(i);
}

static fb_service *svc(fb_registry *r) {
  fb_service *s = fb_registry_service(r, "svc");
  assert_non_null(s);
  return s;
}

/* ---------------------------------------------------------- round robin */

/* A registry with n instances of "svc" registered at t = 0, which expire
 * 10 s after their last heartbeat. */
static fb_registry *make_expiring(int n) {
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout = 10;
  fb_registry *r = fb_registry_new(&cfg);
  assert_non_null(r);
  for (int i = 0; i < n; i++)
    fb_registry_register(r, "svc", host_of(i), 80, 0);
  return r;
}

static void test_round_robin_exact(void **state) {
  (void)state;
  fb_registry *r = make_expiring(3);
  fb_balancer *lb = lb_new(r, "round_robin");
  fb_service *s = svc(r);
  int want[] = {0, 1, 2, 0};
  for (int k = 0; k < 4; k++)
    assert_int_equal(pick_done(lb, s, 1), want[k]);
  /* A join between picks: counter 4 over 4 instances -> the first. */
  fb_registry_register(r, "svc", host_of(3), 80, 2);
  int want2[] = {0, 1, 2, 3, 0};
  for (int k = 0; k < 5; k++)
    assert_int_equal(pick_done(lb, s, 2), want2[k]);
  /* 0, 1, 2 expire at t = 10; 3 (registered at t = 2) stays. Re-beat 1. */
  fb_registry_heartbeat(r, "svc", host_of(1), 80, 5);
  int want3[] = {3, 1, 3}; /* counter 9, 10, 11 over [1, 3] */
  for (int k = 0; k < 3; k++)
    assert_int_equal(pick_done(lb, s, 10), want3[k]);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* Picks keep counter % n without dividing, and skip the expiry pass at
 * the now of the last one: a retry's pick over the rest (which divides)
 * must leave the sequence exactly the reference's, and a new now must
 * still expire. */
static void test_round_robin_after_exclude_and_expiry(void **state) {
  (void)state;
  fb_registry *r = make_expiring(4);
  fb_balancer *lb = lb_new(r, "round_robin");
  fb_service *s = svc(r);
  assert_int_equal(pick_done(lb, s, 1), 0); /* counter 0 */
  assert_int_equal(pick_done(lb, s, 1), 1); /* counter 1 */
  uint64_t ex = fb_instance_id(fb_registry_find(r, "svc", host_of(2), 80));
  /* counter 2 over the rest [0, 1, 3]: index 2, the instance 3 */
  fb_instance *i = fb_balancer_pick_excluding(lb, s, NULL, 0, &ex, 1, 1);
  assert_int_equal(idx(i), 3);
  fb_balancer_done(lb, i, 1, 0, 1);
  int want[] = {3, 0, 1, 2}; /* counter 3, 4, 5, 6 over all four */
  for (int k = 0; k < 4; k++)
    assert_int_equal(pick_done(lb, s, 1), want[k]);
  /* picks at one now skip the expiry pass after the first; at the next
   * now it runs: 0, 1, 2, 3 expire at t = 10 but 1 beat at t = 1 */
  fb_registry_heartbeat(r, "svc", host_of(1), 80, 1);
  assert_int_equal(pick_done(lb, s, 9), 3); /* counter 7 */
  assert_int_equal(pick_done(lb, s, 9), 0); /* counter 8 */
  assert_int_equal(pick_done(lb, s, 10), 1); /* counter 9 over [1] */
  assert_int_equal(pick_done(lb, s, 10), 1);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* ------------------------------------------------------- smooth WRR */

/* nginx's loop, verbatim in spirit: the oracle for the O(k) version. */
static void nginx_wrr(const uint32_t *w, int n, int picks, int *out) {
  long cur[64] = {0}, total = 0;
  for (int i = 0; i < n; i++)
    total += w[i];
  for (int k = 0; k < picks; k++) {
    int best = -1;
    for (int i = 0; i < n; i++) {
      cur[i] += w[i];
      if (best < 0 || cur[i] > cur[best])
        best = i;
    }
    cur[best] -= total;
    out[k] = best;
  }
}

static void expect_nginx(fb_balancer *lb, fb_service *s, const uint32_t *w,
                         const int *ids, int n, int picks) {
  int want[512];
  assert_true(picks <= 512);
  nginx_wrr(w, n, picks, want);
  for (int k = 0; k < picks; k++)
    assert_int_equal(pick_done(lb, s, 0), ids[want[k]]);
}

static void test_wrr_5_1_1(void **state) {
  (void)state;
  uint32_t w[] = {5, 1, 1};
  fb_registry *r = make(3, w);
  fb_balancer *lb = lb_new(r, "weighted_round_robin");
  int want[] = {0, 0, 1, 0, 2, 0, 0}; /* a a b a c a a */
  for (int round = 0; round < 3; round++)
    for (int k = 0; k < 7; k++)
      assert_int_equal(pick_done(lb, svc(r), 0), want[k]);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

static void test_wrr_matches_nginx(void **state) {
  (void)state;
  static const uint32_t sets[][6] = {
      {1, 1, 1, 0}, {3, 2, 1, 0}, {4, 4, 2, 1, 0}, {7, 5, 5, 1, 3, 0},
      {1, 9, 0},    {2, 3, 2, 3, 2, 0},
  };
  for (size_t t = 0; t < sizeof sets / sizeof sets[0]; t++) {
    int n = 0, ids[6], total = 0;
    while (sets[t][n]) {
      ids[n] = n;
      total += sets[t][n++];
    }
    fb_registry *r = make(n, sets[t]);
    fb_balancer *lb = lb_new(r, "weighted_round_robin");
    expect_nginx(lb, svc(r), sets[t], ids, n, 3 * total);
    fb_balancer_free(lb);
    fb_registry_release(r);
  }
}

static void test_wrr_after_weight_change_and_leave(void **state) {
  (void)state;
  uint32_t w[] = {5, 1, 1, 2};
  int ids[] = {0, 1, 2, 3};
  fb_registry *r = make(4, w);
  fb_balancer *lb = lb_new(r, "weighted_round_robin");
  fb_service *s = svc(r);
  expect_nginx(lb, s, w, ids, 4, 4); /* mid-period */
  /* A new weight set starts a new sequence. */
  fb_instance *b = fb_registry_find(r, "svc", host_of(1), 80);
  assert_int_equal(fb_instance_set_weight(b, 3), 0);
  uint32_t w2[] = {5, 3, 1, 2};
  expect_nginx(lb, s, w2, ids, 4, 2 * 11);
  /* So does a smaller membership: 0 leaves, order is kept. */
  assert_int_equal(fb_registry_deregister(r, "svc", host_of(0), 80), 1);
  uint32_t w3[] = {3, 1, 2};
  int ids3[] = {1, 2, 3};
  expect_nginx(lb, s, w3, ids3, 3, 2 * 6);
  /* Re-registering with a weight also changes it. */
  fb_instance_opts o = {.weight = 4, .zone = NULL};
  assert_int_equal(fb_registry_register_with(r, "svc", host_of(3), 80, &o, 0),
                   FB_REFRESHED);
  uint32_t w4[] = {3, 1, 4};
  expect_nginx(lb, s, w4, ids3, 3, 16);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* ------------------------------------------------- random and P2C */

static void count_picks(fb_balancer *lb, fb_service *s, int picks, int *hits) {
  for (int k = 0; k < picks; k++)
    hits[pick_done(lb, s, 0)]++;
}

static void test_random_is_uniform(void **state) {
  (void)state;
  fb_registry *r = make(4, NULL);
  fb_balancer *lb = lb_new(r, "random");
  int hits[4] = {0};
  count_picks(lb, svc(r), 40000, hits);
  for (int i = 0; i < 4; i++) /* 10000 expected, sd ~87 */
    assert_in_range(hits[i], 9600, 10400);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* Instance 0 keeps 10 calls in flight: two samples avoid it unless both
 * land on it, so it gets 1/16 of picks and the others 5/16 each. */
static void test_least_request_p2c(void **state) {
  (void)state;
  fb_registry *r = make(4, NULL);
  fb_balancer *lb = lb_new(r, "least_request");
  fb_instance *busy = fb_registry_find(r, "svc", host_of(0), 80);
  for (int k = 0; k < 10; k++)
    assert_int_equal(fb_balancer_take(lb, busy), 0);
  int hits[4] = {0};
  count_picks(lb, svc(r), 32000, hits);
  assert_in_range(hits[0], 1700, 2300);
  for (int i = 1; i < 4; i++)
    assert_in_range(hits[i], 9600, 10400);
  assert_int_equal(fb_instance_inflight(busy), 10);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

static void test_least_request_choices(void **state) {
  (void)state;
  fb_registry *r = make(4, NULL);
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  cfg.algorithm = "least_request";
  cfg.choices = 3; /* busy chosen only if all three land on it: 1/64 */
  fb_balancer *lb = fb_balancer_new_config(r, &cfg);
  fb_balancer_take(lb, fb_registry_find(r, "svc", host_of(0), 80));
  int hits[4] = {0};
  count_picks(lb, svc(r), 32000, hits);
  assert_in_range(hits[0], 350, 650);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* A slow instance (1 s vs 10 ms) is picked only when both samples are it. */
static void test_peak_ewma_avoids_slow(void **state) {
  (void)state;
  fb_registry *r = make(4, NULL);
  fb_balancer *lb = lb_new(r, "peak_ewma");
  fb_service *s = svc(r);
  for (int i = 0; i < 4; i++) {
    fb_instance *inst = fb_registry_find(r, "svc", host_of(i), 80);
    fb_balancer_take(lb, inst);
    fb_balancer_done(lb, inst, 1, i == 2 ? 1.0 : 0.01, 0);
  }
  assert_true(fb_instance_latency(fb_registry_find(r, "svc", host_of(2), 80)) == 1.0);
  int hits[4] = {0};
  for (int k = 0; k < 16000; k++) {
    fb_instance *i = fb_balancer_pick(lb, s, 0);
    hits[idx(i)]++;
    fb_balancer_done(lb, i, 1, idx(i) == 2 ? 1.0 : 0.01, 0);
  }
  assert_in_range(hits[2], 800, 1200);
  /* Many decay times later the slow estimate has decayed below the fresh
   * 10 ms ones, so it is probed again (and is fast now). */
  fb_instance *slow = fb_registry_find(r, "svc", host_of(2), 80);
  /* heartbeats all along: an instance silent for 1000 s would have been
   * reaped, and its statistics with it */
  for (double t = 25; t <= 1000; t += 25)
    for (int i = 0; i < 4; i++)
      fb_registry_heartbeat(r, "svc", host_of(i), 80, t);
  assert_ptr_equal(fb_registry_find(r, "svc", host_of(2), 80), slow);
  int probed = 0;
  for (int k = 0; k < 400; k++) {
    fb_instance *i = fb_balancer_pick(lb, s, 1000);
    probed += i == slow;
    fb_balancer_done(lb, i, 1, 0.01, 1000);
  }
  assert_true(probed > 50);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* ------------------------------------------------------ keyed pickers */

#define NKEYS 20000

static void map_keys(fb_balancer *lb, fb_service *s, int *owner) {
  char key[32];
  for (int k = 0; k < NKEYS; k++) {
    snprintf(key, sizeof key, "user-%d", k);
    fb_instance *i = fb_balancer_pick_key(lb, s, key, strlen(key), 0);
    owner[k] = idx(i);
    fb_balancer_done(lb, i, 1, 0, 0);
  }
}

/* Leaving moves only the leaver's keys; joining moves keys only to the
 * newcomer. Returns the fractions moved on leave and on join. */
static void remap(const char *algo, int n, double *leave, double *join) {
  static int before[NKEYS], after[NKEYS];
  fb_registry *r = make(n, NULL);
  fb_balancer *lb = lb_new(r, algo);
  fb_service *s = svc(r);
  map_keys(lb, s, before);
  map_keys(lb, s, after); /* stable while nothing changes */
  assert_memory_equal(before, after, sizeof before);
  fb_registry_deregister(r, "svc", host_of(7), 80);
  map_keys(lb, s, after);
  int moved = 0;
  for (int k = 0; k < NKEYS; k++) {
    moved += before[k] != after[k];
    assert_true(after[k] != 7);
  }
  *leave = (double)moved / NKEYS;
  fb_registry_register(r, "svc", host_of(7), 80, 0); /* back, at the end */
  fb_registry_register(r, "svc", host_of(n), 80, 0);
  map_keys(lb, s, before);
  fb_registry_deregister(r, "svc", host_of(n), 80);
  map_keys(lb, s, after);
  moved = 0;
  for (int k = 0; k < NKEYS; k++)
    moved += before[k] != after[k];
  *join = (double)moved / NKEYS;
  fb_balancer_free(lb);
  fb_registry_release(r);
}

static void test_consistent_hash_remaps_one_nth(void **state) {
  (void)state;
  double leave, join;
  remap("consistent_hash", 50, &leave, &join);
  assert_true(leave > 0.5 / 50 && leave < 1.6 / 50);
  assert_true(join > 0.5 / 51 && join < 1.6 / 51);
}

static void test_maglev_remaps_at_most_two_nth(void **state) {
  (void)state;
  double leave, join;
  remap("maglev", 50, &leave, &join);
  assert_true(leave > 0.5 / 50 && leave <= 2.0 / 50);
  assert_true(join > 0.5 / 51 && join <= 2.0 / 51);
}

/* Only the leaver's keys move on the ring. */
static void test_ring_moves_only_the_leavers_keys(void **state) {
  (void)state;
  static int before[NKEYS], after[NKEYS];
  fb_registry *r = make(20, NULL);
  fb_balancer *lb = lb_new(r, "consistent_hash");
  map_keys(lb, svc(r), before);
  fb_registry_deregister(r, "svc", host_of(3), 80);
  map_keys(lb, svc(r), after);
  for (int k = 0; k < NKEYS; k++)
    if (before[k] != 3)
      assert_int_equal(after[k], before[k]);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

static void weighted_shares(const char *algo, double tolerance) {
  uint32_t w[] = {1, 2, 3};
  fb_registry *r = make(3, w);
  fb_balancer *lb = lb_new(r, algo);
  static int owner[NKEYS];
  map_keys(lb, svc(r), owner);
  int hits[3] = {0};
  for (int k = 0; k < NKEYS; k++)
    hits[owner[k]]++;
  for (int i = 0; i < 3; i++)
    assert_true(fabs((double)hits[i] / NKEYS - w[i] / 6.0) < tolerance);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

static void test_keyed_weights(void **state) {
  (void)state;
  weighted_shares("consistent_hash", 0.05);
  weighted_shares("maglev", 0.02);
}

static void test_keyless_hash_pick_is_random(void **state) {
  (void)state;
  fb_registry *r = make(4, NULL);
  fb_balancer *lb = lb_new(r, "maglev");
  int hits[4] = {0};
  count_picks(lb, svc(r), 4000, hits);
  for (int i = 0; i < 4; i++)
    assert_in_range(hits[i], 850, 1150);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* ------------------------------------------------------- health, panic */

static void test_down_instances_are_skipped(void **state) {
  (void)state;
  const char *algos[] = {"round_robin", "random", "weighted_round_robin",
                         "least_request", "peak_ewma", "consistent_hash",
                         "maglev"};
  for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++) {
    fb_registry *r = make(4, NULL);
    fb_balancer *lb = lb_new(r, algos[a]);
    int hits[4] = {0};
    count_picks(lb, svc(r), 100, hits); /* build tables first */
    assert_int_equal(fb_registry_mark(r, "svc", host_of(1), 80, 0), 1);
    fb_instance_set_healthy(fb_registry_find(r, "svc", host_of(2), 80), 0);
    memset(hits, 0, sizeof hits);
    count_picks(lb, svc(r), 400, hits);
    assert_int_equal(hits[1] + hits[2], 0);
    assert_true(hits[0] > 0 && hits[3] > 0);
    /* Both flags are independent: clearing one is not enough. */
    assert_int_equal(fb_registry_mark(r, "svc", host_of(1), 80, 1), 1);
    fb_registry_mark(r, "svc", host_of(2), 80, 1);
    memset(hits, 0, sizeof hits);
    count_picks(lb, svc(r), 400, hits);
    assert_int_equal(hits[2], 0);
    assert_true(hits[1] > 0);
    fb_balancer_free(lb);
    fb_registry_release(r);
  }
}

static void test_panic_mode(void **state) {
  (void)state;
  fb_registry *r = make(4, NULL);
  fb_balancer *lb = lb_new(r, "round_robin");
  fb_service *s = svc(r);
  fb_instance *const *cand;
  fb_registry_mark(r, "svc", host_of(0), 80, 0);
  fb_registry_mark(r, "svc", host_of(1), 80, 0);
  /* 2 of 4 healthy: exactly the threshold, not below it. */
  assert_int_equal(fb_balancer_candidates(lb, s, 0, &cand), 2);
  fb_registry_mark(r, "svc", host_of(2), 80, 0);
  assert_int_equal(fb_balancer_candidates(lb, s, 0, &cand), 4); /* panic */
  int hits[4] = {0};
  count_picks(lb, s, 8, hits);
  for (int i = 0; i < 4; i++)
    assert_int_equal(hits[i], 2);
  fb_balancer_free(lb);
  /* Threshold 0: never panic, so no pick when none is healthy. */
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  cfg.panic_threshold = 0;
  lb = fb_balancer_new_config(r, &cfg);
  fb_registry_mark(r, "svc", host_of(3), 80, 0);
  assert_null(fb_balancer_pick(lb, s, 0));
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* ------------------------------------------------------------ feedback */

static void test_done_accounting(void **state) {
  (void)state;
  fb_registry *r = make(1, NULL);
  fb_registry *other = make(1, NULL);
  fb_balancer *lb = lb_new(r, "round_robin");
  fb_instance *i = fb_balancer_pick(lb, svc(r), 0);
  assert_int_equal(fb_instance_inflight(i), 1);
  assert_int_equal(fb_balancer_done(lb, i, 1, -1, 0), FB_EINVAL);
  assert_int_equal(fb_balancer_done(lb, i, 1, NAN, 0), FB_EINVAL);
  assert_int_equal(fb_balancer_done(lb, i, 0, 0.5, 1), 0);
  assert_int_equal(fb_balancer_done(lb, i, 1, 0.5, 1), FB_EINVAL); /* twice */
  assert_int_equal(fb_instance_inflight(i), 0);
  assert_int_equal(fb_instance_failures(i), 1);
  assert_int_equal(fb_instance_successes(i), 0);
  assert_true(fb_instance_latency(i) == 0.5);
  fb_instance *foreign = fb_registry_find(other, "svc", host_of(0), 80);
  fb_balancer_take(lb, i);
  assert_int_equal(fb_balancer_take(lb, foreign), FB_ENOENT);
  assert_int_equal(fb_balancer_done(lb, foreign, 1, 0, 0), FB_ENOENT);
  assert_int_equal(fb_balancer_done(lb, i, 1, 0.1, 11), 0);
  /* Faster report after one decay time (10 s): weight 1 - 1/e. */
  assert_true(fabs(fb_instance_latency(i) - (0.5 / M_E + 0.1 * (1 - 1 / M_E))) < 1e-12);
  fb_balancer_free(lb);
  fb_registry_release(r);
  fb_registry_release(other);
}

static void test_instance_data_survives(void **state) {
  (void)state;
  fb_registry_config rc;
  fb_registry_config_init(&rc);
  rc.heartbeat_timeout = 5;
  fb_registry *r = fb_registry_new(&rc);
  fb_instance_opts o = {.weight = 3, .zone = "eu-1"};
  fb_registry_register_with(r, "svc", "a", 1, &o, 0);
  fb_balancer *lb = lb_new(r, "round_robin");
  fb_instance *i = fb_balancer_pick(lb, svc(r), 0);
  fb_balancer_done(lb, i, 1, 0.2, 0);
  uint64_t id = fb_instance_id(i);
  fb_registry_heartbeat(r, "svc", "a", 1, 1);
  assert_null(fb_balancer_pick(lb, svc(r), 7)); /* expired */
  fb_registry_register(r, "svc", "a", 1, 8);   /* back */
  assert_ptr_equal(fb_registry_instance(r, id), i);
  assert_int_equal(fb_instance_successes(i), 1);
  assert_int_equal(fb_instance_weight(i), 3);
  assert_string_equal(fb_instance_zone(i), "eu-1");
  o = (fb_instance_opts){.weight = 0, .zone = "eu-2"};
  fb_registry_register_with(r, "svc", "a", 1, &o, 8);
  assert_string_equal(fb_instance_zone(i), "eu-2");
  assert_int_equal(fb_instance_weight(i), 3);
  /* Deregistered: the id finds nothing, even once the slot is reused. */
  fb_registry_deregister(r, "svc", "a", 1);
  assert_null(fb_registry_instance(r, id));
  fb_registry_register(r, "svc", "b", 1, 8);
  fb_instance *b = fb_registry_find(r, "svc", "b", 1);
  assert_true(fb_instance_id(b) != id);
  assert_null(fb_registry_instance(r, id));
  assert_ptr_equal(fb_registry_instance(r, fb_instance_id(b)), b);
  o = (fb_instance_opts){.weight = FB_WEIGHT_MAX + 1, .zone = NULL};
  assert_int_equal(fb_registry_register_with(r, "svc", "b", 1, &o, 8), FB_EINVAL);
  o = (fb_instance_opts){.weight = 1, .zone = ""};
  assert_int_equal(fb_registry_register_with(r, "svc", "b", 1, &o, 8), FB_EINVAL);
  assert_int_equal(fb_instance_set_weight(b, 0), FB_EINVAL);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

static void expect_bad(const char *field, fb_balancer_config cfg) {
  const char *got = NULL;
  assert_int_equal(fb_balancer_config_check(&cfg, &got), FB_EINVAL);
  assert_string_equal(got, field);
  fb_registry *r = fb_registry_new(NULL);
  assert_null(fb_balancer_new_config(r, &cfg));
  fb_registry_release(r);
}

static void test_config_check_names_the_field(void **state) {
  (void)state;
  fb_balancer_config ok, c;
  fb_balancer_config_init(&ok);
  assert_int_equal(fb_balancer_config_check(&ok, NULL), 0);
  c = ok, c.algorithm = "fastest";
  expect_bad("algorithm", c);
  c = ok, c.panic_threshold = 1.5;
  expect_bad("panic_threshold", c);
  c = ok, c.choices = 0;
  expect_bad("choices", c);
  c = ok, c.decay = 0;
  expect_bad("decay", c);
  c = ok, c.replicas = 0;
  expect_bad("replicas", c);
  c = ok, c.table_size = 65536;
  expect_bad("table_size", c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_robin_exact),
      cmocka_unit_test(test_round_robin_after_exclude_and_expiry),
      cmocka_unit_test(test_wrr_5_1_1),
      cmocka_unit_test(test_wrr_matches_nginx),
      cmocka_unit_test(test_wrr_after_weight_change_and_leave),
      cmocka_unit_test(test_random_is_uniform),
      cmocka_unit_test(test_least_request_p2c),
      cmocka_unit_test(test_least_request_choices),
      cmocka_unit_test(test_peak_ewma_avoids_slow),
      cmocka_unit_test(test_consistent_hash_remaps_one_nth),
      cmocka_unit_test(test_maglev_remaps_at_most_two_nth),
      cmocka_unit_test(test_ring_moves_only_the_leavers_keys),
      cmocka_unit_test(test_keyed_weights),
      cmocka_unit_test(test_keyless_hash_pick_is_random),
      cmocka_unit_test(test_down_instances_are_skipped),
      cmocka_unit_test(test_panic_mode),
      cmocka_unit_test(test_done_accounting),
      cmocka_unit_test(test_instance_data_survives),
      cmocka_unit_test(test_config_check_names_the_field),
  };
  return cmocka_run_group_tests_name("balancer", tests, NULL, NULL);
}
