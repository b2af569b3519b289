/*
 * balancer.h -- how a balancing algorithm plugs into balancer.c.
 *
 * An algorithm is a name and a pick function over the live instances of a
 * service; per-service state (a round-robin counter, ...) lives in a slot
 * the balancer keeps for each service id.
 */
#ifndef FB_BALANCER_H
#define FB_BALANCER_H

#include "registry.h"

typedef struct fb_lb_slot {
  uint64_t counter; /* round robin: picks made so far */
} fb_lb_slot;

typedef struct fb_lb_algorithm {
  const char *name;
  fb_instance *(*pick)(fb_balancer *lb, fb_lb_slot *slot,
                       fb_instance *const *live, size_t n);
} fb_lb_algorithm;

#endif
