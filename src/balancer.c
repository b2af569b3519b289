/*
 * balancer.c -- choosing one live instance of a service.
 *
 * A balancer reads the registry's live arrays directly and keeps its own
 * per-service state in slots indexed by the service's dense id, so a pick
 * is an array index plus the algorithm's own work. The balancer holds a
 * reference on its registry: either may be freed first.
 */
#include "balancer.h"

#include <stdlib.h>
#include <string.h>

struct fb_balancer {
  fb_registry *registry;
  const fb_lb_algorithm *algo;
  fb_lb_slot *slots; /* by service id */
  uint32_t nslots;
  fb_rng rng;
};

/* The reference design: live[counter % n], counter += 1 per pick. */
static fb_instance *pick_round_robin(fb_balancer *lb, fb_lb_slot *slot,
                                     fb_instance *const *live, size_t n) {
  (void)lb;
  return live[slot->counter++ % n];
}

static fb_instance *pick_random(fb_balancer *lb, fb_lb_slot *slot,
                                fb_instance *const *live, size_t n) {
  (void)slot;
  return live[fb_rng_below(&lb->rng, n)];
}

static const fb_lb_algorithm algorithms[] = {
    {"round_robin", pick_round_robin},
    {"random", pick_random},
};
#define NALGORITHMS (sizeof algorithms / sizeof algorithms[0])

static const char *const algorithm_names[] = {"round_robin", "random", NULL};

const char *const *fb_balancer_algorithms(void) { return algorithm_names; }

fb_balancer *fb_balancer_new(fb_registry *r, const char *algorithm,
                             uint64_t seed) {
  if (!r || !algorithm)
    return NULL;
  const fb_lb_algorithm *algo = NULL;
  for (size_t i = 0; i < NALGORITHMS; i++)
    if (strcmp(algorithms[i].name, algorithm) == 0)
      algo = &algorithms[i];
  if (!algo)
    return NULL;
  fb_balancer *lb = calloc(1, sizeof *lb);
  if (!lb)
    return NULL;
  lb->registry = fb_registry_retain(r);
  lb->algo = algo;
  fb_rng_seed(&lb->rng, seed);
  return lb;
}

void fb_balancer_free(fb_balancer *lb) {
  if (!lb)
    return;
  fb_registry_release(lb->registry);
  free(lb->slots);
  free(lb);
}

const char *fb_balancer_algorithm(const fb_balancer *lb) {
  return lb->algo->name;
}

fb_registry *fb_balancer_registry(const fb_balancer *lb) {
  return lb->registry;
}

/* Services are created by registration, so slots grow on demand. */
static fb_lb_slot *slot_for(fb_balancer *lb, const fb_service *s) {
  if (s->id >= lb->nslots) {
    uint32_t n = fb_registry_nservices(lb->registry);
    fb_lb_slot *v = realloc(lb->slots, n * sizeof *v);
    if (!v)
      return NULL;
    memset(v + lb->nslots, 0, (n - lb->nslots) * sizeof *v);
    lb->slots = v;
    lb->nslots = n;
  }
  return &lb->slots[s->id];
}

fb_instance *fb_balancer_pick(fb_balancer *lb, fb_service *s, double now) {
  if (!lb || !s || s->registry != lb->registry)
    return NULL;
  fb_instance *const *live;
  size_t n = fb_service_live(s, now, &live);
  if (n == 0)
    return NULL;
  fb_lb_slot *slot = slot_for(lb, s);
  if (!slot)
    return NULL;
  fb_instance *i = lb->algo->pick(lb, slot, live, n);
  if (i)
    i->picks++;
  return i;
}
