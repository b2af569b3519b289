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

#include <math.h>
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

/* A JSON number at *p into *v (advancing *p); 0 when there is none, or
 * it is longer than a double's digits need (the parser reads those). */
static int number(const char **p, const char *end, double *v) {
  const char *s = *p, *q = s;
  char buf[64];
  if (q < end && *q == '-')
    q++;
  if (q < end && *q == '0')
    q++;
  else if (q < end && digit(*q))
    while (q < end && digit(*q))
      q++;
  else
    return 0;
  if (q < end && *q == '.') {
    if (++q == end || !digit(*q))
      return 0;
    while (q < end && digit(*q))
      q++;
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    q++;
    if (q < end && (*q == '+' || *q == '-'))
      q++;
    if (q == end || !digit(*q))
      return 0;
    while (q < end && digit(*q))
      q++;
  }
  if ((size_t)(q - s) >= sizeof buf)
    return 0;
  memcpy(buf, s, (size_t)(q - s));
  buf[q - s] = '\0';
  *v = strtod(buf, NULL);
  *p = q;
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
