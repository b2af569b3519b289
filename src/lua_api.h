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

#define FB_LUA_API(X)                                                        \
  X(double, now, (const fb_runtime * rt))                                    \
  X(double, breaker_acquire, (fb_breaker * b, double now))                   \
  X(int, breaker_record,                                                     \
    (fb_breaker * b, double permit, int outcome, double duration,           \
     double now))                                                            \
  X(double, breaker_transitions, (const fb_breaker *b))                      \
  X(double, breaker_retry_after, (const fb_breaker *b, double now))          \
  X(int, breaker_state, (const fb_breaker *b))                               \
  X(void, breaker_force_open, (fb_breaker * b, double now))                 \
  X(void, breaker_disable, (fb_breaker * b, double now))                    \
  X(void, breaker_reset, (fb_breaker * b, double now))                      \
  X(fb_service *, registry_service, (fb_registry * r, const char *name))     \
  X(double, registry_services_removed, (const fb_registry *r))               \
  X(int, service_live,                                                       \
    (fb_service * s, double now, fb_instance *const **out))                  \
  X(double, instance_id, (const fb_instance *i))                             \
  X(const char *, instance_host, (const fb_instance *i))                     \
  X(int, instance_port, (const fb_instance *i))                             \
  X(int, events_on, (const fb_runtime *rt))                                  \
  X(void, stream_init, (fb_runtime * rt, fb_rng *r))                         \
  X(void, stream_init_named,                                                 \
    (const fb_runtime *rt, fb_rng *r, const char *name, double n))           \
  X(double, run_id, (const fb_runtime *rt))                                  \
  X(double, rng_double, (fb_rng * r))                                        \
  X(double, rng_below, (fb_rng * r, double n))  \
  X(fb_instance *, balancer_pick_key,                                        \
    (fb_balancer * lb, fb_service *s, const char *key, size_t len,          \
     double now))                                                            \
  X(int, balancer_candidates,                                                \
    (fb_balancer * lb, fb_service *s, double now, fb_instance *const **out)) \
  X(int, balancer_take, (fb_balancer * lb, double id))                       \
  X(int, balancer_done,                                                      \
    (fb_balancer * lb, double id, int ok, double latency, double now))      \
  X(fb_rng *, balancer_rng, (fb_balancer * lb))                              \
  X(fb_rng *, runtime_rng, (fb_runtime * rt))                                \
  X(double, service_version, (const fb_service *s))                          \
  X(fb_instance *, registry_instance, (fb_registry * r, double id))          \
  X(double, instance_weight, (const fb_instance *i))                         \
  X(const char *, instance_zone, (const fb_instance *i))                     \
  X(int, instance_healthy, (const fb_instance *i))                           \
  X(double, instance_inflight, (const fb_instance *i))                       \
  X(double, instance_successes, (const fb_instance *i))                      \
  X(double, instance_failures, (const fb_instance *i))                       \
  X(double, instance_latency, (const fb_instance *i))

#define FB_LUA_API_FIELD(ret, name, args) ret(*name) args;

typedef struct fb_lua_api {
  FB_LUA_API(FB_LUA_API_FIELD)
} fb_lua_api;

/* Returns the table of entry points. */
const fb_lua_api *fb_lua_api_get(void);

/* Returns the ffi.cdef text declaring struct fb_lua_api and its types. */
const char *fb_lua_api_cdef(void);

#endif
