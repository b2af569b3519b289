/*
 * bench_core.c -- the foundation's hot paths called from C directly:
 * breaker acquire+record, balancer picks. ns per operation, median of
 * 5 runs; each run is long enough (10M ops) to swamp timer overhead.
 */
#include "bench.h"
#include "fusebox.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RUNS 5
#define OPS 10000000L


static volatile uint64_t sink;

static double run_breaker(void) {
  fb_breaker *b = fb_breaker_new(NULL);
  uint64_t acc = 0;
  double t0 = bench_seconds();
  for (long i = 0; i < OPS; i++) {
    double now = (double)i * 1e-6;
    int64_t p = fb_breaker_acquire(b, now);
    acc += (uint64_t)fb_breaker_record(b, p, FB_SUCCESS, 0, now);
  }
  double t = bench_seconds() - t0;
  sink = acc;
  fb_breaker_free(b);
  return t;
}

static const char *algo;
static int ninstances;

static double run_pick(void) {
  fb_registry *r = fb_registry_new(NULL);
  char host[32];
  for (int i = 0; i < ninstances; i++) {
    snprintf(host, sizeof host, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
    fb_registry_register(r, "svc", host, 8080, 0);
  }
  fb_balancer *lb = fb_balancer_new(r, algo, 1);
  fb_service *s = fb_registry_service(r, "svc");
  uint64_t acc = 0;
  double t0 = bench_seconds();
  for (long i = 0; i < OPS; i++)
    acc += (uintptr_t)fb_balancer_pick(lb, s, 1.0);
  double t = bench_seconds() - t0;
  sink = acc;
  fb_balancer_free(lb);
  fb_registry_release(r);
  return t;
}

static void report(const char *name, double (*fn)(void)) {
  double t[RUNS];
  for (int i = 0; i < RUNS; i++)
    t[i] = fn();
  printf("%-44s %8.2f ns/op  (C, median of %d x %ld)\n", name,
         bench_median(t, RUNS) / OPS * 1e9, RUNS, OPS);
}

int main(void) {
  report("breaker acquire+record (consecutive)", run_breaker);
  static const int sizes[] = {10, 1000, 100000};
  static const char *const algos[] = {"round_robin", "random"};
  char name[64];
  for (int a = 0; a < 2; a++)
    for (int s = 0; s < 3; s++) {
      algo = algos[a];
      ninstances = sizes[s];
      snprintf(name, sizeof name, "pick %s, %d instances", algo, ninstances);
      report(name, run_pick);
    }
  return 0;
}
