/*
 * fusebox.h -- the public C API of libfusebox.
 *
 * Four subsystems that know nothing of Lua or I/O -- a service registry,
 * balancers, a circuit breaker and a concurrency limiter -- plus a seeded
 * random generator.
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
 * Threading contract:
 *   - A breaker made shared with fb_breaker_set_shared(b, 1) may be used
 *     from any number of threads at once: acquire, record, retry_after,
 *     metrics, force_open, disable and reset take its spinlock.
 *   - A breaker in shared memory (fb_breaker_init_shared) may be used
 *     from any number of threads in any number of processes at once, each
 *     at its own address: the same entry points take its lock, a word
 *     holding its holder's pid, taken over from a holder that died.
 *   - Every other object (registry, balancer, an unshared breaker) belongs
 *     to one thread at a time: the caller serialises access.
 *   - A runtime (fb_runtime_*) and the objects Lua made in it belong to the
 *     thread that runs its loop -- except breakers Lua shared
 *     (fb.breaker{shared = true}), which host threads may use as above.
 *   - A limiter made shared with fb_limiter_set_shared(l, 1) may be used
 *     from any number of threads at once (its spinlock, as the breaker).
 *   - fb_rng: one per thread.
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

/* Config structs carry this once their *_config_init() filled them, so a
 * config that was never initialised is refused rather than trusted. */
#define FB_CONFIG_MAGIC 0xfb0c0f19u

/* Error codes: always negative. */
typedef enum fb_errno {
  FB_EINVAL = -1,    /* an argument is out of range or malformed */
  FB_ENOMEM = -2,    /* out of memory */
  FB_EREJECTED = -3, /* the breaker rejected the call (it is open) */
  FB_ENOENT = -4,    /* no such service or instance */
  FB_ESTALE = -5,    /* a permit from an earlier breaker state: dropped */
  FB_ELUA = -6,      /* a Lua error: fb_runtime_last_error() has it */
  FB_EFULL = -7,     /* a registry limit (max_services, max_instances) is
                        reached: fb_registry_strerror() says which */
  FB_ENOW = -8,      /* called with now = NaN ("not read") where the
                        decision needs the time: nothing changed, call
                        again with the time */
  FB_ELIMIT = -9     /* the concurrency limiter rejected the call: as
                        many calls are in flight as its limit allows */
} fb_errno;

/* Returns a static, human-readable description of an fb_errno code. */
const char *fb_strerror(int err);

/* Returns the library version as "MAJOR.MINOR.PATCH". */
const char *fb_version(void);

/* ------------------------------------------------------------ allocator */

typedef void *(*fb_malloc_func)(size_t size);
typedef void *(*fb_calloc_func)(size_t count, size_t size);
typedef void *(*fb_realloc_func)(void *ptr, size_t size);
typedef void (*fb_free_func)(void *ptr);

/* Replaces the allocator every fb_ object and the events and report code
 * use (cJSON's hooks included), as libuv's uv_replace_allocator() does.
 * Call it before anything is created, from one thread: memory is freed by
 * the allocator that gave it. The functions must behave like their libc
 * namesakes (realloc(NULL, n) allocates, free(NULL) does nothing).
 * Returns 0, or FB_EINVAL (nothing replaced) if any function is NULL. */
int fb_replace_allocator(fb_malloc_func malloc_func,
                         fb_calloc_func calloc_func,
                         fb_realloc_func realloc_func, fb_free_func free_func);

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
  double heartbeat_timeout; /* seconds without a heartbeat until expiry; 30;
                               INFINITY: a static registry, whose instances
                               never expire (and so are never reaped) */
  double reap_after;        /* seconds an instance stays expired (and can
                               come back in its place) before it is removed;
                               > 0, INFINITY: never; 0: 3 * heartbeat_timeout
                               (a registry with a backend never reaps: the
                               store decides who is there) */
  uint32_t max_services;    /* services at most; 10000 (a service, once
                               created, is never removed unless
                               remove_empty_services: this bounds the
                               distinct names over the registry's life) */
  uint32_t max_instances;   /* instances at most, live or expired; 100000 */
  int remove_empty_services; /* 0 (default): a service lives as long as
                               the registry, and so do fb_service pointers.
                               1: when a new service would pass
                               max_services, the services with no instance
                               left (every one deregistered or reaped) are
                               removed first, so the names no longer count
                               (churned names never lock the registry);
                               fb_service pointers are then valid only while
                               fb_registry_services_removed() is unchanged */
  uint32_t magic;           /* private: set by fb_registry_config_init */
} fb_registry_config;

#define FB_REGISTRY_MAX_SERVICES 10000u
#define FB_REGISTRY_MAX_INSTANCES 100000u

/* The longest service name, host or zone a registration may carry, in
 * bytes (a DNS name is at most 253), so max_instances bounds memory. */
#define FB_NAME_MAX 255u

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

/* Returns the grace period after expiry in seconds (reap_after). */
double fb_registry_reap_after(const fb_registry *r);

/* Adds host:port to service, or refreshes its heartbeat if present (an
 * expired instance comes back in its old place, until it is reaped);
 * returns FB_ADDED, FB_REFRESHED or an error: FB_EFULL when a new service
 * or instance would pass max_services or max_instances (nothing is added
 * then), FB_EINVAL for a bad argument (a name longer than FB_NAME_MAX
 * too) or a NaN now. */
int fb_registry_register(fb_registry *r, const char *service, const char *host,
                         int port, double now);

/* Same as fb_registry_register(): a heartbeat from an unknown instance
 * registers it, as in the reference design. */
int fb_registry_heartbeat(fb_registry *r, const char *service,
                          const char *host, int port, double now);

/* Removes host:port from service; returns 1 if it was there, 0 if not. */
int fb_registry_deregister(fb_registry *r, const char *service,
                           const char *host, int port);

/* Returns the service called name, or NULL if nothing ever registered it.
 * A service, once created, lives as long as the registry (with
 * remove_empty_services, until it is removed). */
fb_service *fb_registry_service(fb_registry *r, const char *name);

/* Returns how many services were removed (remove_empty_services): a
 * caller that keeps fb_service pointers drops them when this changed. */
uint64_t fb_registry_services_removed(const fb_registry *r);

/* Returns the live instances of s at now (those whose last heartbeat is
 * less than the timeout ago), in registration order, and stores the array
 * in *out; the array is valid until the registry is next changed. When
 * memory runs out (or s is NULL) it returns 0 and stores NULL; *out is
 * never NULL for a service that merely has no live instances. */
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

/* Returns how many expired instances were reaped: removed once they had
 * stayed expired for reap_after seconds. */
uint64_t fb_registry_reaped(const fb_registry *r);

/* Returns how many instances the registry holds, live or expired. */
size_t fb_registry_ninstances(const fb_registry *r);

/* fb_strerror() for an error r returned, naming for FB_EFULL the limit it
 * hit and its value ("registry full: max_instances (100000) reached");
 * writes at most len bytes (NUL included) to buf and returns buf. */
char *fb_registry_strerror(const fb_registry *r, int err, char *buf,
                           size_t len);

/* Returns how many times balancers picked the instance. */
uint64_t fb_instance_picks(const fb_instance *i);

/* Returns the registry index of the last change to s's live members. */
uint64_t fb_service_index(const fb_service *s);

/* Expires every instance whose heartbeat is too old at now, so the
 * indexes reflect expiry without a query, and reaps those expired for
 * longer than reap_after; O(expired + reaped). Registering, heartbeats and
 * queries (fb_service_live) do the same walk first. */
void fb_registry_sweep(fb_registry *r, double now);

/* Returns the instance's host. */
const char *fb_instance_host(const fb_instance *i);

/* Returns the instance's port. */
int fb_instance_port(const fb_instance *i);

/* Returns the instance's id: unique in its registry, never reused. */
uint64_t fb_instance_id(const fb_instance *i);

/* Returns the time of the instance's last heartbeat. */
double fb_instance_last_heartbeat(const fb_instance *i);

/* The largest instance weight. */
#define FB_WEIGHT_MAX 1000000u

/* What fb_registry_register_with() sets; zero fields keep what is set
 * (a new instance starts with weight 1 and no zone). */
typedef struct fb_instance_opts {
  uint32_t weight;  /* 1..FB_WEIGHT_MAX, or 0 */
  const char *zone; /* copied; NULL or a non-empty string */
} fb_instance_opts;

/* Fills o with "change nothing". */
void fb_instance_opts_init(fb_instance_opts *o);

/* fb_registry_register() that also sets weight and zone (opts may be
 * NULL); statistics survive: they belong to host:port while registered. */
int fb_registry_register_with(fb_registry *r, const char *service,
                              const char *host, int port,
                              const fb_instance_opts *opts, double now);

/* Returns the instance host:port of service, live or expired (not yet
 * reaped), or NULL. */
fb_instance *fb_registry_find(fb_registry *r, const char *service,
                              const char *host, int port);

/* Returns the instance with this id, or NULL once it is deregistered or
 * reaped. O(1). */
fb_instance *fb_registry_instance(const fb_registry *r, uint64_t id);

/* Marks host:port down (up == 0) or up again; balancers skip instances
 * marked down. Returns 1 if the instance exists, 0 if not, or FB_EINVAL. */
int fb_registry_mark(fb_registry *r, const char *service, const char *host,
                     int port, int up);

/* Returns the live instances of s at now that are neither marked down nor
 * failing, in registration order (array valid as for fb_service_live). */
size_t fb_service_healthy(fb_service *s, double now,
                          fb_instance *const **out);

/* Returns a number that changes whenever the service's live or healthy
 * instances or their weights change (tables built from them are stale);
 * no two services of a registry ever share one, so a table kept for a
 * removed service never passes for its successor's. */
uint64_t fb_service_version(const fb_service *s);

/* Returns the instance's service. */
fb_service *fb_instance_service(const fb_instance *i);

/* Membership changes a registry listener hears about. */
typedef enum fb_registry_event {
  FB_REG_ADDED = 0,    /* registered for the first time */
  FB_REG_RETURNED = 1, /* an expired instance heartbeated again */
  FB_REG_REMOVED = 2,  /* deregistered (now is NaN: deregister has none) */
  FB_REG_EXPIRED = 3,  /* its heartbeat timed out, noticed at now */
  FB_REG_REAPED = 4    /* expired for reap_after and removed: its id finds
                          nothing any more, and it is freed after the call */
} fb_registry_event;

/* Called after each membership change; it must not change the registry. */
typedef void (*fb_registry_listener)(void *ud, fb_registry_event ev,
                                     const fb_instance *i, double now);

/* Sets the registry's one listener (fn NULL: none). */
void fb_registry_set_listener(fb_registry *r, fb_registry_listener fn,
                              void *ud);

/* Returns the instance's weight (1 unless set). */
uint32_t fb_instance_weight(const fb_instance *i);

/* Sets the instance's weight, 1..FB_WEIGHT_MAX; 0 or FB_EINVAL. */
int fb_instance_set_weight(fb_instance *i, uint32_t weight);

/* Returns the instance's zone, or NULL if it has none. */
const char *fb_instance_zone(const fb_instance *i);

/* Returns 1 unless the instance is marked down or failing. */
int fb_instance_healthy(const fb_instance *i);

/* Sets the health-check verdict (the hook per-instance breakers use); it is
 * independent of fb_registry_mark(): either one takes the instance out. */
void fb_instance_set_healthy(fb_instance *i, int healthy);

/* Ejects i until the time until (the clock the caller passes as now):
 * balancers skip it (panic mode aside) while now < until, and the
 * ejection ends on time with no call or timer (the first pick at or after
 * until sees it back). until <= now, or -INFINITY, readmits at once.
 * Independent of marks and health. 0, or FB_EINVAL if i is NULL or until
 * is NaN. */
int fb_instance_eject(fb_instance *i, double until);

/* Returns the end of the instance's last ejection (-INFINITY: never). */
double fb_instance_ejected_until(const fb_instance *i);

/* Returns how many picks of the instance have not been reported done. */
uint32_t fb_instance_inflight(const fb_instance *i);

/* Makes the load the balancers weigh for i (least_request, peak_ewma: the
 * calls in flight) a counter shared with other processes, e.g. in a zone
 * (src/zone.h) that nginx workers map: every pick and take adds 1 to it,
 * every done takes 1 off, besides i's own count (which fb_instance_inflight
 * still returns); it is read and written atomically. NULL stops sharing.
 * The counter must stay valid as long as i is used. */
void fb_instance_share_load(fb_instance *i, int64_t *counter);

/* Returns how many calls to the instance were reported successful. */
uint64_t fb_instance_successes(const fb_instance *i);

/* Returns how many calls to the instance were reported failed. */
uint64_t fb_instance_failures(const fb_instance *i);

/* Returns the peak EWMA of the instance's reported latencies in seconds
 * as of its last report (0 before the first). */
double fb_instance_latency(const fb_instance *i);

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

/* fb_registry_cache_put() that also sets weight and zone (opts may be
 * NULL), as the store recorded them. */
int fb_registry_cache_put_with(fb_registry *r, const char *service,
                               const char *host, int port,
                               const fb_instance_opts *opts, double now);

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

/* Returns the balancer's algorithm name (NULL for a Lua strategy). */
const char *fb_balancer_algorithm(const fb_balancer *lb);

/* Returns the balancer's registry (no new reference). */
fb_registry *fb_balancer_registry(const fb_balancer *lb);

/* Picks a live instance of s at now; NULL if s is NULL or has none, or if
 * lb has no built-in algorithm. The pick counts as in flight on the
 * instance until fb_balancer_done() reports it. */
fb_instance *fb_balancer_pick(fb_balancer *lb, fb_service *s, double now);

typedef struct fb_balancer_config {
  const char *algorithm;  /* a built-in name, or NULL: the caller chooses
                             among fb_balancer_candidates() itself */
  uint64_t seed;          /* for random choices */
  double panic_threshold; /* below this healthy fraction, use all; 0.5 */
  int choices;            /* least_request, peak_ewma: sampled; 2 */
  double decay;           /* peak_ewma: latency decay time, seconds; 10 */
  uint32_t replicas;      /* consistent_hash: points per instance; 160 */
  uint32_t table_size;    /* maglev: a prime; 65537 */
  uint32_t magic;         /* private: set by fb_balancer_config_init */
} fb_balancer_config;

/* Fills cfg with the defaults (algorithm "round_robin", seed 0). */
void fb_balancer_config_init(fb_balancer_config *cfg);

/* Returns 0 if cfg is valid, else FB_EINVAL and the offending field's name
 * in *field (when field is not NULL). */
int fb_balancer_config_check(const fb_balancer_config *cfg,
                             const char **field);

/* Creates a balancer from cfg over r (holding a reference to r); NULL if
 * cfg is invalid or memory runs out. */
fb_balancer *fb_balancer_new_config(fb_registry *r,
                                    const fb_balancer_config *cfg);

/* fb_balancer_pick() with a key (len bytes; key NULL: none): the hashing
 * algorithms map equal keys to the same instance, the others ignore it. */
fb_instance *fb_balancer_pick_key(fb_balancer *lb, fb_service *s,
                                  const char *key, size_t len, double now);

/* The most instances one pick may exclude. */
#define FB_EXCLUDE_MAX 256

/* fb_balancer_pick_key() skipping the instances whose ids are in
 * exclude[0..nexclude) (a retry's peers already tried; ids of other
 * services or of instances gone are ignored): NULL when every candidate
 * is excluded, or nexclude > FB_EXCLUDE_MAX. The table-based algorithms
 * (weighted_round_robin, consistent_hash, maglev) make their usual pick;
 * when it is excluded they choose by weight among the rest, by the key's
 * hash when there is a key (so a key's retries agree across processes),
 * else at random. The others pick among the rest directly. */
fb_instance *fb_balancer_pick_excluding(fb_balancer *lb, fb_service *s,
                                        const char *key, size_t len,
                                        const uint64_t *exclude,
                                        size_t nexclude, double now);

/* Returns the instances lb chooses among at now: the healthy live ones, or
 * every live one when fewer than panic_threshold of them are healthy;
 * *out is NULL only on an error (as for fb_service_live). */
size_t fb_balancer_candidates(fb_balancer *lb, fb_service *s, double now,
                              fb_instance *const **out);

/* Counts a pick the caller made itself (a strategy) as in flight;
 * FB_ENOENT if i belongs to another registry. */
int fb_balancer_take(fb_balancer *lb, fb_instance *i);

/* Reports the outcome of one pick of i: ends it in flight, counts a
 * success or failure and feeds latency (seconds) into the peak EWMA with
 * lb's decay. FB_ENOENT if i is from another registry, FB_EINVAL if no pick
 * of i is in flight (reported twice) or latency is negative or NaN. */
int fb_balancer_done(fb_balancer *lb, fb_instance *i, int ok, double latency,
                     double now);

/* Returns the balancer's stream of random doubles in [0, 1). */
double fb_balancer_random(fb_balancer *lb);

/* -------------------------------------------------------------- breaker */

typedef struct fb_breaker fb_breaker;

typedef enum fb_breaker_state {
  FB_CLOSED = 0,
  FB_OPEN = 1,
  FB_HALF_OPEN = 2,
  FB_FORCED_OPEN = 3, /* fb_breaker_force_open(): rejects until reset */
  FB_DISABLED = 4     /* fb_breaker_disable(): allows all, still measures */
} fb_breaker_state;

typedef enum fb_outcome {
  FB_SUCCESS = 0,
  FB_FAILURE = 1,
  FB_IGNORED = 2, /* neutral (a cancellation): counted nowhere, frees its
                     HALF_OPEN slot */
  FB_TIMEOUT = 3  /* the caller gave up waiting: judged as a failure, but
                     counted as a timeout */
} fb_outcome;

/* How CLOSED judges the calls it lets through. */
typedef enum fb_breaker_mode {
  FB_MODE_CONSECUTIVE = 0, /* failure_threshold failures in a row */
  FB_MODE_COUNT = 1,       /* rates over the last `window` calls */
  FB_MODE_TIME = 2         /* rates over the last `window` seconds */
} fb_breaker_mode;

typedef struct fb_breaker_config {
  int failure_threshold; /* consecutive failures that open it; 5 */
  double timeout;        /* seconds OPEN before a probe is let through; 60 */
  int success_threshold; /* HALF_OPEN successes that close it; 3 */
  fb_breaker_mode mode;  /* FB_MODE_CONSECUTIVE */
  double window;         /* count mode: calls (an integer <= 1e6); time
                            mode: seconds; 100 */
  int minimum_calls;     /* calls in the window before rates count; 10 */
  double failure_rate;   /* opens when failed/calls >= this, in (0, 1]; 0.5 */
  double slow_call_duration; /* a call longer than this is slow; INFINITY */
  double slow_call_rate; /* opens when slow/calls >= this, in (0, 1]; 1 */
  double timeout_multiplier; /* the OPEN duration grows by this factor on
                                each re-open from HALF_OPEN (>= 1); 1 */
  double timeout_max;    /* ...up to this (>= timeout); INFINITY */
  int half_open_max_calls;   /* probes in flight at once; 0: unlimited */
  double half_open_max_wait; /* HALF_OPEN older than this reopens; INFINITY */
  uint32_t magic;        /* private: set by fb_breaker_config_init */
} fb_breaker_config;

/* Fills cfg with the defaults. */
void fb_breaker_config_init(fb_breaker_config *cfg);

/* Returns 0 if cfg is valid, else FB_EINVAL and the offending field's name
 * in *field (when field is not NULL). */
int fb_breaker_config_check(const fb_breaker_config *cfg, const char **field);

/* Creates a CLOSED breaker (cfg NULL: defaults); NULL on bad config. */
fb_breaker *fb_breaker_new(const fb_breaker_config *cfg);

/* Frees the breaker; one in shared memory is left alone (unmap it). */
void fb_breaker_free(fb_breaker *b);

/* Asks to make a call at now: returns a permit (>= 0, a token of its own,
 * issued in increasing order) to pass to fb_breaker_record() once, or
 * FB_EREJECTED while the breaker is open (or
 * HALF_OPEN with all probe slots taken). An OPEN breaker whose timeout has
 * strictly passed moves to HALF_OPEN here; a HALF_OPEN one older than
 * half_open_max_wait moves back to OPEN here.
 *
 * now may be NaN, meaning "not read": a caller whose clock costs more than
 * the breaker (a clock_gettime is ~25 ns, an acquire ~2) asks first
 * without it. Where the answer needs no time (CLOSED or DISABLED, not
 * shared) it is given; anywhere else FB_ENOW is returned and nothing
 * changed, so the caller reads its clock and asks again. */
int64_t fb_breaker_acquire(fb_breaker *b, double now);

/* What fb_breaker_record() did with a result it accepted. */
enum { FB_RECORDED = 0, FB_CHANGED = 1 };

/* Records the outcome of a permitted call; duration is the call's length.
 * Returns FB_RECORDED, FB_CHANGED when the outcome changed the state (so
 * callers know without asking when to look at the history), FB_EINVAL for
 * a bad outcome or a permit never issued, or FB_ESTALE when the result is
 * dropped: the breaker has changed state since the permit was issued (it
 * describes a state that no longer holds; the HALF_OPEN slot it held died
 * with that state), or the permit was recorded already. A permit counts
 * once: a second record of any of the newest 64 of the state is dropped;
 * for older ones the state takes no more results than it issued permits.
 * Allocation-free for any number of permits out.
 *
 * now may be NaN ("not read"), and then duration too: where the record
 * needs neither (consecutive mode without slow_call_duration, CLOSED and
 * the outcome cannot open it, or DISABLED) it is made; anywhere else
 * FB_ENOW is returned and nothing changed (see fb_breaker_acquire). */
int fb_breaker_record(fb_breaker *b, int64_t permit, fb_outcome outcome,
                      double duration, double now);

/* Makes the breaker safe to use from several threads at once (on = 1), at
 * the cost of a spinlock per call; set it before the breaker is shared.
 * A breaker in shared memory is always locked (by its owner word): no
 * effect. */
void fb_breaker_set_shared(fb_breaker *b, int on);

/* Returns the bytes a breaker with cfg needs in shared memory (its lock,
 * the breaker and its window), or 0 when cfg is invalid. */
size_t fb_breaker_shared_size(const fb_breaker_config *cfg);

/* Builds a CLOSED breaker (state since now) in mem, size bytes aligned to
 * 8, overwriting them: offsets, no pointers, so any process mapping the
 * memory (MAP_SHARED before fork, a named zone) can use it at any address
 * with every fb_breaker_* call; NULL on a bad config, size or alignment.
 * fb_breaker_free() leaves it alone: unmap the memory when done. */
fb_breaker *fb_breaker_init_shared(void *mem, size_t size,
                                   const fb_breaker_config *cfg, double now);

/* Returns the breaker fb_breaker_init_shared() built in mem (mapped here
 * at any address), or NULL if mem holds none, of another version or
 * layout, or size is less than it was built in. */
fb_breaker *fb_breaker_attach_shared(void *mem, size_t size);

/* Returns the current state; it changes only in acquire, record and the
 * manual controls below. */
fb_breaker_state fb_breaker_state_of(const fb_breaker *b);

/* Returns "CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN" or "DISABLED". */
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
 * (0 when it would let one through now or in any other state but
 * FORCED_OPEN, where it is INFINITY). */
double fb_breaker_retry_after(const fb_breaker *b, double now);

/* Moves to FORCED_OPEN: every acquire is rejected until reset. */
void fb_breaker_force_open(fb_breaker *b, double now);

/* Moves to DISABLED: every acquire is allowed; outcomes are still measured
 * but never change the state, until reset. */
void fb_breaker_disable(fb_breaker *b, double now);

/* Returns to a fresh CLOSED state: window, counts and open-duration growth
 * cleared (lifetime totals kept); permits issued before are stale. */
void fb_breaker_reset(fb_breaker *b, double now);

/* A snapshot of a breaker's measurements. */
typedef struct fb_breaker_metrics {
  fb_breaker_state state;
  double failure_rate;  /* failed/buffered, or -1 below minimum_calls and
                           in consecutive mode */
  double slow_rate;     /* slow/buffered, or -1 likewise */
  uint64_t buffered;    /* calls in the window (consecutive mode: 0) */
  uint64_t failed;      /* failures in the window (consecutive: in a row) */
  uint64_t slow;        /* slow calls in the window */
  uint64_t calls;       /* lifetime: outcomes recorded (not stale ones) */
  uint64_t successes, failures, timeouts, ignored, slow_calls; /* lifetime;
                           failures and timeouts apart (both open it) */
  uint64_t rejected;    /* lifetime: acquires refused */
  uint64_t stale;       /* lifetime: results dropped (stale or replayed) */
  uint64_t half_open_calls; /* probes in flight now */
  double time_in_state; /* seconds since the current state began */
  double open_timeout;  /* the OPEN duration now in force */
} fb_breaker_metrics;

/* Fills m with the breaker's measurements at now (the time window slides
 * to now first). */
void fb_breaker_metrics_get(fb_breaker *b, double now, fb_breaker_metrics *m);
/* -------------------------------------------------------------- limiter */

/* An adaptive concurrency limiter (Netflix concurrency-limits): a call
 * may start while fewer calls are in flight than the limit, and every
 * finished call's latency (its RTT) and outcome move the limit by the
 * algorithm's update rule. The core reads no clock: the caller measures
 * the RTT and passes now. */
typedef struct fb_limiter fb_limiter;

typedef enum fb_limit_algorithm {
  FB_LIMIT_GRADIENT2 = 0, /* Gradient2Limit: the gradient of a long-term
                             average RTT over the latest RTT */
  FB_LIMIT_AIMD = 1,      /* AIMDLimit: +1 per sample while the limit is
                             used, times backoff_ratio on a drop */
  FB_LIMIT_VEGAS = 2      /* VegasLimit: TCP Vegas' queue estimate from
                             the no-load RTT */
} fb_limit_algorithm;

/* How a call ended, for the limit (concurrency-limits' Listener). */
typedef enum fb_limit_outcome {
  FB_LIMIT_SUCCESS = 0, /* its RTT is a sample */
  FB_LIMIT_DROPPED = 1, /* it timed out or was shed downstream: a loss
                           (AIMD and Vegas reduce the limit) */
  FB_LIMIT_IGNORED = 2  /* it failed before its RTT meant anything: no
                           sample, only its slot freed */
} fb_limit_outcome;

/* The largest max_limit. */
#define FB_LIMITER_MAX 1000000

typedef struct fb_limiter_config {
  fb_limit_algorithm algorithm;
  int initial_limit;    /* 20 */
  int min_limit;        /* gradient2, aimd: 20; vegas: 1 */
  int max_limit;        /* gradient2, aimd: 200; vegas: 1000; at most
                           FB_LIMITER_MAX */
  double smoothing;     /* gradient2: 0.2; vegas: 1; in (0, 1] */
  /* gradient2 */
  double queue_size;    /* growth allowed while latency holds; 4, >= 0 */
  double rtt_tolerance; /* latency growth tolerated before the limit
                           shrinks; 1.5, >= 1 */
  int long_window;      /* samples of the long-term RTT average; 600 */
  /* aimd */
  double backoff_ratio; /* the limit's factor on a drop; 0.9, [0.5, 1) */
  double timeout;       /* seconds; a longer RTT counts as a drop; 5 */
  /* vegas */
  double alpha;         /* queue below alpha * log10(limit): grow; 3 */
  double beta;          /* queue above beta * log10(limit): shrink; 6 */
  int probe_multiplier; /* re-probe the no-load RTT every
                           probe_multiplier * limit samples (jittered by
                           0.5..1); 30 */
  uint64_t seed;        /* vegas: the probe jitter's generator; 0 */
  /* The sample window (concurrency-limits' WindowedLimit): samples are
   * gathered for min(max(2 * the window's least RTT, min_window),
   * max_window) seconds, and a window of window_size or more feeds the
   * algorithm one sample: its mean RTT, its most calls in flight and
   * whether any call dropped. */
  double min_window;    /* seconds; 1 (0: no window, every sample feeds
                           the algorithm at once) */
  double max_window;    /* seconds, >= min_window; 1 */
  int window_size;      /* samples a window needs to count; 10 */
  double min_rtt_threshold; /* seconds; shorter RTTs are no sample
                               (they time nothing real); 0.0001 */
  uint32_t magic;       /* private: set by fb_limiter_config_init */
} fb_limiter_config;

/* Fills cfg with algorithm's defaults (those of concurrency-limits). */
void fb_limiter_config_init(fb_limiter_config *cfg,
                            fb_limit_algorithm algorithm);

/* Returns 0 if cfg is valid, else FB_EINVAL and the offending field's name
 * in *field (when field is not NULL). */
int fb_limiter_config_check(const fb_limiter_config *cfg, const char **field);

/* Creates a limiter at initial_limit (cfg NULL: gradient2's defaults);
 * NULL on a bad config or no memory. */
fb_limiter *fb_limiter_new(const fb_limiter_config *cfg);

/* Frees the limiter. */
void fb_limiter_free(fb_limiter *l);

/* Asks to start a call: returns a permit (>= 1: the calls in flight with
 * this one, which its release needs) when fewer than the limit are in
 * flight, else FB_ELIMIT. O(1), no allocation. */
int64_t fb_limiter_acquire(fb_limiter *l);

/* What fb_limiter_release() did. */
enum { FB_LIMIT_SAME = 0, FB_LIMIT_CHANGED = 1 };

/* Ends the call permit was given for: rtt is its latency in seconds (>= 0),
 * now the time it ended (it closes sample windows and stamps a change of
 * the limit; any number when min_window is 0). Returns
 * FB_LIMIT_CHANGED when the limit changed (see fb_limiter_change),
 * FB_LIMIT_SAME, or FB_EINVAL (nothing changed) for a bad outcome, a
 * negative or NaN rtt, a NaN now with a window, a permit out of
 * 1..max_limit, or a release with no call in flight. O(1), no
 * allocation. */
int fb_limiter_release(fb_limiter *l, int64_t permit, fb_limit_outcome outcome,
                       double rtt, double now);

/* Makes the limiter safe to use from several threads at once (on = 1), at
 * the cost of a spinlock per call; set it before it is shared. */
void fb_limiter_set_shared(fb_limiter *l, int on);

/* Returns the limit now in force (in flight may exceed it right after it
 * shrank: no call is cut short). */
int fb_limiter_limit(const fb_limiter *l);

/* Returns the calls in flight. */
int fb_limiter_inflight(const fb_limiter *l);

/* Returns "gradient2", "aimd" or "vegas". */
const char *fb_limiter_algorithm_name(fb_limit_algorithm a);

/* Returns how many times the limit changed since creation. */
uint64_t fb_limiter_changes(const fb_limiter *l);

/* Reads back the n-th change of the limit (0-based, one of the last
 * FB_LIMITER_HISTORY); returns 0, or FB_ENOENT if it is no longer kept. */
#define FB_LIMITER_HISTORY 16
int fb_limiter_change(const fb_limiter *l, uint64_t n, int *from, int *to,
                      double *at);

/* A snapshot of a limiter's measurements. */
typedef struct fb_limiter_metrics {
  int limit;            /* the limit in force: floor(estimate) */
  double estimate;      /* the algorithm's estimate behind it */
  int inflight;
  double rtt;           /* the latest RTT sample (0: none yet) */
  double rtt_noload;    /* gradient2: the long-term average; vegas: the
                           no-load RTT; aimd: 0 */
  uint64_t successes, dropped, ignored; /* lifetime, by outcome */
  uint64_t rejected;    /* lifetime: acquires refused */
  uint64_t changes;     /* lifetime: changes of the limit */
} fb_limiter_metrics;

/* Fills m with the limiter's measurements. */
void fb_limiter_metrics_get(fb_limiter *l, fb_limiter_metrics *m);

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
  uint32_t magic;         /* private: set by fb_runtime_config_init */
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

/* Returns the runtime's clock in seconds: what to pass as "now". Virtual
 * time from 0; else the host's clock (fb_runtime_set_clock) or
 * fb_monotonic_now(). */
double fb_runtime_now(const fb_runtime *rt);

/* Returns CLOCK_MONOTONIC in seconds: the real clock of every runtime
 * without a host clock, one time base for every process on the machine
 * (nginx workers compare each other's times in shared memory). */
double fb_monotonic_now(void);

/* Makes now(data) the runtime's real clock, for Lua and the runtime's
 * timers alike (NULL: back to fb_monotonic_now()); it must not go
 * backwards, count seconds at the real rate (the runtime's libuv timers
 * wait real time), and be cheap: every breaker decision and resume reads
 * it. Set it before anything reads the clock: times already taken stay on
 * the old base. FB_EINVAL on a virtual-time runtime, whose clock is its
 * own. */
int fb_runtime_set_clock(fb_runtime *rt, double (*now)(void *data),
                         void *data);

/* The three below return the object Lua exported as name, or NULL (see
 * last error). The pointer stays valid until fb_runtime_free(), whatever
 * Lua does with the object afterwards. */

/* Returns the breaker Lua exported as name, or NULL (see last error). */
fb_breaker *fb_runtime_breaker(fb_runtime *rt, const char *name);

/* Returns the balancer Lua exported as name, or NULL (see last error). */
fb_balancer *fb_runtime_balancer(fb_runtime *rt, const char *name);

/* Returns the registry Lua exported as name, or NULL (see last error). */
fb_registry *fb_runtime_registry(fb_runtime *rt, const char *name);

/* Returns the limiter Lua exported as name, or NULL (see last error). */
fb_limiter *fb_runtime_limiter(fb_runtime *rt, const char *name);

/* Returns the message of the runtime's last error, or "" if none. */
const char *fb_runtime_last_error(const fb_runtime *rt);

#ifdef __cplusplus
}
#endif
#endif /* FUSEBOX_H */
