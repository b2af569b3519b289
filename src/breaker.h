/*
 * breaker.h -- the circuit breaker's layout (internal).
 */
#ifndef FB_BREAKER_H
#define FB_BREAKER_H

#include "fusebox.h"

typedef struct fb_transition {
  double at;
  uint8_t from, to;
} fb_transition;

struct fb_breaker {
  fb_breaker_config cfg;
  fb_breaker_state state;
  int64_t generation;        /* bumped on every state change */
  int failures;              /* consecutive failures (reference: failure_count) */
  int successes;             /* HALF_OPEN successes (reference: success_count) */
  double last_failure_time;
  uint64_t ntransitions;
  fb_transition history[FB_BREAKER_HISTORY];
  uint64_t calls[2];         /* recorded outcomes, by fb_outcome (metrics) */
  uint64_t rejected;         /* acquires refused while OPEN (metrics) */
};

#endif
