/*
 * test_tls.c -- the TLS codec (src/tls.c) with no socket at all: a client
 * and a server session pass bytes to each other through the test, whole
 * or one byte at a time, against a test PKI that tests/tls/mkcerts.sh
 * makes with the openssl command (run from the repository's root, as
 * make test does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tls.h"

static char dir[64];

static const char *pem(const char *name) {
  static char path[8][160];
  static int next;
  char *p = path[next++ % 8];
  snprintf(p, sizeof path[0], "%s/%s", dir, name);
  return p;
}

static int make_pki(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/fusebox-tls-XXXXXX");
  if (!mkdtemp(dir))
    return -1;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "sh tests/tls/mkcerts.sh %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static int remove_pki(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static fb_tls_context *context(int server, const char *ca, const char *cert,
                               const char *key) {
  char err[512] = "";
  fb_tls_options o = {.server = server,
                      .ca_file = ca ? pem(ca) : NULL,
                      .cert_file = cert ? pem(cert) : NULL,
                      .key_file = key ? pem(key) : NULL,
                      .verify = 1};
  fb_tls_context *ctx = fb_tls_context_new(&o, err, sizeof err);
  if (!ctx)
    fail_msg("context: %s", err);
  return ctx;
}

/* Moves from's output into to, at most step bytes a feed (0: all at
 * once); returns the bytes moved. */
static size_t pass(fb_tls *from, fb_tls *to, size_t step) {
  char buf[65536];
  size_t moved = 0, n;
  while ((n = fb_tls_take_output(from, buf, step ? step : sizeof buf)) > 0) {
    assert_int_equal(fb_tls_feed(to, buf, n), FB_TLS_OK);
    moved += n;
  }
  return moved;
}

/* Runs the handshake of c and s to its end; returns c's result. */
static int handshake(fb_tls *c, fb_tls *s, size_t step) {
  int rc = FB_TLS_AGAIN, rs = FB_TLS_AGAIN;
  for (int round = 0; round < 10000; round++) {
    rc = fb_tls_handshake(c);
    pass(c, s, step);
    rs = fb_tls_handshake(s);
    size_t back = pass(s, c, step);
    if (rc == FB_TLS_FAILED || rs == FB_TLS_FAILED)
      return rc == FB_TLS_FAILED ? rc : rs;
    if (rc == FB_TLS_OK && rs == FB_TLS_OK && back == 0)
      return FB_TLS_OK;
  }
  return rc;
}

/* Reads everything s can decrypt into out (cap bytes): the count. */
static size_t drain(fb_tls *s, char *out, size_t cap) {
  size_t got = 0;
  int n;
  while (got < cap && (n = fb_tls_read(s, out + got, cap - got)) > 0)
    got += (size_t)n;
  return got;
}

static void exchange(size_t step) {
  fb_tls_context *cc = context(0, "ca.pem", NULL, NULL);
  fb_tls_context *sc = context(1, NULL, "server.pem", "server.key");
  fb_tls *c = fb_tls_new(cc, "localhost"), *s = fb_tls_new(sc, NULL);
  fb_tls_context_free(cc); /* the sessions keep theirs */
  fb_tls_context_free(sc);
  assert_non_null(c);
  assert_non_null(s);
  assert_int_equal(handshake(c, s, step), FB_TLS_OK);
  assert_true(fb_tls_ready(c));
  assert_string_equal(fb_tls_version(c), "TLSv1.3");
  char subject[256];
  assert_string_equal(fb_tls_peer_subject(c, subject, sizeof subject),
                      "CN=localhost");
  assert_null(fb_tls_peer_subject(s, subject, sizeof subject));
  /* 100 KB: several records, cut anywhere when step is small */
  size_t n = 100000;
  char *msg = malloc(n), *got = malloc(n + 1);
  for (size_t i = 0; i < n; i++)
    msg[i] = (char)('a' + i % 26);
  assert_int_equal(fb_tls_write(c, msg, n), FB_TLS_OK);
  pass(c, s, step);
  assert_int_equal(drain(s, got, n + 1), n);
  assert_memory_equal(got, msg, n);
  assert_int_equal(fb_tls_read(s, got, n), FB_TLS_AGAIN);
  fb_tls_shutdown(s);
  pass(s, c, step);
  assert_int_equal(fb_tls_read(c, got, n), FB_TLS_CLOSED);
  free(msg);
  free(got);
  fb_tls_free(c);
  fb_tls_free(s);
}

static void exchange_whole(void **state) {
  (void)state;
  exchange(0);
}

/* Every record cut into one-byte feeds: the outcome is the same. */
static void exchange_byte_by_byte(void **state) {
  (void)state;
  exchange(1);
}

static void verify_failures(void **state) {
  (void)state;
  struct {
    const char *cert, *host, *want;
  } cases[] = {
      {"wrong", "localhost", "certificate verify failed: hostname mismatch"},
      {"expired", "localhost",
       "certificate verify failed: certificate has expired"},
      {"self", "localhost", "certificate verify failed: self-signed certificate"},
      {"server", "127.0.0.2", "certificate verify failed: IP address mismatch"},
  };
  fb_tls_context *cc = context(0, "ca.pem", NULL, NULL);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char key[32], cert[32];
    snprintf(cert, sizeof cert, "%s.pem", cases[k].cert);
    snprintf(key, sizeof key, "%s.key", cases[k].cert);
    fb_tls_context *sc = context(1, NULL, cert, key);
    fb_tls *c = fb_tls_new(cc, cases[k].host), *s = fb_tls_new(sc, NULL);
    assert_int_equal(handshake(c, s, 0), FB_TLS_FAILED);
    assert_string_equal(fb_tls_error(c), cases[k].want);
    fb_tls_free(c);
    fb_tls_free(s);
    fb_tls_context_free(sc);
  }
  fb_tls_context_free(cc);
}

/* A session's failure leaves nothing behind for the next one (OpenSSL's
 * error queue is per thread). */
static void errors_do_not_leak(void **state) {
  (void)state;
  fb_tls_context *cc = context(0, "ca.pem", NULL, NULL);
  fb_tls_context *sc = context(1, NULL, "server.pem", "server.key");
  fb_tls *bad = fb_tls_new(cc, "localhost");
  fb_tls_handshake(bad);
  assert_int_equal(fb_tls_feed(bad, "HTTP/1.1 400 Bad Request\r\n\r\n", 28),
                   FB_TLS_OK);
  assert_int_equal(fb_tls_handshake(bad), FB_TLS_FAILED);
  assert_string_equal(fb_tls_error(bad),
                      "tls handshake failed: wrong version number");
  fb_tls *c = fb_tls_new(cc, "localhost"), *s = fb_tls_new(sc, NULL);
  assert_int_equal(handshake(c, s, 0), FB_TLS_OK);
  assert_string_equal(fb_tls_error(c), "");
  fb_tls_free(bad);
  fb_tls_free(c);
  fb_tls_free(s);
  fb_tls_context_free(cc);
  fb_tls_context_free(sc);
}

/* A record header announcing more than TLS allows fails at once: no
 * waiting for the 64 KiB it announces. */
static void oversized_record(void **state) {
  (void)state;
  fb_tls_context *cc = context(0, "ca.pem", NULL, NULL);
  fb_tls *c = fb_tls_new(cc, "localhost");
  assert_int_equal(fb_tls_handshake(c), FB_TLS_AGAIN);
  assert_int_equal(fb_tls_feed(c, "\x16\x03\x03\xff\xff", 5), FB_TLS_OK);
  assert_int_equal(fb_tls_handshake(c), FB_TLS_FAILED);
  assert_string_equal(fb_tls_error(c), "tls handshake failed: packet length too long");
  fb_tls_free(c);
  fb_tls_context_free(cc);
}

/* A truncated handshake is only "again": the caller's end of stream or
 * timeout ends it (src/lua_tcp.c). */
static void truncated_handshake(void **state) {
  (void)state;
  fb_tls_context *cc = context(0, "ca.pem", NULL, NULL);
  fb_tls_context *sc = context(1, NULL, "server.pem", "server.key");
  fb_tls *c = fb_tls_new(cc, "localhost"), *s = fb_tls_new(sc, NULL);
  fb_tls_handshake(c);
  pass(c, s, 0);
  assert_int_equal(fb_tls_handshake(s), FB_TLS_AGAIN);
  char buf[4096];
  size_t n = fb_tls_take_output(s, buf, sizeof buf);
  assert_true(n > 100);
  assert_int_equal(fb_tls_feed(c, buf, n / 2), FB_TLS_OK);
  assert_int_equal(fb_tls_handshake(c), FB_TLS_AGAIN);
  assert_false(fb_tls_ready(c));
  fb_tls_free(c);
  fb_tls_free(s);
  fb_tls_context_free(cc);
  fb_tls_context_free(sc);
}

static void mutual_tls(void **state) {
  (void)state;
  fb_tls_context *sc = context(1, "ca.pem", "server.pem", "server.key");
  fb_tls_context *with = context(0, "ca.pem", "client.pem", "client.key");
  fb_tls_context *without = context(0, "ca.pem", NULL, NULL);
  fb_tls *c = fb_tls_new(with, "localhost"), *s = fb_tls_new(sc, NULL);
  assert_int_equal(handshake(c, s, 0), FB_TLS_OK);
  char subject[256];
  assert_string_equal(fb_tls_peer_subject(s, subject, sizeof subject),
                      "CN=fusebox-client");
  fb_tls_free(c);
  fb_tls_free(s);
  c = fb_tls_new(without, "localhost");
  s = fb_tls_new(sc, NULL);
  /* TLS 1.3: the client is done before the server refuses it */
  handshake(c, s, 0);
  assert_string_equal(fb_tls_error(s),
                      "tls handshake failed: peer did not return a certificate");
  char buf[16];
  assert_int_equal(fb_tls_read(c, buf, sizeof buf), FB_TLS_FAILED);
  assert_string_equal(fb_tls_error(c), "tls: tlsv13 alert certificate required");
  fb_tls_free(c);
  fb_tls_free(s);
  fb_tls_context_free(sc);
  fb_tls_context_free(with);
  fb_tls_context_free(without);
}

static void context_errors(void **state) {
  (void)state;
  char err[512];
  fb_tls_options missing = {.ca_file = "/nonexistent", .verify = 1};
  assert_null(fb_tls_context_new(&missing, err, sizeof err));
  assert_string_equal(err, "cannot read ca_file '/nonexistent': No such file "
                           "or directory");
  fb_tls_options mismatch = {.cert_file = pem("client.pem"),
                             .key_file = pem("server.key"), .verify = 1};
  assert_null(fb_tls_context_new(&mismatch, err, sizeof err));
  assert_non_null(strstr(err, "does not match cert_file"));
  fb_tls_options notpem = {.ca_file = pem("client.key"), .verify = 1};
  assert_null(fb_tls_context_new(&notpem, err, sizeof err));
  assert_non_null(strstr(err, "cannot load ca_file"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(exchange_whole),
      cmocka_unit_test(exchange_byte_by_byte),
      cmocka_unit_test(verify_failures),
      cmocka_unit_test(errors_do_not_leak),
      cmocka_unit_test(oversized_record),
      cmocka_unit_test(truncated_handshake),
      cmocka_unit_test(mutual_tls),
      cmocka_unit_test(context_errors),
  };
  return cmocka_run_group_tests(tests, make_pki, remove_pki);
}
