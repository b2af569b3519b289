/*
 * breaker.c -- the circuit breaker state machine.
 *
 *   CLOSED    counts consecutive failures (a success resets the count) and
 *             opens when the count reaches failure_threshold.
 *   OPEN      rejects calls until now - last_failure_time > timeout
 *             (strictly), then the next acquire moves it to HALF_OPEN.
 *   HALF_OPEN lets calls through; success_threshold successes close it,
 *             any failure reopens it at once.
 *
 * Calls are split into acquire (may I call?) and record (how did it go?)
 * so callers can run the call itself anywhere: in a coroutine that
 * sleeps, on another thread, in a callback. A permit carries the
 * breaker's generation, which changes with every state change; a result
 * whose permit is from an earlier generation describes a state that no
 * longer holds and is dropped (FB_ESTALE), as gobreaker does.
 */
#include "breaker.h"

#include <stdlib.h>

void fb_breaker_config_init(fb_breaker_config *cfg) {
  cfg->failure_threshold = 5;
  cfg->timeout = 60.0;
  cfg->success_threshold = 3;
}

int fb_breaker_config_check(const fb_breaker_config *cfg, const char **field) {
  const char *bad = NULL;
  if (!cfg)
    bad = "config";
  else if (cfg->failure_threshold < 1)
    bad = "failure_threshold";
  else if (!(cfg->timeout > 0)) /* also rejects NaN */
    bad = "timeout";
  else if (cfg->success_threshold < 1)
    bad = "success_threshold";
  if (field)
    *field = bad;
  return bad ? FB_EINVAL : 0;
}

fb_breaker *fb_breaker_new(const fb_breaker_config *cfg) {
  fb_breaker_config def;
  if (!cfg) {
    fb_breaker_config_init(&def);
    cfg = &def;
  }
  if (fb_breaker_config_check(cfg, NULL) < 0)
    return NULL;
  fb_breaker *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->cfg = *cfg;
  b->state = FB_CLOSED;
  return b;
}

void fb_breaker_free(fb_breaker *b) { free(b); }

static void transition(fb_breaker *b, fb_breaker_state to, double now) {
  fb_transition *t = &b->history[b->ntransitions % FB_BREAKER_HISTORY];
  t->at = now;
  t->from = (uint8_t)b->state;
  t->to = (uint8_t)to;
  b->ntransitions++;
  b->state = to;
  b->generation++;
}

int64_t fb_breaker_acquire(fb_breaker *b, double now) {
  if (b->state == FB_OPEN) {
    if (!(now - b->last_failure_time > b->cfg.timeout)) {
      b->rejected++;
      return FB_EREJECTED;
    }
    transition(b, FB_HALF_OPEN, now);
    b->successes = 0;
  }
  return b->generation;
}

static void on_success(fb_breaker *b, double now) {
  if (b->state == FB_HALF_OPEN) {
    if (++b->successes >= b->cfg.success_threshold) {
      transition(b, FB_CLOSED, now);
      b->failures = 0;
    }
  } else {
    b->failures = 0;
  }
}

static void on_failure(fb_breaker *b, double now) {
  b->failures++;
  b->last_failure_time = now;
  if (b->state == FB_HALF_OPEN || b->failures >= b->cfg.failure_threshold)
    transition(b, FB_OPEN, now);
}

int fb_breaker_record(fb_breaker *b, int64_t permit, fb_outcome outcome,
                      double duration, double now) {
  (void)duration; /* consecutive mode judges outcomes, not speed */
  if (permit < 0 || permit > b->generation)
    return FB_EINVAL;
  if (outcome == FB_SUCCESS || outcome == FB_FAILURE)
    b->calls[outcome]++; /* stale or not, the call happened */
  if (permit != b->generation)
    return FB_ESTALE;
  switch (outcome) {
  case FB_SUCCESS:
    on_success(b, now);
    return 0;
  case FB_FAILURE:
    on_failure(b, now);
    return 0;
  }
  return FB_EINVAL;
}

fb_breaker_state fb_breaker_state_of(const fb_breaker *b) { return b->state; }

void fb_breaker_stats(const fb_breaker *b, uint64_t *successes,
                      uint64_t *failures, uint64_t *rejected) {
  *successes = b->calls[FB_SUCCESS];
  *failures = b->calls[FB_FAILURE];
  *rejected = b->rejected;
}

const char *fb_breaker_state_name(fb_breaker_state s) {
  switch (s) {
  case FB_CLOSED:
    return "CLOSED";
  case FB_OPEN:
    return "OPEN";
  case FB_HALF_OPEN:
    return "HALF_OPEN";
  }
  return "UNKNOWN";
}

uint64_t fb_breaker_transitions(const fb_breaker *b) { return b->ntransitions; }

int fb_breaker_transition(const fb_breaker *b, uint64_t n,
                          fb_breaker_state *from, fb_breaker_state *to,
                          double *at) {
  if (n >= b->ntransitions || b->ntransitions - n > FB_BREAKER_HISTORY)
    return FB_ENOENT;
  const fb_transition *t = &b->history[n % FB_BREAKER_HISTORY];
  *from = (fb_breaker_state)t->from;
  *to = (fb_breaker_state)t->to;
  *at = t->at;
  return 0;
}

double fb_breaker_retry_after(const fb_breaker *b, double now) {
  if (b->state != FB_OPEN)
    return 0;
  double left = b->last_failure_time + b->cfg.timeout - now;
  return left > 0 ? left : 0;
}
