/*
 * guarded_call.c -- row 1, fusebox from C: a trivial function called
 * through fb_breaker_acquire/fb_breaker_record.
 *
 * "success": 10 million calls, all succeed, frozen clock.
 * "70% failure": the document's scenario (failure_threshold=3, timeout=5 s,
 * a service failing 70% of the time, seeded), on a virtual clock that
 * moves 0.5 s after every 100 calls so the breaker keeps cycling through
 * OPEN, HALF_OPEN and CLOSED. Every contender uses the same schedule.
 */
#include "bench_util.h"
#include "fusebox.h"

#define CALLS 10000000
#define CALLS_PER_TICK 100
#define TICK 0.5
#define FAILURE_RATE 0.7

static volatile int sink;

/* The guarded function; noinline so the call is really made. */
__attribute__((noinline)) static int trivial(int x) { return x & 1; }

__attribute__((noinline)) static int unreliable(fb_rng *rng) {
  return fb_rng_double(rng) < FAILURE_RATE ? -1 : 1;
}

static fb_breaker *document_breaker(void) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 3;
  cfg.timeout = 5;
  return fb_breaker_new(&cfg);
}

static double run_success(void) {
  fb_breaker *b = document_breaker();
  double t0 = bench_ns();
  for (int i = 0; i < CALLS; i++) {
    int64_t p = fb_breaker_acquire(b, 0);
    if (p >= 0) {
      int r = trivial(i);
      sink = r;
      fb_breaker_record(b, p, FB_SUCCESS, 0, 0);
    }
  }
  double ns = (bench_ns() - t0) / CALLS;
  fb_breaker_free(b);
  return ns;
}

static double run_failing(uint64_t seed, double *rejected) {
  fb_breaker *b = document_breaker();
  fb_rng rng;
  fb_rng_seed(&rng, seed);
  double now = 0;
  long nrejected = 0;
  double t0 = bench_ns();
  for (int tick = 0; tick < CALLS / CALLS_PER_TICK; tick++) {
    for (int j = 0; j < CALLS_PER_TICK; j++) {
      int64_t p = fb_breaker_acquire(b, now);
      if (p < 0) {
        nrejected++;
        continue;
      }
      int r = unreliable(&rng);
      fb_breaker_record(b, p, r < 0 ? FB_FAILURE : FB_SUCCESS, 0, now);
    }
    now += TICK;
  }
  double ns = (bench_ns() - t0) / CALLS;
  *rejected = (double)nrejected / CALLS;
  fb_breaker_free(b);
  return ns;
}

int main(void) {
  double runs[BENCH_RUNS], rejected = 0;
  char note[96];
  run_success(); /* warm-up */
  for (int i = 0; i < BENCH_RUNS; i++)
    runs[i] = run_success();
  bench_emit("guarded call", "success", "fusebox C", CALLS, runs, BENCH_RUNS,
             "ns/op", NULL);
  for (int i = 0; i < BENCH_RUNS; i++)
    runs[i] = run_failing(1 + (uint64_t)i, &rejected);
  snprintf(note, sizeof note, "%.1f%% rejected while open", rejected * 100);
  bench_emit("guarded call", "70% failure", "fusebox C", CALLS, runs,
             BENCH_RUNS, "ns/op", note);
  return 0;
}
