/*
 * breaker.h -- the circuit breaker's layout (internal).
 */
#ifndef FB_BREAKER_H
#define FB_BREAKER_H

#include "fusebox.h"

#include <stdatomic.h>

typedef struct fb_transition {
  double at;
  uint8_t from, to;
} fb_transition;

/* Unrecorded tokens remembered one by one (the newest this many of the
 * state); older ones fall back to a count. A power of two. */
#define FB_TOKEN_SLOTS 64

/* Per-call flags in the count-mode ring. */
enum { FB_CALL_FAILED = 1, FB_CALL_SLOW = 2 };

/* One slice of the time-mode window. */
typedef struct fb_bucket {
  uint32_t calls, failed, slow;
} fb_bucket;

struct fb_breaker {
  atomic_flag lock;          /* taken by every entry point when shared */
  int shared;
  fb_breaker_config cfg;
  fb_breaker_state state;
  /* Tokens (permits): every granted acquire issues the next number, so
   * each call has its own and a record can tell a second use. */
  int64_t next_token;        /* what the next granted acquire issues */
  int64_t first_token;       /* the current state's first: older are stale */
  int64_t unslotted;         /* unrecorded tokens of this state that lost
                                their recent[] slot to a newer token */
  int64_t recent[FB_TOKEN_SLOTS]; /* by token % FB_TOKEN_SLOTS: token + 1
                                     while unrecorded, else 0 */
  int failures;              /* consecutive failures (reference: failure_count) */
  int successes;             /* HALF_OPEN successes (reference: success_count) */
  int in_flight;             /* HALF_OPEN probes of this generation */
  double since;              /* when the current state began */
  double open_timeout;       /* the OPEN duration now in force */

  /* The window (count and time modes): running totals over its slots. */
  uint32_t buffered, failed, slow;
  uint32_t nslots;           /* ring length (calls) or number of buckets */
  uint32_t pos;              /* count: next ring slot */
  int64_t head;              /* time: index of the newest bucket... */
  uint32_t head_slot;        /* ...and its place in the ring */
  double bucket_width;       /* time: seconds per bucket */
  uint8_t *ring;             /* count mode: FB_CALL_* per call */
  fb_bucket *buckets;        /* time mode: ring of buckets */

  uint64_t calls, ok, bad, timeouts, ignored, slow_calls, rejected, stale;
  uint64_t ntransitions;
  fb_transition history[FB_BREAKER_HISTORY];
};

#endif
