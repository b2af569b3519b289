/*
 * trace.c -- reading fusebox's done lines without a JSON parser.
 *
 * The shape read is the one fusebox writes (lua/fusebox/balancer.lua's
 * done event through the sink, keys sorted):
 *   {"t":N,"kind":"done","host":"S","latency":N,"ok":B,"port":N}
 * with ,"service":"S" before the closing brace when the balancer has
 * one. Numbers must follow JSON's grammar (no hex, no inf, no leading +
 * or 0), strings hold no quote, backslash or byte below 0x20 (no escapes
 * to decode), and nothing may stand between the tokens: any other line
 * is the JSON parser's, which reads every shape. So a line this reads is
 * one the parser reads alike (tests/fuzz/trace_scan.c checks it).
 */
#include "trace.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Matches the literal lit at *p (advancing it); 0 when it is not there. */
static int literal(const char **p, const char *end, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
    return 0;
  *p += n;
  return 1;
}

static int digit(char c) { return c >= '0' && c <= '9'; }

/* The value of the decimal m * 10^e10 (m below 10^19, the sign apart),
 * as strtod rounds it, into *v; 0 when this cannot tell (strtod will).
 * fusebox writes its numbers with 17 digits ("%.17g"), past the 15 that
 * a double multiplies or divides exactly (Clinger's fast path), and
 * strtod took most of a trace's reading. x87's extended format holds m
 * and every power of ten up to 10^27 exactly (64-bit significands), so
 * one multiplication or division rounds m * 10^e10 once, to within half
 * an extended ulp; rounding that to a double gives strtod's answer
 * unless it lies exactly halfway between two doubles (its low 11 bits
 * 0x400), where the true value may lie on either side. */
static int decimal_fast(uint64_t m, int e10, double *v) {
#if (defined(__x86_64__) || defined(__i386__)) && LDBL_MANT_DIG == 64
  static const long double pow10[] = {
      1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
      1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
      1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
  const int max = (int)(sizeof pow10 / sizeof pow10[0]) - 1;
  if (e10 < -max || e10 > max)
    return 0;
  if (m == 0) {
    *v = 0;
    return 1;
  }
  volatile long double x = (long double)m; /* in memory: 80 bits, not more */
  x = e10 >= 0 ? x * pow10[e10] : x / pow10[-e10];
  uint64_t significand;
  long double y = x;
  memcpy(&significand, &y, sizeof significand); /* x87: the low 8 bytes */
  if ((significand & 0x7ff) == 0x400)
    return 0;
  *v = (double)y;
  return 1;
#else
  (void)m;
  (void)e10;
  (void)v;
  return 0;
#endif
}

/* A JSON number at *p into *v (advancing *p); 0 when there is none, or
 * it is longer than a double's digits need (the parser reads those).
 * The value is strtod's, as the parser's is (decimal_fast, else strtod). */
static int number(const char **p, const char *end, double *v) {
  const char *s = *p, *q = s;
  char buf[64];
  uint64_t m = 0;
  int digits = 0, e10 = 0, exp = 0, exp_sign = 1, neg = 0;
  if (q < end && *q == '-') {
    neg = 1;
    q++;
  }
  if (q < end && *q == '0')
    q++;
  else if (q < end && digit(*q)) { /* 1-9: every digit from here counts */
    for (; q < end && digit(*q); q++, digits++)
      if (digits < 19)
        m = m * 10 + (uint64_t)(*q - '0');
  } else {
    return 0;
  }
  if (q < end && *q == '.') {
    if (++q == end || !digit(*q))
      return 0;
    for (; q < end && digit(*q); q++) {
      if (digits == 0 && *q == '0') { /* a leading zero: a place, no digit */
        e10--;
        continue;
      }
      if (digits++ < 19) {
        m = m * 10 + (uint64_t)(*q - '0');
        e10--;
      }
    }
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    q++;
    if (q < end && (*q == '+' || *q == '-'))
      exp_sign = *q++ == '-' ? -1 : 1;
    if (q == end || !digit(*q))
      return 0;
    for (; q < end && digit(*q); q++)
      if (exp < 10000)
        exp = exp * 10 + (*q - '0');
  }
  if ((size_t)(q - s) >= sizeof buf)
    return 0;
  *p = q;
  if (digits <= 19 && decimal_fast(m, e10 + exp_sign * exp, v)) {
    if (neg)
      *v = -*v;
    return 1;
  }
  memcpy(buf, s, (size_t)(q - s));
  buf[q - s] = '\0';
  *v = strtod(buf, NULL);
  return 1;
}

/* A plain string's body at *p, up to its closing quote (consumed): its
 * offset and length from line; 0 on a quote-less end, an escape or a
 * control byte. */
static int plain_string(const char **p, const char *end, const char *line,
                        double *off, double *len) {
  const char *s = *p, *q = s;
  while (q < end && *q != '"') {
    if (*q == '\\' || (unsigned char)*q < 0x20)
      return 0;
    q++;
  }
  if (q == end)
    return 0;
  *off = (double)(s - line);
  *len = (double)(q - s);
  *p = q + 1;
  return 1;
}

static int blank(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!strchr(" \t\n\v\f\r", s[i]) || s[i] == '\0')
      return 0;
  return 1;
}

static int read_done(const char *line, const char *p, const char *end,
                     double out[FB_TRACE_OUT]) {
  double *o = out;
  if (!number(&p, end, &o[FB_TRACE_T]) ||
      !literal(&p, end, ",\"kind\":\"done\",\"host\":\"") ||
      !plain_string(&p, end, line, &o[FB_TRACE_HOST], &o[FB_TRACE_HOST_LEN]) ||
      !literal(&p, end, ",\"latency\":") ||
      !number(&p, end, &o[FB_TRACE_LATENCY]) || !literal(&p, end, ",\"ok\":"))
    return 0;
  if (literal(&p, end, "true"))
    o[FB_TRACE_OK] = 1;
  else if (literal(&p, end, "false"))
    o[FB_TRACE_OK] = 0;
  else
    return 0;
  if (!literal(&p, end, ",\"port\":") || !number(&p, end, &o[FB_TRACE_PORT]))
    return 0;
  o[FB_TRACE_SERVICE] = -1;
  o[FB_TRACE_SERVICE_LEN] = 0;
  if (literal(&p, end, ",\"service\":\"") &&
      !plain_string(&p, end, line, &o[FB_TRACE_SERVICE], &o[FB_TRACE_SERVICE_LEN]))
    return 0;
  double port = o[FB_TRACE_PORT], lat = o[FB_TRACE_LATENCY];
  return p + 1 == end && *p == '}' && o[FB_TRACE_HOST_LEN] > 0 &&
         isfinite(o[FB_TRACE_T]) && isfinite(lat) && lat >= 0 && port >= 1 &&
         port <= 65535 && port == floor(port);
}

/* Whether "done" (quotes included) is in s: memmem's general search
 * cost a tenth of reading a trace; a 'd' is rare in these lines. */
static int has_done(const char *s, size_t len) {
  const char *p = s, *end = s + len;
  while (end - p >= 6 && (p = memchr(p + 1, 'd', (size_t)(end - p - 1))))
    if (p[-1] == '"' && end - p >= 5 && memcmp(p, "done\"", 5) == 0)
      return 1;
  return 0;
}

int fb_trace_scan_line(const char *s, size_t len, double out[FB_TRACE_OUT]) {
  if (len > 0 && s[len - 1] == '\r')
    len--;
  if (blank(s, len))
    return FB_TRACE_BLANK;
  const char *p = s, *end = s + len;
  if (!literal(&p, end, "{\"t\":"))
    return FB_TRACE_PARSE;
  /* another kind's, unless an escape could spell "done" (\u0064...) or
   * a NUL could end it for a C string ("done\0...", which the decoder
   * refuses: a bad line, to be counted) */
  if (!has_done(s, len))
    return s[len - 1] == '}' && !memchr(s, '\\', len) && !memchr(s, '\0', len)
               ? FB_TRACE_OTHER
               : FB_TRACE_PARSE;
  return read_done(s, p, end, out) ? FB_TRACE_DONE : FB_TRACE_PARSE;
}
