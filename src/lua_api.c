/*
 * lua_api.c -- scalar-only wrappers over the core for the FFI table.
 *
 * Permits and counters travel as doubles: an int64_t return would come
 * back to Lua as a boxed cdata, which costs an allocation per call.
 */
#include "lua_api.h"

#include "balancer.h"
#include "runtime.h"

#include <math.h>

static double api_now(const fb_runtime *rt) { return fb_runtime_now(rt); }

static double api_breaker_acquire(fb_breaker *b, double now) {
  return (double)fb_breaker_acquire(b, now);
}

/* A token is an integer 0..2^53 (the doubles that hold it exactly):
 * anything else (0.5, -0, NaN, 1e300) is malformed, not truncated into
 * some other token. */
static int api_breaker_record(fb_breaker *b, double permit, int outcome,
                              double duration, double now) {
  if (!(permit >= 0 && permit <= 9007199254740992.0) ||
      permit != (double)(int64_t)permit || signbit(permit))
    return FB_EINVAL;
  return fb_breaker_record(b, (int64_t)permit, (fb_outcome)outcome, duration,
                           now);
}

static double api_breaker_transitions(const fb_breaker *b) {
  return (double)fb_breaker_transitions(b);
}

static double api_breaker_retry_after(const fb_breaker *b, double now) {
  return fb_breaker_retry_after(b, now);
}

static int api_breaker_state(const fb_breaker *b) {
  return (int)fb_breaker_state_of(b);
}

static void api_breaker_force_open(fb_breaker *b, double now) {
  fb_breaker_force_open(b, now);
}

static void api_breaker_disable(fb_breaker *b, double now) {
  fb_breaker_disable(b, now);
}

static void api_breaker_reset(fb_breaker *b, double now) {
  fb_breaker_reset(b, now);
}

static fb_service *api_registry_service(fb_registry *r, const char *name) {
  return fb_registry_service(r, name);
}

/* Lua keeps fb_service pointers by name, and drops them when this changed. */
static double api_registry_services_removed(const fb_registry *r) {
  return (double)fb_registry_services_removed(r);
}

static int api_service_live(fb_service *s, double now,
                            fb_instance *const **out) {
  return (int)fb_service_live(s, now, out);
}

static double api_instance_id(const fb_instance *i) {
  return (double)fb_instance_id(i);
}

static const char *api_instance_host(const fb_instance *i) {
  return fb_instance_host(i);
}

static int api_instance_port(const fb_instance *i) {
  return fb_instance_port(i);
}

static int api_events_on(const fb_runtime *rt) { return rt->events_on; }

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

static fb_instance *api_balancer_pick_key(fb_balancer *lb, fb_service *s,
                                          const char *key, size_t len,
                                          double now) {
  return fb_balancer_pick_key(lb, s, key, len, now);
}

static int api_balancer_candidates(fb_balancer *lb, fb_service *s, double now,
                                   fb_instance *const **out) {
  return (int)fb_balancer_candidates(lb, s, now, out);
}

/* Instances cross by id: a Lua view may outlive its instance, and an id
 * then finds nothing instead of freed memory. */
static int api_balancer_take(fb_balancer *lb, double id) {
  fb_instance *i = fb_registry_instance(fb_balancer_registry(lb), (uint64_t)id);
  return i ? fb_balancer_take(lb, i) : FB_ENOENT;
}

static int api_balancer_done(fb_balancer *lb, double id, int ok,
                             double latency, double now) {
  fb_instance *i = fb_registry_instance(fb_balancer_registry(lb), (uint64_t)id);
  return i ? fb_balancer_done(lb, i, ok, latency, now) : FB_ENOENT;
}

/* The generators behind a strategy's ctx.random and fb.random: Lua draws
 * from them with rng_double and rng_below (fusebox.base's random). */
static fb_rng *api_balancer_rng(fb_balancer *lb) { return &lb->rng; }

static fb_rng *api_runtime_rng(fb_runtime *rt) { return &rt->rng; }

static double api_service_version(const fb_service *s) {
  return (double)fb_service_version(s);
}

static fb_instance *api_registry_instance(fb_registry *r, double id) {
  return fb_registry_instance(r, (uint64_t)id);
}

static double api_instance_weight(const fb_instance *i) {
  return fb_instance_weight(i);
}

static const char *api_instance_zone(const fb_instance *i) {
  return fb_instance_zone(i);
}

static int api_instance_healthy(const fb_instance *i) {
  return fb_instance_healthy(i);
}

static double api_instance_inflight(const fb_instance *i) {
  return fb_instance_inflight(i);
}

static double api_instance_successes(const fb_instance *i) {
  return (double)fb_instance_successes(i);
}

static double api_instance_failures(const fb_instance *i) {
  return (double)fb_instance_failures(i);
}

static double api_instance_latency(const fb_instance *i) {
  return fb_instance_latency(i);
}

#define FB_LUA_API_INIT(ret, name, args) api_##name,

static const fb_lua_api api = {FB_LUA_API(FB_LUA_API_INIT)};

const fb_lua_api *fb_lua_api_get(void) { return &api; }

#define FB_LUA_API_CDEF(ret, name, args) #ret " (*" #name ")" #args ";\n"

static const char cdef[] =
    "typedef struct fb_runtime fb_runtime;\n"
    "typedef struct fb_registry fb_registry;\n"
    "typedef struct fb_service fb_service;\n"
    "typedef struct fb_instance fb_instance;\n"
    "typedef struct fb_balancer fb_balancer;\n"
    "typedef struct fb_breaker fb_breaker;\n"
    "typedef struct fb_rng { uint64_t s[4]; } fb_rng;\n"
    "struct fb_lua_api {\n" FB_LUA_API(FB_LUA_API_CDEF) "};\n";

const char *fb_lua_api_cdef(void) { return cdef; }
