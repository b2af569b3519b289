/*
 * bench_balancer.c -- ns per pick for every built-in algorithm at 10,
 * 1,000 and 100,000 instances, and table build time for the keyed ones.
 *
 * Method: one registry per size (weights 1..4 in turn, so smooth WRR has
 * four weight classes), a warm-up pass that builds the tables, then
 * RUNS timed runs of a pick + done pair each; we print the median of the
 * runs (ns per pick+done; done is a few ns). Keyed algorithms hash one of
 * 1,024 pre-built 16-byte keys per pick. CLOCK_MONOTONIC throughout.
 * The "+ outlier" rows attach a detector (done() records into it), the
 * "+ slow_start" rows run the ramped pickers past every window.
 */
#include "bench.h"
#include "fusebox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 5
#define NKEYS 1024


static char keys[NKEYS][17];

static fb_registry *make(int n) {
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout = 1e9;
  fb_registry *r = fb_registry_new(&cfg);
  char host[32];
  for (int i = 0; i < n; i++) {
    fb_instance_opts o = {.weight = (uint32_t)(i % 4 + 1), .zone = NULL};
    snprintf(host, sizeof host, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
    fb_registry_register_with(r, "svc", host, 8080, &o, 0);
  }
  return r;
}

static double bench_picks(fb_balancer *lb, fb_service *s, long picks,
                          int keyed) {
  double t0 = bench_seconds();
  for (long k = 0; k < picks; k++) {
    const char *key = keyed ? keys[k & (NKEYS - 1)] : NULL;
    fb_instance *i = fb_balancer_pick_key(lb, s, key, keyed ? 16 : 0, 1);
    fb_balancer_done(lb, i, 1, 0.001, 1);
  }
  return (bench_seconds() - t0) / picks * 1e9;
}

static void bench_algorithm(const char *algo, int n) {
  fb_registry *r = make(n);
  fb_service *s = fb_registry_service(r, "svc");
  fb_balancer *lb = fb_balancer_new(r, algo, 42);
  int keyed = strcmp(algo, "consistent_hash") == 0 || strcmp(algo, "maglev") == 0;
  long picks = 1000000;
  bench_picks(lb, s, picks / 10, keyed); /* warm-up, builds tables */
  double ns[RUNS];
  for (int run = 0; run < RUNS; run++)
    ns[run] = bench_picks(lb, s, picks, keyed);
  printf("%-22s %8d %10.1f\n", algo, n, bench_median(ns, RUNS));
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* pick + done through a balancer with an outlier detector attached (Envoy's
 * defaults; every call a success, so no ejection: the detector's bookkeeping
 * alone), or with slow start set and no instance ramping. */
static void bench_extra(const char *algo, int n, const char *what) {
  fb_registry *r = make(n);
  fb_service *s = fb_registry_service(r, "svc");
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  cfg.algorithm = algo;
  cfg.seed = 42;
  int outlier = strcmp(what, "outlier") == 0;
  if (!outlier)
    cfg.slow_start_window = 0.5; /* the picks run at t = 1: none ramps */
  fb_balancer *lb = fb_balancer_new_config(r, &cfg);
  if (outlier) {
    fb_outlier_config oc;
    fb_outlier_config_init(&oc);
    fb_outlier *d = fb_outlier_new(r, &oc);
    fb_balancer_set_outlier(lb, d);
    fb_outlier_release(d);
  }
  long picks = 1000000;
  bench_picks(lb, s, picks / 10, 0);
  double ns[RUNS];
  for (int run = 0; run < RUNS; run++)
    ns[run] = bench_picks(lb, s, picks, 0);
  printf("%-22s %8d %10.1f (+ %s)\n", algo, n, bench_median(ns, RUNS), what);
  fb_balancer_free(lb);
  fb_registry_release(r);
}

/* Build time: flip one instance's weight so the next pick rebuilds. */
static void bench_build(const char *algo, int n) {
  fb_registry *r = make(n);
  fb_service *s = fb_registry_service(r, "svc");
  fb_balancer *lb = fb_balancer_new(r, algo, 42);
  fb_instance *first = fb_registry_find(r, "svc", "10.0.0.0", 8080);
  double ms[RUNS];
  for (int run = 0; run < RUNS; run++) {
    fb_instance_set_weight(first, (uint32_t)(run % 2 + 1));
    double t0 = bench_seconds();
    fb_balancer_done(lb, fb_balancer_pick_key(lb, s, "k", 1, 1), 1, 0, 1);
    ms[run] = (bench_seconds() - t0) * 1e3;
  }
  printf("%-22s %8d %10.3f ms (table build)\n", algo, n, bench_median(ms, RUNS));
  fb_balancer_free(lb);
  fb_registry_release(r);
}

int main(void) {
  for (int k = 0; k < NKEYS; k++)
    snprintf(keys[k], sizeof keys[k], "user-%011d", k * 7919);
  printf("%-22s %8s %10s\n", "algorithm", "n", "ns/pick");
  const int sizes[] = {10, 1000, 100000};
  for (const char *const *a = fb_balancer_algorithms(); *a; a++)
    for (int k = 0; k < 3; k++)
      bench_algorithm(*a, sizes[k]);
  bench_extra("round_robin", 1000, "outlier");
  bench_extra("least_request", 1000, "outlier");
  bench_extra("least_request", 1000, "slow_start");
  bench_extra("weighted_round_robin", 1000, "slow_start");
  bench_build("consistent_hash", 1000);
  bench_build("maglev", 1000);
  return 0;
}
