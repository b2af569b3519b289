/*
 * breaker.c -- the circuit breaker state machine.
 *
 *   CLOSED    lets calls through and judges them by mode:
 *               consecutive: failure_threshold failures in a row open it
 *                            (a success resets the count; the document's);
 *               count:       over the last `window` calls,
 *               time:        over the last `window` seconds (in buckets),
 *             it opens once the window holds minimum_calls calls and the
 *             failure rate >= failure_rate or the slow rate >=
 *             slow_call_rate (slow: duration > slow_call_duration).
 *   OPEN      rejects calls until now - opened_at > open_timeout
 *             (strictly), then the next acquire moves it to HALF_OPEN.
 *             open_timeout starts at timeout, is multiplied by
 *             timeout_multiplier (up to timeout_max) on every re-open from
 *             HALF_OPEN and goes back to timeout on close.
 *   HALF_OPEN lets up to half_open_max_calls probes run at once;
 *             success_threshold successes close it, any failure (in count
 *             and time modes also any slow call) reopens it, and so does
 *             the first acquire after half_open_max_wait (a stuck probe
 *             cannot hold the breaker half-open forever).
 *   FORCED_OPEN / DISABLED are set by hand and left only by reset:
 *             the one rejects everything, the other lets everything
 *             through and keeps measuring without ever changing state.
 *
 * Calls are split into acquire (may I call?) and record (how did it go?)
 * so callers can run the call itself anywhere: in a coroutine that
 * sleeps, on another thread, in a callback. A permit (token) is a number
 * of its own, issued in order; each state begins a new range of them
 * (gobreaker's generations). A result whose token is from an earlier
 * state describes a state that no longer holds and is dropped
 * (FB_ESTALE), as gobreaker does. HALF_OPEN probe slots belong to a state
 * too, so a dropped result never leaks one: leaving the state frees them
 * all. An ignored outcome is counted nowhere but frees its slot. A
 * timeout is a failure to every judgement and counted apart, so what the
 * caller saw (it gave up waiting) survives into the metrics.
 *
 * A token counts once. The newest FB_TOKEN_SLOTS tokens of the state are
 * remembered one by one in recent[], so a second record of one of them is
 * dropped (FB_ESTALE) exactly. An older token still unrecorded when a
 * newer one took its slot is only counted (unslotted): a record of an
 * older token is accepted while the count says some are out. So however
 * tokens are replayed, a state never takes more results than it issued
 * tokens, and no allocation is needed for any number of calls in flight.
 *
 * Tokens are kept in a book (fb_tokens): the breaker's own, or, for a
 * breaker in shared memory, one per process. A state's tokens are an
 * epoch's, and a book finds out that its epoch ended by comparing it with
 * the breaker's, so a process can take a CLOSED breaker's permit from its
 * own book without the lock (nothing shared changes): an nginx worker's
 * permit and record then take the zone's lock once, not twice, which
 * halves what sharing a breaker costs (BENCHMARKS.md).
 */
#include "breaker.h"
#include "spin.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_RING 1000000 /* count mode: window calls, one byte each */
#define MIN_BUCKETS 10   /* time mode: the window slides in >= 10 steps */
#define MAX_BUCKETS 1000 /* ...of at most 1 s until windows of 1000 s */

void fb_breaker_config_init(fb_breaker_config *cfg) {
  cfg->failure_threshold = 5;
  cfg->timeout = 60.0;
  cfg->success_threshold = 3;
  cfg->mode = FB_MODE_CONSECUTIVE;
  cfg->window = 100;
  cfg->minimum_calls = 10;
  cfg->failure_rate = 0.5;
  cfg->slow_call_duration = INFINITY;
  cfg->slow_call_rate = 1.0;
  cfg->timeout_multiplier = 1.0;
  cfg->timeout_max = INFINITY;
  cfg->half_open_max_calls = 0;
  cfg->half_open_max_wait = INFINITY;
  cfg->magic = FB_CONFIG_MAGIC;
}

static int is_rate(double r) { return r > 0 && r <= 1; }

static int window_ok(const fb_breaker_config *cfg) {
  double w = cfg->window;
  if (cfg->mode == FB_MODE_COUNT)
    return w >= 1 && w <= MAX_RING && w == floor(w);
  return w > 0 && isfinite(w);
}

/* The first invalid field's name, or NULL; comparisons are written so
 * that NaN fails them. */
static const char *bad_field(const fb_breaker_config *cfg) {
  if (cfg->magic != FB_CONFIG_MAGIC)
    return "config (not initialised with fb_breaker_config_init)";
  if (cfg->failure_threshold < 1)
    return "failure_threshold";
  if (!(cfg->timeout > 0))
    return "timeout";
  if (cfg->success_threshold < 1)
    return "success_threshold";
  if (cfg->mode < FB_MODE_CONSECUTIVE || cfg->mode > FB_MODE_TIME)
    return "mode";
  if (!window_ok(cfg))
    return "window";
  if (cfg->minimum_calls < 1 ||
      (cfg->mode == FB_MODE_COUNT && cfg->minimum_calls > cfg->window))
    return "minimum_calls";
  if (!is_rate(cfg->failure_rate))
    return "failure_rate";
  if (!(cfg->slow_call_duration > 0))
    return "slow_call_duration";
  if (!is_rate(cfg->slow_call_rate))
    return "slow_call_rate";
  if (!(cfg->timeout_multiplier >= 1) || isinf(cfg->timeout_multiplier))
    return "timeout_multiplier";
  if (!(cfg->timeout_max >= cfg->timeout))
    return "timeout_max";
  if (cfg->half_open_max_calls < 0)
    return "half_open_max_calls";
  if (!(cfg->half_open_max_wait > 0))
    return "half_open_max_wait";
  return NULL;
}

int fb_breaker_config_check(const fb_breaker_config *cfg, const char **field) {
  const char *bad = cfg ? bad_field(cfg) : "config";
  if (field)
    *field = bad;
  return bad ? FB_EINVAL : 0;
}

/* Slots of the window: calls in count mode, buckets in time mode. */
static uint32_t window_slots(const fb_breaker_config *cfg) {
  double n;
  switch (cfg->mode) {
  case FB_MODE_COUNT:
    return (uint32_t)cfg->window;
  case FB_MODE_TIME:
    n = ceil(cfg->window);
    return (uint32_t)(n < MIN_BUCKETS ? MIN_BUCKETS
                                      : n > MAX_BUCKETS ? MAX_BUCKETS : n);
  default:
    return 0;
  }
}

/* Bytes of the breaker and its window slots. */
static size_t breaker_size(const fb_breaker_config *cfg) {
  size_t slot = cfg->mode == FB_MODE_TIME ? sizeof(fb_bucket) : 1;
  return sizeof(fb_breaker) + window_slots(cfg) * slot;
}

/* Builds a CLOSED breaker in zeroed memory of breaker_size(cfg) bytes. */
static void build(fb_breaker *b, const fb_breaker_config *cfg) {
  atomic_flag_clear(&b->lock);
  b->cfg = *cfg;
  b->state = FB_CLOSED;
  b->open_timeout = cfg->timeout;
  b->nslots = window_slots(cfg);
  if (cfg->mode == FB_MODE_TIME)
    b->bucket_width = cfg->window / b->nslots;
}

fb_breaker *fb_breaker_new(const fb_breaker_config *cfg) {
  fb_breaker_config def;
  if (!cfg) {
    fb_breaker_config_init(&def);
    cfg = &def;
  }
  if (fb_breaker_config_check(cfg, NULL) < 0)
    return NULL;
  fb_breaker *b = fb__calloc(1, breaker_size(cfg));
  if (b)
    build(b, cfg);
  return b;
}

void fb_breaker_free(fb_breaker *b) {
  if (b && b->shared != FB_PROCESSES) /* its memory is the caller's */
    fb__free(b);
}

/* ------------------------------------------------------------- window */

static void clear_window(fb_breaker *b) {
  b->buffered = b->failed = b->slow = 0;
  b->pos = 0; /* head and head_slot stay: empty buckets are harmless */
  if (b->cfg.mode == FB_MODE_COUNT)
    memset(FB_RING(b), 0, b->nslots);
  if (b->cfg.mode == FB_MODE_TIME)
    memset(FB_BUCKETS(b), 0, b->nslots * sizeof(fb_bucket));
}

/* Count mode: the call replaces the oldest once the ring is full. The
 * totals are updated once each from locals: separate read-modify-writes
 * defeat store forwarding and cost more than the rest of the call. */
static void ring_add(fb_breaker *b, unsigned flags) {
  uint8_t *slot = &FB_RING(b)[b->pos];
  unsigned full = b->buffered == b->nslots;
  unsigned old = full ? *slot : 0;
  b->buffered += !full;
  b->failed += (flags & FB_CALL_FAILED) - (old & FB_CALL_FAILED);
  b->slow += (flags >> 1) - (old >> 1); /* unsigned wrap-around is exact */
  *slot = (uint8_t)flags;
  if (++b->pos == b->nslots)
    b->pos = 0;
}

/* Time mode: buckets older than the window's nslots newest drop out. The
 * index is truncated rather than floored: clocks here start at 0. */
static void slide(fb_breaker *b, double now) {
  int64_t idx = (int64_t)(now / b->bucket_width);
  if (idx <= b->head)
    return;
  if (idx - b->head >= b->nslots) {
    clear_window(b);
  } else {
    for (int64_t i = b->head + 1; i <= idx; i++) {
      fb_bucket *k = &FB_BUCKETS(b)[(uint64_t)i % b->nslots];
      b->buffered -= k->calls;
      b->failed -= k->failed;
      b->slow -= k->slow;
      k->calls = k->failed = k->slow = 0;
    }
  }
  b->head = idx;
  b->head_slot = (uint32_t)((uint64_t)idx % b->nslots);
}

static void bucket_add(fb_breaker *b, unsigned flags, double now) {
  slide(b, now);
  fb_bucket *k = &FB_BUCKETS(b)[b->head_slot];
  k->calls++;
  k->failed += flags & FB_CALL_FAILED;
  k->slow += flags >> 1;
  b->buffered++;
  b->failed += flags & FB_CALL_FAILED;
  b->slow += flags >> 1;
}

/* Division, not failure_rate * buffered: 3/10 >= 0.3 holds, while
 * 0.3 * 10 rounds above 3. */
static int rates_over(const fb_breaker *b) {
  if (b->buffered < (uint32_t)b->cfg.minimum_calls)
    return 0;
  double n = b->buffered;
  return b->failed / n >= b->cfg.failure_rate ||
         b->slow / n >= b->cfg.slow_call_rate;
}

/* -------------------------------------------------------------- states */

/* Starts the tokens of a new state. One number is skipped, so whoever
 * sees every token knows from the gap that the state changed (the Lua
 * side announces changes that way without asking). */
static void renew(fb_tokens *book, uint64_t epoch) {
  book->next++;
  book->first = book->next;
  book->unslotted = 0;
  memset(book->recent, 0, sizeof book->recent); /* rare: once a state */
  book->epoch = epoch;
}

/* Begins a new epoch: every book's tokens so far are stale. The epoch is
 * stored after the state (release), so a process that reads the epoch and
 * then the state without the lock (fb__breaker_acquire_own) never pairs a
 * new epoch with an old state. */
static void new_tokens(fb_breaker *b) {
  uint64_t epoch = b->epoch + 1;
  __atomic_store_n(&b->epoch, epoch, __ATOMIC_RELEASE);
  renew(&b->tokens, epoch);
}

/* Brings a process's own book to the breaker's epoch. */
static inline void sync_book(fb_tokens *book, uint64_t epoch) {
  if (__builtin_expect(book->epoch != epoch, 0))
    renew(book, epoch);
}

static void enter(fb_breaker *b, fb_breaker_state to, double now) {
  fb_transition *t = &b->history[b->ntransitions % FB_BREAKER_HISTORY];
  t->at = now;
  t->from = (uint8_t)b->state;
  t->to = (uint8_t)to;
  b->ntransitions++;
  if (to == FB_OPEN && b->state == FB_HALF_OPEN) {
    double grown = b->open_timeout * b->cfg.timeout_multiplier;
    b->open_timeout = grown < b->cfg.timeout_max ? grown : b->cfg.timeout_max;
  }
  if (to == FB_CLOSED) {
    b->failures = 0;
    b->open_timeout = b->cfg.timeout;
    clear_window(b);
  }
  __atomic_store_n(&b->state, to, __ATOMIC_RELAXED); /* see new_tokens */
  new_tokens(b);
  b->since = now;
  b->successes = 0;
  b->in_flight = 0;
}

/* Issues the next token. Its slot in recent[] (cleared with every new
 * state, so whatever it holds is of this state) may still hold an
 * unrecorded token: that one is counted instead. */
static int64_t grant(fb_tokens *book) {
  int64_t token = book->next++;
  int64_t *slot = &book->recent[(uint64_t)token % FB_TOKEN_SLOTS];
  if (*slot)
    book->unslotted++;
  *slot = token + 1;
  return token;
}

/* Takes token back: 0 if it is an unrecorded token of this state (now
 * recorded), FB_ESTALE if from an earlier state or recorded already,
 * FB_EINVAL if never issued. */
static int redeem(fb_breaker *b, fb_tokens *book, int64_t token) {
  if ((uint64_t)token >= (uint64_t)book->next) /* negative ones too */
    return FB_EINVAL;
  int64_t *slot = &book->recent[(uint64_t)token % FB_TOKEN_SLOTS];
  if (*slot == token + 1) {
    *slot = 0;
    return 0;
  }
  /* Among the newest FB_TOKEN_SLOTS nothing else can have taken the
   * slot: this token was recorded already. */
  if (token >= book->first &&
      token < book->next - FB_TOKEN_SLOTS && book->unslotted > 0) {
    book->unslotted--;
    return 0;
  }
  b->stale++;
  return FB_ESTALE;
}

static int64_t reject(fb_breaker *b) {
  b->rejected++;
  return FB_EREJECTED;
}

static int64_t acquire_probe(fb_breaker *b, fb_tokens *book, double now) {
  if (now - b->since > b->cfg.half_open_max_wait) {
    enter(b, FB_OPEN, now);
    return reject(b);
  }
  if (b->cfg.half_open_max_calls && b->in_flight >= b->cfg.half_open_max_calls)
    return reject(b);
  b->in_flight++;
  sync_book(book, b->epoch); /* OPEN may have just given way to HALF_OPEN */
  return grant(book);
}

static int64_t acquire_unlocked(fb_breaker *b, fb_tokens *book, double now) {
  switch (b->state) {
  case FB_CLOSED:
  case FB_DISABLED:
    return grant(book);
  case FB_OPEN:
    if (isnan(now)) /* "not read": the timeout needs it */
      return FB_ENOW;
    if (!(now - b->since > b->open_timeout))
      return reject(b);
    enter(b, FB_HALF_OPEN, now);
    return acquire_probe(b, book, now);
  case FB_HALF_OPEN:
    if (isnan(now))
      return FB_ENOW;
    return acquire_probe(b, book, now);
  case FB_FORCED_OPEN:
    break;
  }
  return reject(b);
}

static int record_probe(fb_breaker *b, fb_outcome outcome, unsigned flags,
                        double now) {
  if (b->in_flight > 0)
    b->in_flight--;
  if (outcome == FB_IGNORED)
    return FB_RECORDED;
  int bad = b->cfg.mode == FB_MODE_CONSECUTIVE ? flags & FB_CALL_FAILED
                                               : flags != 0;
  if (bad)
    enter(b, FB_OPEN, now);
  else if (++b->successes >= b->cfg.success_threshold)
    enter(b, FB_CLOSED, now);
  else
    return FB_RECORDED;
  return FB_CHANGED;
}

/* Adds the call to the window; returns whether CLOSED must open. */
static int measure(fb_breaker *b, unsigned flags, double now) {
  switch (b->cfg.mode) {
  case FB_MODE_CONSECUTIVE:
    b->failures = flags & FB_CALL_FAILED ? b->failures + 1 : 0;
    return b->failures >= b->cfg.failure_threshold;
  case FB_MODE_COUNT:
    ring_add(b, flags);
    /* only a bad call or reaching minimum_calls can raise a rate */
    return (flags || b->buffered == (uint32_t)b->cfg.minimum_calls) &&
           rates_over(b);
  case FB_MODE_TIME:
    bucket_add(b, flags, now); /* sliding may raise a rate: always judge */
    return rates_over(b);
  }
  return 0;
}

/* Whether recording outcome in b's present state reads neither now nor
 * the duration: consecutive mode without a slow-call rule, CLOSED (an
 * outcome that cannot open it) or DISABLED (never changes state). */
static int timeless_record(const fb_breaker *b, fb_outcome outcome) {
  if (b->cfg.mode != FB_MODE_CONSECUTIVE || !isinf(b->cfg.slow_call_duration))
    return 0;
  if (b->state == FB_DISABLED)
    return 1;
  if (b->state != FB_CLOSED)
    return 0;
  return outcome == FB_SUCCESS || outcome == FB_IGNORED ||
         b->failures + 1 < b->cfg.failure_threshold;
}

__attribute__((noinline)) static int record_any(fb_breaker *b,
                                               fb_tokens *book, int64_t permit,
                                               fb_outcome outcome,
                                               double duration, double now) {
  if ((unsigned)outcome > FB_TIMEOUT)
    return FB_EINVAL;
  if (isnan(now) && !timeless_record(b, outcome))
    return FB_ENOW; /* before anything changed */
  /* OPEN and FORCED_OPEN issue no tokens: none is of their state */
  int rc = redeem(b, book, permit);
  if (rc < 0)
    return rc;
  int failed = outcome == FB_FAILURE || outcome == FB_TIMEOUT;
  unsigned flags = (failed ? FB_CALL_FAILED : 0) |
                   (duration > b->cfg.slow_call_duration ? FB_CALL_SLOW : 0);
  b->calls++;
  if (outcome == FB_IGNORED) {
    b->ignored++;
    flags = 0;
  } else {
    b->bad += outcome == FB_FAILURE;
    b->timeouts += outcome == FB_TIMEOUT;
    b->ok += outcome == FB_SUCCESS;
    b->slow_calls += flags >> 1;
  }
  if (b->state == FB_HALF_OPEN)
    return record_probe(b, outcome, flags, now);
  if (outcome == FB_IGNORED || !measure(b, flags, now) ||
      b->state != FB_CLOSED)
    return FB_RECORDED;
  enter(b, FB_OPEN, now);
  return FB_CHANGED;
}

/* Nearly every record is a success while CLOSED in consecutive mode with
 * no slow-call rule, its token in its slot: it counts and ends the run of
 * failures, as record_any() would, without the rest of its steps. */
static inline int record_unlocked(fb_breaker *b, fb_tokens *book,
                                  int64_t permit, fb_outcome outcome,
                                  double duration, double now) {
  int64_t *slot = &book->recent[(uint64_t)permit % FB_TOKEN_SLOTS];
  if (outcome == FB_SUCCESS && b->state == FB_CLOSED &&
      b->cfg.mode == FB_MODE_CONSECUTIVE && isinf(b->cfg.slow_call_duration) &&
      (uint64_t)permit < (uint64_t)book->next && *slot == permit + 1) {
    *slot = 0;
    b->calls++;
    b->ok++;
    b->failures = 0;
    return FB_RECORDED;
  }
  return record_any(b, book, permit, outcome, duration, now);
}

/* ------------------------------------------------------ manual control */

static void force_open_unlocked(fb_breaker *b, double now) {
  if (b->state != FB_FORCED_OPEN)
    enter(b, FB_FORCED_OPEN, now);
}

static void disable_unlocked(fb_breaker *b, double now) {
  if (b->state != FB_DISABLED)
    enter(b, FB_DISABLED, now);
}

static void reset_unlocked(fb_breaker *b, double now) {
  if (b->state != FB_CLOSED) {
    enter(b, FB_CLOSED, now);
    return;
  }
  b->failures = 0;
  clear_window(b);
  new_tokens(b); /* results from before the reset describe another world */
}

/* ------------------------------------------------------------- queries */

fb_breaker_state fb_breaker_state_of(const fb_breaker *b) {
  return b ? b->state : FB_CLOSED;
}

const char *fb_breaker_state_name(fb_breaker_state s) {
  switch (s) {
  case FB_CLOSED:
    return "CLOSED";
  case FB_OPEN:
    return "OPEN";
  case FB_HALF_OPEN:
    return "HALF_OPEN";
  case FB_FORCED_OPEN:
    return "FORCED_OPEN";
  case FB_DISABLED:
    return "DISABLED";
  }
  return "UNKNOWN";
}

uint64_t fb_breaker_transitions(const fb_breaker *b) {
  return b ? b->ntransitions : 0;
}

int fb_breaker_transition(const fb_breaker *b, uint64_t n,
                          fb_breaker_state *from, fb_breaker_state *to,
                          double *at) {
  if (!b || !from || !to || !at)
    return FB_EINVAL;
  if (n >= b->ntransitions || b->ntransitions - n > FB_BREAKER_HISTORY)
    return FB_ENOENT;
  const fb_transition *t = &b->history[n % FB_BREAKER_HISTORY];
  *from = (fb_breaker_state)t->from;
  *to = (fb_breaker_state)t->to;
  *at = t->at;
  return 0;
}

static double retry_after_unlocked(const fb_breaker *b, double now) {
  if (b->state == FB_FORCED_OPEN)
    return INFINITY;
  if (b->state != FB_OPEN)
    return 0;
  double left = b->since + b->open_timeout - now;
  return left > 0 ? left : 0;
}

static double rate(const fb_breaker *b, uint32_t n) {
  if (b->cfg.mode == FB_MODE_CONSECUTIVE ||
      b->buffered < (uint32_t)b->cfg.minimum_calls)
    return -1;
  return (double)n / b->buffered;
}

static void metrics_get_unlocked(fb_breaker *b, double now,
                                 fb_breaker_metrics *m) {
  if (b->cfg.mode == FB_MODE_TIME)
    slide(b, now);
  m->state = b->state;
  m->failure_rate = rate(b, b->failed);
  m->slow_rate = rate(b, b->slow);
  m->buffered = b->buffered;
  m->failed = b->cfg.mode == FB_MODE_CONSECUTIVE ? (uint64_t)b->failures
                                                 : b->failed;
  m->slow = b->slow;
  m->calls = b->calls;
  m->successes = b->ok;
  m->failures = b->bad;
  m->timeouts = b->timeouts;
  m->ignored = b->ignored;
  m->slow_calls = b->slow_calls;
  m->rejected = b->rejected;
  m->stale = b->stale;
  m->half_open_calls = b->state == FB_HALF_OPEN ? (uint64_t)b->in_flight : 0;
  m->time_in_state = now - b->since;
  m->open_timeout = b->open_timeout;
}

/* -------------------------------------------------------------- sharing */

/* The threads' spinlock (spin.h), kept out of line, so an unshared
 * breaker's entry points stay leaf functions with no lock code on their
 * path. */
__attribute__((noinline)) static void spin_lock(fb_breaker *b) {
  fb__spin_lock(&b->lock);
}

static fb_shared *head_of(fb_breaker *b) {
  return (fb_shared *)((char *)b - FB_SHARED_HEAD);
}

/* Across processes a plain spinlock will not do: a holder that dies (a
 * worker killed, a crash) leaves it taken for good, as nobody knows who
 * held it. So the lock word holds its holder's process id (0: free):
 * taking it is one compare-and-swap, releasing it one store, and a waiter
 * that has spun for a while asks the kernel whether the holder still
 * exists (kill(pid, 0)); if not, it takes the lock over by a compare-and-swap
 * from the dead id (one waiter wins) and repairs whatever step the dead
 * one left half done. A robust process-shared mutex gives the same
 * guarantee through the kernel's robust futex list, but its bookkeeping
 * costs 9-12 ns a lock and unlock here against 2 for the word, and an
 * acquire + record takes the lock twice: the difference is most of a
 * shared breaker's cost. What the word cannot see: a holder that is dead
 * but not yet reaped (a zombie still has its id: nginx's master reaps its
 * workers at once), and its id reused by a new process between its death
 * and the check (the kernel hands ids out in increasing order, wrapping at
 * pid_max). A holder of another user (kill says EPERM) counts as alive. Not a lock-free state word: a result updates a dozen fields
 * (window, tokens, counts, history) that a CAS cannot cover at once. */
static void repair(fb_breaker *b);

/* This process's id, cached (getpid() is a system call), and cleared in
 * a forked child, which starts with its parent's. A process id, not a
 * thread's: threads of one process exclude each other by the word alone,
 * and none can die inside a critical section while its process lives
 * (there is no cancellation point in one). An atomic, not a thread-local:
 * in fusebox.so a thread-local costs a __tls_get_addr call per lock. */
static _Atomic uint32_t my_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void forget_pid(void) { atomic_store_explicit(&my_pid, 0, memory_order_relaxed); }
static void watch_forks(void) { pthread_atfork(NULL, NULL, forget_pid); }

static uint32_t self_id(void) {
  uint32_t id = atomic_load_explicit(&my_pid, memory_order_relaxed);
  if (__builtin_expect(id == 0, 0)) {
    pthread_once(&pid_once, watch_forks);
    id = (uint32_t)getpid();
    atomic_store_explicit(&my_pid, id, memory_order_relaxed);
  }
  return id;
}

static int process_gone(uint32_t pid) {
  return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

#define SPINS_BEFORE_CHECK 1024 /* a critical section is ~20 ns */

static void process_lock_slow(fb_breaker *b, uint32_t me) {
  _Atomic uint32_t *word = &head_of(b)->owner;
  for (unsigned spins = 1;; spins++) {
    uint32_t holder = atomic_load_explicit(word, memory_order_relaxed);
    if (holder == 0) {
      if (atomic_compare_exchange_weak_explicit(word, &holder, me,
                                                memory_order_acquire,
                                                memory_order_relaxed))
        return;
    } else if (spins % SPINS_BEFORE_CHECK == 0 && process_gone(holder)) {
      if (atomic_compare_exchange_strong_explicit(word, &holder, me,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
        repair(b); /* the dead holder's step may be half done */
        return;
      }
    } else if (spins > 100000) {
      usleep(100); /* a holder stopped (SIGSTOP, a debugger): do not burn a core */
    } else if (spins > 100) {
      sched_yield(); /* the holder may have been preempted */
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

static inline void process_lock(fb_breaker *b) {
  uint32_t me = self_id(), free_word = 0;
  if (!atomic_compare_exchange_strong_explicit(&head_of(b)->owner, &free_word,
                                               me, memory_order_acquire,
                                               memory_order_relaxed))
    process_lock_slow(b, me);
}

__attribute__((noinline)) static void lock(fb_breaker *b) {
  if (b->shared == FB_PROCESSES)
    process_lock(b);
  else
    spin_lock(b);
}

static void process_unlock(fb_breaker *b) {
  atomic_store_explicit(&head_of(b)->owner, 0, memory_order_release);
}

static void unlock(fb_breaker *b) {
  if (b->shared == FB_PROCESSES)
    process_unlock(b);
  else
    fb__spin_unlock(&b->lock);
}

void fb__breaker_hold_lock(fb_breaker *b) { lock(b); }

/* Makes a breaker whole after its lock's holder died inside a critical
 * section, which may have stopped between any two stores. What a step can
 * leave half done is put right the conservative way: the window's totals
 * are summed again from its slots, the counts clamped to what the window
 * holds, and every permit out is made stale (new tokens), so no probe slot
 * stays taken by the dead and a half-granted token is never redeemed. The
 * dead caller's own call may be lost or half counted in the lifetime
 * totals; the state machine stays valid. */
static void repair(fb_breaker *b) {
  if ((unsigned)b->state > FB_DISABLED)
    __atomic_store_n(&b->state, FB_OPEN, __ATOMIC_RELAXED); /* a torn store:
                                            not possible on aligned ints */
  uint32_t failed = 0, slow = 0, buffered = 0;
  if (b->cfg.mode == FB_MODE_COUNT) {
    uint8_t *ring = FB_RING(b);
    for (uint32_t i = 0; i < b->nslots; i++) {
      ring[i] &= FB_CALL_FAILED | FB_CALL_SLOW;
      failed += ring[i] & FB_CALL_FAILED;
      slow += ring[i] >> 1;
    }
    buffered = b->buffered > b->nslots ? b->nslots : b->buffered;
    if (b->pos >= b->nslots)
      b->pos = 0;
  } else if (b->cfg.mode == FB_MODE_TIME) {
    const fb_bucket *k = FB_BUCKETS(b);
    for (uint32_t i = 0; i < b->nslots; i++) {
      buffered += k[i].calls;
      failed += k[i].failed;
      slow += k[i].slow;
    }
    b->head_slot = (uint32_t)((uint64_t)b->head % b->nslots);
  }
  b->buffered = buffered < failed ? failed : buffered;
  b->buffered = b->buffered < slow ? slow : b->buffered;
  b->failed = failed;
  b->slow = slow;
  if (b->failures < 0)
    b->failures = 0;
  b->successes = 0;
  b->in_flight = 0;
  new_tokens(b);
}

void fb_breaker_set_shared(fb_breaker *b, int on) {
  if (b && b->shared != FB_PROCESSES) /* always locked, by its owner word */
    b->shared = on ? FB_THREADS : FB_UNSHARED;
}

/* ------------------------------------------------------- shared memory */

size_t fb_breaker_shared_size(const fb_breaker_config *cfg) {
  if (fb_breaker_config_check(cfg, NULL) < 0)
    return 0;
  return FB_SHARED_HEAD + breaker_size(cfg);
}

fb_breaker *fb_breaker_init_shared(void *mem, size_t size,
                                   const fb_breaker_config *cfg, double now) {
  size_t need = fb_breaker_shared_size(cfg);
  if (!mem || !need || size < need || (uintptr_t)mem % _Alignof(fb_shared))
    return NULL;
  fb_shared *h = mem;
  memset(mem, 0, need); /* the lock word too: free */
  fb_breaker *b = (fb_breaker *)((char *)mem + FB_SHARED_HEAD);
  build(b, cfg);
  b->since = now;
  b->shared = FB_PROCESSES;
  h->version = FB_SHARED_VERSION;
  h->layout = (uint32_t)sizeof *b;
  h->size = need;
  /* last: whoever attaches on seeing the magic sees all of the above */
  atomic_store_explicit(&h->magic, FB_SHARED_MAGIC, memory_order_release);
  return b;
}

fb_breaker *fb_breaker_attach_shared(void *mem, size_t size) {
  if (!mem || size < FB_SHARED_HEAD + sizeof(fb_breaker) ||
      (uintptr_t)mem % _Alignof(fb_shared))
    return NULL;
  fb_shared *h = mem;
  if (atomic_load_explicit(&h->magic, memory_order_acquire) !=
          FB_SHARED_MAGIC ||
      h->version != FB_SHARED_VERSION || h->layout != sizeof(fb_breaker) ||
      h->size > size)
    return NULL;
  fb_breaker *b = (fb_breaker *)((char *)mem + FB_SHARED_HEAD);
  /* the fields an index or a loop bound comes from must fit the memory */
  if (b->shared != FB_PROCESSES || bad_field(&b->cfg) ||
      h->size != fb_breaker_shared_size(&b->cfg) ||
      b->nslots != window_slots(&b->cfg) ||
      (b->nslots && (b->pos >= b->nslots || b->head_slot >= b->nslots)) ||
      (b->cfg.mode == FB_MODE_TIME &&
       b->bucket_width != b->cfg.window / b->nslots) ||
      (unsigned)b->state > FB_DISABLED)
    return NULL;
  return b;
}

__attribute__((noinline)) static int64_t acquire_shared(fb_breaker *b,
                                                        double now) {
  lock(b);
  int64_t permit = acquire_unlocked(b, &b->tokens, now);
  unlock(b);
  return permit;
}

int64_t fb_breaker_acquire(fb_breaker *b, double now) {
  if (!b)
    return FB_EINVAL;
  if (b->shared)
    return acquire_shared(b, now);
  return acquire_unlocked(b, &b->tokens, now);
}

/* A CLOSED or DISABLED breaker grants from own's book alone: nothing
 * shared changes. The epoch is read before the state (acquire; new_tokens
 * stores them in the other order), so the state read is of that epoch or
 * a later one: a token of an epoch that has ended is stale at its record,
 * the safe side of the race. */
int64_t fb__breaker_acquire_own(fb_breaker *b, fb_tokens *own, double now) {
  if (!b || !own)
    return FB_EINVAL;
  if (b->shared != FB_PROCESSES)
    return fb_breaker_acquire(b, now);
  uint64_t epoch = __atomic_load_n(&b->epoch, __ATOMIC_ACQUIRE);
  fb_breaker_state state = __atomic_load_n(&b->state, __ATOMIC_RELAXED);
  if (state == FB_CLOSED || state == FB_DISABLED) {
    sync_book(own, epoch);
    return grant(own);
  }
  process_lock(b);
  sync_book(own, b->epoch);
  int64_t permit = acquire_unlocked(b, own, now);
  process_unlock(b);
  return permit;
}

int fb__breaker_record_own(fb_breaker *b, fb_tokens *own, int64_t permit,
                           fb_outcome outcome, double duration, double now) {
  if (!b || !own)
    return FB_EINVAL;
  if (b->shared != FB_PROCESSES)
    return fb_breaker_record(b, permit, outcome, duration, now);
  process_lock(b); /* inline here: this is the one lock of a call */
  sync_book(own, b->epoch); /* a token of an ended epoch: stale */
  int rc = record_unlocked(b, own, permit, outcome, duration, now);
  process_unlock(b);
  return rc;
}

__attribute__((noinline)) static int record_shared(fb_breaker *b,
                                                   int64_t permit,
                                                   fb_outcome outcome,
                                                   double duration,
                                                   double now) {
  lock(b);
  int rc = record_unlocked(b, &b->tokens, permit, outcome, duration, now);
  unlock(b);
  return rc;
}

int fb_breaker_record(fb_breaker *b, int64_t permit, fb_outcome outcome,
                      double duration, double now) {
  if (!b)
    return FB_EINVAL;
  if (b->shared)
    return record_shared(b, permit, outcome, duration, now);
  return record_unlocked(b, &b->tokens, permit, outcome, duration, now);
}

/* The rarely called entry points: lock when shared, no fast path. */
#define LOCKED(b, stmt)                                                        \
  do {                                                                         \
    if ((b)->shared)                                                           \
      lock(b);                                                                 \
    stmt;                                                                      \
    if ((b)->shared)                                                           \
      unlock(b);                                                               \
  } while (0)

void fb_breaker_force_open(fb_breaker *b, double now) {
  if (b)
    LOCKED(b, force_open_unlocked(b, now));
}

void fb_breaker_disable(fb_breaker *b, double now) {
  if (b)
    LOCKED(b, disable_unlocked(b, now));
}

void fb_breaker_reset(fb_breaker *b, double now) {
  if (b)
    LOCKED(b, reset_unlocked(b, now));
}

double fb_breaker_retry_after(const fb_breaker *b, double now) {
  double left = 0;
  if (b)
    LOCKED((fb_breaker *)b, left = retry_after_unlocked(b, now));
  return left;
}

void fb_breaker_metrics_get(fb_breaker *b, double now, fb_breaker_metrics *m) {
  if (b && m)
    LOCKED(b, metrics_get_unlocked(b, now, m));
}
