/*
 * report.c -- reading an events file into a bounded aggregate.
 *
 * Memory does not grow with the number of requests: counts and latency
 * histograms live in FB_REPORT_BUCKETS time buckets of one width; when an
 * event falls past the last bucket, the width doubles (as often as
 * needed) and neighbouring buckets merge, so a run of any length ends in
 * between half and all of the buckets. Only state changes and membership
 * changes, which are rare, are kept one by one (and found by name in a
 * hash table). The page is written by report_html.c.
 *
 * Every loop here ends after a count fixed by its input: widening doubles
 * at most 42 times (FB_REPORT_T_MAX), a hash probe visits at most the
 * table, a line is read once.
 */
#include "report.h"
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define B FB_REPORT_BUCKETS

/* SplitMix64's finalizer: every input bit moves every output bit. */
static uint64_t mix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

fb_report *fb_report_new(void) {
  fb_report *r = fb__calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->width = FB_REPORT_W0;
  r->virtual_time = -1;
  /* where the allocator put r (ASLR): the table's order is never shown,
   * and a file cannot be built to make every name collide */
  r->seed_hash = mix((uint64_t)(uintptr_t)r);
  return r;
}

static void free_series(fb_report_series *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    fb__free(s[i].name);
    fb__free(s[i].counts);
  }
  fb__free(s);
}

static void free_tracks(fb_report_track *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    fb__free(t[i].name);
    fb__free(t[i].spans);
    fb__free(t[i].marks);
  }
  fb__free(t);
}

void fb_report_free(fb_report *r) {
  if (!r)
    return;
  free_series(r->series, r->nseries);
  free_series(r->pick_series, r->npick_series);
  for (size_t i = 0; i < B; i++) {
    fb__free(r->latency[i]);
    fb__free(r->durations[i]);
  }
  free_tracks(r->breakers, r->nbreakers);
  free_tracks(r->members, r->nmembers);
  fb__free(r->breaker_index.slots);
  fb__free(r->member_index.slots);
  for (size_t i = 0; i < r->nargs; i++)
    fb__free(r->args[i]);
  fb__free(r->args);
  fb__free(r->script);
  fb__free(r->seed);
  fb__free(r->run_error);
  fb__free(r->request_latency);
  fb__free(r);
}

/* ------------------------------------------------------------ buckets */

/* A count plus n, held at UINT32_MAX instead of wrapping to a small one. */
static void add_count(uint32_t *to, uint32_t n) {
  *to = *to > UINT32_MAX - n ? UINT32_MAX : *to + n;
}

/* Adds bucket i into bucket i >> k for every bucket in use; increasing
 * i, so each target is final before anything is added to it. */
static void merge_rows(void *rows, size_t row_size, size_t n, int k) {
  unsigned char *base = rows;
  for (size_t i = 1; i < n; i++) {
    size_t j = i >> k;
    if (j == i)
      continue;
    uint32_t *to = (uint32_t *)(base + j * row_size);
    uint32_t *from = (uint32_t *)(base + i * row_size);
    for (size_t c = 0; c < row_size / sizeof *to; c++)
      add_count(&to[c], from[c]);
    memset(from, 0, row_size);
  }
}

/* merge_rows for histograms, whose rows are NULL while empty: a row
 * moves whole where its target is empty, and nothing is allocated. */
static void merge_hists(uint32_t **rows, size_t n, int k) {
  for (size_t i = 1; i < n; i++) {
    size_t j = i >> k;
    if (j == i || !rows[i])
      continue;
    if (!rows[j]) {
      rows[j] = rows[i];
    } else {
      for (int b = 0; b < FB_REPORT_BINS; b++)
        add_count(&rows[j][b], rows[i][b]);
      fb__free(rows[i]);
    }
    rows[i] = NULL;
  }
}

/* Doubles the bucket width k times, merging buckets to match. */
static void widen(fb_report *r, int k) {
  int shift = k > 30 ? 30 : k; /* past 2^9 everything is in bucket 0 */
  size_t n = r->nbuckets;
  for (size_t s = 0; s < r->nseries; s++)
    merge_rows(r->series[s].counts, sizeof *r->series[s].counts, n, shift);
  for (size_t s = 0; s < r->npick_series; s++)
    merge_rows(r->pick_series[s].counts, sizeof *r->pick_series[s].counts, n,
               shift);
  merge_hists(r->latency, n, shift);
  merge_hists(r->durations, n, shift);
  r->nbuckets = n ? ((n - 1) >> shift) + 1 : 0;
  r->width = ldexp(r->width, k);
}

/* The bucket of time t, widening the buckets first if t is past them;
 * times before t0 go to the first bucket. Both are within FB_REPORT_T_MAX
 * of 0, so x < 2^51 and k < 43: the loop is bounded by its count too. */
static size_t bucket_of(fb_report *r, double t) {
  double x = (t - r->t0) / r->width;
  if (!(x > 0))
    x = 0;
  if (x >= B) {
    int k = 0;
    while (k < 64 && ldexp(x, -k) >= B)
      k++;
    widen(r, k);
    x = (t - r->t0) / r->width;
  }
  size_t i = x < B ? (size_t)x : B - 1;
  if (i >= r->nbuckets)
    r->nbuckets = i + 1;
  return i;
}

/* Counts seconds in bucket b's histogram of rows, allocating it first;
 * -1 when out of memory. */
static int add_latency(uint32_t **rows, size_t b, double seconds) {
  if (!rows[b] && !(rows[b] = fb__calloc(FB_REPORT_BINS, sizeof *rows[b])))
    return -1;
  add_count(&rows[b][fb_report_bin(seconds)], 1);
  return 0;
}

int fb_report_bin(double seconds) {
  if (!(seconds > FB_REPORT_LAT_MIN))
    return 0;
  double b = 1 + floor(log(seconds / FB_REPORT_LAT_MIN) / log(FB_REPORT_LAT_G));
  return b >= FB_REPORT_BINS - 1 ? FB_REPORT_BINS - 1 : (int)b;
}

double fb_report_quantile(const uint32_t h[FB_REPORT_BINS], double p) {
  uint64_t n = 0;
  for (int b = 0; b < FB_REPORT_BINS; b++)
    n += h[b];
  if (n == 0)
    return NAN;
  /* nearest rank: the smallest sample with at least p * n at or below */
  uint64_t rank = (uint64_t)ceil(p * (double)n);
  if (rank < 1)
    rank = 1;
  uint64_t seen = 0;
  int b = 0;
  for (; b < FB_REPORT_BINS - 1; b++)
    if ((seen += h[b]) >= rank)
      break;
  if (b == 0)
    return 0;
  return FB_REPORT_LAT_MIN * pow(FB_REPORT_LAT_G, b - 0.5);
}

/* ------------------------------------------------------- series, tracks */

/* The series named name (the last one pools the rest once there are
 * FB_REPORT_SERIES); NULL when out of memory. */
static fb_report_series *series(fb_report_series **v, size_t *n,
                                const char *name) {
  for (size_t i = *n; i-- > 0;)
    if (strcmp((*v)[i].name, name) == 0)
      return &(*v)[i];
  if (*n == FB_REPORT_SERIES) {
    fb_report_series *last = &(*v)[*n - 1];
    if (strcmp(last->name, "(others)") != 0) {
      char *others = fb__strdup("(others)");
      if (!others)
        return NULL;
      fb__free(last->name);
      last->name = others;
    }
    return last;
  }
  fb_report_series *grown = fb__realloc(*v, (*n + 1) * sizeof **v);
  if (!grown)
    return NULL;
  *v = grown;
  fb_report_series *s = &grown[*n];
  memset(s, 0, sizeof *s);
  s->name = fb__strdup(name);
  s->counts = fb__calloc(B, sizeof *s->counts);
  if (!s->name || !s->counts) {
    fb__free(s->name);
    fb__free(s->counts);
    return NULL;
  }
  (*n)++;
  return s;
}

/* FNV-1a from the report's seed, mixed so every bit counts in the mask. */
static uint64_t hash(const fb_report *r, const char *s) {
  uint64_t h = r->seed_hash ^ 0xcbf29ce484222325u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3u;
  return mix(h);
}

/* The slot of name: the one holding its track, or the empty one where it
 * goes. The table is at most half full, so the probe ends within nslots. */
static size_t *slot_of(const fb_report *r, const fb_report_index *idx,
                       const fb_report_track *v, const char *name) {
  size_t mask = idx->nslots - 1, i = hash(r, name) & mask;
  for (size_t probe = 0; probe < idx->nslots; probe++, i = (i + 1) & mask)
    if (idx->slots[i] == 0 || strcmp(v[idx->slots[i] - 1].name, name) == 0)
      return &idx->slots[i];
  return NULL; /* never: an empty slot is always left */
}

/* Doubles the table (64 slots at first) and enters the n tracks again. */
static int grow_index(const fb_report *r, fb_report_index *idx,
                      const fb_report_track *v, size_t n) {
  size_t nslots = idx->nslots ? idx->nslots * 2 : 64;
  size_t *slots = fb__calloc(nslots, sizeof *slots);
  if (!slots)
    return -1;
  fb__free(idx->slots);
  idx->slots = slots;
  idx->nslots = nslots;
  for (size_t i = 0; i < n; i++)
    *slot_of(r, idx, v, v[i].name) = i + 1;
  return 0;
}

/* The track named name, new (and empty) if the log had none yet; NULL
 * when out of memory. The array doubles: growing it by one each time
 * copied it whole each time under ASan (quadratic). */
static fb_report_track *track(fb_report *r, fb_report_track **v, size_t *n,
                              fb_report_index *idx, const char *name) {
  if (2 * (*n + 1) > idx->nslots && grow_index(r, idx, *v, *n) < 0)
    return NULL;
  size_t *slot = slot_of(r, idx, *v, name);
  if (*slot)
    return &(*v)[*slot - 1];
  if (*n == idx->room) {
    size_t room = idx->room ? idx->room * 2 : 8;
    fb_report_track *grown = fb__realloc(*v, room * sizeof **v);
    if (!grown)
      return NULL;
    *v = grown;
    idx->room = room;
  }
  fb_report_track *t = &(*v)[*n];
  memset(t, 0, sizeof *t);
  if (!(t->name = fb__strdup(name)))
    return NULL;
  *slot = ++*n;
  return t;
}

static int add_span(fb_report_track *tr, double t, const char *state) {
  if (tr->nspans == tr->capspans) {
    size_t cap = tr->capspans ? tr->capspans * 2 : 8;
    fb_report_span *v = fb__realloc(tr->spans, cap * sizeof *v);
    if (!v)
      return -1;
    tr->spans = v;
    tr->capspans = cap;
  }
  fb_report_span *s = &tr->spans[tr->nspans++];
  s->t = t;
  snprintf(s->state, sizeof s->state, "%s", state);
  return 0;
}

static int add_mark(fb_report_track *tr, double t, const char *what) {
  if (tr->nmarks == tr->capmarks) {
    size_t cap = tr->capmarks ? tr->capmarks * 2 : 8;
    fb_report_mark *v = fb__realloc(tr->marks, cap * sizeof *v);
    if (!v)
      return -1;
    tr->marks = v;
    tr->capmarks = cap;
  }
  fb_report_mark *m = &tr->marks[tr->nmarks++];
  m->t = t;
  snprintf(m->what, sizeof m->what, "%s", what);
  return 0;
}

/* ------------------------------------------------------------- events */

static void note(fb_report_list *l, long lineno) {
  if (l->count < FB_REPORT_FIRST)
    l->first[l->count] = lineno;
  l->count++;
}

/* Field name of e as f, when it has one of that type: 1, else 0. */
static int field(const fb_event *e, const char *name, int type,
                 fb_event_field *f) {
  return fb_event_get(e, name, f) == 0 && f->type == type;
}

static const char *str(const fb_event *e, const char *name) {
  fb_event_field f;
  return field(e, name, FB_FIELD_STRING, &f) ? f.str : NULL;
}

/* Stores number field name in *out; 0, or -1 if missing or not finite. */
static int num(const fb_event *e, const char *name, double *out) {
  fb_event_field f;
  if (!field(e, name, FB_FIELD_NUMBER, &f) || !isfinite(f.num))
    return -1;
  *out = f.num;
  return 0;
}

/* Field name is true (a JSON true). */
static int is_true(const fb_event *e, const char *name) {
  fb_event_field f;
  return field(e, name, FB_FIELD_BOOL, &f) && f.num != 0;
}

/* "service host:port" for an event naming an instance; -1 without one. */
static int instance_name(const fb_event *e, char *buf, size_t size) {
  const char *host = str(e, "host"), *service;
  double port;
  if (!host || num(e, "port", &port) < 0) /* a model's call: no more lookups */
    return -1;
  service = str(e, "service");
  snprintf(buf, size, "%s%s%s:%.0f", service ? service : "",
           service ? " " : "", host, port);
  return 0;
}

/* "breaker <name>" for an event naming a breaker (its name option, else
 * its number); -1 without one. */
static int breaker_name(const fb_event *e, char *buf, size_t size) {
  fb_event_field id;
  const char *name = str(e, "name");
  int has = fb_event_get(e, "breaker", &id) == 0;
  int number = has && id.type == FB_FIELD_NUMBER;
  int string = has && id.type == FB_FIELD_STRING;
  if (name && (number || string))
    snprintf(buf, size, "breaker %s", name);
  else if (number && isfinite(id.num))
    snprintf(buf, size, "breaker %.15g", id.num);
  else if (string)
    snprintf(buf, size, "breaker %s", id.str);
  else
    return -1;
  return 0;
}

static int count(fb_report *r, const char *name, int source, size_t b,
                 int outcome, uint64_t *totals) {
  fb_report_series *s = series(&r->series, &r->nseries, name);
  if (!s)
    return -1;
  if (s->total[0] + s->total[1] + s->total[2] + s->total[3] == 0)
    s->source = source;
  add_count(&s->counts[b][outcome], 1);
  s->total[outcome]++;
  totals[outcome]++;
  return 0;
}

static int classify(const char *outcome, const char *error) {
  if (strcmp(outcome, "success") == 0)
    return FB_OUT_SUCCESS;
  if (strcmp(outcome, "timeout") == 0 || (error && strcmp(error, "timeout") == 0))
    return FB_OUT_TIMEOUT;
  return FB_OUT_FAILURE;
}

/* Each handler returns 1 when the event was used, 0 when it lacks a field
 * it needs, -1 when out of memory. */
static int on_call_end(fb_report *r, const fb_event *e, double t) {
  const char *outcome = str(e, "outcome"), *service;
  char buf[256];
  const char *name = buf;
  double latency;
  if (!outcome)
    return 0;
  if (instance_name(e, buf, sizeof buf) < 0) { /* a service model's call */
    service = str(e, "service");
    name = service ? service : "(unnamed)";
    if (strnlen(name, sizeof buf) == sizeof buf) { /* cut to fit, as always */
      snprintf(buf, sizeof buf, "%s", name);
      name = buf;
    }
  }
  size_t b = bucket_of(r, t);
  if (num(e, "latency", &latency) == 0 && add_latency(r->latency, b, latency) < 0)
    return -1;
  r->calls++;
  r->late += is_true(e, "late");
  /* a success needs no error looked up (most calls) */
  int o = strcmp(outcome, "success") == 0 ? FB_OUT_SUCCESS : classify(outcome, str(e, "error"));
  return count(r, name, FB_SRC_CALL, b, o, r->call_totals) < 0 ? -1 : 1;
}

/* The states track of breaker name, CLOSED since the run began when new:
 * a breaker that never changed state still gets its band, and is counted
 * in the header as in the panels. */
static fb_report_track *breaker_track(fb_report *r, const char *name,
                                      double t) {
  fb_report_track *tr =
      track(r, &r->breakers, &r->nbreakers, &r->breaker_index, name);
  double since = t < r->t0 ? t : r->t0;
  if (tr && tr->nspans == 0 && add_span(tr, since, "CLOSED") < 0)
    return NULL;
  return tr;
}

static int on_outcome(fb_report *r, const fb_event *e, double t) {
  const char *outcome = str(e, "outcome");
  char name[256];
  double d;
  if (!outcome || breaker_name(e, name, sizeof name) < 0)
    return 0;
  if (!breaker_track(r, name, t))
    return -1;
  if (strcmp(outcome, "ignored") == 0)
    return 1;
  size_t b = bucket_of(r, t);
  if (num(e, "duration", &d) == 0 && add_latency(r->durations, b, d) < 0)
    return -1;
  r->outcomes++;
  return count(r, name, FB_SRC_GUARD, b, classify(outcome, str(e, "error")),
               r->breaker_totals) < 0 ? -1 : 1;
}

/* A concurrency limiter's rejection (fusebox.limiter): a series of its
 * own, "limiter <name or id>", its rejections apart from the breakers'. */
static int on_limiter_reject(fb_report *r, const fb_event *e, double t) {
  char name[256];
  uint64_t totals[FB_OUT_N] = {0}; /* not the breakers' */
  fb_event_field id;
  const char *label = str(e, "name");
  if (label)
    snprintf(name, sizeof name, "limiter %s", label);
  else if (field(e, "limiter", FB_FIELD_NUMBER, &id) && isfinite(id.num))
    snprintf(name, sizeof name, "limiter %.15g", id.num);
  else
    return 0;
  return count(r, name, FB_SRC_GUARD, bucket_of(r, t), FB_OUT_REJECTED, totals) < 0 ? -1 : 1;
}

static int on_reject(fb_report *r, const fb_event *e, double t) {
  char name[256];
  fb_event_field limiter;
  if (fb_event_get(e, "limiter", &limiter) == 0)
    return on_limiter_reject(r, e, t);
  if (breaker_name(e, name, sizeof name) < 0)
    return 0;
  if (!breaker_track(r, name, t))
    return -1;
  return count(r, name, FB_SRC_GUARD, bucket_of(r, t), FB_OUT_REJECTED,
               r->breaker_totals) < 0 ? -1 : 1;
}

/* Counts a rejection of kind (cut to its slot); the last slot pools the
 * kinds past FB_REPORT_KINDS - 1. */
static void count_rejection(fb_report *r, const char *kind) {
  size_t i = 0;
  for (; i < r->nreject_kinds; i++)
    if (strncmp(r->reject_kinds[i], kind, sizeof r->reject_kinds[i] - 1) == 0)
      break;
  if (i == FB_REPORT_KINDS) {
    i = FB_REPORT_KINDS - 1; /* "other" */
  } else if (i == r->nreject_kinds) {
    snprintf(r->reject_kinds[i], sizeof r->reject_kinds[i], "%s",
             i == FB_REPORT_KINDS - 1 ? "other" : kind);
    r->nreject_kinds++;
  }
  r->reject_counts[i]++;
}

/* A request through a policy (fb.sim.policy): outcome success or
 * failure, latency, and rejection, the kind fb.rejection named. A
 * timeout rejection is a timeout; any other a rejection. */
static int on_request(fb_report *r, const fb_event *e, double t) {
  const char *outcome = str(e, "outcome"), *kind = str(e, "rejection");
  double latency;
  if (!outcome)
    return 0;
  int o = kind ? (strcmp(kind, "timeout") == 0 ? FB_OUT_TIMEOUT : FB_OUT_REJECTED)
               : classify(outcome, NULL);
  size_t b = bucket_of(r, t);
  if (num(e, "latency", &latency) == 0) {
    if (!r->request_latency &&
        !(r->request_latency = fb__calloc(FB_REPORT_BINS, sizeof *r->request_latency)))
      return -1;
    add_count(&r->request_latency[fb_report_bin(latency)], 1);
  }
  if (kind)
    count_rejection(r, kind);
  r->requests++;
  return count(r, FB_REPORT_REQUESTS, FB_SRC_REQUEST, b, o, r->request_totals)
             < 0 ? -1 : 1;
}

double fb_report_open_time(const fb_report *r) {
  double open = 0;
  double end = r->t0 + r->duration > r->t_end ? r->t0 + r->duration : r->t_end;
  for (size_t i = 0; i < r->nbreakers; i++) {
    const fb_report_track *tr = &r->breakers[i];
    for (size_t k = 0; k < tr->nspans; k++) {
      double until = k + 1 < tr->nspans ? tr->spans[k + 1].t : end;
      if (strstr(tr->spans[k].state, "OPEN") &&
          strcmp(tr->spans[k].state, "HALF_OPEN") != 0 && until > tr->spans[k].t)
        open += until - tr->spans[k].t;
    }
  }
  return open;
}

static int on_pick(fb_report *r, const fb_event *e, double t) {
  char name[256];
  if (instance_name(e, name, sizeof name) < 0)
    return 0;
  size_t b = bucket_of(r, t);
  fb_report_series *s = series(&r->pick_series, &r->npick_series, name);
  if (!s)
    return -1;
  add_count(&s->counts[b][0], 1);
  s->total[0]++;
  r->picks++;
  return 1;
}

/* A balancer's done(): the per-instance outcomes a trace is read from
 * (fb.trace.read). The page draws the calls' own events; a done event is
 * checked, not drawn. */
static int on_done(const fb_event *e) {
  char name[256];
  double latency;
  fb_event_field ok;
  if (instance_name(e, name, sizeof name) < 0 || !field(e, "ok", FB_FIELD_BOOL, &ok) ||
      num(e, "latency", &latency) < 0)
    return 0;
  return 1;
}

static int on_state_change(fb_report *r, const fb_event *e, double t) {
  const char *from = str(e, "from"), *to = str(e, "to");
  char name[256];
  if (!from || !to || breaker_name(e, name, sizeof name) < 0)
    return 0;
  bucket_of(r, t);
  fb_report_track *tr =
      track(r, &r->breakers, &r->nbreakers, &r->breaker_index, name);
  if (!tr)
    return -1;
  /* the state before the first change held since the run began */
  if (tr->nspans == 0 && add_span(tr, t < r->t0 ? t : r->t0, from) < 0)
    return -1;
  return add_span(tr, t, to) < 0 ? -1 : 1;
}

/* register, deregister, expire: a membership span; an expiry's silent
 * stretch (last heartbeat to expiry) becomes a span of its own. */
static int on_membership(fb_report *r, const fb_event *e, double t,
                         const char *kind) {
  char name[256];
  double last;
  if (instance_name(e, name, sizeof name) < 0)
    return 0;
  bucket_of(r, t);
  fb_report_track *tr =
      track(r, &r->members, &r->nmembers, &r->member_index, name);
  if (!tr)
    return -1;
  int rc = 0;
  if (strcmp(kind, "register") == 0) {
    if (is_true(e, "rejoined"))
      rc = add_mark(tr, t, "came back");
    rc |= add_span(tr, t, "registered");
  } else if (strcmp(kind, "expire") == 0) {
    if (num(e, "last_heartbeat", &last) == 0 && tr->nspans > 0 &&
        last > tr->spans[tr->nspans - 1].t && last < t)
      rc = add_span(tr, last, "silent");
    rc |= add_span(tr, t, "expired");
  } else {
    rc = add_span(tr, t, "deregistered");
  }
  return rc < 0 ? -1 : 1;
}

static int on_instance(fb_report *r, const fb_event *e, double t) {
  const char *action = str(e, "action");
  char name[256];
  if (!action || instance_name(e, name, sizeof name) < 0)
    return 0;
  bucket_of(r, t);
  fb_report_track *tr =
      track(r, &r->members, &r->nmembers, &r->member_index, name);
  if (!tr)
    return -1;
  return add_mark(tr, t, action) < 0 ? -1 : 1;
}

/* Keeps a copy of value in *field, cut to FB_REPORT_STR_MAX bytes (at a
 * UTF-8 character's start) and noted in r->cut; 1, or -1 when out of
 * memory. */
static int set_string(fb_report *r, char **field, const char *value) {
  fb__free(*field);
  *field = NULL;
  if (!value)
    return 1;
  size_t len = strnlen(value, FB_REPORT_STR_MAX + 1);
  if (len > FB_REPORT_STR_MAX) {
    len = FB_REPORT_STR_MAX;
    while (len > 0 && ((unsigned char)value[len] & 0xc0) == 0x80)
      len--;
    r->cut = 1;
  }
  if (!(*field = fb__malloc(len + 1)))
    return -1;
  memcpy(*field, value, len);
  (*field)[len] = '\0';
  return 1;
}

static int on_run_start(fb_report *r, const fb_event *e) {
  char buf[32];
  fb_event_field seed, vt, args;
  int has_seed = fb_event_get(e, "seed", &seed) == 0;
  if (++r->run_starts > 1)
    return 1; /* the header describes the first run */
  int number = has_seed && seed.type == FB_FIELD_NUMBER;
  if (number && isfinite(seed.num))
    snprintf(buf, sizeof buf, "%.17g", seed.num);
  if (set_string(r, &r->seed, has_seed && seed.type == FB_FIELD_STRING ? seed.str
                              : number ? buf : NULL) < 0 ||
      set_string(r, &r->script, str(e, "script")) < 0)
    return -1;
  if (field(e, "virtual_time", FB_FIELD_BOOL, &vt))
    r->virtual_time = vt.num != 0;
  if (!field(e, "args", FB_FIELD_JSON, &args) || !cJSON_IsArray(args.json))
    return 1;
  /* walked once (cJSON_GetArrayItem(i) would walk from the start each time) */
  const cJSON *a;
  cJSON_ArrayForEach(a, args.json) {
    if (!cJSON_IsString(a))
      continue;
    if (r->nargs == FB_REPORT_ARGS) {
      r->cut = 1;
      break;
    }
    if (!r->args && !(r->args = fb__calloc(FB_REPORT_ARGS, sizeof *r->args)))
      return -1;
    if (set_string(r, &r->args[r->nargs], a->valuestring) < 0)
      return -1;
    r->nargs++;
  }
  return 1;
}

static int on_run_end(fb_report *r, const fb_event *e) {
  fb_event_field summary;
  fb_event inner;
  double d;
  r->run_ends++;
  r->run_ok = is_true(e, "ok");
  /* the summary's duration, read as a field of an event of its own */
  inner.json = field(e, "summary", FB_FIELD_JSON, &summary) &&
               cJSON_IsObject(summary.json) ? summary.json : NULL;
  inner.n = 0;
  if (inner.json && num(&inner, "duration", &d) == 0 && d >= 0 &&
      d <= FB_REPORT_T_MAX)
    r->duration = d;
  return set_string(r, &r->run_error, str(e, "error"));
}

static void unknown_kind(fb_report *r, const char *kind, long lineno) {
  note(&r->unknown, lineno);
  for (size_t i = 0; i < r->nunknown_kinds; i++)
    if (strncmp(r->unknown_kinds[i], kind, sizeof r->unknown_kinds[i] - 1) == 0)
      return;
  if (r->nunknown_kinds < FB_REPORT_FIRST)
    snprintf(r->unknown_kinds[r->nunknown_kinds++], sizeof r->unknown_kinds[0],
             "%s", kind);
}

/* Routes an event to its handler; 0 for a kind the report does not draw. */
static int dispatch(fb_report *r, const fb_event *e, const char *kind, double t) {
  if (strcmp(kind, "call_end") == 0)
    return on_call_end(r, e, t);
  if (strcmp(kind, "call_start") == 0)
    return 1; /* call_end has all the report needs */
  if (strcmp(kind, "request") == 0)
    return on_request(r, e, t);
  if (strcmp(kind, "pick") == 0)
    return on_pick(r, e, t);
  if (strcmp(kind, "done") == 0)
    return on_done(e);
  if (strcmp(kind, "reject") == 0)
    return on_reject(r, e, t);
  if (strcmp(kind, "outcome") == 0)
    return on_outcome(r, e, t);
  if (strcmp(kind, "limit") == 0) /* a limiter's limit: in the log only */
    return 1;
  if (strcmp(kind, "state_change") == 0)
    return on_state_change(r, e, t);
  if (!strcmp(kind, "register") || !strcmp(kind, "deregister") ||
      !strcmp(kind, "expire"))
    return on_membership(r, e, t, kind);
  if (strcmp(kind, "instance") == 0)
    return on_instance(r, e, t);
  if (strcmp(kind, "run_start") == 0)
    return on_run_start(r, e);
  if (strcmp(kind, "run_end") == 0)
    return on_run_end(r, e);
  return 2;
}

void fb_report_line(fb_report *r, const char *line, size_t len, long lineno) {
  r->lines++;
  if (len > FB_REPORT_LINE_MAX) {
    note(&r->too_long, lineno);
    return;
  }
  while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
    len--;
  if (len == 0)
    return; /* a blank line says nothing */
  cJSON *e = cJSON_ParseWithLength(line, len);
  fb_event view;
  if (!e) {
    note(&r->bad_json, lineno);
    return;
  }
  if (fb_event_of_json(e, &view) < 0) /* no object, or no t or kind */
    note(&r->bad_event, lineno);
  else {
    r->lines--; /* fb_report_event counts it */
    fb_report_event(r, &view, lineno);
  }
  cJSON_Delete(e);
}

void fb_report_event(fb_report *r, const fb_event *e, long lineno) {
  r->lines++;
  const char *kind = e->kind;
  if (!kind) {
    note(&r->bad_event, lineno);
    return;
  }
  double t = e->t;
  if (!(fabs(t) <= FB_REPORT_T_MAX)) { /* NaN too */
    note(&r->bad_time, lineno);
    return;
  }
  if (!r->started) {
    r->started = 1;
    r->t0 = r->t_end = t;
  }
  if (t > r->t_end)
    r->t_end = t;
  int rc = dispatch(r, e, kind, t);
  if (rc == 2)
    unknown_kind(r, kind, lineno);
  else if (rc == 0)
    note(&r->bad_event, lineno);
  else if (rc < 0)
    r->oom = 1;
  r->events += rc == 1;
}

void fb_report_tap(void *arg, const fb_event *e) {
  fb_report *r = arg;
  fb_report_event(r, e, (long)r->lines + 1);
}

int fb_report_read(fb_report *r, FILE *f) {
  /* a longer line keeps its first LINE_MAX + 1 bytes: enough to know */
  char *line = fb__malloc(FB_REPORT_LINE_MAX + 1);
  if (!line)
    return -1;
  size_t len = 0;
  long lineno = 0;
  int c;
  while ((c = getc_unlocked(f)) != EOF) {
    if (c != '\n') {
      if (len <= FB_REPORT_LINE_MAX)
        line[len++] = (char)c;
      continue;
    }
    fb_report_line(r, line, len, ++lineno);
    len = 0;
  }
  if (len > 0)
    fb_report_line(r, line, len, ++lineno);
  fb__free(line);
  return ferror(f) ? -1 : 0;
}

void fb_report_buffer(fb_report *r, const char *data, size_t len) {
  long lineno = 0;
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    size_t n = nl ? (size_t)(nl - data) : len;
    fb_report_line(r, data, n, ++lineno);
    data += n + (nl != NULL);
    len -= n + (nl != NULL);
  }
}

int fb_report_file(const char *in, const char *label, const char *out,
                   FILE *err) {
  FILE *f = fopen(in, "r");
  if (!f) {
    fprintf(err, "fusebox: cannot read events file '%s': %s\n", in,
            strerror(errno));
    return -1;
  }
  fb_report *r = fb_report_new();
  int rc = r ? fb_report_read(r, f) : -1;
  int read_error = r && ferror(f);
  fclose(f);
  if (rc < 0) {
    fprintf(err, "fusebox: %s '%s'\n",
            read_error ? "read error in events file" : "out of memory reading",
            in);
    fb_report_free(r);
    return -1;
  }
  FILE *o = strcmp(out, "-") == 0 ? stdout : fopen(out, "w");
  if (!o) {
    fprintf(err, "fusebox: cannot create report '%s': %s\n", out,
            strerror(errno));
    fb_report_free(r);
    return -1;
  }
  rc = fb_report_html(r, label ? label : in, o);
  if (o != stdout && fclose(o) != 0)
    rc = -1;
  if (rc < 0)
    fprintf(err, "fusebox: writing report '%s' failed\n", out);
  else
    fb_report_warn(r, in, err);
  fb_report_free(r);
  return rc;
}
