/*
 * events.h -- a run's event log and summary (internal).
 *
 * Events are cJSON objects written one per line to a file (JSON Lines),
 * always starting with "t" (the runtime's clock) and "kind". As they pass
 * through, the sink counts what the end-of-run summary reports: calls and
 * their outcomes (success, failure, timeout), breaker rejections, and the time each breaker spent in
 * each state. No Lua here, and nothing that reads a clock: callers pass t.
 */
#ifndef FB_EVENTS_H
#define FB_EVENTS_H

#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>

#define FB_SECONDS_BUF 32

typedef struct fb_breaker_track {
  double id;    /* as the events name it */
  int state;    /* 0 CLOSED, 1 OPEN, 2 HALF_OPEN, as in fb_breaker_state */
  double since; /* when it entered state */
} fb_breaker_track;

typedef struct fb_events {
  FILE *file;                /* NULL: counting for the summary only */
  double t_start;
  uint64_t calls, successes, failures, timeouts, rejections, events;
  double state_time[3];      /* seconds, summed over breakers */
  fb_breaker_track *breakers; /* by the breaker id events carry */
  size_t nbreakers, breakers_cap;
  int write_failed;
  /* Every event, as it passes, is also handed to tap (NULL: none): fusebox
   * compare aggregates a run's events in memory this way, without a file
   * to write and parse back. */
  void (*tap)(void *arg, const cJSON *event);
  void *tap_arg;
} fb_events;

/* Starts a sink at t writing to path (NULL: summary only), with no tap;
 * returns 0, or -1 with errno set when the file cannot be created. */
int fb_events_open(fb_events *ev, const char *path, double t);

/* Creates an event object {t, kind}, to be filled and passed to
 * fb_events_write(); NULL when out of memory. */
cJSON *fb_events_new(double t, const char *kind);

/* Counts the event for the summary, writes it as one line and frees it;
 * event NULL (making it ran out of memory) counts as a failed write. */
void fb_events_write(fb_events *ev, cJSON *event);

/* Returns the summary at t as a new cJSON object (NULL: out of memory). */
cJSON *fb_events_summary(const fb_events *ev, double t);

/* Prints the summary at t as a few human-readable lines on f. */
void fb_events_print_summary(const fb_events *ev, double t, FILE *f);

/* Writes t seconds as a person reads it into buf and returns buf: three
 * decimals (12.345), or %g once that would be long (7e+300): a virtual
 * clock can reach any double. The one format for a printed time. */
const char *fb_format_seconds(char buf[FB_SECONDS_BUF], double t);

/* Flushes and closes the file; returns 0, or -1 if any write failed. */
int fb_events_close(fb_events *ev);

#endif
