/*
 * bench_util.h -- what the comparison benchmarks written in C share: a
 * monotonic clock, resident memory, and the result line bench/table.py
 * reads (one JSON object per line on stdout, written with cJSON).
 */
#ifndef FB_BENCH_UTIL_H
#define FB_BENCH_UTIL_H

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Runs per measurement; table.py reports their median. */
#define BENCH_RUNS 5

static inline double bench_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Resident set size in bytes, from /proc/self/status (0 if unreadable). */
static inline double bench_rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double kib = 0;
  if (!f)
    return 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kib = strtod(line + 6, NULL);
  fclose(f);
  return kib * 1024;
}

/* Prints o as one result line and frees it. */
static inline void bench_print(cJSON *o) {
  char *s = cJSON_PrintUnformatted(o);
  if (s)
    puts(s);
  fflush(stdout);
  free(s);
  cJSON_Delete(o);
}

/* Prints one result: runs[] are per-op values in unit ("ns/op", ...),
 * n the operations behind each run. */
static inline void bench_emit(const char *bench, const char *name,
                              const char *impl, double n, const double *runs,
                              int nruns, const char *unit, const char *note) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "bench", bench);
  cJSON_AddStringToObject(o, "case", name);
  cJSON_AddStringToObject(o, "impl", impl);
  cJSON_AddNumberToObject(o, "n", n);
  cJSON_AddItemToObject(o, "runs", cJSON_CreateDoubleArray(runs, nruns));
  cJSON_AddStringToObject(o, "unit", unit);
  if (note)
    cJSON_AddStringToObject(o, "note", note);
  bench_print(o);
}

/* Prints a row that could not be measured, with the reason. */
static inline void bench_skip(const char *bench, const char *name,
                              const char *impl, const char *why) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "bench", bench);
  cJSON_AddStringToObject(o, "case", name);
  cJSON_AddStringToObject(o, "impl", impl);
  cJSON_AddStringToObject(o, "skip", why);
  bench_print(o);
}

#endif
