/*
 * test_shared_breaker.c -- one breaker in shared memory used by several
 * processes: forked children hammer it and every call shows up exactly
 * once, the threshold is counted across processes, a child killed while
 * holding the lock does not stop the others, attach refuses memory that
 * holds no breaker, and two mappings of the same memory at different
 * addresses see one breaker. Children report through the shared mapping
 * and their exit status (never through cmocka, which lives in the parent).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "breaker.h" /* fb__breaker_hold_lock, the shared header */
#include "fusebox.h"

#define CHILDREN 4
#define CALLS 20000

typedef struct tally {
  uint64_t permits, rejected, recorded, stale, failed;
} tally;

/* What the children share besides the breaker: a clock and their tallies. */
typedef struct board {
  atomic_ulong clock; /* every call is a microsecond later */
  tally t[CHILDREN];
} board;

static void *map_shared(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  return p;
}

static fb_breaker *shared_breaker(const fb_breaker_config *cfg, void **mem,
                                  size_t *size) {
  *size = fb_breaker_shared_size(cfg);
  assert_true(*size > 0);
  *mem = map_shared(*size);
  fb_breaker *b = fb_breaker_init_shared(*mem, *size, cfg, 0);
  assert_non_null(b);
  return b;
}

/* Forks a child running fn(arg, i); returns its pid. */
static pid_t spawn(int (*fn)(fb_breaker *, board *, int), fb_breaker *b,
                   board *bd, int i) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(fn(b, bd, i));
  return pid;
}

static void reap_ok(pid_t pid) {
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---------------------------------------------------------- the counts */

/* How children ask: by the plain calls (the breaker's own book, under its
 * lock), each with a book of tokens of its own (fb__breaker_acquire_own,
 * a CLOSED breaker's permit without the lock), or half and half. */
enum { PLAIN, OWN, MIXED };
static int books = PLAIN;

static int64_t ask(fb_breaker *b, fb_tokens *own, double now) {
  return own ? fb__breaker_acquire_own(b, own, now) : fb_breaker_acquire(b, now);
}

static int tell(fb_breaker *b, fb_tokens *own, int64_t permit, fb_outcome o,
                double duration, double now) {
  return own ? fb__breaker_record_own(b, own, permit, o, duration, now)
             : fb_breaker_record(b, permit, o, duration, now);
}

static int hammer(fb_breaker *b, board *bd, int i) {
  static fb_tokens book; /* this child's: fork gave each its own copy */
  fb_tokens *own = books == OWN || (books == MIXED && i % 2) ? &book : NULL;
  fb_rng rng;
  fb_rng_seed(&rng, (uint64_t)i + 1);
  tally *t = &bd->t[i];
  for (int n = 0; n < CALLS; n++) {
    double now = (double)atomic_fetch_add(&bd->clock, 1) * 1e-6;
    int64_t permit = ask(b, own, now);
    if (permit == FB_EREJECTED) {
      t->rejected++;
      continue;
    }
    if (permit < 0)
      return 1;
    t->permits++;
    fb_outcome o = fb_rng_double(&rng) < 0.3 ? FB_FAILURE : FB_SUCCESS;
    int rc = tell(b, own, permit, o, 0.001, now + 1e-7);
    if (rc == FB_ESTALE)
      t->stale++;
    else if (rc >= 0)
      t->recorded++;
    else
      return 2;
  }
  return 0;
}

static void run_hammer(const fb_breaker_config *cfg) {
  void *mem;
  size_t size;
  fb_breaker *b = shared_breaker(cfg, &mem, &size);
  board *bd = map_shared(sizeof *bd);
  pid_t pid[CHILDREN];
  for (int i = 0; i < CHILDREN; i++)
    pid[i] = spawn(hammer, b, bd, i);
  tally sum = {0};
  for (int i = 0; i < CHILDREN; i++) {
    reap_ok(pid[i]);
    sum.permits += bd->t[i].permits;
    sum.rejected += bd->t[i].rejected;
    sum.recorded += bd->t[i].recorded;
    sum.stale += bd->t[i].stale;
  }
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, (double)bd->clock * 1e-6, &m);
  assert_int_equal(sum.permits + sum.rejected, (uint64_t)CHILDREN * CALLS);
  assert_int_equal(m.rejected, sum.rejected);
  assert_int_equal(m.calls, sum.recorded);
  assert_int_equal(m.stale, sum.stale);
  assert_int_equal(sum.recorded + sum.stale, sum.permits);
  assert_int_equal(m.successes + m.failures, m.calls);
  assert_true(fb_breaker_transitions(b) > 0); /* 30% failures: it cycled */
  fb_breaker_free(b); /* leaves the mapping alone (ASan would say) */
  munmap(bd, sizeof *bd);
  munmap(mem, size);
}

static void counts_add_up(void **state) {
  (void)state;
  for (books = PLAIN; books <= MIXED; books++) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 3;
  cfg.timeout = 0.0005;
  cfg.success_threshold = 2;
  run_hammer(&cfg);
  cfg.mode = FB_MODE_COUNT;
  cfg.window = 50;
  cfg.failure_rate = 0.35;
  cfg.half_open_max_calls = 2;
  run_hammer(&cfg);
  cfg.mode = FB_MODE_TIME;
  cfg.window = 0.00005; /* 50 calls, like the count window */
  run_hammer(&cfg);
  }
  books = PLAIN;
}

/* ------------------------------------------------------- the threshold */

/* Records failures until the breaker rejects (at most CALLS). */
static int fail_until_open(fb_breaker *b, board *bd, int i) {
  tally *t = &bd->t[i];
  for (int n = 0; n < CALLS; n++) {
    int64_t permit = fb_breaker_acquire(b, 1);
    if (permit == FB_EREJECTED)
      return 0;
    if (permit < 0)
      return 1;
    if (fb_breaker_record(b, permit, FB_FAILURE, 0.001, 1) >= 0)
      t->failed++;
  }
  return 3;
}

static int fail_once(fb_breaker *b, board *bd, int i) {
  (void)bd;
  (void)i;
  int64_t permit = fb_breaker_acquire(b, 1);
  return permit < 0 || fb_breaker_record(b, permit, FB_FAILURE, 0, 1) < 0;
}

static int fail_twice(fb_breaker *b, board *bd, int i) {
  return fail_once(b, bd, i) || fail_once(b, bd, i);
}

static void threshold_across_processes(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 3;
  cfg.timeout = 1000;
  void *mem;
  size_t size;
  fb_breaker *b = shared_breaker(&cfg, &mem, &size);
  board *bd = map_shared(sizeof *bd);
  /* one after the other: 2 failures in one process, 1 in another */
  reap_ok(spawn(fail_twice, b, bd, 0));
  assert_int_equal(fb_breaker_state_of(b), FB_CLOSED);
  reap_ok(spawn(fail_once, b, bd, 1));
  assert_int_equal(fb_breaker_state_of(b), FB_OPEN);
  /* at once: two processes failing open it after 3 failures in all */
  fb_breaker_reset(b, 1);
  pid_t p0 = spawn(fail_until_open, b, bd, 0);
  pid_t p1 = spawn(fail_until_open, b, bd, 1);
  reap_ok(p0);
  reap_ok(p1);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 1, &m);
  assert_int_equal(m.state, FB_OPEN);
  assert_int_equal(bd->t[0].failed + bd->t[1].failed, 3);
  assert_int_equal(m.failures, 3 + 3); /* the lifetime total: both rounds */
  assert_int_equal(fb_breaker_transitions(b), 3); /* open, reset, open */
  munmap(bd, sizeof *bd);
  munmap(mem, size);
}

/* ---------------------------------------------------- a holder that dies */

static int hold_and_wait(fb_breaker *b, board *bd, int i) {
  (void)i;
  fb__breaker_hold_lock(b);
  atomic_store(&bd->clock, 1); /* "I hold it" */
  while (atomic_load(&bd->clock))
    pause(); /* until killed */
  return 0;
}

static int few_calls(fb_breaker *b, board *bd, int i) {
  (void)bd;
  (void)i;
  for (int n = 0; n < 1000; n++) {
    int64_t permit = fb_breaker_acquire(b, 2);
    if (permit < 0 || fb_breaker_record(b, permit, FB_SUCCESS, 0, 2) < 0)
      return 1;
  }
  return 0;
}

/* A child that holds b's lock until killed; returns once it holds it. */
static pid_t start_holder(fb_breaker *b, board *bd) {
  atomic_store(&bd->clock, 0);
  pid_t pid = spawn(hold_and_wait, b, bd, 0);
  while (!atomic_load(&bd->clock))
    usleep(1000);
  return pid;
}

static void kill_holder(fb_breaker *b, board *bd) {
  pid_t pid = start_holder(b, bd);
  kill(pid, SIGKILL);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
}

static void holder_killed(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 1;
  cfg.timeout = 0.5;
  cfg.success_threshold = 1;
  cfg.half_open_max_calls = 1;
  void *mem;
  size_t size;
  fb_breaker *b = shared_breaker(&cfg, &mem, &size);
  board *bd = map_shared(sizeof *bd);
  /* HALF_OPEN with its one probe slot taken by a permit out */
  int64_t p = fb_breaker_acquire(b, 0);
  assert_int_equal(fb_breaker_record(b, p, FB_FAILURE, 0, 0), FB_CHANGED);
  int64_t probe = fb_breaker_acquire(b, 1);
  assert_true(probe >= 0);
  assert_int_equal(fb_breaker_acquire(b, 1), FB_EREJECTED);
  kill_holder(b, bd);
  /* the next locker repairs: the permits out are stale, the slot free */
  int64_t again = fb_breaker_acquire(b, 1);
  assert_true(again >= 0);
  assert_int_equal(fb_breaker_record(b, probe, FB_SUCCESS, 0, 1), FB_ESTALE);
  assert_int_equal(fb_breaker_record(b, again, FB_SUCCESS, 0, 1), FB_CHANGED);
  assert_int_equal(fb_breaker_state_of(b), FB_CLOSED);
  /* twice more, with others waiting for the lock meanwhile */
  for (int round = 0; round < 2; round++) {
    pid_t holder = start_holder(b, bd);
    pid_t w0 = spawn(few_calls, b, bd, 1);
    pid_t w1 = spawn(few_calls, b, bd, 2);
    usleep(20000); /* they are blocked on the lock by now */
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    reap_ok(w0);
    reap_ok(w1);
  }
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 2, &m);
  assert_int_equal(m.state, FB_CLOSED);
  assert_int_equal(m.successes, 1 + 2 * 2 * 1000);
  munmap(bd, sizeof *bd);
  munmap(mem, size);
}

/* A process's own book: a CLOSED breaker grants without its lock (here
 * held by a live process, so a permit that waited for it would never
 * come: the alarm would fail the run), a HALF_OPEN one takes it; the
 * holder's death makes every book's permits out stale. */
static void own_book(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = 2;
  cfg.timeout = 0.5;
  cfg.success_threshold = 1;
  void *mem;
  size_t size;
  fb_breaker *b = shared_breaker(&cfg, &mem, &size);
  board *bd = map_shared(sizeof *bd);
  fb_tokens own = {0};
  pid_t holder = start_holder(b, bd);
  int64_t p0 = fb__breaker_acquire_own(b, &own, 0);
  int64_t p1 = fb__breaker_acquire_own(b, &own, NAN);
  assert_true(p0 >= 0);
  assert_int_equal(p1, p0 + 1); /* one book: in order, no gap */
  kill(holder, SIGKILL);
  waitpid(holder, NULL, 0);
  /* the repair ended the epoch: both are of a state that no longer holds */
  assert_int_equal(fb__breaker_record_own(b, &own, p0, FB_SUCCESS, 0, 0),
                   FB_ESTALE);
  assert_int_equal(fb__breaker_record_own(b, &own, p1, FB_FAILURE, 0, 0),
                   FB_ESTALE);
  /* a token counts once; a token never issued is refused */
  int64_t p = fb__breaker_acquire_own(b, &own, NAN);
  assert_int_equal(fb__breaker_record_own(b, &own, p, FB_SUCCESS, 0, NAN),
                   FB_RECORDED);
  assert_int_equal(fb__breaker_record_own(b, &own, p, FB_SUCCESS, 0, NAN),
                   FB_ESTALE);
  assert_int_equal(fb__breaker_record_own(b, &own, p + 5, FB_SUCCESS, 0, NAN),
                   FB_EINVAL);
  /* another process's (the plain calls') failures open it: a permit this
   * book took before is stale, and an OPEN breaker rejects this book */
  int64_t before = fb__breaker_acquire_own(b, &own, NAN);
  for (int i = 0; i < 2; i++)
    assert_true(fb_breaker_record(b, fb_breaker_acquire(b, 1), FB_FAILURE, 0,
                                  1) >= 0);
  assert_int_equal(fb_breaker_state_of(b), FB_OPEN);
  assert_int_equal(fb__breaker_acquire_own(b, &own, 1.1), FB_EREJECTED);
  assert_int_equal(fb__breaker_record_own(b, &own, before, FB_SUCCESS, 0, 1.1),
                   FB_ESTALE);
  /* HALF_OPEN: this book's probe, under the lock, closes it */
  int64_t probe = fb__breaker_acquire_own(b, &own, 2);
  assert_true(probe > before + 1); /* a gap: the state changed */
  assert_int_equal(fb__breaker_record_own(b, &own, probe, FB_SUCCESS, 0, 2),
                   FB_CHANGED);
  assert_int_equal(fb_breaker_state_of(b), FB_CLOSED);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 2, &m);
  assert_int_equal(m.successes, 2);
  assert_int_equal(m.failures, 2);
  assert_int_equal(m.stale, 4);
  munmap(bd, sizeof *bd);
  munmap(mem, size);
}

/* Children hammering a count-mode breaker killed at random moments, many
 * times: whoever is killed inside the lock, the others go on and the
 * window stays consistent. */
static int hammer_forever(fb_breaker *b, board *bd, int i) {
  for (;;)
    if (hammer(b, bd, i))
      return 1;
}

static void killed_at_random(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_COUNT;
  cfg.window = 20;
  cfg.minimum_calls = 5;
  cfg.failure_rate = 0.4;
  cfg.timeout = 0.0005;
  void *mem;
  size_t size;
  fb_breaker *b = shared_breaker(&cfg, &mem, &size);
  board *bd = map_shared(sizeof *bd);
  fb_rng rng;
  fb_rng_seed(&rng, 16);
  pid_t pid[2] = {spawn(hammer_forever, b, bd, 0),
                  spawn(hammer_forever, b, bd, 1)};
  for (int n = 0; n < 40; n++) {
    usleep((useconds_t)(fb_rng_double(&rng) * 3000));
    int k = n % 2;
    kill(pid[k], SIGKILL);
    int status;
    assert_int_equal(waitpid(pid[k], &status, 0), pid[k]);
    assert_true(WIFSIGNALED(status)); /* not an error exit */
    pid[k] = spawn(hammer_forever, b, bd, k);
  }
  for (int k = 0; k < 2; k++) {
    kill(pid[k], SIGKILL);
    waitpid(pid[k], NULL, 0);
  }
  /* still usable, and its window adds up */
  reap_ok(spawn(hammer, b, bd, 2));
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, (double)bd->clock * 1e-6, &m);
  assert_true(m.buffered <= 20);
  assert_true(m.failed <= m.buffered);
  assert_true(m.state <= FB_DISABLED);
  munmap(bd, sizeof *bd);
  munmap(mem, size);
}

/* ---------------------------------------------------------------- attach */

static void attach_refuses(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_COUNT;
  cfg.window = 10;
  cfg.minimum_calls = 5;
  size_t need = fb_breaker_shared_size(&cfg);
  size_t size = need + 64;
  uint8_t *mem = map_shared(size);
  /* garbage and zeros are no breaker */
  fb_rng rng;
  fb_rng_seed(&rng, 7);
  for (size_t i = 0; i < size; i++)
    mem[i] = (uint8_t)(fb_rng_double(&rng) * 256);
  assert_null(fb_breaker_attach_shared(mem, size));
  memset(mem, 0, size);
  assert_null(fb_breaker_attach_shared(mem, size));
  assert_null(fb_breaker_attach_shared(NULL, size));
  /* building refuses what cannot hold it */
  fb_breaker_config bad = cfg;
  bad.window = 0;
  assert_int_equal(fb_breaker_shared_size(&bad), 0);
  assert_null(fb_breaker_init_shared(mem, size, &bad, 0));
  assert_null(fb_breaker_init_shared(mem, need - 1, &cfg, 0));
  assert_null(fb_breaker_init_shared(mem + 1, size - 1, &cfg, 0));
  assert_null(fb_breaker_init_shared(NULL, size, &cfg, 0));
  /* a real one attaches with its size or more, not less */
  fb_breaker *b = fb_breaker_init_shared(mem, size, &cfg, 0);
  assert_non_null(b);
  assert_ptr_equal(fb_breaker_attach_shared(mem, need), b);
  assert_ptr_equal(fb_breaker_attach_shared(mem, size), b);
  assert_null(fb_breaker_attach_shared(mem, need - 1));
  assert_null(fb_breaker_attach_shared(mem + 8, size - 8));
  /* a header of another version or layout, or a corrupt breaker */
  fb_shared *h = (fb_shared *)mem;
  h->version++;
  assert_null(fb_breaker_attach_shared(mem, size));
  h->version--;
  h->layout++;
  assert_null(fb_breaker_attach_shared(mem, size));
  h->layout--;
  b->pos = 10; /* an index past the ring */
  assert_null(fb_breaker_attach_shared(mem, size));
  b->pos = 0;
  b->nslots = 1000;
  assert_null(fb_breaker_attach_shared(mem, size));
  b->nslots = 10;
  b->cfg.window = 1e6;
  assert_null(fb_breaker_attach_shared(mem, size));
  b->cfg.window = 10;
  b->shared = FB_UNSHARED;
  assert_null(fb_breaker_attach_shared(mem, size));
  b->shared = FB_PROCESSES;
  b->state = (fb_breaker_state)7;
  assert_null(fb_breaker_attach_shared(mem, size));
  b->state = FB_CLOSED;
  assert_ptr_equal(fb_breaker_attach_shared(mem, size), b);
  /* an unshared breaker is not turned into one */
  fb_breaker_set_shared(b, 0);
  assert_ptr_equal(fb_breaker_attach_shared(mem, size), b);
  munmap(mem, size);
}

/* ------------------------------------------------ two addresses, one breaker */

static int open_it(fb_breaker *b, board *bd, int i) {
  (void)bd;
  (void)i;
  fb_breaker_force_open(b, 5);
  return 0;
}

static void two_mappings(void **state) {
  (void)state;
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = FB_MODE_TIME;
  cfg.window = 10;
  cfg.minimum_calls = 4;
  cfg.timeout = 2;
  size_t size = fb_breaker_shared_size(&cfg);
  int fd = memfd_create("fusebox-breaker", 0);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  void *m1 = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  void *m2 = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  assert_true(m1 != MAP_FAILED && m2 != MAP_FAILED);
  assert_true(m1 != m2);
  fb_breaker *b1 = fb_breaker_init_shared(m1, size, &cfg, 0);
  fb_breaker *b2 = fb_breaker_attach_shared(m2, size);
  assert_non_null(b1);
  assert_non_null(b2);
  assert_true((void *)b1 != (void *)b2);
  b1->bucket_width = 0; /* a corrupt divisor is refused, seen from m2 */
  assert_null(fb_breaker_attach_shared(m2, size));
  b1->bucket_width = 1;
  assert_ptr_equal(fb_breaker_attach_shared(m2, size), b2);
  /* calls through one, seen through the other */
  for (int i = 0; i < 4; i++) {
    int64_t p = fb_breaker_acquire(i % 2 ? b1 : b2, 1);
    assert_true(p >= 0);
    int rc = fb_breaker_record(i % 2 ? b2 : b1, p,
                               i < 2 ? FB_SUCCESS : FB_FAILURE, 0.1, 1);
    assert_int_equal(rc, i == 3 ? FB_CHANGED : FB_RECORDED);
  }
  assert_int_equal(fb_breaker_state_of(b1), FB_OPEN);
  fb_breaker_metrics a, c;
  memset(&a, 0, sizeof a); /* padding too, for the comparison */
  memset(&c, 0, sizeof c);
  fb_breaker_metrics_get(b1, 1.5, &a);
  fb_breaker_metrics_get(b2, 1.5, &c);
  assert_memory_equal(&a, &c, sizeof a);
  assert_int_equal(a.calls, 4);
  assert_int_equal(a.failures, 2);
  assert_true(fb_breaker_retry_after(b2, 1.5) == 1.5);
  assert_int_equal(fb_breaker_acquire(b2, 1.5), FB_EREJECTED);
  /* a permit and the history work across the mappings too */
  int64_t probe = fb_breaker_acquire(b1, 3.5);
  assert_int_equal(fb_breaker_state_of(b2), FB_HALF_OPEN);
  assert_true(probe >= 0);
  fb_breaker_state from, to;
  double at;
  assert_int_equal(fb_breaker_transition(b2, 1, &from, &to, &at), 0);
  assert_int_equal(from, FB_OPEN);
  assert_int_equal(to, FB_HALF_OPEN);
  assert_true(at == 3.5);
  /* the manual controls, one of them from another process */
  fb_breaker_disable(b2, 4);
  assert_int_equal(fb_breaker_state_of(b1), FB_DISABLED);
  reap_ok(spawn(open_it, b2, NULL, 0));
  assert_int_equal(fb_breaker_state_of(b1), FB_FORCED_OPEN);
  assert_true(fb_breaker_retry_after(b1, 5) > 1e300);
  fb_breaker_reset(b1, 6);
  assert_int_equal(fb_breaker_state_of(b2), FB_CLOSED);
  assert_int_equal(fb_breaker_record(b2, probe, FB_SUCCESS, 0, 6), FB_ESTALE);
  assert_int_equal(fb_breaker_transitions(b2), 5);
  munmap(m1, size);
  munmap(m2, size);
  close(fd);
}

int main(void) {
  alarm(300); /* a deadlock fails the run instead of hanging it */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(counts_add_up),
      cmocka_unit_test(threshold_across_processes),
      cmocka_unit_test(holder_killed),
      cmocka_unit_test(own_book),
      cmocka_unit_test(killed_at_random),
      cmocka_unit_test(attach_refuses),
      cmocka_unit_test(two_mappings),
  };
  return cmocka_run_group_tests_name("shared_breaker", tests, NULL, NULL);
}
