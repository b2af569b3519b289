/*
 * lua_api.h -- the hot paths the Lua library reaches through LuaJIT's FFI.
 *
 * A classic lua_CFunction call costs tens of nanoseconds and stops a
 * trace; an FFI call through a function pointer compiles to a few. So the
 * Lua library calls these through one table of pointers, declared once
 * here: the same X-macro builds the C struct and the ffi.cdef text, so the
 * two cannot drift apart. Only scalars and pointers cross, and nothing
 * here may call back into Lua.
 */
#ifndef FB_LUA_API_H
#define FB_LUA_API_H

#include "fusebox.h"
#include "zone.h"

/* Lifetime: objects cross as their userdata's payload slot (fb_breaker
 * *const *, the pointer __gc sets to NULL), read here on every call, so a
 * call on a closed object returns FBL_ECLOSED instead of touching freed
 * memory, at the cost of one load. Instances cross by id (generation <<
 * 32 | slot), never by pointer: Lua may run a finalizer at any allocation
 * (boxing a returned pointer is one), and a finalizer may deregister the
 * instance; an id then finds nothing. A service pointer is valid while
 * the object passed with it (its registry, or a balancer over it) is open:
 * services live as long as their registry. */
#define FBL_ECLOSED (-100)

/* A breaker's payload (lua_breaker.c): the breaker (NULL once closed);
 * for one in a zone, this process's book of tokens (breaker.h: a permit
 * of a CLOSED breaker is granted from it without the zone's lock) and the
 * zone, whose mapping the breaker keeps; NULL for others. The FFI passes
 * it as its first field's address. */
struct fb_tokens;
typedef struct fbl_breaker_slot {
  fb_breaker *b;
  struct fb_tokens *own;
  fb_zone *zone;
} fbl_breaker_slot;

/* balancer_pick_key's answer when services were removed from the registry
 * since the caller looked its service pointer up (`removed`, the
 * registry's fb_registry_services_removed() then): the pointer may be
 * stale, so the caller looks it up again. One check inside the pick
 * instead of an FFI call of its own before every pick. */
#define FBL_ESERVICES (-101)

/* breaker_admit's answer for a rejection when the breaker made state
 * changes the caller has not announced (it says how many it saw): this
 * call's own (OPEN gave way to HALF_OPEN, whose probes were taken) or
 * another thread's or process's; a plain rejection (FB_EREJECTED) has
 * none to announce. */
#define FBL_ECHANGED (-102)

/* The loop-cached clock (runtime.h): `now` is the runtime's time when the
 * running coroutine was last resumed, valid while fresh is non-zero (a
 * coroutine of the runtime runs); Lua reads it as a field, no call. */
#define FBL_CLOCK_CACHE_FIELDS double now; int fresh;
typedef struct fb_clock_cache {
  FBL_CLOCK_CACHE_FIELDS
} fb_clock_cache;

#define FB_LUA_API(X)                                                        \
  X(double, now, (const fb_runtime * rt))                                    \
  X(const fb_clock_cache *, clock_cache, (const fb_runtime *rt))             \
  X(double, breaker_acquire, (fb_breaker *const *b, double now))             \
  X(double, breaker_admit, (fb_breaker *const *b, double now, double seen,   \
                            const fb_clock_cache *clock, double *out))       \
  X(int, breaker_record,                                                     \
    (fb_breaker *const *b, double permit, int outcome, double duration,     \
     double now))                                                            \
  X(double, breaker_transitions, (fb_breaker *const *b))                     \
  X(double, breaker_retry_after, (fb_breaker *const *b, double now))         \
  X(int, breaker_state, (fb_breaker *const *b))                              \
  X(int, breaker_force_open, (fb_breaker *const *b, double now))             \
  X(int, breaker_disable, (fb_breaker *const *b, double now))                \
  X(int, breaker_reset, (fb_breaker *const *b, double now))                  \
  X(double, limiter_acquire, (fb_limiter *const *l))                         \
  X(int, limiter_release,                                                    \
    (fb_limiter *const *l, double permit, int outcome, double rtt,          \
     double now))                                                            \
  X(double, limiter_changes, (fb_limiter *const *l))                         \
  X(int, limiter_limit, (fb_limiter *const *l))                              \
  X(int, limiter_inflight, (fb_limiter *const *l))                           \
  X(fb_service *, registry_service,                                          \
    (fb_registry *const *r, const char *name))                               \
  X(double, registry_services_removed, (fb_registry *const *r))            \
  X(double, service_version, (fb_registry *const *r, const fb_service *s))   \
  X(double, service_live_id,                                                 \
    (fb_registry *const *r, fb_service *s, double now, double i))            \
  X(double, instance_stat, (fb_registry *const *r, double id, int what))     \
  X(double, instance_string,                                                 \
    (fb_registry *const *r, double id, int what, char *buf, double cap))     \
  X(const int *, events_flag, (const fb_runtime *rt))                        \
  X(void, stream_init, (fb_runtime * rt, fb_rng *r))                         \
  X(void, stream_init_named,                                                 \
    (const fb_runtime *rt, fb_rng *r, const char *name, double n))           \
  X(double, run_id, (const fb_runtime *rt))                                  \
  X(double, rng_double, (fb_rng * r))                                        \
  X(double, rng_below, (fb_rng * r, double n))                               \
  X(double, balancer_pick_key,                                               \
    (fb_balancer *const *lb, fb_service *s, const char *key, size_t len,    \
     double now, double removed))                                            \
  X(double, balancer_pick_excluding,                                         \
    (fb_balancer *const *lb, fb_service *s, const char *key, size_t len,    \
     const double *ids, int n, double now))                                  \
  X(int, instance_eject, (fb_registry *const *r, double id, double until))   \
  X(int, balancer_candidates,                                                \
    (fb_balancer *const *lb, fb_service *s, double now, double *version))   \
  X(double, balancer_candidate_id,                                           \
    (fb_balancer *const *lb, fb_service *s, double now, double i))           \
  X(int, balancer_take, (fb_balancer *const *lb, double id))                 \
  X(int, balancer_done,                                                      \
    (fb_balancer *const *lb, double id, int ok, double latency, double now)) \
  X(fb_rng *, balancer_rng, (fb_balancer *const *lb))                       \
  X(fb_rng *, runtime_rng, (fb_runtime * rt))                               \
  X(double, zone_peer_stat, (fb_zone *const *z, double offset, int what))   \
  X(int, zone_peer_eject, (fb_zone *const *z, double offset, double seconds)) \
  X(int, trace_scan_line, (const char *s, size_t len, double *out))        \
  X(void, events_call_start,                                                 \
    (fb_runtime * rt, const char *service, double call))                     \
  X(void, events_call_end,                                                   \
    (fb_runtime * rt, const char *service, double call, const char *outcome, \
     const char *error, int late, const char *result, double latency))      \
  X(void, events_request,                                                    \
    (fb_runtime * rt, const char *outcome, double latency,                   \
     const char *rejection))

/* What instance_stat reads: -1 when the instance is gone (FBL_EJECTED:
 * the end of its ejection, 0 if none ends after 0). */
enum { FBL_WEIGHT, FBL_HEALTHY, FBL_INFLIGHT, FBL_SUCCESSES, FBL_FAILURES,
       FBL_LATENCY, FBL_PORT, FBL_EJECTED };

/* What zone_peer_stat reads of the peer record at offset (from z:peer):
 * every process's calls in flight, the seconds its ejection still runs
 * (0: none; the clock is read only when one was set). FB_EINVAL
 * for an offset that is no record's, FBL_ECLOSED once the zone closed.
 * zone_peer_eject(z, offset, seconds) ejects it for every process for
 * seconds from now (0: readmits); the same answers. */
enum { FBL_PEER_INFLIGHT, FBL_PEER_EJECTED_FOR };

/* What instance_string copies into the caller's buffer: its length is
 * returned (a length over cap means: grow the buffer and ask again), -1
 * when the instance is gone or has no zone. A copy, not a pointer: the
 * string may be freed by the first finalizer that runs. */
enum { FBL_HOST, FBL_ZONE };

/* The fixed-field events of fb.sim's calls and requests, behind
 * events_call_start, events_call_end and events_request (lua_events.c):
 * call_start {call, service}, call_end {call, error, late, latency,
 * outcome, result, service} and request {latency, outcome, rejection},
 * as core.put logs them; a NULL string (late 0) leaves its field out.
 * No-ops while no sink is open. */
void fbl_events_call_start(fb_runtime *rt, const char *service, double call);
void fbl_events_call_end(fb_runtime *rt, const char *service, double call,
                         const char *outcome, const char *error, int late,
                         const char *result, double latency);
void fbl_events_request(fb_runtime *rt, const char *outcome, double latency,
                        const char *rejection);

#define FB_LUA_API_FIELD(ret, name, args) ret(*name) args;

typedef struct fb_lua_api {
  FB_LUA_API(FB_LUA_API_FIELD)
} fb_lua_api;

/* Returns the table of entry points. */
const fb_lua_api *fb_lua_api_get(void);

/* Returns the ffi.cdef text declaring struct fb_lua_api and its types. */
const char *fb_lua_api_cdef(void);

#endif
