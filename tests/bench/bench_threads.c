/*
 * bench_threads.c -- the C API's breaker acquire+record, unshared and
 * shared (spinlocked), on one thread and with 2 threads sharing one
 * breaker; and a breaker in shared memory (its pid-owner word) used by one
 * process and by 2 forked processes. ns per operation, median of 5 runs;
 * for the 2-thread and 2-process rows, wall time over the operations of
 * both (throughput).
 */
#include "bench.h"
#include "fusebox.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* A breaker in a MAP_SHARED mapping, hammered by procs forked processes. */
static double run_mapped(int procs) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  size_t size = fb_breaker_shared_size(&cfg);
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  fb_breaker *b = mem == MAP_FAILED ? NULL
                                    : fb_breaker_init_shared(mem, size, &cfg, 0);
  if (!b) {
    fprintf(stderr, "bench_threads: no shared breaker\n");
    exit(1);
  }
  double t0 = bench_seconds();
  if (procs == 1) {
    loop(b);
  } else {
    for (int i = 0; i < procs; i++)
      if (fork() == 0) {
        loop(b);
        _exit(0);
      }
    while (wait(NULL) > 0)
      ;
  }
  double ns = (bench_seconds() - t0) / ((double)OPS * procs) * 1e9;
  munmap(mem, size);
  return ns;
}

static void report(const char *name, int threads, int shared) {
  double t[RUNS];
  for (int i = 0; i < RUNS; i++)
    t[i] = shared == 2 ? run_mapped(threads) : run(threads, shared);
  printf("%-44s %8.2f ns/op  (C, median of %d x %ld per thread)\n", name,
         bench_median(t, RUNS), RUNS, OPS);
}

int main(void) {
  report("breaker acquire+record, unshared, 1 thread", 1, 0);
  report("breaker acquire+record, shared, 1 thread", 1, 1);
  report("breaker acquire+record, shared, 2 threads", 2, 1);
  report("breaker acquire+record, shared memory, 1 proc", 1, 2);
  report("breaker acquire+record, shared memory, 2 procs", 2, 2);
  return 0;
}
