/*
 * bench_limiter.c -- acquire+release from C, per algorithm, in ns per
 * call, with and without the sample window.
 *
 * Each run makes CALLS calls, one in flight at a time plus four held
 * (so the limit is used and the algorithms move it), each lasting 1 ms
 * with a little jitter, one in 50 dropped; the clock moves 1 us per call.
 * Prints the median of RUNS runs.
 */
#include "bench.h"
#include "fusebox.h"

#include <stdio.h>
#include <stdlib.h>

#define CALLS 20000000
#define RUNS 5

static volatile int sink;

static double run(fb_limit_algorithm a, int windowed) {
  fb_limiter_config cfg;
  fb_limiter_config_init(&cfg, a);
  cfg.initial_limit = cfg.min_limit = 10;
  if (!windowed)
    cfg.min_window = cfg.max_window = 0;
  fb_limiter *l = fb_limiter_new(&cfg);
  int64_t held[4];
  for (int i = 0; i < 4; i++)
    held[i] = fb_limiter_acquire(l);
  double t = 0;
  int acc = 0;
  double t0 = bench_seconds();
  for (int i = 0; i < CALLS; i++, t += 1e-6) {
    int64_t p = fb_limiter_acquire(l);
    if (p < 0) {
      acc++;
      continue;
    }
    fb_limit_outcome o = i % 50 == 49 ? FB_LIMIT_DROPPED : FB_LIMIT_SUCCESS;
    acc += fb_limiter_release(l, p, o, 0.001 + (i & 7) * 1e-5, t);
  }
  double ns = (bench_seconds() - t0) * 1e9 / CALLS;
  for (int i = 0; i < 4; i++)
    fb_limiter_release(l, held[i], FB_LIMIT_IGNORED, 0, t);
  sink = acc + fb_limiter_limit(l);
  if (fb_limiter_inflight(l) != 0) {
    fprintf(stderr, "bench_limiter: calls left in flight\n");
    exit(1);
  }
  fb_limiter_free(l);
  return ns;
}

int main(void) {
  for (int w = 0; w <= 1; w++)
    for (int a = FB_LIMIT_GRADIENT2; a <= FB_LIMIT_VEGAS; a++) {
      double r[RUNS];
      for (int i = 0; i < RUNS; i++)
        r[i] = run((fb_limit_algorithm)a, w);
      printf("limiter C acquire+release %-9s %-10s %6.2f ns/op (median of "
             "%d x %d)\n",
             fb_limiter_algorithm_name((fb_limit_algorithm)a),
             w ? "windowed" : "per-sample", bench_median(r, RUNS), RUNS,
             CALLS);
    }
  return 0;
}
