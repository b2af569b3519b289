/*
 * registry.c -- services, their instances, heartbeats and expiry.
 *
 * Semantics follow the reference design: register() adds host:port or
 * refreshes its heartbeat; an instance is live while
 * now - last_heartbeat < heartbeat_timeout; discover lists live instances
 * in registration order. An expired instance keeps its place, so a late
 * heartbeat brings it back where it was -- for reap_after seconds: then it
 * is reaped (removed), so a registry whose instances come and go does not
 * grow without bound. max_services and max_instances bound it outright.
 * A service stays when its last instance goes (callers keep fb_service
 * pointers), unless remove_empty_services: then the empty ones are
 * removed when a new service needs the room -- only then, inside a
 * registration, where no caller is in the middle of using one.
 *
 * Costs: live instances sit on one list ordered by last heartbeat (a
 * heartbeat moves its instance to the newest end), so a heartbeat is O(1)
 * and expiry pops only what expires, whatever the registry's size; expired
 * instances move to a second list in the same order, from which reaping
 * pops only what is reaped. Removing a member leaves a hole in its
 * service's array, compacted once holes are half of it. Each
 * service keeps a compact array of its live members, rebuilt only after
 * membership changed, which is what a balancer indexes into.
 *
 * Instances are also reachable by id through a slot array: an id is
 * generation << 32 | slot, so a stale id (its instance deregistered) is
 * recognised in O(1) and never finds a newer instance in the same slot.
 * Ids stay below 2^53, so Lua numbers hold them exactly.
 */
#include "registry.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Instances in heartbeat order, oldest first. */
typedef struct inst_list {
  fb_instance *oldest, *newest;
} inst_list;

struct fb_registry {
  fb_registry_head head;       /* first: registry.h reads it */
  int refs;
  double heartbeat_timeout;
  double reap_after;
  uint32_t max_services, max_instances;
  int remove_empty;            /* remove_empty_services */
  fb_service **svc_table;      /* chained hash by name */
  uint32_t svc_buckets;
  fb_service **services;       /* by id */
  uint32_t nservices, services_cap;
  uint32_t nempty;             /* services with no member */
  uint64_t versions;           /* the last service version handed out */
  fb_instance **inst_table;    /* chained hash by (service, host, port) */
  size_t inst_buckets, ninstances;
  inst_list live;              /* live instances */
  inst_list expired;           /* expired ones, not yet reaped */
  uint32_t *free_slots;        /* stack of reusable slots (head.slots) */
  uint32_t slots_cap, nfree;
  fb_registry_listener listener;
  void *listener_ud;
  uint64_t index;              /* bumped by every change a reader sees */
  uint64_t expirations, reaped;
  const char *full_limit;      /* the limit the last FB_EFULL hit */
  uint32_t full_value;
  const fb_registry_backend *backend; /* NULL: the registry is the store */
  void *backend_data;
};

/* A slot whose generation reaches this is retired, not reused. */
#define GEN_MAX ((1u << 21) - 1)

#define NOTIFY(r, ev, i, now)                                                 \
  ((r)->listener ? (r)->listener((r)->listener_ud, (ev), (i), (now)) : (void)0)

/* FNV-1a: short keys, no allocation, good enough spread for chaining. */
static uint32_t hash_bytes(uint32_t h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

static uint32_t hash_str(const char *s) {
  return hash_bytes(2166136261u, s, strlen(s));
}

static uint32_t hash_instance(const fb_service *s, const char *host, int port) {
  uint32_t h = hash_bytes(s->hash, host, strlen(host));
  unsigned char p[2] = {(unsigned char)(port >> 8), (unsigned char)port};
  return hash_bytes(h, (const char *)p, 2);
}

void fb_registry_config_init(fb_registry_config *cfg) {
  cfg->heartbeat_timeout = 30.0;
  cfg->reap_after = 0; /* 3 * heartbeat_timeout */
  cfg->max_services = FB_REGISTRY_MAX_SERVICES;
  cfg->max_instances = FB_REGISTRY_MAX_INSTANCES;
  cfg->remove_empty_services = 0;
  cfg->magic = FB_CONFIG_MAGIC;
}

fb_registry *fb_registry_new(const fb_registry_config *cfg) {
  fb_registry_config def;
  if (!cfg) {
    fb_registry_config_init(&def);
    cfg = &def;
  }
  /* Written so that NaN fails every test. */
  if (cfg->magic != FB_CONFIG_MAGIC || !(cfg->heartbeat_timeout > 0) ||
      !(cfg->reap_after >= 0) ||
      cfg->max_services < 1 || cfg->max_instances < 1)
    return NULL;
  fb_registry *r = fb__calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->refs = 1;
  r->heartbeat_timeout = cfg->heartbeat_timeout;
  r->head.expired_at = NAN;
  r->reap_after =
      cfg->reap_after > 0 ? cfg->reap_after : 3 * cfg->heartbeat_timeout;
  r->max_services = cfg->max_services;
  r->max_instances = cfg->max_instances;
  r->remove_empty = cfg->remove_empty_services != 0;
  return r;
}

fb_registry *fb_registry_retain(fb_registry *r) {
  if (r)
    r->refs++;
  return r;
}

void fb_registry_release(fb_registry *r) {
  if (!r || --r->refs > 0)
    return;
  for (uint32_t i = 0; i < r->nservices; i++) {
    fb_service *s = r->services[i];
    for (uint32_t j = 0; j < s->nmembers; j++) {
      if (!s->members[j])
        continue; /* a hole */
      fb__free(s->members[j]->zone);
      fb__free(s->members[j]);
    }
    fb__free(s->members);
    fb__free(s->live);
    fb__free(s->healthy);
    fb__free(s);
  }
  fb__free(r->services);
  fb__free(r->svc_table);
  fb__free(r->inst_table);
  fb__free(r->head.slots);
  fb__free(r->head.slot_gen);
  fb__free(r->free_slots);
  fb__free(r);
}

double fb_registry_heartbeat_timeout(const fb_registry *r) {
  return r ? r->heartbeat_timeout : 0;
}

double fb_registry_reap_after(const fb_registry *r) {
  return r ? r->reap_after : 0;
}

size_t fb_registry_ninstances(const fb_registry *r) {
  return r ? r->ninstances : 0;
}

/* Remembers which limit refused a change, for fb_registry_strerror(). */
static int full(fb_registry *r, const char *limit, uint32_t value) {
  r->full_limit = limit;
  r->full_value = value;
  return FB_EFULL;
}

char *fb_registry_strerror(const fb_registry *r, int err, char *buf,
                           size_t len) {
  if (len == 0)
    return buf;
  if (err == FB_EFULL && r && r->full_limit)
    snprintf(buf, len, "registry full: %s (%u) reached", r->full_limit,
             (unsigned)r->full_value);
  else
    snprintf(buf, len, "%s", fb_strerror(err));
  return buf;
}

uint32_t fb_registry_nservices(const fb_registry *r) { return r->nservices; }

fb_service *fb_registry_service_at(const fb_registry *r, uint32_t id) {
  return r->services[id];
}

/* ---------------------------------------------------------------- lists */

static void list_unlink(inst_list *l, fb_instance *i) {
  if (i->older)
    i->older->newer = i->newer;
  else
    l->oldest = i->newer;
  if (i->newer)
    i->newer->older = i->older;
  else
    l->newest = i->older;
  i->older = i->newer = NULL;
}

static void list_append(inst_list *l, fb_instance *i) {
  i->older = l->newest;
  i->newer = NULL;
  if (l->newest)
    l->newest->newer = i;
  else
    l->oldest = i;
  l->newest = i;
}

/* ------------------------------------------------------------- services */

static int svc_grow(fb_registry *r) {
  uint32_t n = r->svc_buckets ? r->svc_buckets * 2 : 16;
  fb_service **t = fb__calloc(n, sizeof *t);
  if (!t)
    return FB_ENOMEM;
  for (uint32_t i = 0; i < r->nservices; i++) {
    fb_service *s = r->services[i];
    s->hnext = t[s->hash & (n - 1)];
    t[s->hash & (n - 1)] = s;
  }
  fb__free(r->svc_table);
  r->svc_table = t;
  r->svc_buckets = n;
  return 0;
}

static fb_service *svc_find(const fb_registry *r, const char *name,
                            uint32_t h) {
  if (!r->svc_buckets)
    return NULL;
  for (fb_service *s = r->svc_table[h & (r->svc_buckets - 1)]; s; s = s->hnext)
    if (s->hash == h && strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

fb_service *fb_registry_service(fb_registry *r, const char *name) {
  if (!r || !name)
    return NULL;
  return svc_find(r, name, hash_str(name));
}

static fb_service *svc_create(fb_registry *r, const char *name, uint32_t h) {
  if (r->nservices >= r->svc_buckets && svc_grow(r) < 0)
    return NULL;
  if (r->nservices == r->services_cap) {
    uint32_t cap = r->services_cap ? r->services_cap * 2 : 16;
    fb_service **v = fb__realloc(r->services, cap * sizeof *v);
    if (!v)
      return NULL;
    r->services = v;
    r->services_cap = cap;
  }
  size_t len = strlen(name);
  fb_service *s = fb__calloc(1, sizeof *s + len + 1);
  if (!s)
    return NULL;
  memcpy(s->name, name, len + 1);
  s->registry = r;
  s->hash = h;
  s->version = ++r->versions;
  s->eject_ends = INFINITY;
  s->id = r->nservices;
  r->nempty++; /* until members_push() */
  r->services[r->nservices++] = s;
  s->hnext = r->svc_table[h & (r->svc_buckets - 1)];
  r->svc_table[h & (r->svc_buckets - 1)] = s;
  return s;
}

/* Takes s out of the table and the id array (the last service moves into
 * its id: balancer slots are keyed on id, and versions are never shared,
 * so the slot's table is rebuilt for it) and frees it. s has no member. */
static void svc_remove(fb_registry *r, fb_service *s) {
  fb_service **p = &r->svc_table[s->hash & (r->svc_buckets - 1)];
  while (*p != s)
    p = &(*p)->hnext;
  *p = s->hnext;
  fb_service *last = r->services[--r->nservices];
  r->services[s->id] = last;
  last->id = s->id;
  r->nempty--;
  r->head.services_removed++;
  fb__free(s->members);
  fb__free(s->live);
  fb__free(s->healthy);
  fb__free(s);
}

/* Removes every service with no member; O(services), done only when a
 * new service would pass max_services and one at least is empty. */
static void svc_remove_empty(fb_registry *r) {
  for (uint32_t k = r->nservices; k-- > 0 && r->nempty > 0;)
    if (r->services[k]->nmembers == 0)
      svc_remove(r, r->services[k]); /* what moves to k was checked */
}

uint64_t fb_registry_services_removed(const fb_registry *r) {
  return r ? r->head.services_removed : 0;
}

const char *fb_service_name(const fb_service *s) { return s ? s->name : ""; }

uint64_t fb_service_version(const fb_service *s) { return s->version; }

/* Balancer tables are keyed on the version, so every change a balancer
 * must see goes through here. */
static void svc_changed(fb_service *s) {
  s->dirty = 1;
  s->version = ++s->registry->versions;
  s->index = ++s->registry->index; /* blocking queries wait on this */
}

/* ------------------------------------------------------------ instances */

#define INST_BUCKETS_MIN 64

/* Rehashes the instance table into n buckets (a power of two). */
static int inst_rehash(fb_registry *r, size_t n) {
  fb_instance **t = fb__calloc(n, sizeof *t);
  if (!t)
    return FB_ENOMEM;
  for (size_t b = 0; b < r->inst_buckets; b++) {
    fb_instance *i = r->inst_table[b];
    while (i) {
      fb_instance *next = i->hnext;
      i->hnext = t[i->hash & (n - 1)];
      t[i->hash & (n - 1)] = i;
      i = next;
    }
  }
  fb__free(r->inst_table);
  r->inst_table = t;
  r->inst_buckets = n;
  return 0;
}

static int inst_grow(fb_registry *r) {
  return inst_rehash(r, r->inst_buckets ? r->inst_buckets * 2
                                        : INST_BUCKETS_MIN);
}

/* After reaping: a table four times larger than needed halves until it
 * is not (if memory for the smaller one is short, it stays as it is). */
static void inst_shrink(fb_registry *r) {
  size_t n = r->inst_buckets;
  while (n > INST_BUCKETS_MIN && r->ninstances < n / 4)
    n /= 2;
  if (n != r->inst_buckets)
    inst_rehash(r, n);
}

static fb_instance **inst_slot(fb_registry *r, const fb_service *s,
                               const char *host, int port, uint32_t h) {
  fb_instance **p = &r->inst_table[h & (r->inst_buckets - 1)];
  for (; *p; p = &(*p)->hnext) {
    fb_instance *i = *p;
    if (i->hash == h && i->service == s && i->port == port &&
        strcmp(i->host, host) == 0)
      return p;
  }
  return p;
}

/* ------------------------------------------------------------------ ids */

static int slots_reserve(fb_registry *r) {
  if (r->nfree > 0 || r->head.nslots < r->slots_cap)
    return 0;
  uint32_t cap = r->slots_cap ? r->slots_cap * 2 : 64;
  fb_instance **v = fb__realloc(r->head.slots, cap * sizeof *v);
  if (!v)
    return FB_ENOMEM;
  r->head.slots = v;
  uint32_t *g = fb__realloc(r->head.slot_gen, cap * sizeof *g);
  if (!g)
    return FB_ENOMEM;
  r->head.slot_gen = g;
  uint32_t *f = fb__realloc(r->free_slots, cap * sizeof *f);
  if (!f)
    return FB_ENOMEM;
  r->free_slots = f;
  r->slots_cap = cap;
  return 0;
}

/* Needs slots_reserve() first; cannot fail. */
static uint64_t slot_take(fb_registry *r, fb_instance *i) {
  uint32_t slot;
  if (r->nfree > 0) {
    slot = r->free_slots[--r->nfree];
  } else {
    slot = r->head.nslots++;
    r->head.slot_gen[slot] = 1;
  }
  r->head.slots[slot] = i;
  return (uint64_t)r->head.slot_gen[slot] << 32 | slot;
}

static void slot_release(fb_registry *r, uint64_t id) {
  uint32_t slot = (uint32_t)id;
  r->head.slots[slot] = NULL;
  if (++r->head.slot_gen[slot] <= GEN_MAX)
    r->free_slots[r->nfree++] = slot;
}

fb_instance *fb_registry_instance(const fb_registry *r, uint64_t id) {
  return r ? fb__registry_instance(r, id) : NULL;
}

/* -------------------------------------------------------------- members */

static int members_push(fb_service *s, fb_instance *i) {
  if (s->nmembers == s->members_cap) {
    uint32_t cap = s->members_cap ? s->members_cap * 2 : 4;
    fb_instance **v = fb__realloc(s->members, cap * sizeof *v);
    if (!v)
      return FB_ENOMEM;
    s->members = v;
    s->members_cap = cap;
  }
  if (s->nmembers == 0)
    s->registry->nempty--;
  i->pos = s->nmembers;
  s->members[s->nmembers++] = i;
  return 0;
}

/* Closes the holes, keeping the order; O(members), done once holes are
 * half of them, so a removal costs O(1) amortised. */
static void members_compact(fb_service *s) {
  uint32_t n = 0;
  for (uint32_t j = 0; j < s->nmembers; j++) {
    fb_instance *i = s->members[j];
    if (!i)
      continue;
    i->pos = n;
    s->members[n++] = i;
  }
  s->nmembers = n;
  s->nholes = 0;
  if (s->members_cap > 16 && n < s->members_cap / 4) {
    uint32_t cap = n * 2 > 4 ? n * 2 : 4;
    fb_instance **v = fb__realloc(s->members, cap * sizeof *v);
    if (v) { /* else it keeps its larger array */
      s->members = v;
      s->members_cap = cap;
    }
  }
}

static void members_remove(fb_service *s, fb_instance *i) {
  s->members[i->pos] = NULL;
  s->nholes++;
  while (s->nmembers > 0 && !s->members[s->nmembers - 1]) {
    s->nmembers--; /* holes at the end are no holes */
    s->nholes--;
  }
  if (s->nmembers == 0)
    s->registry->nempty++;
  if (s->nholes * 2 > s->nmembers)
    members_compact(s);
}

static int valid_key(const char *service, const char *host, int port) {
  return service && *service && host && *host && port >= 1 && port <= 65535;
}

/* A heartbeat at now: i moves to the newest end of the live list; a new
 * or returning instance changes the live membership of its service. */
static void touch(fb_registry *r, fb_instance *i, int added, double now) {
  i->last_heartbeat = now;
  r->head.expired_at = NAN;
  if (i->live) {
    list_unlink(&r->live, i);
  } else {
    if (!added)
      list_unlink(&r->expired, i);
    i->live = 1;
    svc_changed(i->service);
  }
  list_append(&r->live, i);
}

void fb_instance_opts_init(fb_instance_opts *o) {
  o->weight = 0;
  o->zone = NULL;
}

static int valid_opts(const fb_instance_opts *o) {
  return !o || (o->weight <= FB_WEIGHT_MAX &&
                (!o->zone || (*o->zone && strlen(o->zone) <= FB_NAME_MAX)));
}

/* What a registration may add: names short enough that max_instances
 * bounds the memory. */
static int valid_names(const char *service, const char *host) {
  return strlen(service) <= FB_NAME_MAX && strlen(host) <= FB_NAME_MAX;
}

/* Copies the zone o sets on i (i NULL: a new instance) into *zone, NULL
 * if it sets none or the same; done before anything changes, so running
 * out of memory here leaves the registry as it was. */
static int opts_zone(const fb_instance *i, const fb_instance_opts *o,
                     char **zone) {
  *zone = NULL;
  if (!o || !o->zone || (i && i->zone && strcmp(i->zone, o->zone) == 0))
    return 0;
  return (*zone = fb__strdup(o->zone)) ? 0 : FB_ENOMEM;
}

/* Applies the options (weight 0 and no new zone keep what is there);
 * cannot fail. */
static void apply_opts(fb_instance *i, const fb_instance_opts *o, char *zone) {
  if (zone) {
    fb__free(i->zone);
    i->zone = zone;
  }
  if (o && o->weight)
    fb_instance_set_weight(i, o->weight);
}

static fb_instance *inst_create(fb_registry *r, fb_service *s,
                                const char *host, int port, uint32_t h) {
  size_t len = strlen(host);
  fb_instance *i = fb__calloc(1, sizeof *i + len + 1);
  if (!i)
    return NULL;
  memcpy(i->host, host, len + 1);
  i->service = s;
  i->port = (uint16_t)port;
  i->hash = h;
  i->weight = 1;
  i->ejected_until = -INFINITY;
  if (slots_reserve(r) < 0 || members_push(s, i) < 0) {
    fb__free(i);
    return NULL;
  }
  i->id = slot_take(r, i);
  return i;
}

void fb_registry_set_backend(fb_registry *r, const fb_registry_backend *ops,
                             void *data) {
  r->backend = ops;
  r->backend_data = ops ? data : NULL;
  r->head.expired_at = NAN;
}

enum { TELL_REGISTER, TELL_HEARTBEAT, TELL_DEREGISTER };

/* The cache took the change (rc >= 0; also means r is not NULL): hand it
 * on to the store. */
static int tell(fb_registry *r, int what, int rc, const char *service,
                const char *host, int port) {
  if (rc < 0 || !r->backend)
    return rc;
  const fb_registry_backend *b = r->backend;
  int (*op)(void *, const char *, const char *, int) =
      what == TELL_REGISTER    ? b->register_instance
      : what == TELL_HEARTBEAT ? b->heartbeat
                               : b->deregister;
  int err = op(r->backend_data, service, host, port);
  return err < 0 ? err : rc;
}

/* Adds host:port to service (creating the service if need be) within the
 * limits; the new instance is in no list yet. On error nothing changed,
 * except that a service created on the way stays (empty), and that empty
 * services may have been removed to make room. */
static int inst_add(fb_registry *r, fb_service *s, const char *service,
                    uint32_t sh, const char *host, int port,
                    fb_instance **out) {
  if (r->ninstances >= r->max_instances)
    return full(r, "max_instances", r->max_instances);
  if (!s) {
    if (r->nservices >= r->max_services && r->remove_empty && r->nempty > 0)
      svc_remove_empty(r);
    if (r->nservices >= r->max_services)
      return full(r, "max_services", r->max_services);
    if (!(s = svc_create(r, service, sh)))
      return FB_ENOMEM;
  }
  if (r->ninstances >= r->inst_buckets && inst_grow(r) < 0)
    return FB_ENOMEM;
  uint32_t h = hash_instance(s, host, port);
  fb_instance **slot = inst_slot(r, s, host, port, h);
  if (!(*slot = inst_create(r, s, host, port, h)))
    return FB_ENOMEM;
  r->ninstances++;
  *out = *slot;
  return 0;
}

/* Adds or refreshes host:port in the registry itself (the cache, when a
 * backend holds the truth), applying opts. */
static int cache_put(fb_registry *r, const char *service, const char *host,
                     int port, const fb_instance_opts *opts, double now) {
  if (!r || !valid_key(service, host, port) || !valid_names(service, host) ||
      !valid_opts(opts) || isnan(now))
    return FB_EINVAL;
  /* First, so listeners hear of an expiry before a return, and what is
   * reaped makes room. */
  fb_registry_expire(r, now);
  uint32_t sh = hash_str(service);
  fb_service *s = svc_find(r, service, sh);
  fb_instance *i = s && r->inst_buckets
                       ? *inst_slot(r, s, host, port,
                                    hash_instance(s, host, port))
                       : NULL;
  char *zone;
  int rc = opts_zone(i, opts, &zone);
  int added = !i;
  if (rc == 0 && added)
    rc = inst_add(r, s, service, sh, host, port, &i);
  if (rc < 0) {
    fb__free(zone);
    return rc;
  }
  int returned = !added && !i->live;
  apply_opts(i, opts, zone);
  touch(r, i, added, now);
  if (added)
    NOTIFY(r, FB_REG_ADDED, i, now);
  else if (returned)
    NOTIFY(r, FB_REG_RETURNED, i, now);
  return added ? FB_ADDED : FB_REFRESHED;
}

int fb_registry_register_with(fb_registry *r, const char *service,
                              const char *host, int port,
                              const fb_instance_opts *opts, double now) {
  int rc = cache_put(r, service, host, port, opts, now);
  return tell(r, TELL_REGISTER, rc, service, host, port);
}

int fb_registry_register(fb_registry *r, const char *service, const char *host,
                         int port, double now) {
  return fb_registry_register_with(r, service, host, port, NULL, now);
}

int fb_registry_cache_put(fb_registry *r, const char *service,
                          const char *host, int port, double now) {
  return cache_put(r, service, host, port, NULL, now);
}

int fb_registry_cache_put_with(fb_registry *r, const char *service,
                               const char *host, int port,
                               const fb_instance_opts *opts, double now) {
  return cache_put(r, service, host, port, opts, now);
}

int fb_registry_heartbeat(fb_registry *r, const char *service,
                          const char *host, int port, double now) {
  int rc = fb_registry_cache_put(r, service, host, port, now);
  return tell(r, TELL_HEARTBEAT, rc, service, host, port);
}

fb_instance *fb_registry_find(fb_registry *r, const char *service,
                              const char *host, int port) {
  if (!r || !valid_key(service, host, port) || !r->inst_buckets)
    return NULL;
  fb_service *s = fb_registry_service(r, service);
  if (!s)
    return NULL;
  return *inst_slot(r, s, host, port, hash_instance(s, host, port));
}

int fb_registry_deregister(fb_registry *r, const char *service,
                           const char *host, int port) {
  int rc = fb_registry_cache_delete(r, service, host, port);
  return tell(r, TELL_DEREGISTER, rc, service, host, port);
}

/* Takes i out of the table, its list, its service and its slot; the
 * caller notifies and then frees it. */
static void inst_remove(fb_registry *r, fb_instance *i) {
  fb_instance **slot = inst_slot(r, i->service, i->host, i->port, i->hash);
  *slot = i->hnext;
  list_unlink(i->live ? &r->live : &r->expired, i);
  members_remove(i->service, i);
  slot_release(r, i->id);
  r->ninstances--;
}

static void inst_free(fb_instance *i) {
  fb__free(i->zone);
  fb__free(i);
}

int fb_registry_cache_delete(fb_registry *r, const char *service,
                             const char *host, int port) {
  if (!r || !valid_key(service, host, port))
    return FB_EINVAL;
  fb_instance *i = fb_registry_find(r, service, host, port);
  if (!i)
    return 0;
  inst_remove(r, i);
  svc_changed(i->service);
  NOTIFY(r, FB_REG_REMOVED, i, NAN);
  inst_free(i);
  return 1;
}

int fb_registry_mark(fb_registry *r, const char *service, const char *host,
                     int port, int up) {
  if (!r || !valid_key(service, host, port))
    return FB_EINVAL;
  fb_instance *i = fb_registry_find(r, service, host, port);
  if (!i)
    return 0;
  uint8_t down = up ? i->down & ~FB_DOWN_MARKED : i->down | FB_DOWN_MARKED;
  if (down != i->down) {
    i->down = down;
    svc_changed(i->service);
  }
  return 1;
}

void fb_registry_expire(fb_registry *r, double now) {
  fb_instance *i;
  if (r->backend || isnan(now)) /* the store expires instances (etcd:
                                   leases); NaN is no time to judge by */
    return;
  r->head.expired_at = now; /* before the listeners run: one may heartbeat */
  /* Written as !(age < timeout) so the boundary matches the reference
   * exactly: at now - last == timeout the instance is expired. */
  while ((i = r->live.oldest) &&
         !(now - i->last_heartbeat < r->heartbeat_timeout)) {
    list_unlink(&r->live, i);
    list_append(&r->expired, i); /* keeps heartbeat order */
    i->live = 0;
    r->expirations++;
    svc_changed(i->service);
    NOTIFY(r, FB_REG_EXPIRED, i, now);
  }
  /* Reaped once expired for reap_after: its service's live members (and
   * so the tables built from them) are unchanged, as is the index. */
  double grace = r->heartbeat_timeout + r->reap_after;
  uint64_t before = r->reaped;
  while ((i = r->expired.oldest) && !(now - i->last_heartbeat < grace)) {
    inst_remove(r, i);
    r->reaped++;
    NOTIFY(r, FB_REG_REAPED, i, now);
    inst_free(i);
  }
  if (r->reaped != before)
    inst_shrink(r);
}

/* Gives live and healthy room for n; live_cap is never more than either
 * array holds, even when one of the two reallocations fails. */
static int resize_live(fb_service *s, uint32_t n) {
  fb_instance **v = fb__realloc(s->live, n * sizeof *v);
  if (!v)
    return FB_ENOMEM;
  s->live = v;
  if (n < s->live_cap)
    s->live_cap = n;
  fb_instance **h = fb__realloc(s->healthy, n * sizeof *h);
  if (!h)
    return FB_ENOMEM;
  s->healthy = h;
  s->live_cap = n;
  return 0;
}

static int rebuild_live(fb_service *s, double now) {
  if (s->live_cap < s->nmembers && resize_live(s, s->nmembers) < 0)
    return FB_ENOMEM;
  if (s->live_cap > 16 && s->nmembers < s->live_cap / 4)
    resize_live(s, s->nmembers > 4 ? s->nmembers : 4); /* may stay larger */
  uint32_t n = 0, nh = 0;
  double ends = INFINITY;
  for (uint32_t j = 0; j < s->nmembers; j++) {
    fb_instance *i = s->members[j];
    if (!i || !i->live)
      continue;
    s->live[n++] = i;
    if (now < i->ejected_until) {
      if (i->ejected_until < ends)
        ends = i->ejected_until;
    } else if (!i->down) {
      s->healthy[nh++] = i;
    }
  }
  s->nlive = n;
  s->nhealthy = nh;
  s->eject_ends = ends;
  s->dirty = 0;
  return 0;
}

/* An ejection ends by the clock alone: the first refresh at or after its
 * end rebuilds healthy[] (and bumps the version, so tables follow). */
int fb_service_refresh(fb_service *s, double now) {
  if (now != s->registry->head.expired_at)
    fb_registry_expire(s->registry, now);
  if (now >= s->eject_ends)
    svc_changed(s);
  if (s->dirty)
    return rebuild_live(s, now);
  return 0;
}

size_t fb_service_live(fb_service *s, double now, fb_instance *const **out) {
  if (!s || fb_service_refresh(s, now) < 0) {
    *out = NULL;
    return 0;
  }
  *out = fb__list(s->live);
  return s->nlive;
}

size_t fb_service_healthy(fb_service *s, double now,
                          fb_instance *const **out) {
  if (!s || fb_service_refresh(s, now) < 0) {
    *out = NULL;
    return 0;
  }
  *out = fb__list(s->healthy);
  return s->nhealthy;
}

/* ------------------------------------------------------- instance data */

const char *fb_instance_host(const fb_instance *i) { return i ? i->host : ""; }
int fb_instance_port(const fb_instance *i) { return i ? i->port : 0; }
uint64_t fb_instance_id(const fb_instance *i) { return i ? i->id : 0; }
double fb_instance_last_heartbeat(const fb_instance *i) {
  return i ? i->last_heartbeat : 0;
}

void fb_registry_set_listener(fb_registry *r, fb_registry_listener fn,
                              void *ud) {
  r->listener = fn;
  r->listener_ud = ud;
}

fb_service *fb_instance_service(const fb_instance *i) { return i->service; }
uint32_t fb_instance_weight(const fb_instance *i) { return i->weight; }
const char *fb_instance_zone(const fb_instance *i) { return i->zone; }
int fb_instance_healthy(const fb_instance *i) { return i->down == 0; }
uint32_t fb_instance_inflight(const fb_instance *i) { return i->inflight; }
uint64_t fb_instance_successes(const fb_instance *i) { return i->successes; }
uint64_t fb_instance_failures(const fb_instance *i) { return i->failures; }
double fb_instance_latency(const fb_instance *i) { return i->latency; }

void fb_instance_share_load(fb_instance *i, int64_t *counter) {
  if (i)
    i->load = (_Atomic int64_t *)counter;
}

int fb_instance_set_weight(fb_instance *i, uint32_t weight) {
  if (weight < 1 || weight > FB_WEIGHT_MAX)
    return FB_EINVAL;
  if (weight != i->weight) {
    i->weight = weight;
    svc_changed(i->service);
  }
  return 0;
}

void fb_instance_set_healthy(fb_instance *i, int healthy) {
  uint8_t down = healthy ? i->down & ~FB_DOWN_FAILING
                         : i->down | FB_DOWN_FAILING;
  if (down != i->down) {
    i->down = down;
    svc_changed(i->service);
  }
}

int fb_instance_eject(fb_instance *i, double until) {
  if (!i || isnan(until))
    return FB_EINVAL;
  if (until != i->ejected_until) {
    i->ejected_until = until;
    svc_changed(i->service);
  }
  return 0;
}

double fb_instance_ejected_until(const fb_instance *i) {
  return i ? i->ejected_until : 0;
}

uint64_t fb_registry_index(const fb_registry *r) { return r->index; }
uint64_t fb_service_index(const fb_service *s) { return s->index; }
uint64_t fb_registry_expirations(const fb_registry *r) { return r->expirations; }
uint64_t fb_registry_reaped(const fb_registry *r) { return r->reaped; }
uint64_t fb_instance_picks(const fb_instance *i) { return i->picks; }

void fb_registry_sweep(fb_registry *r, double now) { fb_registry_expire(r, now); }
