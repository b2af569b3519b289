/*
 * outlier.c -- passive outlier detection with Envoy's semantics.
 *
 * Fed the outcome of every call (fb_outlier_record, which the balancers'
 * done() calls when a detector is attached), it ejects an instance:
 *
 * - at once, when its failures in a row reach consecutive_5xx, or its
 *   gateway failures in a row reach consecutive_gateway_failure (a
 *   success resets both, a failure that is not a gateway one the second;
 *   a detection starts its count again, as Envoy's does, so a host that
 *   max_ejection_percent kept in is detected again after as many more);
 * - at the end of each interval, when its success rate over the interval
 *   is below mean - success_rate_stdev_factor * stdev of the rates of the
 *   instances of its service with at least success_rate_request_volume
 *   calls (if there are success_rate_minimum_hosts of them), or when its
 *   failure percentage is at least failure_percentage_threshold (among
 *   failure_percentage_minimum_hosts instances with
 *   failure_percentage_request_volume calls).
 *
 * Each detection is enforced with probability enforcing_* percent, and
 * only if fewer than max_ejection_percent of the service's live instances
 * are ejected by the detector (or none is: one is always allowed). An
 * ejection lasts base_ejection_time x the instance's multiplier (its
 * times ejected, plus one for this one), at most max(max_ejection_time,
 * base); the multiplier goes down by one at each interval's end the
 * instance spends admitted, so a recovered instance earns short
 * ejections back.
 *
 * There is no timer: an ejection is fb_instance_eject(i, until), which the
 * registry ends by the clock; the interval analysis runs on the first
 * record or fb_outlier_tick() at or after the interval's end (missed ends
 * with no calls are caught up in one go), and the ends of ejections are
 * noticed there too, for the readmit events. Where Envoy readmits at the
 * first interval tick after the ejection time, fusebox readmits at the
 * ejection time itself.
 *
 * State per instance lives in an array by the instance's slot (the low
 * bits of its id), checked against the full id, so a slot's new instance
 * starts afresh.
 */
#include "outlier.h"
#include "registry.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <string.h>

#define NEVENTS 64 /* a power of two */

typedef struct host {
  uint64_t id;          /* 0: unused */
  uint32_t consecutive; /* failures in a row */
  uint32_t gateway;     /* gateway failures in a row */
  uint32_t multiplier;  /* times ejected, decaying */
  uint32_t ok, failed;  /* this interval's outcomes */
  uint32_t ejected;     /* 1 + index in d->ejected, 0: not ejected by us */
  double until;         /* our ejection's end */
} host;

typedef struct ejection {
  uint32_t slot;
  uint32_t svc;         /* the service's id, valid while services_removed
                           is what it was when counted */
  double until;
  fb_outlier_reason reason;
} ejection;

struct fb_outlier {
  int refs;
  fb_registry *registry;
  fb_outlier_config cfg;
  double cap;           /* max(max_ejection_time, base_ejection_time) */
  uint32_t max_multiplier; /* past it the ejection time stops growing */
  fb_rng rng;
  host *hosts;          /* by slot */
  uint32_t nhosts;
  ejection *ejected;    /* our ejections still running */
  uint32_t nejected, ejected_cap;
  double next_end;      /* the earliest until in ejected[]; INFINITY */
  uint32_t *per_service; /* running ejections by service id */
  uint32_t nper_service;
  uint64_t services_removed; /* the registry's count per_service is for */
  double next_tick;     /* the end of the current interval; NaN: none yet */
  double *rates;        /* the analysis' scratch */
  uint32_t rates_cap;
  fb_outlier_event events[NEVENTS];
  uint32_t ev_head, ev_count;
  fb_outlier_stats stats;
};

static const char *const reason_names[FB_OUTLIER_NREASONS] = {
    "consecutive_5xx", "consecutive_gateway_failure", "success_rate",
    "failure_percentage"};

const char *fb_outlier_reason_name(fb_outlier_reason r) {
  return (unsigned)r < FB_OUTLIER_NREASONS ? reason_names[r] : "unknown";
}

/* ---------------------------------------------------------- life cycle */

void fb_outlier_config_init(fb_outlier_config *c) {
  c->interval = 10;
  c->base_ejection_time = 30;
  c->max_ejection_time = 300;
  c->max_ejection_percent = 10;
  c->consecutive_5xx = 5;
  c->consecutive_gateway_failure = 5;
  c->enforcing_consecutive_5xx = 100;
  c->enforcing_consecutive_gateway_failure = 0;
  c->success_rate_stdev_factor = 1.9;
  c->success_rate_minimum_hosts = 5;
  c->success_rate_request_volume = 100;
  c->enforcing_success_rate = 100;
  c->failure_percentage_threshold = 85;
  c->failure_percentage_minimum_hosts = 5;
  c->failure_percentage_request_volume = 50;
  c->enforcing_failure_percentage = 0;
  c->seed = 0;
  c->magic = FB_CONFIG_MAGIC;
}

/* Written so that NaN fails every test. */
static int percent(double v) { return v >= 0 && v <= 100; }
static int duration(double v) { return v > 0 && v <= 1e9; }

static const char *config_error(const fb_outlier_config *c) {
  if (c->magic != FB_CONFIG_MAGIC)
    return "config (not initialised with fb_outlier_config_init)";
  if (!duration(c->interval))
    return "interval";
  if (!duration(c->base_ejection_time))
    return "base_ejection_time";
  if (!duration(c->max_ejection_time))
    return "max_ejection_time";
  if (!percent(c->max_ejection_percent))
    return "max_ejection_percent";
  if (!percent(c->enforcing_consecutive_5xx))
    return "enforcing_consecutive_5xx";
  if (!percent(c->enforcing_consecutive_gateway_failure))
    return "enforcing_consecutive_gateway_failure";
  if (!(c->success_rate_stdev_factor >= 0 && c->success_rate_stdev_factor <= 1e6))
    return "success_rate_stdev_factor";
  if (!percent(c->enforcing_success_rate))
    return "enforcing_success_rate";
  if (!percent(c->failure_percentage_threshold))
    return "failure_percentage_threshold";
  if (!percent(c->enforcing_failure_percentage))
    return "enforcing_failure_percentage";
  return NULL;
}

int fb_outlier_config_check(const fb_outlier_config *cfg, const char **field) {
  const char *bad = cfg ? config_error(cfg) : "config";
  if (field)
    *field = bad;
  return bad ? FB_EINVAL : 0;
}

fb_outlier *fb_outlier_new(fb_registry *r, const fb_outlier_config *cfg) {
  if (!r || !cfg || config_error(cfg))
    return NULL;
  fb_outlier *d = fb__calloc(1, sizeof *d);
  if (!d)
    return NULL;
  d->refs = 1;
  d->registry = fb_registry_retain(r);
  d->cfg = *cfg;
  d->cap = cfg->max_ejection_time > cfg->base_ejection_time
               ? cfg->max_ejection_time
               : cfg->base_ejection_time;
  d->max_multiplier = (uint32_t)ceil(d->cap / cfg->base_ejection_time);
  fb_rng_seed(&d->rng, cfg->seed);
  d->next_end = INFINITY;
  d->next_tick = NAN;
  d->services_removed = fb__registry_head(r)->services_removed;
  return d;
}

fb_registry *fb_outlier_registry(const fb_outlier *d) {
  return d ? d->registry : NULL;
}

fb_outlier *fb_outlier_retain(fb_outlier *d) {
  if (d)
    d->refs++;
  return d;
}

void fb_outlier_release(fb_outlier *d) {
  if (!d || --d->refs > 0)
    return;
  fb_registry_release(d->registry);
  fb__free(d->hosts);
  fb__free(d->ejected);
  fb__free(d->per_service);
  fb__free(d->rates);
  fb__free(d);
}

/* -------------------------------------------------------------- events */

static void push_event(fb_outlier *d, int eject, fb_outlier_reason reason,
                       uint64_t id, double at, double until, uint32_t n) {
  if (d->ev_count == NEVENTS) { /* the oldest goes */
    d->ev_head = (d->ev_head + 1) & (NEVENTS - 1);
    d->ev_count--;
    d->stats.dropped++;
  }
  d->events[(d->ev_head + d->ev_count++) & (NEVENTS - 1)] =
      (fb_outlier_event){eject, reason, id, at, until, n};
}

int fb_outlier_next_event(fb_outlier *d, fb_outlier_event *ev) {
  if (!d || !ev || d->ev_count == 0)
    return 0;
  *ev = d->events[d->ev_head];
  d->ev_head = (d->ev_head + 1) & (NEVENTS - 1);
  d->ev_count--;
  return 1;
}

int fb_outlier_pending(const fb_outlier *d) { return d && d->ev_count > 0; }

void fb_outlier_get_stats(const fb_outlier *d, fb_outlier_stats *out) {
  *out = d->stats;
  out->ejected = d->nejected;
}

/* -------------------------------------------------------------- hosts */

static void drop_ejection(fb_outlier *d, uint32_t k);

/* i's state, made (or reset: a new instance in the slot) on first sight;
 * NULL when memory runs out. */
static host *host_of(fb_outlier *d, const fb_instance *i) {
  uint32_t slot = (uint32_t)i->id;
  if (slot >= d->nhosts) {
    uint32_t n = fb__registry_head(d->registry)->nslots;
    if (n <= slot)
      n = slot + 1;
    host *v = fb__realloc(d->hosts, n * sizeof *v);
    if (!v)
      return NULL;
    memset(v + d->nhosts, 0, (n - d->nhosts) * sizeof *v);
    d->hosts = v;
    d->nhosts = n;
  }
  host *h = &d->hosts[slot];
  if (h->id != i->id) { /* the slot's instance is gone: so is its ejection */
    if (h->ejected)
      drop_ejection(d, h->ejected - 1);
    *h = (host){.id = i->id, .until = -INFINITY};
  }
  return h;
}

uint32_t fb_outlier_multiplier(const fb_outlier *d, const fb_instance *i) {
  uint32_t slot = (uint32_t)i->id;
  return slot < d->nhosts && d->hosts[slot].id == i->id
             ? d->hosts[slot].multiplier
             : 0;
}

/* ------------------------------------------------- running ejections */

/* Recounts per_service after services were removed (ids moved). */
static void recount(fb_outlier *d) {
  const fb_registry_head *head = fb__registry_head(d->registry);
  memset(d->per_service, 0, d->nper_service * sizeof *d->per_service);
  for (uint32_t k = 0; k < d->nejected; k++) {
    ejection *e = &d->ejected[k];
    fb_instance *i = fb__registry_instance(d->registry, d->hosts[e->slot].id);
    e->svc = i ? i->service->id : UINT32_MAX; /* gone: counted nowhere */
    if (i && e->svc < d->nper_service)
      d->per_service[e->svc]++;
  }
  d->services_removed = head->services_removed;
}

static uint32_t ejected_in(fb_outlier *d, const fb_service *s) {
  if (d->services_removed != fb__registry_head(d->registry)->services_removed)
    recount(d);
  return s->id < d->nper_service ? d->per_service[s->id] : 0;
}

/* Takes ejected[k] off the running ejections. */
static void drop_ejection(fb_outlier *d, uint32_t k) {
  if (d->services_removed != fb__registry_head(d->registry)->services_removed)
    recount(d); /* e->svc may name another service now */
  ejection *e = &d->ejected[k];
  if (e->svc < d->nper_service && d->per_service[e->svc] > 0)
    d->per_service[e->svc]--;
  d->hosts[e->slot].ejected = 0;
  *e = d->ejected[--d->nejected];
  if (k < d->nejected)
    d->hosts[e->slot].ejected = k + 1;
}

/* Ends the ejections due by now, oldest first by position (each one's
 * readmit event carries its own end). */
static void end_ejections(fb_outlier *d, double now) {
  if (now < d->next_end)
    return;
  if (d->services_removed != fb__registry_head(d->registry)->services_removed)
    recount(d);
  double next = INFINITY;
  for (uint32_t k = 0; k < d->nejected;) {
    ejection *e = &d->ejected[k];
    if (now < e->until) {
      if (e->until < next)
        next = e->until;
      k++;
      continue;
    }
    host *h = &d->hosts[e->slot];
    push_event(d, 0, e->reason, h->id, e->until, e->until, h->multiplier);
    drop_ejection(d, k);
  }
  d->next_end = next;
}

static int grow_ejected(fb_outlier *d, const fb_service *s) {
  if (d->nejected == d->ejected_cap) {
    uint32_t cap = d->ejected_cap ? d->ejected_cap * 2 : 8;
    ejection *v = fb__realloc(d->ejected, cap * sizeof *v);
    if (!v)
      return FB_ENOMEM;
    d->ejected = v;
    d->ejected_cap = cap;
  }
  if (s->id >= d->nper_service) {
    uint32_t n = fb_registry_nservices(d->registry);
    uint32_t *v = fb__realloc(d->per_service, n * sizeof *v);
    if (!v)
      return FB_ENOMEM;
    memset(v + d->nper_service, 0, (n - d->nper_service) * sizeof *v);
    d->per_service = v;
    d->nper_service = n;
  }
  return 0;
}

/* Live members of s (the max_ejection_percent base): the count of its
 * last rebuild, or counted while a change awaits the next one (so a host
 * detected again and again costs O(1) a detection, not O(members)). */
static uint32_t live_members(const fb_service *s) {
  if (!s->dirty)
    return s->nlive;
  uint32_t n = 0;
  for (uint32_t j = 0; j < s->nmembers; j++)
    n += s->members[j] && s->members[j]->live;
  return n;
}

static int enforced(fb_outlier *d, double percent_enforced) {
  if (percent_enforced >= 100)
    return 1;
  if (percent_enforced <= 0)
    return 0;
  return fb_rng_double(&d->rng) * 100 < percent_enforced;
}

static const double *enforcing(const fb_outlier_config *c, fb_outlier_reason r) {
  switch (r) {
  case FB_OUTLIER_CONSECUTIVE_5XX: return &c->enforcing_consecutive_5xx;
  case FB_OUTLIER_CONSECUTIVE_GATEWAY:
    return &c->enforcing_consecutive_gateway_failure;
  case FB_OUTLIER_SUCCESS_RATE: return &c->enforcing_success_rate;
  default: return &c->enforcing_failure_percentage;
  }
}

/* A detection of i (state h) for reason at now: ejects it if enforced
 * and max_ejection_percent allows; nlive: s's live members, or 0 to count
 * them. 1 if ejected, 0 if not, FB_ENOMEM. */
static int detect(fb_outlier *d, fb_instance *i, host *h,
                  fb_outlier_reason reason, uint32_t nlive, double now) {
  if (h->ejected || now < i->ejected_until)
    return 0; /* already out */
  d->stats.detected[reason]++;
  if (!enforced(d, *enforcing(&d->cfg, reason)))
    return 0;
  fb_service *s = i->service;
  uint32_t out = ejected_in(d, s);
  if (!nlive)
    nlive = live_members(s);
  if (out > 0 && 100.0 * out >= d->cfg.max_ejection_percent * nlive) {
    d->stats.overflow++;
    return 0;
  }
  if (grow_ejected(d, s) < 0)
    return FB_ENOMEM;
  if (h->multiplier < d->max_multiplier)
    h->multiplier++;
  double t = d->cfg.base_ejection_time * h->multiplier;
  double until = now + (t < d->cap ? t : d->cap);
  fb_instance_eject(i, until);
  h->until = until;
  h->consecutive = h->gateway = 0;
  d->ejected[d->nejected] = (ejection){(uint32_t)i->id, s->id, until, reason};
  h->ejected = ++d->nejected;
  d->per_service[s->id]++;
  if (until < d->next_end)
    d->next_end = until;
  d->stats.ejections[reason]++;
  push_event(d, 1, reason, i->id, now, until, h->multiplier);
  return 1;
}

/* ------------------------------------------------------------ analysis */

/* Of the ticks interval ends from `from` on, those that take one off h's
 * multiplier: as in Envoy, each end at which h is admitted, except the
 * first end at or after its ejection's end (Envoy readmits it there). */
static uint64_t admitted_ends(const host *h, double from, double interval,
                              uint64_t ticks) {
  if (h->ejected)
    return 0;
  if (h->until <= from - interval) /* readmitted at an earlier end */
    return ticks;
  double j = h->until <= from ? 0 : ceil((h->until - from) / interval);
  return j + 1 >= (double)ticks ? 0 : ticks - (uint64_t)j - 1;
}

static int grow_rates(fb_outlier *d, uint32_t n) {
  if (n <= d->rates_cap)
    return 0;
  double *v = fb__realloc(d->rates, n * sizeof *v);
  if (!v)
    return FB_ENOMEM;
  d->rates = v;
  d->rates_cap = n;
  return 0;
}

/* The member's state when it is live, admitted at now and ours; NULL
 * otherwise (as Envoy's, the analysis skips the hosts already out). */
static host *member_host(fb_outlier *d, const fb_instance *i, double now) {
  if (!i || !i->live || now < i->ejected_until)
    return NULL;
  uint32_t slot = (uint32_t)i->id;
  if (slot >= d->nhosts || d->hosts[slot].id != i->id)
    return NULL;
  return &d->hosts[slot];
}

/* Envoy's success-rate pass over s: the rates (percent) of the members
 * with enough calls, their mean and standard deviation (population), and
 * an ejection of each below mean - factor * stdev. */
static int success_rate(fb_outlier *d, fb_service *s, uint32_t nlive,
                        double now) {
  const fb_outlier_config *c = &d->cfg;
  uint32_t m = 0;
  double sum = 0;
  for (uint32_t j = 0; j < s->nmembers; j++) {
    host *h = member_host(d, s->members[j], now);
    if (!h || h->ok + h->failed < c->success_rate_request_volume ||
        h->ok + h->failed == 0)
      continue;
    double r = 100.0 * h->ok / (h->ok + h->failed);
    d->rates[m++] = r;
    sum += r;
  }
  if (m == 0 || m < c->success_rate_minimum_hosts)
    return 0;
  double mean = sum / m, var = 0;
  for (uint32_t k = 0; k < m; k++)
    var += (d->rates[k] - mean) * (d->rates[k] - mean);
  double cut = mean - c->success_rate_stdev_factor * sqrt(var / m);
  for (uint32_t j = 0; j < s->nmembers; j++) {
    fb_instance *i = s->members[j];
    host *h = member_host(d, i, now);
    if (!h || h->ok + h->failed < c->success_rate_request_volume ||
        h->ok + h->failed == 0)
      continue;
    if (100.0 * h->ok / (h->ok + h->failed) < cut &&
        detect(d, i, h, FB_OUTLIER_SUCCESS_RATE, nlive, now) < 0)
      return FB_ENOMEM;
  }
  return 0;
}

/* Envoy's failure-percentage pass: each member with enough calls whose
 * failure percentage is at least the threshold, when enough have them. */
static int failure_percentage(fb_outlier *d, fb_service *s, uint32_t nlive,
                              double now) {
  const fb_outlier_config *c = &d->cfg;
  uint32_t m = 0;
  for (uint32_t j = 0; j < s->nmembers; j++) {
    host *h = member_host(d, s->members[j], now);
    m += h && h->ok + h->failed >= c->failure_percentage_request_volume &&
         h->ok + h->failed > 0;
  }
  if (m == 0 || m < c->failure_percentage_minimum_hosts)
    return 0;
  for (uint32_t j = 0; j < s->nmembers; j++) {
    fb_instance *i = s->members[j];
    host *h = member_host(d, i, now);
    if (!h || h->ok + h->failed < c->failure_percentage_request_volume ||
        h->ok + h->failed == 0)
      continue;
    if (100.0 * h->failed / (h->ok + h->failed) >= c->failure_percentage_threshold &&
        detect(d, i, h, FB_OUTLIER_FAILURE_PERCENTAGE, nlive, now) < 0)
      return FB_ENOMEM;
  }
  return 0;
}

/* The interval analysis at now, for every interval end up to now. */
static int analyse(fb_outlier *d, double now) {
  double from = d->next_tick, interval = d->cfg.interval;
  double missed = floor((now - from) / interval); /* a multiplier needs fewer */
  uint64_t ticks = missed < UINT32_MAX ? (uint64_t)missed + 1 : UINT32_MAX;
  end_ejections(d, now);
  for (uint32_t k = 0; k < d->nhosts; k++) { /* Envoy: uneject, then detect */
    host *h = &d->hosts[k];
    if (h->id && h->multiplier) {
      uint64_t n = admitted_ends(h, from, interval, ticks);
      h->multiplier = n >= h->multiplier ? 0 : h->multiplier - (uint32_t)n;
    }
  }
  int rc = 0;
  uint32_t nsvc = fb_registry_nservices(d->registry);
  for (uint32_t k = 0; k < nsvc && rc == 0; k++) {
    fb_service *s = fb_registry_service_at(d->registry, k);
    uint32_t nlive = live_members(s);
    if (nlive == 0)
      continue;
    rc = grow_rates(d, s->nmembers);
    if (rc == 0)
      rc = success_rate(d, s, nlive, now);
    if (rc == 0)
      rc = failure_percentage(d, s, nlive, now);
  }
  for (uint32_t k = 0; k < d->nhosts; k++)
    d->hosts[k].ok = d->hosts[k].failed = 0;
  d->next_tick = from + (double)ticks * interval;
  if (d->next_tick <= now) /* rounding at huge times: keep moving */
    d->next_tick = now + interval;
  return rc;
}

int fb_outlier_tick(fb_outlier *d, double now) {
  if (!d || !isfinite(now))
    return FB_EINVAL;
  if (isnan(d->next_tick)) /* the first interval starts at the first call */
    d->next_tick = now + d->cfg.interval;
  if (now >= d->next_tick)
    return analyse(d, now);
  end_ejections(d, now);
  return 0;
}

/* ------------------------------------------------------------- records */

static uint32_t bump(uint32_t n) { return n < UINT32_MAX ? n + 1 : n; }

int fb_outlier_record(fb_outlier *d, fb_instance *i, fb_lb_outcome outcome,
                      double now) {
  if (!d || !i || !isfinite(now) || (unsigned)outcome > FB_LB_GATEWAY)
    return FB_EINVAL;
  if (i->service->registry != d->registry)
    return FB_ENOENT;
  int rc = 0; /* what is due first: this outcome is the next interval's */
  if (!(now < d->next_tick && now < d->next_end))
    rc = fb_outlier_tick(d, now);
  host *h = host_of(d, i);
  if (!h)
    return FB_ENOMEM;
  if (outcome == FB_LB_SUCCESS) {
    h->ok = bump(h->ok);
    h->consecutive = h->gateway = 0;
    return rc < 0 ? rc : d->ev_count > 0;
  }
  h->failed = bump(h->failed);
  h->consecutive = bump(h->consecutive);
  h->gateway = outcome == FB_LB_GATEWAY ? bump(h->gateway) : 0;
  const fb_outlier_config *c = &d->cfg;
  int e = 0; /* a run of threshold failures is one detection: its count
                starts again, ejected or not (refused by max_ejection_percent,
                the next run tries again) */
  if (c->consecutive_gateway_failure && h->gateway >= c->consecutive_gateway_failure) {
    h->gateway = 0;
    e = detect(d, i, h, FB_OUTLIER_CONSECUTIVE_GATEWAY, 0, now);
  }
  if (e == 0 && c->consecutive_5xx && h->consecutive >= c->consecutive_5xx) {
    h->consecutive = 0;
    e = detect(d, i, h, FB_OUTLIER_CONSECUTIVE_5XX, 0, now);
  }
  return e < 0 ? e : rc < 0 ? rc : d->ev_count > 0;
}

/* The common case first, with no call: a success of a host already
 * known, nothing due (a NaN now or next_tick fails the tests: the full
 * record judges it). */
int fb__outlier_done(fb_outlier *d, fb_instance *i, fb_lb_outcome outcome,
                     double now) {
  uint32_t slot = (uint32_t)i->id;
  if (outcome == FB_LB_SUCCESS && now < d->next_tick && now < d->next_end &&
      slot < d->nhosts && d->hosts[slot].id == i->id) {
    host *h = &d->hosts[slot];
    h->ok = bump(h->ok);
    h->consecutive = h->gateway = 0;
    return d->ev_count > 0;
  }
  int rc = fb_outlier_record(d, i, outcome, now);
  return rc > 0 || (rc < 0 && d->ev_count > 0);
}
