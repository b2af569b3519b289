/*
 * events.c -- the event log: JSON lines through cJSON, and the summary.
 *
 * The summary is derived from the events themselves (call_end, reject,
 * outcome, state_change), so the log and the summary cannot disagree.
 * An event with fixed fields becomes JSON only when a file is written.
 */
#include "events.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[3] = {"CLOSED", "OPEN", "HALF_OPEN"};

int fb_events_open(fb_events *ev, const char *path, double t) {
  memset(ev, 0, sizeof *ev);
  ev->t_start = t;
  if (path && !(ev->file = fopen(path, "w")))
    return -1;
  return 0;
}

cJSON *fb_events_new(double t, const char *kind) {
  cJSON *e = cJSON_CreateObject();
  if (!e)
    return NULL;
  if (!cJSON_AddNumberToObject(e, "t", t) ||
      !cJSON_AddStringToObject(e, "kind", kind)) {
    cJSON_Delete(e);
    return NULL;
  }
  return e;
}

/* ------------------------------------------------------------ fb_event */

int fb_event_get(const fb_event *e, const char *name, fb_event_field *out) {
  if (!e->json) {
    for (size_t i = 0; i < e->n; i++) /* first letters first: most differ */
      if (e->field[i].name[0] == name[0] && strcmp(e->field[i].name, name) == 0) {
        *out = e->field[i];
        return 0;
      }
    return -1;
  }
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(e->json, name);
  if (!v)
    return -1;
  *out = (fb_event_field){.name = v->string, .type = FB_FIELD_NULL};
  if (cJSON_IsNumber(v)) {
    out->type = FB_FIELD_NUMBER;
    out->num = v->valuedouble;
  } else if (cJSON_IsString(v)) {
    out->type = FB_FIELD_STRING;
    out->str = v->valuestring;
  } else if (cJSON_IsBool(v)) {
    out->type = FB_FIELD_BOOL;
    out->num = cJSON_IsTrue(v);
  } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
    out->type = FB_FIELD_JSON;
    out->json = v;
  }
  return 0;
}

int fb_event_of_json(const cJSON *o, fb_event *e) {
  if (!cJSON_IsObject(o))
    return -1;
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "t");
  const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "kind"));
  if (!cJSON_IsNumber(t) || !kind)
    return -1;
  e->t = t->valuedouble;
  e->kind = kind;
  e->json = o;
  e->n = 0;
  return 0;
}

static cJSON *field_json(const fb_event_field *f) {
  switch (f->type) {
  case FB_FIELD_NUMBER:
    return cJSON_CreateNumber(f->num);
  case FB_FIELD_STRING:
    return cJSON_CreateStringReference(f->str); /* printed, not kept */
  case FB_FIELD_BOOL:
    return cJSON_CreateBool(f->num != 0);
  case FB_FIELD_JSON: /* the caller's, printed in place */
    if (!f->json)
      return cJSON_CreateNull();
    return cJSON_IsArray(f->json) ? cJSON_CreateArrayReference(f->json->child)
                                  : cJSON_CreateObjectReference(f->json->child);
  default:
    return cJSON_CreateNull();
  }
}

cJSON *fb_event_to_json(const fb_event *e) {
  cJSON *o = fb_events_new(e->t, e->kind);
  for (size_t i = 0; o && i < e->n; i++) {
    cJSON *v = field_json(&e->field[i]);
    if (!v || !cJSON_AddItemToObjectCS(o, e->field[i].name, v)) { /* printed, not kept */
      cJSON_Delete(v);
      cJSON_Delete(o);
      return NULL;
    }
  }
  return o;
}

/* ------------------------------------------------------------- summary */

static const char *field_string(const fb_event *e, const char *name) {
  fb_event_field f;
  return fb_event_get(e, name, &f) == 0 && f.type == FB_FIELD_STRING ? f.str : "";
}

static int state_index(const char *name) {
  for (int i = 0; i < 3; i++)
    if (strcmp(name, state_names[i]) == 0)
      return i;
  return -1;
}

/* The breaker id an event names: 0, or -1 when it names none. */
static int breaker_id(const fb_event *e, double *id) {
  fb_event_field f;
  if (fb_event_get(e, "breaker", &f) < 0 || f.type != FB_FIELD_NUMBER)
    return -1;
  *id = f.num;
  return 0;
}

/* Finds (or starts tracking, in state `from` since the run began) the
 * breaker an event names; NULL if it names none. fusebox.events numbers
 * breakers 1, 2, ... in the order they first appear, which is the order
 * they are tracked in, so breaker n is looked for at n - 1 first: O(1)
 * per event with thousands of per-instance breakers; a search otherwise.
 * The array doubles as it grows. */
static fb_breaker_track *track(fb_events *ev, const fb_event *e, int from) {
  double want;
  if (breaker_id(e, &want) < 0)
    return NULL;
  if (want >= 1 && want <= (double)ev->nbreakers &&
      ev->breakers[(size_t)want - 1].id == want)
    return &ev->breakers[(size_t)want - 1];
  for (size_t i = 0; i < ev->nbreakers; i++)
    if (ev->breakers[i].id == want)
      return &ev->breakers[i];
  if (ev->nbreakers == ev->breakers_cap) {
    size_t cap = ev->breakers_cap ? 2 * ev->breakers_cap : 16;
    fb_breaker_track *v = fb__realloc(ev->breakers, cap * sizeof *v);
    if (!v)
      return NULL;
    ev->breakers = v;
    ev->breakers_cap = cap;
  }
  fb_breaker_track *b = &ev->breakers[ev->nbreakers++];
  *b = (fb_breaker_track){want, from, ev->t_start};
  return b;
}

static void count_state_change(fb_events *ev, const fb_event *e, double t) {
  int from = state_index(field_string(e, "from"));
  int to = state_index(field_string(e, "to"));
  fb_breaker_track *b;
  double id;
  if (from < 0 || to < 0)
    return;
  if (!(b = track(ev, e, from))) {
    /* out of memory, unless the event names no breaker: the summary
     * would be short, so closing says so */
    ev->write_failed |= breaker_id(e, &id) == 0;
    return;
  }
  ev->state_time[b->state] += t - b->since;
  b->state = to;
  b->since = t;
}

static void count(fb_events *ev, const fb_event *e) {
  const char *kind = e->kind;
  ev->events++;
  if (strcmp(kind, "call_end") == 0) {
    const char *outcome = field_string(e, "outcome");
    ev->calls++;
    if (strcmp(outcome, "success") == 0)
      ev->successes++;
    else if (strcmp(outcome, "timeout") == 0)
      ev->timeouts++;
    else
      ev->failures++;
  } else if (strcmp(kind, "reject") == 0) {
    ev->rejections++;
    track(ev, e, 0); /* a breaker that never changed state is counted too */
  } else if (strcmp(kind, "outcome") == 0) {
    track(ev, e, 0); /* CLOSED since the run began, until a state change */
  } else if (strcmp(kind, "state_change") == 0) {
    count_state_change(ev, e, e->t);
  }
}

/* Counts e, hands it to the tap, and writes json (NULL: built from e
 * when a file is open). */
static void put(fb_events *ev, const fb_event *e, const cJSON *json) {
  count(ev, e);
  if (ev->tap)
    ev->tap(ev->tap_arg, e);
  if (!ev->file)
    return;
  cJSON *built = json ? NULL : fb_event_to_json(e);
  char *line = json || built ? cJSON_PrintUnformatted(json ? json : built) : NULL;
  if (!line || fputs(line, ev->file) == EOF || fputc('\n', ev->file) == EOF)
    ev->write_failed = 1;
  cJSON_free(line);
  cJSON_Delete(built);
}

void fb_events_put(fb_events *ev, const fb_event *event) {
  put(ev, event, NULL);
}

void fb_events_lost(fb_events *ev) { ev->write_failed = 1; }

void fb_events_write(fb_events *ev, cJSON *event) {
  fb_event view;
  if (!event) { /* making it ran out of memory: the log is short */
    fb_events_lost(ev);
    return;
  }
  if (fb_event_of_json(event, &view) == 0)
    put(ev, &view, event);
  else
    ev->write_failed = 1; /* never: fb_events_new gives both */
  cJSON_Delete(event);
}

/* Seconds each state has held, counting the current stretch up to t. */
static void state_times(const fb_events *ev, double t, double out[3]) {
  memcpy(out, ev->state_time, sizeof ev->state_time);
  for (size_t i = 0; i < ev->nbreakers; i++)
    out[ev->breakers[i].state] += t - ev->breakers[i].since;
}

cJSON *fb_events_summary(const fb_events *ev, double t) {
  double times[3];
  state_times(ev, t, times);
  cJSON *s = cJSON_CreateObject();
  cJSON *st = cJSON_CreateObject();
  if (!s || !st) {
    cJSON_Delete(s);
    cJSON_Delete(st);
    return NULL;
  }
  int ok = cJSON_AddNumberToObject(s, "duration", t - ev->t_start) &&
           cJSON_AddNumberToObject(s, "calls", (double)ev->calls) &&
           cJSON_AddNumberToObject(s, "successes", (double)ev->successes) &&
           cJSON_AddNumberToObject(s, "failures", (double)ev->failures) &&
           cJSON_AddNumberToObject(s, "timeouts", (double)ev->timeouts) &&
           cJSON_AddNumberToObject(s, "rejections", (double)ev->rejections);
  for (int i = 0; ok && i < 3; i++)
    ok = cJSON_AddNumberToObject(st, state_names[i], times[i]) != NULL;
  if (!ok || !cJSON_AddItemToObject(s, "breaker_time", st)) {
    cJSON_Delete(s); /* a partial summary would be a wrong one */
    cJSON_Delete(st);
    return NULL;
  }
  return s;
}

const char *fb_format_seconds(char buf[FB_SECONDS_BUF], double t) {
  snprintf(buf, FB_SECONDS_BUF, fabs(t) < 1e6 ? "%.3f" : "%.6g", t);
  return buf;
}

/* "1 call", "2 calls" */
static void print_count(FILE *f, uint64_t n, const char *one,
                        const char *many) {
  fprintf(f, "%llu %s", (unsigned long long)n, n == 1 ? one : many);
}

void fb_events_print_summary(const fb_events *ev, double t, FILE *f) {
  double times[3];
  char b[3][FB_SECONDS_BUF];
  state_times(ev, t, times);
  fprintf(f, "fusebox: summary after %ss: ",
          fb_format_seconds(b[0], t - ev->t_start));
  print_count(f, ev->calls, "call", "calls");
  fputs(", ", f);
  print_count(f, ev->successes, "success", "successes");
  fputs(", ", f);
  print_count(f, ev->failures, "failure", "failures");
  fputs(", ", f);
  print_count(f, ev->timeouts, "timeout", "timeouts");
  fputs(", ", f);
  print_count(f, ev->rejections, "rejection", "rejections");
  fputc('\n', f);
  if (ev->nbreakers > 0)
    fprintf(f,
            "fusebox: breaker time (summed over %zu breaker%s): CLOSED %ss, "
            "OPEN %ss, HALF_OPEN %ss\n",
            ev->nbreakers, ev->nbreakers == 1 ? "" : "s",
            fb_format_seconds(b[0], times[0]),
            fb_format_seconds(b[1], times[1]),
            fb_format_seconds(b[2], times[2]));
}

int fb_events_close(fb_events *ev) {
  int rc = ev->write_failed ? -1 : 0;
  if (ev->file && fclose(ev->file) != 0)
    rc = -1;
  ev->file = NULL;
  fb__free(ev->breakers);
  ev->breakers = NULL;
  ev->nbreakers = ev->breakers_cap = 0;
  return rc;
}
