/*
 * bench_threads.c -- the C API's breaker acquire+record, unshared and
 * shared (spinlocked), on one thread and with 2 threads sharing one
 * breaker. ns per operation, median of 5 runs; for the 2-thread row,
 * wall time over the operations of both threads (throughput).
 */
#include "bench.h"
#include "fusebox.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RUNS 5
#define OPS 10000000L


static void *loop(void *arg) {
  fb_breaker *b = arg;
  for (long i = 0; i < OPS; i++) {
    double now = (double)i * 1e-6;
    fb_breaker_record(b, fb_breaker_acquire(b, now), FB_SUCCESS, 0, now);
  }
  return NULL;
}

static double run(int threads, int shared) {
  fb_breaker *b = fb_breaker_new(NULL);
  fb_breaker_set_shared(b, shared);
  pthread_t t[2];
  double t0 = bench_seconds();
  for (int i = 0; i < threads; i++)
    pthread_create(&t[i], NULL, loop, b);
  for (int i = 0; i < threads; i++)
    pthread_join(t[i], NULL);
  double ns = (bench_seconds() - t0) / ((double)OPS * threads) * 1e9;
  fb_breaker_free(b);
  return ns;
}

static void report(const char *name, int threads, int shared) {
  double t[RUNS];
  for (int i = 0; i < RUNS; i++)
    t[i] = run(threads, shared);
  printf("%-44s %8.2f ns/op  (C, median of %d x %ld per thread)\n", name,
         bench_median(t, RUNS), RUNS, OPS);
}

int main(void) {
  report("breaker acquire+record, unshared, 1 thread", 1, 0);
  report("breaker acquire+record, shared, 1 thread", 1, 1);
  report("breaker acquire+record, shared, 2 threads", 2, 1);
  return 0;
}
