/*
 * events.h -- a run's event log and summary (internal).
 *
 * Events are written one per line to a file (JSON Lines), always
 * starting with "t" (the runtime's clock) and "kind". As they pass
 * through, the sink counts what the end-of-run summary reports: calls and
 * their outcomes (success, failure, timeout), breaker rejections, and the
 * time each breaker spent in each state. No Lua here, and nothing that
 * reads a clock: callers pass t.
 *
 * An event reaches the sink as an fb_event: t, kind and either a fixed
 * array of fields (what the runtime's hot paths fill, with no JSON built
 * unless a file is written) or a parsed JSON object (an events file read
 * back, an event a caller built with cJSON). The summary, a tap and the
 * report read both through fb_event_get(): one mechanism, and a run that
 * writes no file never turns its events into text.
 */
#ifndef FB_EVENTS_H
#define FB_EVENTS_H

#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>

#define FB_SECONDS_BUF 32
#define FB_EVENT_FIELDS 64 /* fields of an fb_event besides t and kind */

/* A field's value: JSON's kinds, with arrays and objects as cJSON. */
enum { FB_FIELD_NUMBER, FB_FIELD_STRING, FB_FIELD_BOOL, FB_FIELD_NULL,
       FB_FIELD_JSON };

typedef struct fb_event_field {
  const char *name;
  int type;          /* FB_FIELD_* */
  double num;        /* NUMBER; BOOL: 1 true, 0 false */
  const char *str;   /* STRING */
  const cJSON *json; /* JSON: an array or an object */
} fb_event_field;

typedef struct fb_event {
  double t;
  const char *kind;
  const cJSON *json;  /* non-NULL: the fields are this object's members */
  size_t n;           /* else field[0..n), in the order a line lists them */
  fb_event_field field[FB_EVENT_FIELDS];
} fb_event;

/* Finds field name of e (a JSON object's first member of that name) into
 * *out; returns 0, or -1 when e has none. */
int fb_event_get(const fb_event *e, const char *name, fb_event_field *out);

/* Makes *e a view of the JSON object o: 0, or -1 when o is no object or
 * its first "kind" is no string or its first "t" no number. */
int fb_event_of_json(const cJSON *o, fb_event *e);

/* The event as a new JSON object {t, kind, fields...} (arrays and
 * objects referenced, not copied: it must not outlive them); NULL when
 * out of memory. */
cJSON *fb_event_to_json(const fb_event *e);

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
  void (*tap)(void *arg, const fb_event *event);
  void *tap_arg;
} fb_events;

/* Starts a sink at t writing to path (NULL: summary only), with no tap;
 * returns 0, or -1 with errno set when the file cannot be created. */
int fb_events_open(fb_events *ev, const char *path, double t);

/* Creates an event object {t, kind}, to be filled and passed to
 * fb_events_write(); NULL when out of memory. */
cJSON *fb_events_new(double t, const char *kind);

/* Counts the event for the summary, hands it to the tap and writes it as
 * one line (JSON built only then). */
void fb_events_put(fb_events *ev, const fb_event *event);

/* fb_events_put for an event built with cJSON, then frees it; event NULL
 * (making it ran out of memory) counts as a failed write. */
void fb_events_write(fb_events *ev, cJSON *event);

/* Notes an event that could not be made (out of memory): the log is
 * short, and closing says so. */
void fb_events_lost(fb_events *ev);

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
