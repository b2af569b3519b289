/*
 * trace_scan.c -- fuzz target for fb_trace_scan_line (src/trace.c), the
 * C reader of fusebox's done lines behind fb.trace.read. The input is one
 * line. Whatever the scanner says of it must be what the JSON parser
 * says: a DONE line parses to an object whose fields are the ones read
 * (t, latency, port, ok, host and service, byte for byte; nothing else
 * but kind "done"); an OTHER line is an object of another kind, or one
 * the reader's fallback would skip (a parse error); a BLANK one is white
 * space. No crash, and no read outside the line (ASan).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void finding(const char *what, const uint8_t *data, size_t size) {
  fprintf(stderr, "fuzz: trace_scan: %s: %.*s\n", what, (int)(size > 300 ? 300 : size),
          (const char *)data);
  abort();
}

static int same_string(const cJSON *v, const char *line, double off, double len) {
  return cJSON_IsString(v) && strlen(v->valuestring) == (size_t)len &&
         memcmp(v->valuestring, line + (size_t)off, (size_t)len) == 0;
}

static int same_number(const cJSON *v, double x) {
  return cJSON_IsNumber(v) && v->valuedouble == x;
}

static void check_done(const char *line, size_t len, const double *o,
                       const uint8_t *data, size_t size) {
  cJSON *e = cJSON_ParseWithLength(line, len);
  if (!cJSON_IsObject(e))
    finding("DONE, but no JSON object", data, size);
  int fields = 0, want = o[FB_TRACE_SERVICE] >= 0 ? 7 : 6;
  for (const cJSON *c = e->child; c; c = c->next)
    fields++;
  if (fields != want)
    finding("DONE, but other fields too", data, size);
  if (!same_number(cJSON_GetObjectItemCaseSensitive(e, "t"), o[FB_TRACE_T]) ||
      !same_number(cJSON_GetObjectItemCaseSensitive(e, "latency"), o[FB_TRACE_LATENCY]) ||
      !same_number(cJSON_GetObjectItemCaseSensitive(e, "port"), o[FB_TRACE_PORT]))
    finding("DONE, but a number differs from the parser's", data, size);
  const cJSON *ok = cJSON_GetObjectItemCaseSensitive(e, "ok");
  if (!cJSON_IsBool(ok) || cJSON_IsTrue(ok) != (o[FB_TRACE_OK] == 1))
    finding("DONE, but ok differs", data, size);
  if (!same_string(cJSON_GetObjectItemCaseSensitive(e, "kind"), "done", 0, 4))
    finding("DONE, but not kind done", data, size);
  if (!same_string(cJSON_GetObjectItemCaseSensitive(e, "host"), line, o[FB_TRACE_HOST],
                   o[FB_TRACE_HOST_LEN]) || o[FB_TRACE_HOST_LEN] < 1)
    finding("DONE, but host differs", data, size);
  if (o[FB_TRACE_SERVICE] >= 0 &&
      !same_string(cJSON_GetObjectItemCaseSensitive(e, "service"), line, o[FB_TRACE_SERVICE],
                   o[FB_TRACE_SERVICE_LEN]))
    finding("DONE, but service differs", data, size);
  double port = o[FB_TRACE_PORT], lat = o[FB_TRACE_LATENCY];
  if (!isfinite(o[FB_TRACE_T]) || !(lat >= 0) || !isfinite(lat) || port < 1 ||
      port > 65535 || port != floor(port))
    finding("DONE, but a value out of range", data, size);
  cJSON_Delete(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* the line on its own in the heap: ASan sees a read past its end */
  char *line = malloc(size ? size : 1);
  if (!line)
    abort();
  memcpy(line, data, size);
  double o[FB_TRACE_OUT];
  int kind = fb_trace_scan_line(line, size, o);
  size_t len = size > 0 && line[size - 1] == '\r' ? size - 1 : size;
  if (kind == FB_TRACE_DONE) {
    check_done(line, len, o, data, size);
  } else if (kind == FB_TRACE_OTHER) {
    cJSON *e = cJSON_ParseWithLength(line, len);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, "kind");
    if (e && cJSON_IsString(k) && strcmp(k->valuestring, "done") == 0)
      finding("OTHER, but a done event", data, size);
    if (len < 6 || memcmp(line, "{\"t\":", 5) != 0 || line[len - 1] != '}')
      finding("OTHER, but not {\"t\":...}", data, size);
    cJSON_Delete(e);
  } else if (kind == FB_TRACE_BLANK) {
    for (size_t i = 0; i < len; i++)
      if (!strchr(" \t\n\v\f\r", line[i]) || line[i] == '\0')
        finding("BLANK, but not white space", data, size);
  } else if (kind != FB_TRACE_PARSE) {
    finding("an answer that is none of the four", data, size);
  }
  free(line);
  return 0;
}
