/*
 * test_backend.c -- what a distributed registry stands on in the core:
 * the backend vtable (ops called after the cache changed, never by the
 * cache feed, no local expiry) and RFC 4648 base64 (etcd's JSON carries
 * keys and values in it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"
#include "fusebox.h"

/* ---------------------------------------------------------------- base64 */

/* RFC 4648 section 10 test vectors. */
static const char *const vectors[][2] = {
    {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
    {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void base64_rfc4648_vectors(void **state) {
  (void)state;
  for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
    const char *plain = vectors[v][0], *coded = vectors[v][1];
    char enc[16] = {0};
    unsigned char dec[16] = {0};
    assert_int_equal(fb_base64_encoded_len(strlen(plain)), strlen(coded));
    fb_base64_encode((const unsigned char *)plain, strlen(plain), enc);
    assert_string_equal(enc, coded);
    assert_int_equal(fb_base64_decode(coded, strlen(coded), dec),
                     (long)strlen(plain));
    assert_memory_equal(dec, plain, strlen(plain));
  }
}

static void base64_binary_round_trip(void **state) {
  (void)state;
  unsigned char all[256], back[258];
  char enc[344];
  for (int i = 0; i < 256; i++)
    all[i] = (unsigned char)i;
  for (size_t n = 0; n <= 256; n += 37) {
    size_t len = fb_base64_encoded_len(n);
    fb_base64_encode(all, n, enc);
    assert_int_equal(fb_base64_decode(enc, len, back), (long)n);
    assert_memory_equal(back, all, n);
  }
}

static void base64_rejects_malformed(void **state) {
  (void)state;
  unsigned char out[16];
  const char *bad[] = {"Zm9", "Zm9v\n", "Zm9-", "Z===", "Zg=a", "Zm=v",
                       "Zg==Zg=="};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(fb_base64_decode(bad[i], strlen(bad[i]), out), -1);
}

/* --------------------------------------------------------------- backend */

typedef struct calls {
  int registers, heartbeats, deregisters;
  char last[64];
  int fail;
} calls;

static int record(calls *c, int *n, const char *s, const char *h, int p) {
  (*n)++;
  snprintf(c->last, sizeof c->last, "%s/%s:%d", s, h, p);
  return c->fail ? FB_ENOMEM : 0;
}

static int on_register(void *d, const char *s, const char *h, int p) {
  calls *c = d;
  return record(c, &c->registers, s, h, p);
}

static int on_heartbeat(void *d, const char *s, const char *h, int p) {
  calls *c = d;
  return record(c, &c->heartbeats, s, h, p);
}

static int on_deregister(void *d, const char *s, const char *h, int p) {
  calls *c = d;
  return record(c, &c->deregisters, s, h, p);
}

static const fb_registry_backend ops = {on_register, on_heartbeat,
                                        on_deregister};

static size_t live(fb_registry *r, const char *service, double now) {
  fb_instance *const *v;
  return fb_service_live(fb_registry_service(r, service), now, &v);
}

static void backend_hears_own_changes(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  calls c = {0};
  fb_registry_set_backend(r, &ops, &c);
  assert_int_equal(fb_registry_register(r, "api", "10.0.0.1", 80, 0), FB_ADDED);
  assert_int_equal(c.registers, 1);
  assert_string_equal(c.last, "api/10.0.0.1:80");
  assert_int_equal(live(r, "api", 0), 1); /* read your own write */
  assert_int_equal(fb_registry_heartbeat(r, "api", "10.0.0.1", 80, 1),
                   FB_REFRESHED);
  assert_int_equal(c.heartbeats, 1);
  assert_int_equal(fb_registry_deregister(r, "api", "10.0.0.1", 80), 1);
  assert_int_equal(c.deregisters, 1);
  /* Not in the cache, but perhaps in the store: the backend still hears. */
  assert_int_equal(fb_registry_deregister(r, "api", "10.0.0.9", 80), 0);
  assert_int_equal(c.deregisters, 2);
  assert_int_equal(fb_registry_register(r, "", "h", 1, 0), FB_EINVAL);
  assert_int_equal(c.registers, 1);
  fb_registry_release(r);
}

static void cache_feed_is_silent_and_never_expires(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL); /* heartbeat_timeout 30 */
  calls c = {0};
  fb_registry_set_backend(r, &ops, &c);
  assert_int_equal(fb_registry_cache_put(r, "api", "10.0.0.2", 81, 0),
                   FB_ADDED);
  assert_int_equal(live(r, "api", 1e6), 1); /* the store decides liveness */
  assert_int_equal(fb_registry_cache_delete(r, "api", "10.0.0.2", 81), 1);
  assert_int_equal(live(r, "api", 0), 0);
  assert_int_equal(c.registers + c.heartbeats + c.deregisters, 0);
  fb_registry_set_backend(r, NULL, NULL); /* its own store again */
  assert_int_equal(fb_registry_register(r, "api", "10.0.0.3", 82, 0),
                   FB_ADDED);
  assert_int_equal(live(r, "api", 30), 0);
  assert_int_equal(c.registers, 0);
  fb_registry_release(r);
}

static void backend_error_is_returned(void **state) {
  (void)state;
  fb_registry *r = fb_registry_new(NULL);
  calls c = {.fail = 1};
  fb_registry_set_backend(r, &ops, &c);
  assert_int_equal(fb_registry_register(r, "api", "10.0.0.1", 80, 0),
                   FB_ENOMEM);
  fb_registry_release(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(base64_rfc4648_vectors),
      cmocka_unit_test(base64_binary_round_trip),
      cmocka_unit_test(base64_rejects_malformed),
      cmocka_unit_test(backend_hears_own_changes),
      cmocka_unit_test(cache_feed_is_silent_and_never_expires),
      cmocka_unit_test(backend_error_is_returned),
  };
  return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
