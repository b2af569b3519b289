/*
 * report.c -- fuzz target for `fusebox report` (src/report.c,
 * src/report_html.c): the input is an events file, read the way
 * fb_report_file reads one (fb_report_read on a FILE, here over the
 * input's bytes); the page and the warnings go to a sink that counts
 * them. No crash, no hang (libFuzzer's -timeout), and the page stays
 * bounded: at most a few MiB plus a few hundred bytes per input byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct sink {
  size_t n, limit;
} sink;

static void finding(const char *what) {
  fprintf(stderr, "fuzz: report: %s\n", what);
  abort();
}

static ssize_t sink_write(void *cookie, const char *buf, size_t n) {
  (void)buf;
  sink *s = cookie;
  s->n += n;
  if (s->n > s->limit)
    finding("the page grows without bound");
  return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fb_report *r = fb_report_new();
  if (!r)
    finding("out of memory");
  if (size > 0) {
    /* fmemopen refuses an empty buffer: an empty file has no lines */
    FILE *in = fmemopen((void *)data, size, "r");
    if (!in)
      finding("fmemopen failed");
    if (fb_report_read(r, in) != 0)
      finding("reading from memory failed");
    fclose(in);
  }
  sink s = {0, ((size_t)4 << 20) + size * 256};
  FILE *out = fopencookie(&s, "w", (cookie_io_functions_t){.write = sink_write});
  if (!out)
    finding("fopencookie failed");
  if (fb_report_html(r, "fuzz.jsonl", out) != 0)
    finding("writing the page failed");
  fb_report_warn(r, "fuzz.jsonl", out);
  fclose(out);
  fb_report_free(r);
  return 0;
}
