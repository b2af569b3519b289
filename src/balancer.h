/*
 * balancer.h -- how a balancing algorithm plugs into balancer.c.
 *
 * An algorithm is a name, an optional table builder and a pick function
 * over a service's candidates (its healthy live instances, or all live
 * ones in panic mode). Per-service state lives in a slot the balancer
 * keeps for each service id; a slot's table is rebuilt only when the
 * service's version says its candidates or their weights changed.
 */
#ifndef FB_BALANCER_H
#define FB_BALANCER_H

#include "registry.h"

typedef struct fb_lb_slot {
  uint64_t version; /* service version the table was built for; 0: none */
  uint64_t counter; /* round robin: picks so far; smooth WRR: step */
  void *table;      /* one allocation (free() releases it), or NULL */
  fb_instance *const *cand; /* the candidates at that version (a version */
  uint32_t n;               /* changes with every change to them) */
  uint32_t next;    /* round robin: counter % n, kept without a division */
  double ramp_next; /* slow start: when the table's ramped weights are
                       rebuilt; INFINITY: nothing ramps */
} fb_lb_slot;

typedef fb_instance *(*fb_lb_pick_fn)(fb_balancer *lb, fb_lb_slot *slot,
                                      fb_instance *const *cand, uint32_t n,
                                      const char *key, size_t len, double now);

typedef struct fb_lb_algorithm {
  const char *name;
  /* Builds slot->table for the n candidates; NULL: needs no table. */
  int (*build)(fb_balancer *lb, fb_lb_slot *slot, fb_instance *const *cand,
               uint32_t n, double now);
  /* Chooses one of n > 0 candidates; key NULL when the pick has none. */
  fb_lb_pick_fn pick;
  /* pick with slow start (the balancer uses it when slow_start_window is
   * set); NULL: the algorithm has none (it ignores weights, or its
   * mapping must not move). */
  fb_lb_pick_fn pick_ramped;
} fb_lb_algorithm;

/* What a pick and its done() read comes first. */
struct fb_balancer {
  fb_registry *registry;
  const fb_lb_algorithm *algo; /* NULL: the caller picks (a strategy) */
  fb_lb_pick_fn pick;          /* algo's pick, or its pick_ramped */
  fb_lb_slot *slots;           /* by service id */
  uint32_t nslots;
  double inv_decay;            /* 1 / cfg.decay */
  fb_rng rng;
  fb_balancer_config cfg;      /* algorithm points into algorithm_names */
  fb_outlier *outlier;         /* done() records into it; NULL: none */
  fb_instance **rest;          /* pick_excluding's candidates left */
  uint32_t rest_cap;
};

/* The keyed algorithms, in balancer_hash.c. */
extern const fb_lb_algorithm fb_lb_consistent_hash;
extern const fb_lb_algorithm fb_lb_maglev;

/* Hashes len bytes of key to 64 well-mixed bits. */
uint64_t fb_lb_hash(const char *key, size_t len);

#endif
