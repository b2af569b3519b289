/*
 * lua_api.c -- scalar-only wrappers over the core for the FFI table.
 *
 * Permits and counters travel as doubles: an int64_t return would come
 * back to Lua as a boxed cdata, which costs an allocation per call.
 */
#include "lua_api.h"

#include "balancer.h"
#include "breaker.h"
#include "runtime.h"
#include "trace.h"
#include "zone.h"

#include <math.h>
#include <string.h>

static double api_now(const fb_runtime *rt) { return fb_runtime_now(rt); }

static const fb_clock_cache *api_clock_cache(const fb_runtime *rt) {
  return &rt->clock;
}

/* The open object in slot, or NULL once its __gc ran. */
#define OPEN(slot) (*(slot))

/* The instance of r with id (a double from Lua: anything, even NaN), or
 * NULL. */
static fb_instance *instance_of(const fb_registry *r, double id) {
  if (!(id >= 0 && id < 18446744073709551616.0))
    return NULL;
  return fb__registry_instance(r, (uint64_t)id);
}

/* A zone breaker's permits come from this process's own book. */
static int64_t acquire(fb_breaker *const *slot, double now) {
  const fbl_breaker_slot *s = (const fbl_breaker_slot *)slot;
  return s->own ? fb__breaker_acquire_own(s->b, s->own, now)
                : fb_breaker_acquire(s->b, now);
}

static double api_breaker_acquire(fb_breaker *const *b, double now) {
  if (!OPEN(b))
    return FBL_ECLOSED;
  return (double)acquire(b, now);
}

/* A permit at now -- or, where now is NaN and the breaker needs the time
 * (OPEN, HALF_OPEN), at the loop-cached clock while it is fresh -- in one
 * call where a rejection took four. out[0]: the time used (NaN: none);
 * out[1]: after a rejection at a known time, the seconds until a call may
 * pass (NaN otherwise). Returns the permit, FB_EREJECTED, FBL_ECHANGED (a
 * rejection with state changes beyond the `seen` the caller announced),
 * FB_ENOW (the cache is not fresh:
 * read the clock and call again) or FBL_ECLOSED. */
static double api_breaker_admit(fb_breaker *const *b, double now,
                                double seen, const fb_clock_cache *clock,
                                double *out) {
  if (!OPEN(b))
    return FBL_ECLOSED;
  int64_t p = acquire(b, now);
  if (p == FB_ENOW && clock->fresh)
    p = acquire(b, now = clock->now);
  out[0] = now;
  out[1] = NAN;
  if (p != FB_EREJECTED)
    return (double)p;
  if (!isnan(now))
    out[1] = fb_breaker_retry_after(*b, now);
  return (double)fb_breaker_transitions(*b) != seen ? FBL_ECHANGED
                                                   : FB_EREJECTED;
}

/* A token is an integer 0..2^53 (the doubles that hold it exactly):
 * anything else (0.5, -0, NaN, 1e300) is malformed, not truncated into
 * some other token. */
static int api_breaker_record(fb_breaker *const *b, double permit,
                              int outcome, double duration, double now) {
  if (!OPEN(b))
    return FBL_ECLOSED;
  if (!(permit >= 0 && permit <= 9007199254740992.0) ||
      permit != (double)(int64_t)permit || signbit(permit))
    return FB_EINVAL;
  const fbl_breaker_slot *s = (const fbl_breaker_slot *)b;
  if (s->own)
    return fb__breaker_record_own(s->b, s->own, (int64_t)permit,
                                  (fb_outcome)outcome, duration, now);
  return fb_breaker_record(s->b, (int64_t)permit, (fb_outcome)outcome,
                           duration, now);
}

static double api_breaker_transitions(fb_breaker *const *b) {
  return OPEN(b) ? (double)fb_breaker_transitions(*b) : FBL_ECLOSED;
}

static double api_breaker_retry_after(fb_breaker *const *b, double now) {
  return OPEN(b) ? fb_breaker_retry_after(*b, now)
                 : FBL_ECLOSED;
}

static int api_breaker_state(fb_breaker *const *b) {
  return OPEN(b) ? (int)fb_breaker_state_of(*b) : FBL_ECLOSED;
}

static int api_breaker_force_open(fb_breaker *const *b, double now) {
  if (!OPEN(b))
    return FBL_ECLOSED;
  fb_breaker_force_open(*b, now);
  return 0;
}

static int api_breaker_disable(fb_breaker *const *b, double now) {
  if (!OPEN(b))
    return FBL_ECLOSED;
  fb_breaker_disable(*b, now);
  return 0;
}

static int api_breaker_reset(fb_breaker *const *b, double now) {
  if (!OPEN(b))
    return FBL_ECLOSED;
  fb_breaker_reset(*b, now);
  return 0;
}

static double api_limiter_acquire(fb_limiter *const *l) {
  return OPEN(l) ? (double)fb_limiter_acquire(*l) : FBL_ECLOSED;
}

/* A permit is an integer 1..2^31 (what acquire hands out): anything else
 * (0.5, NaN, 1e300) is malformed, not truncated into another. */
static int api_limiter_release(fb_limiter *const *l, double permit,
                               int outcome, double rtt, double now) {
  if (!OPEN(l))
    return FBL_ECLOSED;
  if (!(permit >= 1 && permit <= 2147483647.0) || permit != floor(permit))
    return FB_EINVAL;
  return fb_limiter_release(*l, (int64_t)permit, (fb_limit_outcome)outcome,
                            rtt, now);
}

static double api_limiter_changes(fb_limiter *const *l) {
  return OPEN(l) ? (double)fb_limiter_changes(*l) : FBL_ECLOSED;
}

static int api_limiter_limit(fb_limiter *const *l) {
  return OPEN(l) ? fb_limiter_limit(*l) : FBL_ECLOSED;
}

static int api_limiter_inflight(fb_limiter *const *l) {
  return OPEN(l) ? fb_limiter_inflight(*l) : FBL_ECLOSED;
}

static fb_service *api_registry_service(fb_registry *const *r,
                                        const char *name) {
  return OPEN(r) ? fb_registry_service(*r, name) : NULL;
}

/* Lua keeps fb_service pointers by name, and drops them when this changed. */
static double api_registry_services_removed(fb_registry *const *r) {
  return OPEN(r) ? (double)fb_registry_services_removed(*r) : FBL_ECLOSED;
}

static double api_service_version(fb_registry *const *r,
                                  const fb_service *s) {
  return OPEN(r) ? (double)fb_service_version(s) : FBL_ECLOSED;
}

/* The id of the i-th live instance of s, or -1 past the last. */
static double api_service_live_id(fb_registry *const *r, fb_service *s,
                                  double now, double i) {
  if (!OPEN(r))
    return FBL_ECLOSED;
  fb_instance *const *live;
  size_t n = fb_service_live(s, now, &live);
  return i >= 0 && i < (double)n ? (double)fb_instance_id(live[(size_t)i])
                                 : -1;
}

static double api_instance_string(fb_registry *const *r, double id,
                                  int what, char *buf, double cap) {
  if (!OPEN(r))
    return FBL_ECLOSED;
  const fb_instance *i = instance_of(*r, id);
  const char *s = !i ? NULL
                  : what == FBL_HOST ? fb_instance_host(i)
                  : what == FBL_ZONE ? fb_instance_zone(i)
                                     : NULL;
  if (!s)
    return -1;
  size_t n = strlen(s);
  if ((double)n <= cap)
    memcpy(buf, s, n);
  return (double)n;
}

static double api_instance_stat(fb_registry *const *r, double id, int what) {
  if (!OPEN(r))
    return FBL_ECLOSED;
  const fb_instance *i = instance_of(*r, id);
  if (!i)
    return -1;
  switch (what) {
  case FBL_WEIGHT:
    return fb_instance_weight(i);
  case FBL_HEALTHY:
    return fb_instance_healthy(i);
  case FBL_INFLIGHT:
    return fb_instance_inflight(i);
  case FBL_SUCCESSES:
    return (double)fb_instance_successes(i);
  case FBL_FAILURES:
    return (double)fb_instance_failures(i);
  case FBL_LATENCY:
    return fb_instance_latency(i);
  case FBL_PORT:
    return fb_instance_port(i);
  case FBL_EJECTED:
    return fb_instance_ejected_until(i) > 0 ? fb_instance_ejected_until(i) : 0;
  default:
    return -1;
  }
}

/* Where the runtime keeps whether a sink is open: read as a field before
 * every emit, so a guarded call with no sink pays a load, not a call. */
static const int *api_events_flag(const fb_runtime *rt) {
  return &rt->events_on;
}

static void api_stream_init(fb_runtime *rt, fb_rng *r) {
  fb_rng_seed(r, fb_runtime_stream_seed(rt));
}

static void api_stream_init_named(const fb_runtime *rt, fb_rng *r,
                                  const char *name, double n) {
  fb_rng_seed(r, fb_runtime_named_stream_seed(rt, name, (uint64_t)n));
}

static double api_run_id(const fb_runtime *rt) { return (double)rt->runs; }

static double api_rng_double(fb_rng *r) { return fb_rng_double(r); }

static double api_rng_below(fb_rng *r, double n) {
  return (double)fb_rng_below(r, (uint64_t)n);
}

/* The picked instance's id, or -1 when none is live. */
static double api_balancer_pick_key(fb_balancer *const *lb, fb_service *s,
                                    const char *key, size_t len, double now,
                                    double removed) {
  if (!OPEN(lb))
    return FBL_ECLOSED;
  /* the balancer holds its registry: valid even once the Lua one closed */
  if ((double)fb__registry_head((*lb)->registry)->services_removed != removed)
    return FBL_ESERVICES; /* s may be freed: not touched */
  fb_instance *i = fb_balancer_pick_key(*lb, s, key, len, now);
  return i ? (double)i->id : -1;
}

/* A pick skipping the n instances with ids[] (Lua numbers: those that
 * are no id match nothing); n > FB_EXCLUDE_MAX is -1, as no pick. */
static double api_balancer_pick_excluding(fb_balancer *const *lb,
                                          fb_service *s, const char *key,
                                          size_t len, const double *ids,
                                          int n, double now) {
  if (!OPEN(lb))
    return FBL_ECLOSED;
  if (n < 0 || n > FB_EXCLUDE_MAX)
    return -1;
  uint64_t ex[FB_EXCLUDE_MAX];
  int m = 0;
  for (int j = 0; j < n; j++)
    if (ids[j] >= 0 && ids[j] < 18446744073709551616.0)
      ex[m++] = (uint64_t)ids[j];
  fb_instance *i = fb_balancer_pick_excluding(*lb, s, key, len, ex, (size_t)m, now);
  return i ? (double)fb_instance_id(i) : -1;
}

/* 0, FB_ENOENT when the instance is gone, FB_EINVAL for a NaN until. */
static int api_instance_eject(fb_registry *const *r, double id, double until) {
  if (!OPEN(r))
    return FBL_ECLOSED;
  fb_instance *i = instance_of(*r, id);
  return i ? fb_instance_eject(i, until) : FB_ENOENT;
}

/* The number of candidates of s; *version: the service's version. */
static int api_balancer_candidates(fb_balancer *const *lb, fb_service *s,
                                   double now, double *version) {
  if (!OPEN(lb))
    return FBL_ECLOSED;
  fb_instance *const *cand;
  size_t n = fb_balancer_candidates(*lb, s, now, &cand);
  *version = (double)fb_service_version(s);
  return (int)n;
}

/* The id of the i-th candidate of s, or -1 past the last. */
static double api_balancer_candidate_id(fb_balancer *const *lb,
                                        fb_service *s, double now, double i) {
  if (!OPEN(lb))
    return FBL_ECLOSED;
  fb_instance *const *cand;
  size_t n = fb_balancer_candidates(*lb, s, now, &cand);
  return i >= 0 && i < (double)n ? (double)fb_instance_id(cand[(size_t)i])
                                 : -1;
}

static int api_balancer_take(fb_balancer *const *lb, double id) {
  if (!OPEN(lb))
    return FBL_ECLOSED;
  fb_instance *i = instance_of(fb_balancer_registry(*lb), id);
  return i ? fb_balancer_take(*lb, i) : FB_ENOENT;
}

/* ok: 1 a success, 0 a failure, -1 a gateway failure. 0, or 1 when the
 * balancer's outlier detector has events to read (core.outlier_events). */
static int api_balancer_done(fb_balancer *const *lb, double id, int ok,
                             double latency, double now) {
  if (!OPEN(lb))
    return FBL_ECLOSED;
  fb_instance *i = instance_of((*lb)->registry, id);
  if (!i)
    return FB_ENOENT;
  if (ok >= 0)
    return fb_balancer_done(*lb, i, ok, latency, now);
  return fb_balancer_done_outcome(*lb, i, FB_LB_GATEWAY, latency, now);
}

/* The generators behind a strategy's ctx.random and fb.random: Lua draws
 * from them with rng_double and rng_below (fusebox.base's random); a
 * closed balancer's is NULL. */
static fb_rng *api_balancer_rng(fb_balancer *const *lb) {
  return OPEN(lb) ? &(*lb)->rng : NULL;
}

static fb_rng *api_runtime_rng(fb_runtime *rt) { return &rt->rng; }

static fb_zone_peer *peer_of(fb_zone *const *z, double offset) {
  if (!(offset >= 0 && offset < 18446744073709551616.0))
    return NULL;
  return fb_zone_peer_at(*z, (uint64_t)offset);
}

static double api_zone_peer_stat(fb_zone *const *z, double offset, int what) {
  if (!OPEN(z))
    return FBL_ECLOSED;
  fb_zone_peer *p = peer_of(z, offset);
  if (!p)
    return FB_EINVAL;
  uint64_t bits;
  double until, left;
  switch (what) {
  case FBL_PEER_INFLIGHT:
    return (double)atomic_load_explicit(&p->inflight, memory_order_relaxed);
  case FBL_PEER_EJECTED_FOR:
    bits = atomic_load_explicit(&p->ejected_until, memory_order_relaxed);
    if (!bits) /* never ejected, or readmitted: no clock read */
      return 0;
    memcpy(&until, &bits, sizeof until);
    left = until - fb_monotonic_now();
    return left > 0 ? left : 0;
  }
  return FB_EINVAL;
}

static int api_zone_peer_eject(fb_zone *const *z, double offset,
                               double seconds) {
  if (!OPEN(z))
    return FBL_ECLOSED;
  fb_zone_peer *p = peer_of(z, offset);
  if (!p || !(seconds >= 0))
    return FB_EINVAL;
  double until = seconds > 0 ? fb_monotonic_now() + seconds : 0;
  uint64_t bits = 0;
  if (seconds > 0)
    memcpy(&bits, &until, sizeof bits);
  atomic_store_explicit(&p->ejected_until, bits, memory_order_relaxed);
  return 0;
}

/* fb.trace.read's reading of a done line (trace.h) */
static int api_trace_scan_line(const char *s, size_t len, double *out) {
  return fb_trace_scan_line(s, len, out);
}

/* fb.sim's fixed-field events (lua_events.c) */
static void api_events_call_start(fb_runtime *rt, const char *service, double call) {
  fbl_events_call_start(rt, service, call);
}

static void api_events_call_end(fb_runtime *rt, const char *service, double call,
                                const char *outcome, const char *error, int late,
                                const char *result, double latency) {
  fbl_events_call_end(rt, service, call, outcome, error, late, result, latency);
}

static void api_events_request(fb_runtime *rt, const char *outcome, double latency,
                               const char *rejection) {
  fbl_events_request(rt, outcome, latency, rejection);
}

#define FB_LUA_API_INIT(ret, name, args) api_##name,

static const fb_lua_api api = {FB_LUA_API(FB_LUA_API_INIT)};

const fb_lua_api *fb_lua_api_get(void) { return &api; }

_Static_assert(FBL_WEIGHT == 0 && FBL_PORT == 6 && FBL_EJECTED == 7 && FBL_HOST == 0 &&
                   FBL_ZONE == 1 && FB_TRACE_PARSE == 0 && FB_TRACE_BLANK == 3 &&
                   FB_TRACE_T == 0 && FB_TRACE_OUT == 8,
               "the cdef below numbers the enums from 0, in this order");

#define STR_(x) #x
#define STR(x) STR_(x)
#define FB_LUA_API_CDEF(ret, name, args) #ret " (*" #name ")" #args ";\n"

static const char cdef[] =
    "typedef struct fb_runtime fb_runtime;\n"
    "typedef struct fb_registry fb_registry;\n"
    "typedef struct fb_service fb_service;\n"
    "typedef struct fb_instance fb_instance;\n"
    "typedef struct fb_balancer fb_balancer;\n"
    "typedef struct fb_breaker fb_breaker;\n"
    "typedef struct fb_zone fb_zone;\n"
    "typedef struct fb_limiter fb_limiter;\n"
    "typedef struct fb_rng { uint64_t s[4]; } fb_rng;\n"
    "typedef struct fb_clock_cache { " STR(FBL_CLOCK_CACHE_FIELDS) " } fb_clock_cache;\n"
    "struct fb_lua_api {\n" FB_LUA_API(FB_LUA_API_CDEF) "};\n"
    "enum { FBL_ECLOSED = " STR(FBL_ECLOSED) ", FBL_ESERVICES = " STR(FBL_ESERVICES)
    ", FBL_ECHANGED = " STR(FBL_ECHANGED) ", FBL_WEIGHT = 0"
    ", FBL_HEALTHY, FBL_INFLIGHT, FBL_SUCCESSES, FBL_FAILURES, FBL_LATENCY,"
    " FBL_PORT, FBL_EJECTED };\n"
    "enum { FBL_HOST = 0, FBL_ZONE };\n"
    "enum { FBL_PEER_INFLIGHT = 0, FBL_PEER_EJECTED_FOR };\n"
    "enum { FB_TRACE_PARSE = 0, FB_TRACE_DONE, FB_TRACE_OTHER, FB_TRACE_BLANK };\n"
    "enum { FB_TRACE_T = 0, FB_TRACE_LATENCY, FB_TRACE_PORT, FB_TRACE_OK, FB_TRACE_HOST,"
    " FB_TRACE_HOST_LEN, FB_TRACE_SERVICE, FB_TRACE_SERVICE_LEN, FB_TRACE_OUT };\n";

const char *fb_lua_api_cdef(void) { return cdef; }
