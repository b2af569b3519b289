/*
 * fusebox.h -- the public C API of libfusebox.
 *
 * Three subsystems that know nothing of Lua or I/O -- a service registry,
 * balancers and a circuit breaker -- plus a seeded random generator.
 * Every time-dependent function takes "now" (seconds, a double, from any
 * clock that does not go backwards), so the same code runs on a real clock
 * and on a virtual one.
 *
 * Conventions (after libuv):
 *   - every public symbol starts with fb_;
 *   - types are opaque, except small value types the caller owns (fb_rng);
 *   - functions that can fail return 0 or a negative fb_errno code;
 *     fb_strerror() names it.
 *
 * Threading: an object may be used from one thread at a time; the caller
 * serialises access.
 */
#ifndef FUSEBOX_H
#define FUSEBOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FB_VERSION_MAJOR 0
#define FB_VERSION_MINOR 1
#define FB_VERSION_PATCH 0
#define FB_VERSION_STRING "0.1.0"

/* Error codes: always negative. */
typedef enum fb_errno {
  FB_EINVAL = -1,    /* an argument is out of range or malformed */
  FB_ENOMEM = -2,    /* out of memory */
  FB_EREJECTED = -3, /* the breaker rejected the call (it is open) */
  FB_ENOENT = -4,    /* no such service or instance */
  FB_ESTALE = -5,    /* a permit from an earlier breaker state: dropped */
  FB_ELUA = -6       /* a Lua error: fb_runtime_last_error() has it */
} fb_errno;

/* Returns a static, human-readable description of an fb_errno code. */
const char *fb_strerror(int err);

/* Returns the library version as "MAJOR.MINOR.PATCH". */
const char *fb_version(void);

/* ------------------------------------------------------------------ rng */

/* xoshiro256** state; callers own it, so streams never hide in globals. */
typedef struct fb_rng {
  uint64_t s[4];
} fb_rng;

/* Seeds the generator; equal seeds give equal streams. */
void fb_rng_seed(fb_rng *r, uint64_t seed);

/* Returns the next 64 random bits. */
uint64_t fb_rng_next(fb_rng *r);

/* Returns a double uniform in [0, 1). */
double fb_rng_double(fb_rng *r);

/* Returns an integer uniform in [0, n), without modulo bias; n > 0. */
uint64_t fb_rng_below(fb_rng *r, uint64_t n);

/* Seeds child from parent so the two streams are independent. */
void fb_rng_split(fb_rng *parent, fb_rng *child);

/* ------------------------------------------------------------- registry */

typedef struct fb_registry fb_registry;
typedef struct fb_service fb_service;
typedef struct fb_instance fb_instance;

typedef struct fb_registry_config {
  double heartbeat_timeout; /* seconds without a heartbeat until expiry; 30 */
} fb_registry_config;

/* What fb_registry_register() did. */
enum { FB_REFRESHED = 0, FB_ADDED = 1 };

/* Fills cfg with the defaults. */
void fb_registry_config_init(fb_registry_config *cfg);

/* Creates a registry (cfg NULL: defaults); NULL on bad config or no memory. */
fb_registry *fb_registry_new(const fb_registry_config *cfg);

/* Takes a reference; the registry lives until the last release. */
fb_registry *fb_registry_retain(fb_registry *r);

/* Drops a reference, freeing the registry and its instances at zero. */
void fb_registry_release(fb_registry *r);

/* Returns the heartbeat timeout in seconds. */
double fb_registry_heartbeat_timeout(const fb_registry *r);

/* Adds host:port to service, or refreshes its heartbeat if present (an
 * expired instance comes back in its old place); returns FB_ADDED,
 * FB_REFRESHED or an error. */
int fb_registry_register(fb_registry *r, const char *service, const char *host,
                         int port, double now);

/* Same as fb_registry_register(): a heartbeat from an unknown instance
 * registers it, as in the reference design. */
int fb_registry_heartbeat(fb_registry *r, const char *service,
                          const char *host, int port, double now);

/* Removes host:port from service; returns 1 if it was there, 0 if not. */
int fb_registry_deregister(fb_registry *r, const char *service,
                           const char *host, int port);

/* Returns the instance host:port of service, or NULL if there is none. */
fb_instance *fb_registry_find(fb_registry *r, const char *service,
                              const char *host, int port);

/* Returns the service called name, or NULL if nothing ever registered it.
 * A service, once created, lives as long as the registry. */
fb_service *fb_registry_service(fb_registry *r, const char *name);

/* Returns the live instances of s at now (those whose last heartbeat is
 * less than the timeout ago), in registration order, and stores the array
 * in *out; the array is valid until the registry is next changed. */
size_t fb_service_live(fb_service *s, double now, fb_instance *const **out);

/* Returns the service's name. */
const char *fb_service_name(const fb_service *s);

/* Returns the registry's modification index: it grows with every change
 * of any service's live membership (add, remove, expiry, revival), as
 * Consul's X-Consul-Index does. Expiry is noticed when it is computed
 * (fb_service_live, fb_registry_sweep). */
uint64_t fb_registry_index(const fb_registry *r);

/* Returns how many instances have expired (missed their heartbeats). */
uint64_t fb_registry_expirations(const fb_registry *r);

/* Returns how many times balancers picked the instance. */
uint64_t fb_instance_picks(const fb_instance *i);

/* Returns the registry index of the last change to s's live members. */
uint64_t fb_service_index(const fb_service *s);

/* Expires every instance whose heartbeat is too old at now, so the
 * indexes reflect expiry without a query; O(expired). */
void fb_registry_sweep(fb_registry *r, double now);

/* Returns the instance's host. */
const char *fb_instance_host(const fb_instance *i);

/* Returns the instance's port. */
int fb_instance_port(const fb_instance *i);

/* Returns the instance's id: unique in its registry, never reused. */
uint64_t fb_instance_id(const fb_instance *i);

/* Returns the time of the instance's last heartbeat. */
double fb_instance_last_heartbeat(const fb_instance *i);

/* A registry backend: a store elsewhere (etcd) that holds the registry's
 * truth while the registry is its local cache, so discover and picks never
 * wait on the network. register, heartbeat and deregister change the cache
 * first (a process reads its own writes) and then call the matching op,
 * which must not block: it queues the change for the store. The backend
 * feeds the store's changes back with fb_registry_cache_put/_delete, which
 * do not call it. A registry with a backend never expires instances
 * itself: the store decides who is live. Ops return 0 or an fb_errno. */
typedef struct fb_registry_backend {
  int (*register_instance)(void *data, const char *service, const char *host,
                           int port);
  int (*heartbeat)(void *data, const char *service, const char *host,
                   int port);
  int (*deregister)(void *data, const char *service, const char *host,
                    int port);
} fb_registry_backend;

/* Sets the registry's backend (ops NULL: none, the registry is its own
 * store); ops and data must outlive the setting. */
void fb_registry_set_backend(fb_registry *r, const fb_registry_backend *ops,
                             void *data);

/* Adds or refreshes host:port in the cache without telling the backend;
 * returns FB_ADDED, FB_REFRESHED or an error. */
int fb_registry_cache_put(fb_registry *r, const char *service,
                          const char *host, int port, double now);

/* Removes host:port from the cache without telling the backend; returns 1
 * if it was there, 0 if not. */
int fb_registry_cache_delete(fb_registry *r, const char *service,
                             const char *host, int port);

/* ------------------------------------------------------------- balancer */

typedef struct fb_balancer fb_balancer;

/* Creates a balancer over r using the named algorithm ("round_robin" or
 * "random"); it holds a reference to r. NULL if the name is unknown. */
fb_balancer *fb_balancer_new(fb_registry *r, const char *algorithm,
                             uint64_t seed);

/* Frees the balancer and drops its reference to the registry. */
void fb_balancer_free(fb_balancer *lb);

/* Returns the names of the built-in algorithms, NULL-terminated. */
const char *const *fb_balancer_algorithms(void);

/* Returns the balancer's algorithm name. */
const char *fb_balancer_algorithm(const fb_balancer *lb);

/* Returns the balancer's registry (no new reference). */
fb_registry *fb_balancer_registry(const fb_balancer *lb);

/* Picks a live instance of s at now; NULL if s is NULL or has none. */
fb_instance *fb_balancer_pick(fb_balancer *lb, fb_service *s, double now);

/* -------------------------------------------------------------- breaker */

typedef struct fb_breaker fb_breaker;

typedef enum fb_breaker_state {
  FB_CLOSED = 0,
  FB_OPEN = 1,
  FB_HALF_OPEN = 2
} fb_breaker_state;

typedef enum fb_outcome {
  FB_SUCCESS = 0,
  FB_FAILURE = 1
} fb_outcome;

typedef struct fb_breaker_config {
  int failure_threshold; /* consecutive failures that open it; 5 */
  double timeout;        /* seconds OPEN before a probe is let through; 60 */
  int success_threshold; /* HALF_OPEN successes that close it; 3 */
} fb_breaker_config;

/* Fills cfg with the defaults. */
void fb_breaker_config_init(fb_breaker_config *cfg);

/* Returns 0 if cfg is valid, else FB_EINVAL and the offending field's name
 * in *field (when field is not NULL). */
int fb_breaker_config_check(const fb_breaker_config *cfg, const char **field);

/* Creates a CLOSED breaker (cfg NULL: defaults); NULL on bad config. */
fb_breaker *fb_breaker_new(const fb_breaker_config *cfg);

/* Frees the breaker. */
void fb_breaker_free(fb_breaker *b);

/* Asks to make a call at now: returns a permit (>= 0) to pass to
 * fb_breaker_record(), or FB_EREJECTED while the breaker is open. An OPEN
 * breaker whose timeout has strictly passed moves to HALF_OPEN here. */
int64_t fb_breaker_acquire(fb_breaker *b, double now);

/* Records the outcome of a permitted call; duration is the call's length.
 * Returns 0, FB_EINVAL for a bad outcome or permit, or FB_ESTALE when the
 * breaker has changed state since the permit was issued (the result is
 * dropped: it describes a state that no longer holds). */
int fb_breaker_record(fb_breaker *b, int64_t permit, fb_outcome outcome,
                      double duration, double now);

/* Returns the current state; it changes only in acquire and record. */
fb_breaker_state fb_breaker_state_of(const fb_breaker *b);

/* Reads the breaker's counters since creation: recorded successes and
 * failures, and calls rejected while open. */
void fb_breaker_stats(const fb_breaker *b, uint64_t *successes,
                      uint64_t *failures, uint64_t *rejected);

/* Returns "CLOSED", "OPEN" or "HALF_OPEN". */
const char *fb_breaker_state_name(fb_breaker_state s);

/* Returns how many state changes the breaker has made since creation. */
uint64_t fb_breaker_transitions(const fb_breaker *b);

/* Reads back the n-th state change (0-based, one of the last
 * FB_BREAKER_HISTORY); returns 0, or FB_ENOENT if it is no longer kept. */
#define FB_BREAKER_HISTORY 16
int fb_breaker_transition(const fb_breaker *b, uint64_t n,
                          fb_breaker_state *from, fb_breaker_state *to,
                          double *at);

/* Returns seconds from now until an OPEN breaker may let a call through
 * (0 when it would let one through now). */
double fb_breaker_retry_after(const fb_breaker *b, double now);

/* -------------------------------------------------------------- runtime */

/* A Lua runtime for policy written in Lua: a LuaJIT state with the fusebox
 * module loaded, whose coroutines run on a libuv loop -- the host's own,
 * or one of its own. Lua code publishes objects with fb.export(name, obj);
 * the host looks them up by name and uses them through the core API.
 * A runtime and everything from it belong to the loop's thread. */
typedef struct fb_runtime fb_runtime;
struct uv_loop_s;

typedef struct fb_runtime_config {
  struct uv_loop_s *loop; /* host's loop; NULL: the runtime makes its own */
  int virtual_time;       /* own loop only: a virtual clock from 0 */
  int has_seed;           /* else a fresh seed is drawn */
  uint64_t seed;
  /* Called with message and traceback for every uncaught Lua error (a
   * hosted runtime keeps running); never exit()s. May be NULL. */
  void (*on_error)(void *data, const char *message);
  void *error_data;
} fb_runtime_config;

/* Fills cfg with the defaults: own loop, real time, fresh seed. */
void fb_runtime_config_init(fb_runtime_config *cfg);

/* Creates a runtime (cfg NULL: defaults); NULL on bad config or no memory. */
fb_runtime *fb_runtime_new(const fb_runtime_config *cfg);

/* Frees the runtime, its Lua state and every object Lua made. */
void fb_runtime_free(fb_runtime *rt);

/* Starts the Lua file at path as a coroutine; FB_ELUA if it does not
 * compile. On a host's loop it runs as the host runs the loop. */
int fb_runtime_load(fb_runtime *rt, const char *path);

/* Starts the Lua source code (named name in errors) as a coroutine. */
int fb_runtime_eval(fb_runtime *rt, const char *code, const char *name);

/* Runs the runtime's own loop until every coroutine is done; FB_ELUA on
 * the first uncaught error, FB_EINVAL on a host's loop. */
int fb_runtime_run(fb_runtime *rt);

/* Returns the runtime's clock in seconds: what to pass as "now". */
double fb_runtime_now(const fb_runtime *rt);

/* Returns the breaker Lua exported as name, or NULL (see last error). */
fb_breaker *fb_runtime_breaker(fb_runtime *rt, const char *name);

/* Returns the balancer Lua exported as name, or NULL (see last error). */
fb_balancer *fb_runtime_balancer(fb_runtime *rt, const char *name);

/* Returns the registry Lua exported as name, or NULL (see last error). */
fb_registry *fb_runtime_registry(fb_runtime *rt, const char *name);

/* Returns the message of the runtime's last error, or "" if none. */
const char *fb_runtime_last_error(const fb_runtime *rt);

#ifdef __cplusplus
}
#endif
#endif /* FUSEBOX_H */
