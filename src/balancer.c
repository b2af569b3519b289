/*
 * balancer.c -- choosing one instance of a service, and its feedback.
 *
 * A balancer reads the registry's candidate arrays directly and keeps its
 * own per-service state in slots indexed by the service's dense id, so a
 * pick is an array index plus the algorithm's own work. The balancer holds
 * a reference on its registry: either may be freed first.
 *
 * Candidates: the healthy live instances (not marked down, not failing),
 * unless fewer than panic_threshold of the live ones are healthy; then all
 * live ones, as Envoy's panic mode does: with most of a service "down",
 * the health signal is more likely wrong than the whole service, and
 * spreading load over all beats crushing the few left.
 *
 * Feedback: a pick counts as in flight on its instance until done()
 * reports it; done() refuses to report an instance with nothing in flight,
 * so counts never go negative. Statistics live on the instance, shared by
 * all balancers over the registry.
 */
#include "balancer.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Added to an instance's cost while it has calls in flight but no latency
 * report yet, so peak_ewma does not pile onto a newcomer (Finagle's). */
#define EWMA_PENALTY 1e9

/* ------------------------------------------------------ simple pickers */

/* The reference design: cand[counter % n], counter += 1 per pick. The
 * counter survives membership changes, exactly as in the document; a
 * pick over the slot's own candidates keeps counter % n in slot->next
 * (ready_slot sets it when n changes), a 64-bit division saved. */
static fb_instance *pick_round_robin(fb_balancer *lb, fb_lb_slot *slot,
                                     fb_instance *const *cand, uint32_t n,
                                     const char *key, size_t len, double now) {
  (void)lb, (void)key, (void)len, (void)now;
  if (cand != slot->cand || n != slot->n) { /* a retry's rest of them */
    fb_instance *i = cand[slot->counter++ % n];
    slot->next = slot->n ? (uint32_t)(slot->counter % slot->n) : 0;
    return i;
  }
  uint32_t i = slot->next;
  slot->next = i + 1 == n ? 0 : i + 1;
  slot->counter++;
  return cand[i];
}

static fb_instance *pick_random(fb_balancer *lb, fb_lb_slot *slot,
                                fb_instance *const *cand, uint32_t n,
                                const char *key, size_t len, double now) {
  (void)slot, (void)key, (void)len, (void)now;
  return cand[fb__rng_below(&lb->rng, n)];
}

/* Envoy's least_request: sample `choices` candidates (with replacement,
 * also for small sets: no full scan, so ties break at random) and keep
 * the one with the fewest calls in flight; the first sampled wins ties. */
static fb_instance *pick_least_request(fb_balancer *lb, fb_lb_slot *slot,
                                       fb_instance *const *cand, uint32_t n,
                                       const char *key, size_t len,
                                       double now) {
  (void)slot, (void)key, (void)len, (void)now;
  fb_instance *best = cand[fb__rng_below(&lb->rng, n)];
  for (int c = 1; c < lb->cfg.choices; c++) {
    fb_instance *x = cand[fb__rng_below(&lb->rng, n)];
    if (fb__load(x) < fb__load(best))
      best = x;
  }
  return best;
}

/* Finagle's peak EWMA load: the latency estimate decayed to now (an idle
 * instance looks cheaper with time, so it is probed again), times the
 * calls in flight plus one. */
static double ewma_load(const fb_balancer *lb, const fb_instance *i,
                        double now) {
  uint32_t load = fb__load(i);
  if (i->successes + i->failures == 0) /* no estimate yet */
    return load ? EWMA_PENALTY + load : 0;
  double age = now - i->latency_at;
  double lat = age > 0 ? i->latency * exp(-age * lb->inv_decay) : i->latency;
  return lat * (load + 1);
}

static fb_instance *pick_peak_ewma(fb_balancer *lb, fb_lb_slot *slot,
                                   fb_instance *const *cand, uint32_t n,
                                   const char *key, size_t len, double now) {
  (void)slot, (void)key, (void)len;
  fb_instance *best = cand[fb__rng_below(&lb->rng, n)];
  double best_load = ewma_load(lb, best, now);
  for (int c = 1; c < lb->cfg.choices; c++) {
    fb_instance *x = cand[fb__rng_below(&lb->rng, n)];
    double load = ewma_load(lb, x, now);
    if (load < best_load) {
      best = x;
      best_load = load;
    }
  }
  return best;
}

/* -------------------------------------------- smooth weighted round robin */

/*
 * nginx's smooth WRR picks the candidate with the largest "current"
 * weight, where after t picks current_i = (t+1)*w_i - c_i*W (c_i: times i
 * was picked, W: total weight), ties going to the earliest candidate.
 * Candidates of equal weight are picked in turn, so each weight class
 * needs only its round and its next member: a pick costs O(k) for k
 * distinct weights (O(1) for equal weights, O(n) only if all differ).
 * After W picks every current weight is back to zero, so the state
 * restarts and the arithmetic never overflows.
 */
typedef struct wrr_class {
  int64_t weight;
  uint64_t round; /* picks of every member so far in this period */
  uint32_t first; /* its members: wrr_table.member[first .. first+size) */
  uint32_t size;
  uint32_t next;  /* member picked next */
} wrr_class;

typedef struct wrr_table {
  int64_t total;
  uint32_t nclasses;
  uint32_t *member; /* candidate indices, grouped by class, in order */
  wrr_class class[];
} wrr_table;

static int by_weight_then_index(const void *a, const void *b) {
  const uint64_t *x = a, *y = b;
  return (*x > *y) - (*x < *y);
}

static int build_wrr(fb_balancer *lb, fb_lb_slot *slot,
                     fb_instance *const *cand, uint32_t n) {
  (void)lb;
  uint64_t *key = fb__malloc(n * sizeof *key);
  if (!key)
    return FB_ENOMEM;
  for (uint32_t i = 0; i < n; i++)
    key[i] = (uint64_t)cand[i]->weight << 32 | i;
  qsort(key, n, sizeof *key, by_weight_then_index);
  uint32_t k = 0;
  for (uint32_t i = 0; i < n; i++)
    k += i == 0 || key[i] >> 32 != key[i - 1] >> 32;
  wrr_table *t = fb__malloc(sizeof *t + k * sizeof t->class[0] + n * sizeof(uint32_t));
  if (!t) {
    fb__free(key);
    return FB_ENOMEM;
  }
  t->member = (uint32_t *)&t->class[k];
  t->nclasses = 0;
  t->total = 0;
  for (uint32_t i = 0; i < n; i++) {
    int64_t w = (int64_t)(key[i] >> 32);
    if (i == 0 || w != t->class[t->nclasses - 1].weight)
      t->class[t->nclasses++] = (wrr_class){w, 0, i, 0, 0};
    t->class[t->nclasses - 1].size++;
    t->member[i] = (uint32_t)key[i];
    t->total += w;
  }
  fb__free(key);
  fb__free(slot->table);
  slot->table = t;
  slot->counter = 0; /* a new weight set starts a new sequence, as nginx */
  return 0;
}

static void wrr_restart(wrr_table *t) {
  for (uint32_t c = 0; c < t->nclasses; c++)
    t->class[c].round = t->class[c].next = 0;
}

static fb_instance *pick_wrr(fb_balancer *lb, fb_lb_slot *slot,
                             fb_instance *const *cand, uint32_t n,
                             const char *key, size_t len, double now) {
  (void)lb, (void)n, (void)key, (void)len, (void)now;
  wrr_table *t = slot->table;
  int64_t step = (int64_t)slot->counter + 1;
  wrr_class *best = NULL;
  int64_t best_v = 0;
  uint32_t best_i = 0;
  for (uint32_t c = 0; c < t->nclasses; c++) {
    wrr_class *k = &t->class[c];
    int64_t v = step * k->weight - (int64_t)k->round * t->total;
    uint32_t i = t->member[k->first + k->next];
    if (!best || v > best_v || (v == best_v && i < best_i)) {
      best = k;
      best_v = v;
      best_i = i;
    }
  }
  if (++best->next == best->size) {
    best->next = 0;
    best->round++;
  }
  if (++slot->counter == (uint64_t)t->total) {
    slot->counter = 0;
    wrr_restart(t);
  }
  return cand[best_i];
}

/* ---------------------------------------------------------- the registry */

static const fb_lb_algorithm round_robin = {"round_robin", NULL,
                                            pick_round_robin};
static const fb_lb_algorithm random_pick = {"random", NULL, pick_random};
static const fb_lb_algorithm wrr = {"weighted_round_robin", build_wrr,
                                    pick_wrr};
static const fb_lb_algorithm least_request = {"least_request", NULL,
                                              pick_least_request};
static const fb_lb_algorithm peak_ewma = {"peak_ewma", NULL, pick_peak_ewma};

static const fb_lb_algorithm *const algorithms[] = {
    &round_robin, &random_pick,           &wrr,          &least_request,
    &peak_ewma,   &fb_lb_consistent_hash, &fb_lb_maglev,
};
#define NALGORITHMS (sizeof algorithms / sizeof algorithms[0])

static const char *const algorithm_names[] = {
    "round_robin", "random",          "weighted_round_robin", "least_request",
    "peak_ewma",   "consistent_hash", "maglev",               NULL};

const char *const *fb_balancer_algorithms(void) { return algorithm_names; }

static const fb_lb_algorithm *find_algorithm(const char *name) {
  for (size_t i = 0; i < NALGORITHMS; i++)
    if (strcmp(algorithms[i]->name, name) == 0)
      return algorithms[i];
  return NULL;
}

/* ---------------------------------------------------------- life cycle */

void fb_balancer_config_init(fb_balancer_config *cfg) {
  cfg->algorithm = "round_robin";
  cfg->seed = 0;
  cfg->panic_threshold = 0.5;
  cfg->choices = 2;
  cfg->decay = 10.0;
  cfg->replicas = 160;
  cfg->table_size = 65537;
  cfg->magic = FB_CONFIG_MAGIC;
}

static int is_prime(uint32_t n) {
  if (n < 2)
    return 0;
  for (uint32_t d = 2; (uint64_t)d * d <= n; d++)
    if (n % d == 0)
      return 0;
  return 1;
}

static const char *config_error(const fb_balancer_config *c) {
  if (c->magic != FB_CONFIG_MAGIC)
    return "config (not initialised with fb_balancer_config_init)";
  if (c->algorithm && !find_algorithm(c->algorithm))
    return "algorithm";
  if (!(c->panic_threshold >= 0 && c->panic_threshold <= 1))
    return "panic_threshold";
  if (c->choices < 1 || c->choices > 64)
    return "choices";
  if (!(c->decay > 0) || isinf(c->decay))
    return "decay";
  if (c->replicas < 1 || c->replicas > 10000)
    return "replicas";
  if (c->table_size < 3 || c->table_size > (1u << 26) || !is_prime(c->table_size))
    return "table_size";
  return NULL;
}

int fb_balancer_config_check(const fb_balancer_config *cfg,
                             const char **field) {
  const char *bad = config_error(cfg);
  if (field)
    *field = bad;
  return bad ? FB_EINVAL : 0;
}

fb_balancer *fb_balancer_new_config(fb_registry *r,
                                    const fb_balancer_config *cfg) {
  if (!r || !cfg || config_error(cfg))
    return NULL;
  fb_balancer *lb = fb__calloc(1, sizeof *lb);
  if (!lb)
    return NULL;
  lb->registry = fb_registry_retain(r);
  lb->algo = cfg->algorithm ? find_algorithm(cfg->algorithm) : NULL;
  lb->cfg = *cfg;
  lb->cfg.algorithm = lb->algo ? lb->algo->name : NULL;
  lb->inv_decay = 1.0 / cfg->decay;
  fb_rng_seed(&lb->rng, cfg->seed);
  return lb;
}

fb_balancer *fb_balancer_new(fb_registry *r, const char *algorithm,
                             uint64_t seed) {
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  if (!algorithm)
    return NULL;
  cfg.algorithm = algorithm;
  cfg.seed = seed;
  return fb_balancer_new_config(r, &cfg);
}

void fb_balancer_free(fb_balancer *lb) {
  if (!lb)
    return;
  fb_registry_release(lb->registry);
  for (uint32_t i = 0; i < lb->nslots; i++)
    fb__free(lb->slots[i].table);
  fb__free(lb->slots);
  fb__free(lb->rest);
  fb__free(lb);
}

const char *fb_balancer_algorithm(const fb_balancer *lb) {
  return lb && lb->algo ? lb->algo->name : NULL;
}

fb_registry *fb_balancer_registry(const fb_balancer *lb) {
  return lb ? lb->registry : NULL;
}

double fb_balancer_random(fb_balancer *lb) { return fb_rng_double(&lb->rng); }

/* ---------------------------------------------------------------- picks */

/* Services are created by registration, so slots grow on demand. */
static fb_lb_slot *slot_for(fb_balancer *lb, const fb_service *s) {
  if (s->id >= lb->nslots) {
    uint32_t n = fb_registry_nservices(lb->registry);
    fb_lb_slot *v = fb__realloc(lb->slots, n * sizeof *v);
    if (!v)
      return NULL;
    memset(v + lb->nslots, 0, (n - lb->nslots) * sizeof *v);
    lb->slots = v;
    lb->nslots = n;
  }
  return &lb->slots[s->id];
}

size_t fb_balancer_candidates(fb_balancer *lb, fb_service *s, double now,
                              fb_instance *const **out) {
  *out = NULL;
  if (!lb || !s || s->registry != lb->registry || fb_service_refresh(s, now) < 0)
    return 0;
  if (s->nhealthy < lb->cfg.panic_threshold * s->nlive) {
    *out = fb__list(s->live);
    return s->nlive;
  }
  *out = fb__list(s->healthy);
  return s->nhealthy;
}

/* The slow path of ready_slot(): refresh s, make its slot, and build the
 * slot for the service's current version. */
static fb_lb_slot *prepare_slot(fb_balancer *lb, fb_service *s, double now) {
  fb_lb_slot *slot;
  if (fb_service_refresh(s, now) < 0 || !(slot = slot_for(lb, s)))
    return NULL;
  if (slot->version == s->version)
    return slot;
  fb_instance *const *cand;
  size_t n = fb_balancer_candidates(lb, s, now, &cand);
  if (n && lb->algo && lb->algo->build &&
      lb->algo->build(lb, slot, cand, (uint32_t)n) < 0)
    return NULL;
  slot->cand = cand;
  slot->n = (uint32_t)n;
  slot->next = n ? (uint32_t)(slot->counter % n) : 0;
  slot->version = s->version;
  return slot;
}

/* s's slot, ready for a pick at now: its candidates and its table those
 * of the service's current version; NULL: no memory. The version changes
 * with every change to the candidates (membership, health, weights, an
 * ejection's end, all found by the refresh), so a pick at an unchanged
 * version and a fresh service reuses them without a call. */
static inline fb_lb_slot *ready_slot(fb_balancer *lb, fb_service *s,
                                     double now) {
  if (s->id < lb->nslots) {
    fb_lb_slot *slot = &lb->slots[s->id];
    if (slot->version == s->version && fb__service_fresh(s, now))
      return slot;
  }
  return prepare_slot(lb, s, now);
}

static fb_instance *counted(fb_instance *i) {
  if (i->inflight < UINT32_MAX)
    i->inflight++;
  fb__load_add(i, 1);
  i->picks++;
  return i;
}

fb_instance *fb_balancer_pick_key(fb_balancer *lb, fb_service *s,
                                  const char *key, size_t len, double now) {
  if (!lb || !s || s->registry != lb->registry || !lb->algo)
    return NULL;
  fb_lb_slot *slot = ready_slot(lb, s, now);
  if (!slot || slot->n == 0)
    return NULL;
  return counted(lb->algo->pick(lb, slot, slot->cand, slot->n, key, len, now));
}

fb_instance *fb_balancer_pick(fb_balancer *lb, fb_service *s, double now) {
  return fb_balancer_pick_key(lb, s, NULL, 0, now);
}

/* Sets (on = 1) or clears the excluded flag of the instances of s with
 * the given ids; returns how many it changed. */
static size_t mark_excluded(fb_balancer *lb, fb_service *s,
                            const uint64_t *ids, size_t n, uint8_t on) {
  size_t k = 0;
  for (size_t j = 0; j < n; j++) {
    fb_instance *i = fb_registry_instance(lb->registry, ids[j]);
    if (i && i->service == s && i->excluded != on) {
      i->excluded = on;
      k++;
    }
  }
  return k;
}

/* A weighted choice among the candidates not excluded: by the key's hash
 * (the same key, the same instance) or at random; NULL if none is left. */
static fb_instance *by_weight(fb_balancer *lb, fb_instance *const *cand,
                              size_t n, const char *key, size_t len) {
  uint64_t total = 0;
  for (size_t j = 0; j < n; j++)
    total += cand[j]->excluded ? 0 : cand[j]->weight;
  if (total == 0)
    return NULL;
  uint64_t r = key ? fb_lb_hash(key, len) % total : fb__rng_below(&lb->rng, total);
  for (size_t j = 0;; j++) {
    if (cand[j]->excluded)
      continue;
    if (r < cand[j]->weight)
      return cand[j];
    r -= cand[j]->weight;
  }
}

/* The candidates not excluded, in order, in lb->rest; their count, or -1
 * when memory runs out. */
static long rest_of(fb_balancer *lb, fb_instance *const *cand, size_t n) {
  if (lb->rest_cap < n) {
    fb_instance **v = fb__realloc(lb->rest, n * sizeof *v);
    if (!v)
      return -1;
    lb->rest = v;
    lb->rest_cap = (uint32_t)n;
  }
  long m = 0;
  for (size_t j = 0; j < n; j++)
    if (!cand[j]->excluded)
      lb->rest[m++] = cand[j];
  return m;
}

static fb_instance *pick_rest(fb_balancer *lb, fb_service *s,
                              fb_instance *const *cand, size_t n,
                              const char *key, size_t len, double now) {
  fb_lb_slot *slot = ready_slot(lb, s, now);
  if (!slot)
    return NULL;
  if (lb->algo->build) { /* its table holds every candidate */
    fb_instance *i = lb->algo->pick(lb, slot, cand, (uint32_t)n, key, len, now);
    return i->excluded ? by_weight(lb, cand, n, key, len) : i;
  }
  long m = rest_of(lb, cand, n);
  if (m <= 0)
    return NULL;
  return lb->algo->pick(lb, slot, lb->rest, (uint32_t)m, key, len, now);
}

fb_instance *fb_balancer_pick_excluding(fb_balancer *lb, fb_service *s,
                                        const char *key, size_t len,
                                        const uint64_t *exclude,
                                        size_t nexclude, double now) {
  if (nexclude > FB_EXCLUDE_MAX || (nexclude && !exclude))
    return NULL;
  fb_instance *const *cand;
  size_t n = fb_balancer_candidates(lb, s, now, &cand);
  if (n == 0 || !lb->algo)
    return NULL;
  if (mark_excluded(lb, s, exclude, nexclude, 1) == 0)
    return fb_balancer_pick_key(lb, s, key, len, now);
  fb_instance *i = pick_rest(lb, s, cand, n, key, len, now);
  mark_excluded(lb, s, exclude, nexclude, 0);
  return i ? counted(i) : NULL;
}

/* ------------------------------------------------------------- feedback */

int fb_balancer_take(fb_balancer *lb, fb_instance *i) {
  if (!lb || !i)
    return FB_EINVAL;
  if (i->service->registry != lb->registry)
    return FB_ENOENT;
  if (i->inflight < UINT32_MAX)
    i->inflight++;
  fb__load_add(i, 1);
  return 0;
}

/* Finagle's peak EWMA: a slower call raises the estimate at once, faster
 * ones pull it down with weight 1 - exp(-elapsed / decay). */
static void ewma_observe(const fb_balancer *lb, fb_instance *i, double rtt,
                         double now) {
  double age = now - i->latency_at;
  double w = age > 0 ? exp(-age * lb->inv_decay) : 1;
  if (rtt > i->latency)
    i->latency = rtt;
  else
    i->latency = i->latency * w + rtt * (1 - w);
  i->latency_at = now;
}

int fb_balancer_done(fb_balancer *lb, fb_instance *i, int ok, double latency,
                     double now) {
  if (!lb || !i)
    return FB_EINVAL;
  if (i->service->registry != lb->registry)
    return FB_ENOENT;
  if (!(latency >= 0) || isinf(latency) || i->inflight == 0)
    return FB_EINVAL;
  i->inflight--;
  fb__load_add(i, -1);
  if (ok)
    i->successes++;
  else
    i->failures++;
  ewma_observe(lb, i, latency, now);
  return 0;
}
