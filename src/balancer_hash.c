/*
 * balancer_hash.c -- keyed picks: a consistent-hash ring and Maglev.
 *
 * Both map a key's hash to a candidate through a table built from the
 * candidates' host:port, so a key keeps its instance for as long as the
 * candidate set does, and a change moves few keys: about 1/N of them on
 * the ring, at most about 2/N with Maglev. A pick without a key hashes a
 * random number instead (Envoy does the same when no hash policy
 * applies). Weights are respected by both.
 */
#include "balancer.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* MurmurHash3's finaliser: every input bit affects every output bit. */
static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

/* Eight bytes per step, then the finaliser: cheap for short keys. */
uint64_t fb_lb_hash(const char *key, size_t len) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ len;
  for (; len >= 8; key += 8, len -= 8) {
    uint64_t w;
    memcpy(&w, key, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 31;
  }
  uint64_t w = 0;
  memcpy(&w, key, len);
  return mix64((h ^ w) * 0x94d049bb133111ebULL);
}

static uint64_t key_hash(fb_balancer *lb, const char *key, size_t len) {
  return key ? fb_lb_hash(key, len) : fb_rng_next(&lb->rng);
}

/* Depends on host:port only, so tables agree across balancers and runs. */
static uint64_t instance_hash(const fb_instance *i) {
  return mix64(fb_lb_hash(i->host, strlen(i->host)) + i->port);
}

static uint64_t total_weight(fb_instance *const *cand, uint32_t n,
                             uint32_t *max) {
  uint64_t w = 0;
  *max = 0;
  for (uint32_t i = 0; i < n; i++) {
    w += cand[i]->weight;
    if (cand[i]->weight > *max)
      *max = cand[i]->weight;
  }
  return w;
}

/* ----------------------------------------------------------------- ring */

/*
 * Ketama: each candidate puts points on a 64-bit ring, as many as its
 * share of replicas * n (at least one); a key belongs to the first point
 * at or after its hash. Binary search would cost ~17 dependent cache
 * misses at 1,000 instances, so an index of the top bits of the hash
 * jumps straight to the key's bucket: O(1) expected, ~2 points a bucket.
 * Rings are capped at RING_MAX points (fewer replicas on huge services).
 */
#define RING_MAX (1u << 22)

typedef struct ring_point {
  uint64_t hash;
  uint32_t cand;
} ring_point;

typedef struct ring_table {
  uint32_t npoints;
  uint32_t shift;  /* bucket of hash h: h >> shift */
  uint32_t *index; /* bucket b's points start at index[b]; one extra */
  ring_point point[];
} ring_table;

static int by_point(const void *a, const void *b) {
  const ring_point *x = a, *y = b;
  if (x->hash != y->hash)
    return (x->hash > y->hash) - (x->hash < y->hash);
  return (x->cand > y->cand) - (x->cand < y->cand);
}

static uint32_t ring_points_of(const fb_instance *i, uint64_t per_unit,
                               uint64_t total_w, uint32_t n) {
  uint64_t p = per_unit * n * i->weight / total_w;
  return p ? (uint32_t)p : 1;
}

/* Index bits for np points: about one bucket per point, at most 2^20. */
static uint32_t ring_bits(uint64_t np) {
  uint32_t bits = 4;
  while (bits < 20 && (1u << bits) < np)
    bits++;
  return bits;
}

static void ring_index(ring_table *t) {
  uint32_t bits = 64 - t->shift;
  uint32_t p = 0;
  for (uint32_t b = 0; b <= (1u << bits); b++) {
    while (p < t->npoints && (t->point[p].hash >> t->shift) < b)
      p++;
    t->index[b] = p;
  }
}

static int build_ring(fb_balancer *lb, fb_lb_slot *slot,
                      fb_instance *const *cand, uint32_t n, double now) {
  (void)now;
  uint32_t wmax;
  uint64_t total_w = total_weight(cand, n, &wmax);
  uint64_t per_unit = lb->cfg.replicas;
  if (per_unit * n > RING_MAX)
    per_unit = RING_MAX / n ? RING_MAX / n : 1;
  uint64_t np = 0;
  for (uint32_t i = 0; i < n; i++)
    np += ring_points_of(cand[i], per_unit, total_w, n);
  uint32_t bits = ring_bits(np);
  ring_table *t = fb__malloc(sizeof *t + np * sizeof t->point[0] +
                         ((1u << bits) + 1) * sizeof(uint32_t));
  if (!t)
    return FB_ENOMEM;
  t->npoints = (uint32_t)np;
  t->shift = 64 - bits;
  t->index = (uint32_t *)&t->point[np];
  ring_point *p = t->point;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t base = instance_hash(cand[i]);
    uint32_t k = ring_points_of(cand[i], per_unit, total_w, n);
    for (uint32_t j = 0; j < k; j++)
      *p++ = (ring_point){mix64(base + (j + 1) * 0x9e3779b97f4a7c15ULL), i};
  }
  qsort(t->point, np, sizeof t->point[0], by_point);
  ring_index(t);
  fb__free(slot->table);
  slot->table = t;
  return 0;
}

static fb_instance *pick_ring(fb_balancer *lb, fb_lb_slot *slot,
                              fb_instance *const *cand, uint32_t n,
                              const char *key, size_t len, double now) {
  (void)n, (void)now;
  const ring_table *t = slot->table;
  uint64_t h = key_hash(lb, key, len);
  uint64_t b = h >> t->shift;
  uint32_t p = t->index[b], end = t->index[b + 1];
  while (p < end && t->point[p].hash < h)
    p++;
  return cand[t->point[p == t->npoints ? 0 : p].cand];
}

/* No slow start for the hashes: a key's instance must not move with the
 * ramp (Envoy has none for ring hash and maglev either). */
const fb_lb_algorithm fb_lb_consistent_hash = {"consistent_hash", build_ring,
                                               pick_ring, NULL};

/* --------------------------------------------------------------- maglev */

/*
 * Maglev (Eisenbud et al., NSDI 2016), weighted as Envoy does it: each
 * candidate walks its own permutation of the M slots (offset, skip from
 * its hash; M prime, so every walk visits every slot) and claims the next
 * free one in turn; a candidate of weight w claims in a round only while
 * its claims stay within w / max weight of the rounds so far. M is
 * cfg.table_size, raised to a prime >= 20 n for large services so each
 * instance keeps at least ~20 slots.
 */
typedef struct maglev_table {
  uint32_t size;
  uint32_t entry[];
} maglev_table;

typedef struct maglev_walk {
  uint32_t next, skip, weight;
  uint64_t claimed;
} maglev_walk;

static uint32_t prime_at_least(uint64_t n) {
  for (;; n++) {
    int prime = n >= 2;
    for (uint64_t d = 2; prime && d * d <= n; d++)
      prime = n % d != 0;
    if (prime)
      return (uint32_t)n;
  }
}

static void maglev_fill(maglev_table *t, maglev_walk *w, uint32_t n,
                        uint32_t wmax) {
  uint32_t m = t->size, filled = 0;
  memset(t->entry, 0xff, m * sizeof t->entry[0]);
  for (uint64_t round = 1; filled < m; round++) {
    for (uint32_t i = 0; i < n && filled < m; i++) {
      if (w[i].claimed * wmax >= round * w[i].weight)
        continue;
      uint32_t c = w[i].next;
      while (t->entry[c] != UINT32_MAX)
        c = c + w[i].skip >= m ? c + w[i].skip - m : c + w[i].skip;
      t->entry[c] = i;
      w[i].next = c + w[i].skip >= m ? c + w[i].skip - m : c + w[i].skip;
      w[i].claimed++;
      filled++;
    }
  }
}

static int build_maglev(fb_balancer *lb, fb_lb_slot *slot,
                        fb_instance *const *cand, uint32_t n, double now) {
  (void)now;
  uint32_t m = lb->cfg.table_size;
  if ((uint64_t)n * 20 > m)
    m = prime_at_least((uint64_t)n * 20);
  maglev_table *t = fb__malloc(sizeof *t + m * sizeof t->entry[0]);
  maglev_walk *w = fb__malloc(n * sizeof *w);
  if (!t || !w) {
    fb__free(t);
    fb__free(w);
    return FB_ENOMEM;
  }
  uint32_t wmax;
  total_weight(cand, n, &wmax);
  for (uint32_t i = 0; i < n; i++) {
    uint64_t h = instance_hash(cand[i]);
    w[i] = (maglev_walk){(uint32_t)(h % m),
                         (uint32_t)(mix64(h ^ 0x5bd1e995) % (m - 1)) + 1,
                         cand[i]->weight, 0};
  }
  t->size = m;
  maglev_fill(t, w, n, wmax);
  fb__free(w);
  fb__free(slot->table);
  slot->table = t;
  return 0;
}

static fb_instance *pick_maglev(fb_balancer *lb, fb_lb_slot *slot,
                                fb_instance *const *cand, uint32_t n,
                                const char *key, size_t len, double now) {
  (void)n, (void)now;
  const maglev_table *t = slot->table;
  uint64_t h = key_hash(lb, key, len);
  /* Lemire's reduction: a multiply instead of a division by size. */
  return cand[t->entry[(uint32_t)(((h >> 32) * t->size) >> 32)]];
}

const fb_lb_algorithm fb_lb_maglev = {"maglev", build_maglev, pick_maglev,
                                      NULL};
