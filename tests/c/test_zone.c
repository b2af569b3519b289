/*
 * test_zone.c -- the named shared zone: made by one opener and found by the
 * next (another mapping, as another worker would), its breakers shared and
 * found by name and config, a changed config a new entry, a full zone and
 * a damaged file refused with a message naming the zone, a child killed
 * while holding the directory's lock not wedging the others, stale files
 * of a dead owner reaped. Each test works in a directory of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fusebox.h"
#include "zone.h"

#define SIZE ((size_t)256 << 10)

typedef struct fixture {
  char dir[64];
  char path[256];
  char err[256];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/fb_zone_XXXXXX");
  if (!f || !mkdtemp(f->dir))
    return -1;
  if (fb_zone_path(f->path, sizeof f->path, f->dir, "api", (long)getpid(),
                   f->err, sizeof f->err) != 0)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
  if (system(cmd) != 0)
    return -1;
  free(f);
  return 0;
}

static fb_breaker_config consecutive(int threshold) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold = threshold;
  cfg.timeout = 5;
  return cfg;
}

static void test_path_and_names(void **state) {
  fixture *f = *state;
  char buf[256];
  assert_int_equal(fb_zone_path(buf, sizeof buf, NULL, "api", 42, f->err,
                                sizeof f->err), 0);
  assert_string_equal(buf, "/dev/shm/fusebox-zone.api.42");
  assert_int_equal(fb_zone_path(buf, sizeof buf, NULL, "a/b", 42, f->err,
                                sizeof f->err), FB_EINVAL);
  assert_string_equal(f->err, "zone name must be 1..64 of [A-Za-z0-9_.-], "
                              "got 'a/b'");
  assert_int_equal(fb_zone_path(buf, sizeof buf, NULL, "api", 0, f->err,
                                sizeof f->err), FB_EINVAL);
  assert_string_equal(f->err, "zone 'api': owner must be a pid >= 1, got 0");
  assert_int_equal(fb_zone_path(buf, 10, NULL, "api", 42, f->err,
                                sizeof f->err), FB_EINVAL);
  assert_null(fb_zone_open(f->path, "api", 1000, f->err, sizeof f->err));
  assert_string_equal(f->err, "zone 'api': size must be 65536..1073741824 "
                              "bytes, got 1000");
}

/* Two opens are two mappings (at two addresses), as two workers have: a
 * breaker built through one is found through the other, in the same state. */
static void test_create_and_attach(void **state) {
  fixture *f = *state;
  fb_zone *a = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  assert_non_null(a);
  fb_zone *b = fb_zone_open(f->path, "api", 2 * SIZE, f->err, sizeof f->err);
  assert_non_null(b);
  assert_int_equal(fb_zone_size(b), SIZE); /* as made: it does not grow */
  assert_int_equal(fb_zone_max_entries(a), SIZE / FB_ZONE_BYTES_PER_ENTRY);
  fb_breaker_config cfg = consecutive(3);
  fb_breaker *x = fb_zone_breaker(a, "api/127.0.0.1:1", &cfg, 10, f->err,
                                  sizeof f->err);
  assert_non_null(x);
  for (int i = 0; i < 3; i++)
    fb_breaker_record(x, fb_breaker_acquire(x, 10), FB_FAILURE, 0, 10);
  assert_int_equal(fb_breaker_state_of(x), FB_OPEN);
  fb_breaker *y = fb_zone_breaker(b, "api/127.0.0.1:1", &cfg, 11, f->err,
                                  sizeof f->err);
  assert_non_null(y);
  assert_ptr_not_equal(x, y);
  assert_int_equal(fb_breaker_state_of(y), FB_OPEN);
  assert_int_equal(fb_breaker_acquire(y, 12), FB_EREJECTED);
  assert_true(fb_breaker_acquire(y, 15.5) >= 0); /* half-open, through b */
  assert_int_equal(fb_breaker_state_of(x), FB_HALF_OPEN);
  assert_int_equal(fb_zone_entries(a), 1);
  /* peers: one record per key, zeroed when made, shared */
  fb_zone_peer *p = fb_zone_peer_get(a, "api/127.0.0.1:1", f->err,
                                     sizeof f->err);
  assert_non_null(p);
  assert_int_equal(atomic_load(&p->inflight), 0);
  atomic_fetch_add(&p->inflight, 2);
  fb_zone_peer *q = fb_zone_peer_get(b, "api/127.0.0.1:1", f->err,
                                     sizeof f->err);
  assert_int_equal(atomic_load(&q->inflight), 2);
  assert_int_equal(fb_zone_entries(b), 2);
  fb_zone_release(a);
  fb_zone_release(b);
  /* the file outlives every mapping (a reload's new workers find it) */
  fb_zone *c = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  assert_non_null(c);
  fb_breaker *z = fb_zone_breaker(c, "api/127.0.0.1:1", &cfg, 20, f->err,
                                  sizeof f->err);
  assert_int_equal(fb_breaker_state_of(z), FB_HALF_OPEN);
  fb_zone_release(c);
}

/* Another config under the same name is another breaker, made fresh; the
 * first config still finds its own. */
static void test_changed_config(void **state) {
  fixture *f = *state;
  fb_zone *z = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  fb_breaker_config c3 = consecutive(3), c5 = consecutive(5);
  fb_breaker *a = fb_zone_breaker(z, "k", &c3, 0, f->err, sizeof f->err);
  fb_breaker_force_open(a, 0);
  fb_breaker *b = fb_zone_breaker(z, "k", &c5, 0, f->err, sizeof f->err);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  assert_int_equal(fb_breaker_state_of(b), FB_CLOSED);
  assert_ptr_equal(fb_zone_breaker(z, "k", &c3, 0, f->err, sizeof f->err), a);
  assert_int_equal(fb_zone_entries(z), 2);
  assert_true(fb_zone_config_fingerprint(&c3) !=
              fb_zone_config_fingerprint(&c5));
  fb_breaker_config again = consecutive(3);
  assert_true(fb_zone_config_fingerprint(&c3) ==
              fb_zone_config_fingerprint(&again));
  fb_zone_release(z);
}

static void test_full(void **state) {
  fixture *f = *state;
  fb_zone *z = fb_zone_open(f->path, "api", FB_ZONE_MIN_SIZE, f->err,
                            sizeof f->err);
  assert_non_null(z);
  fb_breaker_config cfg = consecutive(3);
  char key[32];
  int made = 0;
  for (;; made++) {
    snprintf(key, sizeof key, "b%d", made);
    if (!fb_zone_breaker(z, key, &cfg, 0, f->err, sizeof f->err))
      break;
    assert_true(made < 1000);
  }
  assert_true(made >= 20);
  assert_non_null(strstr(f->err, "zone 'api' (65536 bytes) is full"));
  /* what was made is still found, and a smaller object may still fit */
  assert_non_null(fb_zone_breaker(z, "b0", &cfg, 0, f->err, sizeof f->err));
  for (int i = 0;; i++) {
    snprintf(key, sizeof key, "p%d", i);
    if (!fb_zone_peer_get(z, key, f->err, sizeof f->err))
      break;
    assert_true(i < 1000);
  }
  assert_non_null(strstr(f->err, "zone 'api' (65536 bytes) is full"));
  assert_true(fb_zone_used(z) <= fb_zone_size(z));
  /* a directory full of small entries: 64 KiB has room for 64 */
  fb_zone_release(z);
  fb_zone *small = fb_zone_open(f->path, "api", FB_ZONE_MIN_SIZE, f->err,
                                sizeof f->err);
  assert_true(fb_zone_entries(small) <= fb_zone_max_entries(small));
  fb_zone_release(small);
  char path2[256];
  fb_zone_path(path2, sizeof path2, f->dir, "peers", 1, f->err, sizeof f->err);
  fb_zone *p = fb_zone_open(path2, "peers", FB_ZONE_MIN_SIZE, f->err,
                            sizeof f->err);
  int n = 0;
  for (;; n++) {
    snprintf(key, sizeof key, "p%d", n);
    if (!fb_zone_peer_get(p, key, f->err, sizeof f->err))
      break;
  }
  assert_int_equal(n, 64);
  assert_string_equal(f->err, "zone 'peers' (65536 bytes) is full: all 64 "
                              "entries are taken (give it a larger size)");
  /* bad entry names */
  assert_null(fb_zone_peer_get(p, "", f->err, sizeof f->err));
  assert_string_equal(f->err, "zone 'peers': entry names must be 1..127 "
                              "bytes, got 0");
  fb_zone_release(p);
}

static void write_file(const char *path, const void *bytes, size_t n,
                       size_t size) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  assert_int_equal(pwrite(fd, bytes, n, 0), (ssize_t)n);
  close(fd);
}

/* A file that holds no zone, one of another version, one whose header
 * disagrees with its size: each refused with its reason. */
static void test_bad_files(void **state) {
  fixture *f = *state;
  write_file(f->path, "not a zone", 10, SIZE);
  assert_null(fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err));
  assert_string_equal(f->err, "zone 'api' holds no fusebox zone (bad magic)");

  fb_zone *z;
  unlink(f->path);
  z = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  fb_zone_release(z);
  int fd = open(f->path, O_RDWR);
  uint32_t version = 99;
  assert_int_equal(pwrite(fd, &version, sizeof version, 8), 4);
  close(fd);
  assert_null(fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err));
  assert_non_null(strstr(f->err, "zone 'api' was made by another fusebox "
                                 "(version 99"));

  unlink(f->path);
  z = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  fb_zone_release(z);
  assert_int_equal(truncate(f->path, SIZE / 2), 0); /* someone cut it */
  assert_null(fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err));
  assert_string_equal(f->err, "zone 'api' is damaged (header says 262144 "
                              "bytes, the file has 131072)");

  assert_int_equal(truncate(f->path, 100), 0);
  assert_null(fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err));
  assert_string_equal(f->err, "zone 'api' is damaged (a file of 100 bytes)");

  /* sized but never built (its builder died before the magic): built now */
  unlink(f->path);
  write_file(f->path, "", 0, SIZE);
  z = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  assert_non_null(z);
  assert_int_equal(fb_zone_entries(z), 0);
  fb_zone_release(z);

  /* a file of another user under the zone's name (made here by chown:
   * these tests run as root on the build machine) */
  if (geteuid() == 0) {
    unlink(f->path);
    z = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
    fb_zone_release(z);
    assert_int_equal(chown(f->path, 65534, 65534), 0);
    assert_null(fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err));
    assert_string_equal(f->err, "zone 'api': the file belongs to uid 65534, "
                                "not to this process's 0 (or is not a "
                                "regular file)");
  }

  char missing[300];
  snprintf(missing, sizeof missing, "%s/no/such/dir", f->dir);
  assert_null(fb_zone_open(missing, "api", SIZE, f->err, sizeof f->err));
  assert_non_null(strstr(f->err, "zone 'api': cannot open"));
}

/* Counts written over by someone since the zone was opened: refused
 * with a message, never followed past the mapping. */
static void test_counts_damaged(void **state) {
  fixture *f = *state;
  fb_zone *z = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  fb_breaker_config cfg = consecutive(3);
  assert_non_null(fb_zone_breaker(z, "k", &cfg, 0, f->err, sizeof f->err));
  int fd = open(f->path, O_RDWR);
  uint64_t used = (uint64_t)1 << 40; /* head: magic, version, layout, size, data, used */
  assert_int_equal(pwrite(fd, &used, sizeof used, 32), 8);
  assert_null(fb_zone_breaker(z, "k2", &cfg, 0, f->err, sizeof f->err));
  assert_string_equal(f->err, "zone 'api' is damaged (its directory's counts "
                              "exceed its 262144 bytes)");
  assert_null(fb_zone_peer_get(z, "p", f->err, sizeof f->err));
  assert_non_null(strstr(f->err, "is damaged"));
  close(fd);
  fb_zone_release(z);
}

/* A child takes the directory's lock and is killed holding it (a worker
 * dying mid-allocation): the parent still builds and finds entries. */
static void test_killed_holder(void **state) {
  fixture *f = *state;
  fb_zone *z = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  int ready[2];
  assert_int_equal(pipe(ready), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    fb_zone *c = fb_zone_open(f->path, "api", SIZE, NULL, 0);
    if (!c)
      _exit(1);
    fb__zone_hold_lock(c);
    (void)!write(ready[1], "x", 1);
    pause();
    _exit(0);
  }
  char x;
  assert_int_equal(read(ready[0], &x, 1), 1);
  kill(pid, SIGKILL);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  fb_breaker_config cfg = consecutive(3);
  assert_non_null(fb_zone_breaker(z, "after", &cfg, 0, f->err, sizeof f->err));
  assert_non_null(fb_zone_peer_get(z, "after", f->err, sizeof f->err));
  assert_int_equal(fb_zone_entries(z), 2);
  close(ready[0]);
  close(ready[1]);
  fb_zone_release(z);
}

/* Files of an owner that is gone are removed, a live owner's kept. */
static void test_reap(void **state) {
  fixture *f = *state;
  pid_t dead = fork();
  assert_true(dead >= 0);
  if (dead == 0)
    _exit(0);
  waitpid(dead, NULL, 0);
  char gone[256], other[256];
  fb_zone_path(gone, sizeof gone, f->dir, "api", (long)dead, f->err,
               sizeof f->err);
  snprintf(other, sizeof other, "%s/unrelated.%ld", f->dir, (long)dead);
  fb_zone *live = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  fb_zone *old = fb_zone_open(gone, "api", SIZE, f->err, sizeof f->err);
  write_file(other, "x", 1, 1);
  assert_int_equal(fb_zone_reap(f->dir), 1);
  assert_int_equal(access(gone, F_OK), -1);
  assert_int_equal(access(f->path, F_OK), 0);
  assert_int_equal(access(other, F_OK), 0);
  assert_int_equal(fb_zone_reap("/no/such/dir"), FB_EINVAL);
  fb_zone_release(old); /* its mapping outlived the file */
  fb_zone_release(live);
}

/* Two registries (two workers) whose instances share their load through
 * the zone's peer records: calls in flight through one are weighed by the
 * other's least_request, which then picks the loaded instance only when
 * both its samples fall on it (1 in 4, against 1 in 2 unshared). */
static void test_shared_load(void **state) {
  fixture *f = *state;
  fb_zone *z = fb_zone_open(f->path, "api", SIZE, f->err, sizeof f->err);
  fb_registry *r[2];
  fb_instance *in[2][2];
  for (int w = 0; w < 2; w++) {
    r[w] = fb_registry_new(NULL);
    for (int port = 1; port <= 2; port++) {
      assert_int_equal(fb_registry_register(r[w], "svc", "10.0.0.1", port, 0),
                       FB_ADDED);
      in[w][port - 1] = fb_registry_find(r[w], "svc", "10.0.0.1", port);
      char key[32];
      snprintf(key, sizeof key, "svc/10.0.0.1:%d", port);
      fb_zone_peer *p = fb_zone_peer_get(z, key, f->err, sizeof f->err);
      fb_instance_share_load(in[w][port - 1], (int64_t *)&p->inflight);
    }
  }
  fb_balancer *a = fb_balancer_new(r[0], "least_request", 1);
  fb_balancer *b = fb_balancer_new(r[1], "least_request", 2);
  for (int k = 0; k < 5; k++)
    assert_int_equal(fb_balancer_take(a, in[0][0]), 0);
  fb_service *s = fb_registry_service(r[1], "svc");
  int loaded = 0;
  for (int k = 0; k < 400; k++) {
    fb_instance *i = fb_balancer_pick(b, s, 0);
    loaded += i == in[1][0];
    assert_int_equal(fb_balancer_done(b, i, 1, 0.001, 0), 0);
  }
  assert_true(loaded > 60 && loaded < 140); /* ~100 of 400 */
  fb_zone_peer *p = fb_zone_peer_get(z, "svc/10.0.0.1:1", f->err,
                                     sizeof f->err);
  assert_int_equal(atomic_load(&p->inflight), 5);
  assert_int_equal(fb_instance_inflight(in[1][0]), 0); /* its own: none */
  for (int k = 0; k < 5; k++)
    assert_int_equal(fb_balancer_done(a, in[0][0], 1, 0.001, 0), 0);
  assert_int_equal(atomic_load(&p->inflight), 0);
  /* unshared again: B's own count only */
  fb_instance_share_load(in[1][0], NULL);
  atomic_store(&p->inflight, 1000);
  loaded = 0;
  for (int k = 0; k < 400; k++) {
    fb_instance *i = fb_balancer_pick(b, s, 0);
    loaded += i == in[1][0];
    fb_balancer_done(b, i, 1, 0.001, 0);
  }
  assert_true(loaded > 140); /* ~200 of 400 */
  fb_balancer_free(a);
  fb_balancer_free(b);
  fb_registry_release(r[0]);
  fb_registry_release(r[1]);
  fb_zone_release(z);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_path_and_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_and_attach, setup, teardown),
      cmocka_unit_test_setup_teardown(test_changed_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_counts_damaged, setup, teardown),
      cmocka_unit_test_setup_teardown(test_killed_holder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_load, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
