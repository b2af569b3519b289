/*
 * bench_breaker.c -- acquire+record from C, per mode, in ns per call.
 *
 * Each run makes CALLS calls on a CLOSED breaker: one in ten fails (under
 * every mode's threshold, so it stays CLOSED, the state calls spend their
 * life in), each lasts 1 ms (not slow), and the clock moves 1 us per call
 * so the time mode's buckets keep sliding. Prints the median of RUNS runs.
 */
#include "bench.h"
#include "fusebox.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CALLS 20000000
#define RUNS 5

static volatile int sink;


static double run(fb_breaker_mode mode) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = mode;
  cfg.window = mode == FB_MODE_TIME ? 60 : 100;
  cfg.slow_call_duration = 0.5;
  fb_breaker *b = fb_breaker_new(&cfg);
  double t = 0;
  int acc = 0;
  double t0 = bench_seconds();
  for (int i = 0; i < CALLS; i++, t += 1e-6) {
    int64_t p = fb_breaker_acquire(b, t);
    fb_outcome o = i % 10 == 9 ? FB_FAILURE : FB_SUCCESS;
    acc += fb_breaker_record(b, p, o, 0.001, t);
  }
  double ns = (bench_seconds() - t0) * 1e9 / CALLS;
  sink = acc + (int)fb_breaker_state_of(b);
  if (fb_breaker_state_of(b) != FB_CLOSED || acc != 0) {
    fprintf(stderr, "bench_breaker: the breaker left CLOSED\n");
    exit(1);
  }
  fb_breaker_free(b);
  return ns;
}


int main(void) {
  static const char *const names[] = {"consecutive", "count", "time"};
  for (int m = FB_MODE_CONSECUTIVE; m <= FB_MODE_TIME; m++) {
    double r[RUNS];
    for (int i = 0; i < RUNS; i++)
      r[i] = run((fb_breaker_mode)m);
    printf("breaker C acquire+record %-11s %6.2f ns/op (median of %d x %d)\n",
           names[m], bench_median(r, RUNS), RUNS, CALLS);
  }
  return 0;
}
