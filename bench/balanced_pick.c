/*
 * balanced_pick.c -- row 2, fusebox from C: fb_balancer_pick() over one
 * service of 10, 1,000 and 100,000 live instances. An algorithm the
 * library does not have (fb_balancer_new returns NULL) is reported as
 * skipped; a new one is one line in ALGORITHMS.
 */
#include "bench_util.h"
#include <string.h>
#include "fusebox.h"

#define PICKS 5000000

static const struct {
  const char *name, *label;
} ALGORITHMS[] = {
    {"round_robin", "round robin"},
    {"least_request", "least request"},
};

static const int SIZES[] = {10, 1000, 100000};

static fb_registry *filled_registry(int n) {
  fb_registry *r = fb_registry_new(NULL);
  char host[32];
  for (int i = 0; r && i < n; i++) {
    snprintf(host, sizeof host, "10.%d.%d.%d", i >> 16 & 255, i >> 8 & 255,
             i & 255);
    if (fb_registry_register(r, "svc", host, 8080, 0) < 0) {
      fprintf(stderr, "balanced_pick: register failed\n");
      exit(1);
    }
  }
  return r;
}

/* least_request judges by calls in flight, so each of its picks is
 * followed by the done() that real use makes; round robin needs none. */
static double run(fb_balancer *lb, fb_service *s, int report) {
  uintptr_t acc = 0;
  double t0 = bench_ns();
  for (int i = 0; i < PICKS; i++) {
    fb_instance *inst = fb_balancer_pick(lb, s, 1);
    acc += (uintptr_t)inst;
    if (report)
      fb_balancer_done(lb, inst, 1, 0.001, 1);
  }
  double ns = (bench_ns() - t0) / PICKS;
  if (acc == 0) {
    fprintf(stderr, "balanced_pick: no instance picked\n");
    exit(1);
  }
  return ns;
}

static void measure(int n, const char *algo, const char *label) {
  char name[64];
  double runs[BENCH_RUNS];
  snprintf(name, sizeof name, "%s, %d instances", label, n);
  fb_registry *r = filled_registry(n);
  fb_balancer *lb = r ? fb_balancer_new(r, algo, 1) : NULL;
  if (!lb) {
    bench_skip("balanced pick", name, "fusebox C",
               "fb_balancer_new does not know this algorithm (yet)");
  } else {
    fb_service *s = fb_registry_service(r, "svc");
    int report = strcmp(algo, "least_request") == 0;
    run(lb, s, report); /* warm-up */
    for (int i = 0; i < BENCH_RUNS; i++)
      runs[i] = run(lb, s, report);
    bench_emit("balanced pick", name, "fusebox C", PICKS, runs, BENCH_RUNS,
               "ns/op", report ? "pick + done" : NULL);
    fb_balancer_free(lb);
  }
  fb_registry_release(r);
}

int main(void) {
  for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++)
    for (size_t a = 0; a < sizeof ALGORITHMS / sizeof ALGORITHMS[0]; a++)
      measure(SIZES[i], ALGORITHMS[a].name, ALGORITHMS[a].label);
  return 0;
}
