/*
 * test_trace.c -- fb_trace_scan_line's numbers are strtod's, bit for bit
 * (the JSON parser's, which fb.trace.read falls back to). A fast path in
 * x87 extended precision once read them, right on the CPU and wrong under
 * valgrind, which computes x87 in doubles: this test caught it there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

/* xorshift64*: the same numbers on every run */
static uint64_t next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545f4914f6cdd1dULL;
}

/* The t and latency the scanner reads of a done line with the number
 * text num in both places; fails the test unless it reads the line. */
static void scan(const char *num, double *t, double *latency) {
  char line[256];
  double out[FB_TRACE_OUT];
  int n = snprintf(line, sizeof line,
                   "{\"t\":%s,\"kind\":\"done\",\"host\":\"h\",\"latency\":%s,"
                   "\"ok\":true,\"port\":80}",
                   num, num[0] == '-' ? num + 1 : num);
  assert_true(n > 0 && (size_t)n < sizeof line);
  assert_int_equal(fb_trace_scan_line(line, (size_t)n, out), FB_TRACE_DONE);
  *t = out[FB_TRACE_T];
  *latency = out[FB_TRACE_LATENCY];
}

/* Fails unless num reads as strtod reads it (the same bits: -0 too). */
static void same_as_strtod(const char *num) {
  double t, latency, want = strtod(num, NULL);
  double want_latency = strtod(num[0] == '-' ? num + 1 : num, NULL);
  scan(num, &t, &latency);
  if (memcmp(&t, &want, sizeof t) != 0 || memcmp(&latency, &want_latency, sizeof t) != 0)
    fail_msg("%s: read %.17g and %.17g, strtod says %.17g and %.17g", num, t, latency,
             want, want_latency);
}

/* The cases a fast path gets wrong first: halfway between two doubles
 * (2^53 + 1 is the tie 2^53 / 2^53 + 2, to even), just either side of
 * it, powers of ten at the table's ends and past them, zeros, 19 and 20
 * digits, and what fusebox writes (%.17g of times and latencies). */
static void hard_cases(void **state) {
  (void)state;
  static const char *const cases[] = {
      "0", "-0", "0.0", "-0.0", "0e5", "0.000", "1", "-1", "9007199254740993",
      "9007199254740992", "9007199254740994", "9007199254740995", "9007199254740993e-10",
      "90071992547409930", "9007199254740993000", "900719925474099300000",
      "18014398509481985", "18014398509481987", "1e27", "1e28", "1e-27", "1e-28",
      "123456789012345678e9", "1234567890123456789", "12345678901234567890",
      "9999999999999999999", "0.1", "0.2", "0.3", "2.2250738585072011e-308",
      "1.7976931348623157e308", "5e-324", "4.9406564584124654e-324", "1e308", "1e-300",
      "0.0060000000000000001", "0.0020999999999999999", "1.0009999999999999",
      "999.99900000000002", "1000000", "0.001", "3.0000000000000004",
      "0.30000000000000004", "7.0000000000000007e-05", "1E5", "1e+5", "1.5E-3",
      "0.00000000000000000000000000000001", "100000000000000000000000000000"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    same_as_strtod(cases[i]);
}

/* Random doubles of every magnitude, printed the ways a log may print
 * them: each read back as strtod reads it. */
static void random_doubles(void **state) {
  (void)state;
  static const char *const formats[] = {"%.17g", "%.16g", "%.15g", "%g", "%.3f", "%.10e",
                                        "%.19g", "%.6f"};
  uint64_t s = 0x9e3779b97f4a7c15ULL;
  char num[64];
  for (int i = 0; i < 200000; i++) {
    uint64_t bits = next(&s);
    double d;
    if (i % 2) { /* times and latencies: 1e-9 .. 1e9 */
      d = ldexp((double)(bits >> 11), -53) * pow(10, (double)(int)(bits % 19) - 9);
    } else {
      memcpy(&d, &bits, sizeof d);
      if (!isfinite(d))
        continue;
    }
    const char *f = formats[(bits >> 5) % (sizeof formats / sizeof formats[0])];
    int n = snprintf(num, sizeof num, f, d);
    if (n <= 0 || n >= 48)
      continue; /* longer than the scanner reads */
    same_as_strtod(num);
  }
}

/* Decimals m * 10^e of up to 19 digits around the exponents the fast
 * path covers, where its product or quotient lands anywhere, near ties
 * included, written with a point and with an exponent. */
static void random_decimals(void **state) {
  (void)state;
  uint64_t s = 12345;
  char num[64];
  for (int i = 0; i < 1000000; i++) {
    uint64_t m = next(&s) % 10000000000000000000ULL;
    int digits = 1 + (int)(next(&s) % 19);
    uint64_t cap = 1;
    for (int k = 0; k < digits; k++)
      cap *= 10;
    if (digits < 19)
      m %= cap;
    int e = (int)(next(&s) % 61) - 30;
    if (i % 2)
      snprintf(num, sizeof num, "%llue%d", (unsigned long long)m, e);
    else if (e >= 0)
      snprintf(num, sizeof num, "%llu.%de%d", (unsigned long long)m, i % 10, e);
    else
      snprintf(num, sizeof num, "0.%0*llu", -e < 30 ? -e : 30, (unsigned long long)m);
    same_as_strtod(num);
  }
}

/* Another kind's line is passed over (OTHER) unless "done" (quoted)
 * appears in it anywhere, which sends it to the JSON parser (PARSE). */
static void other_kinds(void **state) {
  (void)state;
  static const struct {
    const char *line;
    int want;
  } cases[] = {
      {"{\"t\":1,\"kind\":\"pick\",\"host\":\"d\",\"port\":80}", FB_TRACE_OTHER},
      {"{\"t\":1,\"kind\":\"pick\",\"host\":\"done\",\"port\":80}", FB_TRACE_PARSE},
      {"{\"t\":1,\"kind\":\"pick\",\"host\":\"undone\",\"port\":80}", FB_TRACE_OTHER},
      {"{\"t\":1,\"kind\":\"pick\",\"done\":1}", FB_TRACE_PARSE},
      {"{\"t\":1,\"kind\":\"pick\",\"x\":\"dd\"}", FB_TRACE_OTHER},
      {"{\"t\":1,\"kind\":\"pick\",\"x\":\"ddone\"}", FB_TRACE_OTHER},
      {"{\"t\":1,\"kind\":\"pick\",\"x\":\"done", FB_TRACE_PARSE},
      {"{\"t\":1,\"kind\":\"pick\",\"x\":\"don\"}", FB_TRACE_OTHER},
      {"{\"t\":1,\"kind\":\"done\"}", FB_TRACE_PARSE},
      {"{\"t\":1,\"d\":\"done\"}", FB_TRACE_PARSE},
  };
  double out[FB_TRACE_OUT];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = fb_trace_scan_line(cases[i].line, strlen(cases[i].line), out);
    if (got != cases[i].want)
      fail_msg("%s: %d, want %d", cases[i].line, got, cases[i].want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(hard_cases),
      cmocka_unit_test(random_doubles),
      cmocka_unit_test(random_decimals),
      cmocka_unit_test(other_kinds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
