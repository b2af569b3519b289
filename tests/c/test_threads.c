/*
 * test_threads.c -- one shared breaker hammered by several threads at
 * once. Run under ThreadSanitizer by make test (any data race fails the
 * run) and checked for lost updates here: every acquire and record must
 * show up exactly once in the breaker's lifetime counters. Both locks are
 * covered: the spinlock (fb_breaker_set_shared) and the owner word of a
 * breaker in shared memory (fb_breaker_init_shared), whose processes
 * ThreadSanitizer cannot follow but whose threads it can.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "fusebox.h"

#define THREADS 4
#define CALLS 100000

typedef struct worker {
  fb_breaker *b;
  atomic_ulong *clock; /* shared: every call is a microsecond later */
  uint64_t seed;
  uint64_t permits, rejected, recorded, stale;
} worker;

static void *hammer(void *arg) {
  worker *w = arg;
  fb_rng rng;
  fb_rng_seed(&rng, w->seed);
  for (int i = 0; i < CALLS; i++) {
    double now = (double)atomic_fetch_add(w->clock, 1) * 1e-6;
    int64_t permit = fb_breaker_acquire(w->b, now);
    if (permit < 0) {
      w->rejected++;
      continue;
    }
    w->permits++;
    fb_outcome o = fb_rng_double(&rng) < 0.3 ? FB_FAILURE : FB_SUCCESS;
    int rc = fb_breaker_record(w->b, permit, o, 0.001, now + 1e-7);
    if (rc == FB_ESTALE)
      w->stale++;
    else if (rc >= 0)
      w->recorded++;
  }
  return NULL;
}

static void run_shared(fb_breaker_config *cfg, int in_shared_memory) {
  void *mem = NULL;
  fb_breaker *b;
  if (in_shared_memory) {
    size_t size = fb_breaker_shared_size(cfg);
    mem = aligned_alloc(64, (size + 63) / 64 * 64);
    assert_non_null(mem);
    b = fb_breaker_init_shared(mem, size, cfg, 0);
  } else {
    b = fb_breaker_new(cfg);
    fb_breaker_set_shared(b, 1);
  }
  assert_non_null(b);
  atomic_ulong clock = 0;
  worker w[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker){.b = b, .clock = &clock, .seed = (uint64_t)i + 1};
    assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
  }
  uint64_t permits = 0, rejected = 0, recorded = 0, stale = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    permits += w[i].permits;
    rejected += w[i].rejected;
    recorded += w[i].recorded;
    stale += w[i].stale;
  }
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, (double)clock * 1e-6, &m);
  assert_int_equal(permits + rejected, (uint64_t)THREADS * CALLS);
  assert_int_equal(m.rejected, rejected);
  assert_int_equal(m.calls, recorded);
  assert_int_equal(m.stale, stale);
  assert_int_equal(m.successes + m.failures + m.ignored, m.calls);
  assert_int_equal(recorded + stale, permits);
  assert_true(fb_breaker_transitions(b) > 0); /* 30% failures: it cycled */
  fb_breaker_free(b); /* in shared memory: left alone */
  free(mem);
}

static void shared_consecutive(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 3;
  cfg.timeout = 0.0005;
  cfg.success_threshold = 2;
  run_shared(&cfg, 0);
}

static void shared_count_window(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_COUNT;
  cfg.window = 50;
  cfg.minimum_calls = 10;
  cfg.failure_rate = 0.35;
  cfg.timeout = 0.0005;
  cfg.half_open_max_calls = 2;
  run_shared(&cfg, 0);
}

static void shared_memory_mutex(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_COUNT;
  cfg.window = 50;
  cfg.minimum_calls = 10;
  cfg.failure_rate = 0.35;
  cfg.timeout = 0.0005;
  cfg.half_open_max_calls = 2;
  run_shared(&cfg, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(shared_consecutive),
      cmocka_unit_test(shared_count_window),
      cmocka_unit_test(shared_memory_mutex),
  };
  return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
