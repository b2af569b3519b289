/*
 * limiter.c -- adaptive concurrency limits, after Netflix's
 * concurrency-limits (AIMDLimit, VegasLimit, Gradient2Limit).
 *
 * A call may start while fewer calls are in flight than the limit. When
 * it ends, its RTT, the number in flight when it started (Netflix's
 * Listener passes that one, not the number at its end) and whether it
 * was dropped are one sample, and the algorithm's update rule moves the
 * limit:
 *
 *   aimd       a drop, or an RTT over timeout: limit = floor(limit *
 *              backoff_ratio); else, while the limit is used (inflight *
 *              2 >= limit): limit + 1. An integer throughout.
 *   gradient2  long = an average of the RTTs: their mean over the first
 *              10 samples, then exponential with factor 2 / (long_window
 *              + 1); when long / rtt > 2 (latency has come back down),
 *              long *= 0.95. Unless the limit is unused (inflight <
 *              estimate / 2: app-limited, no change):
 *                gradient = max(0.5, min(1, rtt_tolerance * long / rtt))
 *                new = estimate * gradient + queue_size
 *                estimate = estimate * (1 - smoothing) + new * smoothing
 *              Drops are not looked at: latency alone drives it.
 *   vegas      every probe_multiplier * estimate * jitter samples (jitter
 *              drawn in [0.5, 1) each time) the sample becomes the no-load
 *              RTT, as does any RTT below it; otherwise, with queue =
 *              ceil(estimate * (1 - noload / rtt)) and L = log10(limit):
 *              a drop: estimate - L; the limit unused (inflight * 2 <
 *              estimate): no change; queue <= L: estimate + beta * L;
 *              queue < alpha * L: estimate + L; queue > beta * L:
 *              estimate - L; else no change. The new estimate is
 *              smoothed as gradient2's is.
 *
 * Every new estimate is clamped to [min_limit, max_limit]; the limit in
 * force is its floor. Where fusebox differs, and why:
 *   - L is max(1, floor(log10(limit))) at every limit. Netflix's
 *     Log10RootFunction switches to floor(sqrt(limit)) from 1000 on, a
 *     jump from 3 to 31 in one step of the limit.
 *   - vegas honours min_limit (Netflix's clamps to 1: its default here).
 *   - gradient2 and vegas skip samples with an RTT of 0 (an instant call
 *     in virtual time): their rules divide by it. Netflix's Vegas throws.
 *   - every algorithm is wrapped in WindowedLimit's window by default
 *     (min_window = max_window = 1 s, window_size 10, min_rtt_threshold
 *     100 us), as Netflix advises for Gradient2: fed every sample at
 *     hundreds a second, its long-term average (600 samples) follows a
 *     slowed backend within seconds, and the tolerance then lets the
 *     limit climb until callers time out (examples/adaptive_limit.lua
 *     without a window). min_window = 0 feeds every sample at once.
 *
 * The window (WindowedLimit with its average sample window): a sample
 * whose RTT is below min_rtt_threshold is no sample. The others gather
 * into the window (least RTT, RTT sum, most in flight, count, any drop);
 * the first sample ending after the window's end closes it: the next one
 * ends min(max(2 * least RTT, min_window), max_window) later, and a
 * closed window of window_size samples or more is one sample for the
 * algorithm (mean RTT, most in flight, any drop); a smaller one is
 * dropped. So the first window, closed by the first sample, never counts.
 *
 * No allocation after creation, no clock: now is passed in.
 */
#include "fusebox.h"
#include "spin.h"
#include "util.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* ExpAvgMeasurement's warm-up: a plain mean over the first samples. */
#define WARMUP 10

typedef struct fb_limit_change {
  double at;
  int from, to;
} fb_limit_change;

struct fb_limiter {
  atomic_flag lock; /* taken by every entry point once shared */
  int shared;
  fb_limiter_config cfg;
  double estimate; /* the algorithm's limit; the one in force is floor */
  int limit;
  int inflight;
  double last_rtt;
  /* gradient2: the long-term RTT */
  double long_rtt, long_sum;
  int long_count;
  /* vegas */
  double rtt_noload;
  double probe_jitter;
  uint64_t probe_count;
  fb_rng rng;
  /* the sample window */
  double next_update;
  double win_min_rtt, win_sum;
  int win_max_inflight, win_count, win_drop;
  uint64_t successes, dropped, ignored, rejected;
  uint64_t nchanges;
  fb_limit_change history[FB_LIMITER_HISTORY];
};

void fb_limiter_config_init(fb_limiter_config *cfg,
                            fb_limit_algorithm algorithm) {
  memset(cfg, 0, sizeof *cfg);
  cfg->algorithm = algorithm;
  cfg->initial_limit = 20;
  cfg->min_limit = algorithm == FB_LIMIT_VEGAS ? 1 : 20;
  cfg->max_limit = algorithm == FB_LIMIT_VEGAS ? 1000 : 200;
  cfg->smoothing = algorithm == FB_LIMIT_VEGAS ? 1.0 : 0.2;
  cfg->queue_size = 4;
  cfg->rtt_tolerance = 1.5;
  cfg->long_window = 600;
  cfg->backoff_ratio = 0.9;
  cfg->timeout = 5;
  cfg->alpha = 3;
  cfg->beta = 6;
  cfg->probe_multiplier = 30;
  cfg->min_window = 1;
  cfg->max_window = 1;
  cfg->window_size = 10;
  cfg->min_rtt_threshold = 0.0001;
  cfg->magic = FB_CONFIG_MAGIC;
}

/* The first invalid field's name, or NULL; comparisons are written so
 * that NaN fails them. */
static const char *bad_field(const fb_limiter_config *c) {
  if (c->magic != FB_CONFIG_MAGIC)
    return "config (not initialised with fb_limiter_config_init)";
  if ((unsigned)c->algorithm > FB_LIMIT_VEGAS)
    return "algorithm";
  if (c->max_limit < 1 || c->max_limit > FB_LIMITER_MAX)
    return "max_limit";
  if (c->min_limit < 1 || c->min_limit > c->max_limit)
    return "min_limit";
  if (c->initial_limit < c->min_limit || c->initial_limit > c->max_limit)
    return "initial_limit";
  if (!(c->smoothing > 0 && c->smoothing <= 1))
    return "smoothing";
  if (!(c->queue_size >= 0 && c->queue_size <= FB_LIMITER_MAX))
    return "queue_size";
  if (!(c->rtt_tolerance >= 1 && c->rtt_tolerance <= 1e6))
    return "rtt_tolerance";
  if (c->long_window < 1)
    return "long_window";
  if (!(c->backoff_ratio >= 0.5 && c->backoff_ratio < 1))
    return "backoff_ratio";
  if (!(c->timeout > 0))
    return "timeout";
  if (!(c->alpha > 0 && c->alpha <= 1e6))
    return "alpha";
  if (!(c->beta >= c->alpha && c->beta <= 1e6))
    return "beta";
  if (c->probe_multiplier < 1)
    return "probe_multiplier";
  if (!(c->min_window >= 0 && c->min_window <= 1e9))
    return "min_window";
  if (!(c->max_window >= c->min_window && c->max_window <= 1e9))
    return "max_window";
  if (c->window_size < 1)
    return "window_size";
  if (!(c->min_rtt_threshold >= 0 && c->min_rtt_threshold <= 1e9))
    return "min_rtt_threshold";
  return NULL;
}

int fb_limiter_config_check(const fb_limiter_config *cfg, const char **field) {
  const char *bad = cfg ? bad_field(cfg) : "config";
  if (field)
    *field = bad;
  return bad ? FB_EINVAL : 0;
}

/* Vegas' jitter: uniform in [0.5, 1). */
static double draw_jitter(fb_limiter *l) {
  return 0.5 + 0.5 * fb_rng_double(&l->rng);
}

fb_limiter *fb_limiter_new(const fb_limiter_config *cfg) {
  fb_limiter_config def;
  if (!cfg) {
    fb_limiter_config_init(&def, FB_LIMIT_GRADIENT2);
    cfg = &def;
  }
  if (fb_limiter_config_check(cfg, NULL) < 0)
    return NULL;
  fb_limiter *l = fb__calloc(1, sizeof *l);
  if (!l)
    return NULL;
  atomic_flag_clear(&l->lock);
  l->cfg = *cfg;
  l->estimate = cfg->initial_limit;
  l->limit = cfg->initial_limit;
  fb_rng_seed(&l->rng, cfg->seed);
  l->probe_jitter = draw_jitter(l);
  l->win_min_rtt = INFINITY;
  return l;
}

void fb_limiter_free(fb_limiter *l) { fb__free(l); }

/* ------------------------------------------------------------- updates */

static double clamp(const fb_limiter *l, double v) {
  double lo = l->cfg.min_limit, hi = l->cfg.max_limit;
  return v < lo ? lo : v > hi ? hi : v;
}

/* Netflix's Log10RootFunction below 1000, at every limit (see the top). */
static double log10_root(double limit) {
  double v = floor(log10(limit));
  return v < 1 ? 1 : v;
}

static void aimd(fb_limiter *l, double rtt, int inflight, int drop) {
  double limit = l->estimate;
  if (drop || rtt > l->cfg.timeout)
    limit = floor(limit * l->cfg.backoff_ratio);
  else if (inflight * 2.0 >= limit)
    limit += 1;
  l->estimate = clamp(l, limit);
}

/* ExpAvgMeasurement(long_window, 10).add(rtt) */
static double long_add(fb_limiter *l, double rtt) {
  if (l->long_count < WARMUP) {
    l->long_count++;
    l->long_sum += rtt;
    l->long_rtt = l->long_sum / l->long_count;
  } else {
    double f = 2.0 / (l->cfg.long_window + 1.0);
    l->long_rtt = l->long_rtt * (1 - f) + rtt * f;
  }
  return l->long_rtt;
}

static void gradient2(fb_limiter *l, double rtt, int inflight) {
  if (!(rtt > 0))
    return;
  double long_rtt = long_add(l, rtt);
  if (long_rtt / rtt > 2)
    l->long_rtt *= 0.95; /* a mean still warming up recomputes it anyway */
  if (inflight < l->estimate / 2)
    return;
  double g = l->cfg.rtt_tolerance * long_rtt / rtt;
  g = g > 1 ? 1 : g < 0.5 ? 0.5 : g;
  double s = l->cfg.smoothing;
  double next = l->estimate * g + l->cfg.queue_size;
  l->estimate = clamp(l, l->estimate * (1 - s) + next * s);
}

static void vegas(fb_limiter *l, double rtt, int inflight, int drop) {
  if (!(rtt > 0))
    return;
  l->probe_count++;
  if (l->probe_jitter * l->cfg.probe_multiplier * l->estimate <=
      (double)l->probe_count) {
    l->probe_jitter = draw_jitter(l);
    l->probe_count = 0;
    l->rtt_noload = rtt;
    return;
  }
  if (l->rtt_noload == 0 || rtt < l->rtt_noload) {
    l->rtt_noload = rtt;
    return;
  }
  double est = l->estimate;
  double log = log10_root(floor(est));
  double queue = ceil(est * (1 - l->rtt_noload / rtt));
  double next;
  if (drop)
    next = est - log;
  else if (inflight * 2.0 < est)
    return;
  else if (queue <= log)
    next = est + l->cfg.beta * log;
  else if (queue < l->cfg.alpha * log)
    next = est + log;
  else if (queue > l->cfg.beta * log)
    next = est - log;
  else
    return;
  double s = l->cfg.smoothing;
  l->estimate = (1 - s) * est + s * clamp(l, next);
}

/* Feeds one sample to the algorithm. */
static void update(fb_limiter *l, double rtt, int inflight, int drop) {
  switch (l->cfg.algorithm) {
  case FB_LIMIT_AIMD:
    aimd(l, rtt, inflight, drop);
    break;
  case FB_LIMIT_GRADIENT2:
    gradient2(l, rtt, inflight);
    break;
  case FB_LIMIT_VEGAS:
    vegas(l, rtt, inflight, drop);
    break;
  }
}

/* Adds a sample to the window, and feeds the algorithm the window it
 * closes, if any, when it has window_size samples (see the top). */
static void window_add(fb_limiter *l, double rtt, int inflight, int drop,
                       double now) {
  if (rtt < l->cfg.min_rtt_threshold)
    return;
  if (rtt < l->win_min_rtt)
    l->win_min_rtt = rtt;
  l->win_sum += rtt;
  if (inflight > l->win_max_inflight)
    l->win_max_inflight = inflight;
  l->win_count++;
  l->win_drop |= drop;
  if (!(now > l->next_update))
    return;
  double span = 2 * l->win_min_rtt;
  span = span < l->cfg.min_window ? l->cfg.min_window : span;
  span = span > l->cfg.max_window ? l->cfg.max_window : span;
  l->next_update = now + span;
  if (l->win_count >= l->cfg.window_size)
    update(l, l->win_sum / l->win_count, l->win_max_inflight, l->win_drop);
  l->win_min_rtt = INFINITY;
  l->win_sum = 0;
  l->win_max_inflight = l->win_count = l->win_drop = 0;
}

/* ------------------------------------------------------------- locking */

static void spin_lock(fb_limiter *l) { fb__spin_lock(&l->lock); }

static void unlock(fb_limiter *l) { fb__spin_unlock(&l->lock); }

#define LOCKED(l, stmt)                                                        \
  do {                                                                         \
    if ((l)->shared)                                                           \
      spin_lock(l);                                                            \
    stmt;                                                                      \
    if ((l)->shared)                                                           \
      unlock(l);                                                               \
  } while (0)

void fb_limiter_set_shared(fb_limiter *l, int on) {
  if (l)
    l->shared = on != 0;
}

/* ------------------------------------------------------ acquire, release */

static int64_t acquire_unlocked(fb_limiter *l) {
  if (l->inflight >= l->limit) {
    l->rejected++;
    return FB_ELIMIT;
  }
  return ++l->inflight;
}

int64_t fb_limiter_acquire(fb_limiter *l) {
  if (!l)
    return FB_EINVAL;
  int64_t permit;
  LOCKED(l, permit = acquire_unlocked(l));
  return permit;
}

static int release_unlocked(fb_limiter *l, int64_t permit,
                            fb_limit_outcome outcome, double rtt, double now) {
  if ((unsigned)outcome > FB_LIMIT_IGNORED || !(rtt >= 0) || permit < 1 ||
      permit > l->cfg.max_limit || l->inflight < 1 ||
      (l->cfg.min_window > 0 && isnan(now)))
    return FB_EINVAL;
  l->inflight--;
  if (outcome == FB_LIMIT_IGNORED) {
    l->ignored++;
    return FB_LIMIT_SAME;
  }
  int drop = outcome == FB_LIMIT_DROPPED;
  l->dropped += drop;
  l->successes += !drop;
  l->last_rtt = rtt;
  if (l->cfg.min_window > 0)
    window_add(l, rtt, (int)permit, drop, now);
  else if (rtt >= l->cfg.min_rtt_threshold)
    update(l, rtt, (int)permit, drop);
  int limit = (int)l->estimate;
  if (limit == l->limit)
    return FB_LIMIT_SAME;
  fb_limit_change *c = &l->history[l->nchanges % FB_LIMITER_HISTORY];
  c->at = now;
  c->from = l->limit;
  c->to = limit;
  l->nchanges++;
  l->limit = limit;
  return FB_LIMIT_CHANGED;
}

int fb_limiter_release(fb_limiter *l, int64_t permit, fb_limit_outcome outcome,
                       double rtt, double now) {
  if (!l)
    return FB_EINVAL;
  int rc;
  LOCKED(l, rc = release_unlocked(l, permit, outcome, rtt, now));
  return rc;
}

/* ------------------------------------------------------------- queries */

int fb_limiter_limit(const fb_limiter *l) {
  int v = 0;
  if (l)
    LOCKED((fb_limiter *)l, v = l->limit);
  return v;
}

int fb_limiter_inflight(const fb_limiter *l) {
  int v = 0;
  if (l)
    LOCKED((fb_limiter *)l, v = l->inflight);
  return v;
}

const char *fb_limiter_algorithm_name(fb_limit_algorithm a) {
  switch (a) {
  case FB_LIMIT_GRADIENT2:
    return "gradient2";
  case FB_LIMIT_AIMD:
    return "aimd";
  case FB_LIMIT_VEGAS:
    return "vegas";
  }
  return "unknown";
}

uint64_t fb_limiter_changes(const fb_limiter *l) {
  uint64_t n = 0;
  if (l)
    LOCKED((fb_limiter *)l, n = l->nchanges);
  return n;
}

int fb_limiter_change(const fb_limiter *l, uint64_t n, int *from, int *to,
                      double *at) {
  if (!l || !from || !to || !at)
    return FB_EINVAL;
  int rc = FB_ENOENT;
  LOCKED((fb_limiter *)l, {
    if (n < l->nchanges && l->nchanges - n <= FB_LIMITER_HISTORY) {
      const fb_limit_change *c = &l->history[n % FB_LIMITER_HISTORY];
      *from = c->from;
      *to = c->to;
      *at = c->at;
      rc = 0;
    }
  });
  return rc;
}

void fb_limiter_metrics_get(fb_limiter *l, fb_limiter_metrics *m) {
  if (!l || !m)
    return;
  LOCKED(l, {
    m->limit = l->limit;
    m->estimate = l->estimate;
    m->inflight = l->inflight;
    m->rtt = l->last_rtt;
    m->rtt_noload = l->cfg.algorithm == FB_LIMIT_GRADIENT2 ? l->long_rtt
                    : l->cfg.algorithm == FB_LIMIT_VEGAS   ? l->rtt_noload
                                                           : 0;
    m->successes = l->successes;
    m->dropped = l->dropped;
    m->ignored = l->ignored;
    m->rejected = l->rejected;
    m->changes = l->nchanges;
  });
}
