/*
 * registry.h -- the service registry's layout, shared with the balancers.
 *
 * Public callers see only the opaque types in fusebox.h; balancer.c reads
 * these structs directly so a pick costs no function calls.
 */
#ifndef FB_REGISTRY_H
#define FB_REGISTRY_H

#include "fusebox.h"

#include <stdatomic.h>

/* Why an instance is not healthy (bits of fb_instance.down). */
enum { FB_DOWN_MARKED = 1, /* fb_registry_mark(): an operator's decision */
       FB_DOWN_FAILING = 2 /* fb_instance_set_healthy(): a health check */ };

/* About 120 bytes plus the host; the zone, rarely set, is one pointer.
 * What a pick and its done() read and write comes first, together: with a
 * random pick over thousands of instances each line touched is a miss. */
struct fb_instance {
  fb_service *service;
  uint64_t id;                 /* generation << 32 | slot */
  uint32_t inflight;           /* picks not yet reported done */
  uint32_t weight;             /* 1..FB_WEIGHT_MAX */
  double latency;              /* peak EWMA of reported latencies; 0: none */
  double latency_at;           /* when latency was last updated */
  uint64_t successes, failures;
  uint64_t picks;              /* balancer picks (metrics) */
  _Atomic int64_t *load;       /* NULL, or the in-flight count of every
                                  process (fb_instance_share_load); beside
                                  inflight, which the balancers read with it */
  uint8_t live;
  uint8_t down;                /* FB_DOWN_* bits; 0: healthy */
  uint8_t excluded;            /* scratch of fb_balancer_pick_excluding();
                                  0 outside it */
  uint16_t port;
  uint32_t hash;
  uint32_t pos;                /* index in service->members */
  double ejected_until;        /* fb_instance_eject(); not healthy while
                                  now < ejected_until */
  double last_heartbeat;
  fb_instance *hnext;          /* chain in the registry's instance table */
  fb_instance *older, *newer;  /* heartbeat order, on the registry's live
                                  list or (expired) on its expired list */
  char *zone;                  /* NULL: none */
  char host[];
};

/* The calls in flight a balancer weighs: this process's, or, once the
 * instance shares a counter with other processes (nginx workers), all of
 * theirs. The only reads of the load in the balancers go through here. */
static inline uint32_t fb__load(const fb_instance *i) {
  if (__builtin_expect(i->load == NULL, 1))
    return i->inflight;
  int64_t n = atomic_load_explicit(i->load, memory_order_relaxed);
  return n <= 0 ? 0 : n >= UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* Adds d to the shared count, if any, next to i->inflight's own change. */
static inline void fb__load_add(fb_instance *i, int64_t d) {
  if (__builtin_expect(i->load != NULL, 0))
    atomic_fetch_add_explicit(i->load, d, memory_order_relaxed);
}

struct fb_service {
  fb_service *hnext;           /* chain in the registry's service table */
  fb_registry *registry;
  fb_instance **members;       /* registration order, live or expired; a
                                  removed one leaves NULL until compacted */
  fb_instance **live;          /* live members in order; rebuilt when dirty */
  uint32_t nmembers, members_cap;
  uint32_t nholes;             /* NULL entries in members */
  fb_instance **healthy;       /* live and not down, in order; same rebuild */
  uint32_t nlive, live_cap;
  uint32_t nhealthy;
  uint32_t id;                 /* dense: index in registry->services */
  uint32_t hash;
  int dirty;                   /* live[] is out of date */
  double eject_ends;           /* the earliest ejection of a live member
                                  still running at the last rebuild;
                                  INFINITY: none (healthy[] changes then) */
  uint64_t version;            /* bumped when live, healthy or weights change */
  uint64_t index;              /* registry index of its last change */
  char name[];
};

/* v, or (v NULL: an empty service never had an array) an empty array, so
 * that a query's *out is NULL only when it failed. */
static inline fb_instance *const *fb__list(fb_instance **v) {
  static fb_instance *const none[1] = {NULL};
  return v ? v : none;
}

/* The start of struct fb_registry, which a pick and the Lua binding read
 * without a call. */
typedef struct fb_registry_head {
  double expired_at;          /* the now of the last expiry pass: another at
                                 the same now has nothing to do; NaN when a
                                 heartbeat (of any time) or a backend may
                                 have changed that */
  fb_instance **slots;        /* by id's low 32 bits; NULL when free */
  uint32_t *slot_gen;         /* current generation of each slot */
  uint32_t nslots;
  uint64_t services_removed;  /* fb_registry_services_removed() */
} fb_registry_head;

static inline const fb_registry_head *fb__registry_head(const fb_registry *r) {
  return (const fb_registry_head *)(const void *)r;
}

/* fb_registry_instance() without a call. */
static inline fb_instance *fb__registry_instance(const fb_registry *r,
                                                 uint64_t id) {
  const fb_registry_head *h = fb__registry_head(r);
  uint32_t slot = (uint32_t)id;
  if (slot >= h->nslots || h->slot_gen[slot] != (id >> 32))
    return NULL;
  return h->slots[slot];
}

/* 1 when fb_service_refresh(s, now) has nothing to do: no expiry pass due
 * (a loop-cached clock gives a run of picks one now), no ejection ended,
 * nothing changed since the last rebuild. */
static inline int fb__service_fresh(const fb_service *s, double now) {
  return now == fb__registry_head(s->registry)->expired_at &&
         now < s->eject_ends && !s->dirty;
}

/* Expires every instance whose heartbeat is too old at now and reaps the
 * expired ones past reap_after. O(expired + reaped). */
void fb_registry_expire(fb_registry *r, double now);

/* Brings s->live and s->healthy up to date at now; 0 or FB_ENOMEM. */
int fb_service_refresh(fb_service *s, double now);

/* Returns how many services the registry has (ids are 0..n-1). */
uint32_t fb_registry_nservices(const fb_registry *r);

/* Returns the service with id (0 <= id < fb_registry_nservices(r)). */
fb_service *fb_registry_service_at(const fb_registry *r, uint32_t id);

#endif
