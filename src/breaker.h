/*
 * breaker.h -- the circuit breaker's layout (internal).
 */
#ifndef FB_BREAKER_H
#define FB_BREAKER_H

#include "fusebox.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct fb_transition {
  double at;
  uint8_t from, to;
} fb_transition;

/* Unrecorded tokens remembered one by one (the newest this many of the
 * state); older ones fall back to a count. A power of two. */
#define FB_TOKEN_SLOTS 64

/* A book of tokens: the permits of one epoch of a breaker (a state, until
 * it changes or is reset), numbered in order, the newest FB_TOKEN_SLOTS
 * remembered one by one (breaker.c says how a token counts once). */
typedef struct fb_tokens {
  uint64_t epoch;            /* the breaker's epoch these tokens are of */
  int64_t next;              /* what the next granted acquire issues */
  int64_t first;             /* the epoch's first: older are stale */
  int64_t unslotted;         /* unrecorded tokens of this epoch that lost
                                their recent[] slot to a newer token */
  int64_t recent[FB_TOKEN_SLOTS]; /* by token % FB_TOKEN_SLOTS: token + 1
                                     while unrecorded, else 0 */
} fb_tokens;

/* Per-call flags in the count-mode ring. */
enum { FB_CALL_FAILED = 1, FB_CALL_SLOW = 2 };

/* One slice of the time-mode window. */
typedef struct fb_bucket {
  uint32_t calls, failed, slow;
} fb_bucket;

/* Who may use a breaker at once (fb_breaker.shared). */
enum { FB_UNSHARED = 0, FB_THREADS = 1, FB_PROCESSES = 2 };

/* A breaker holds no pointer: its window slots follow it in memory
 * (slots_of), so its bytes mean the same at any address, in any process
 * that maps them. */
struct fb_breaker {
  atomic_flag lock;          /* FB_THREADS: taken by every entry point */
  int shared;                /* FB_UNSHARED, FB_THREADS or FB_PROCESSES */
  fb_breaker_config cfg;
  fb_breaker_state state;
  /* Tokens (permits): every granted acquire issues the next number of a
   * book of tokens, so each call has its own and a record can tell a
   * second use. The breaker's own book serves every caller of
   * fb_breaker_acquire; a process using a breaker in shared memory keeps a
   * book of its own instead (fb__breaker_acquire_own), which a CLOSED
   * breaker fills without its lock. */
  uint64_t epoch;            /* bumped by every new state, reset and repair:
                                a book of an older epoch is stale */
  fb_tokens tokens;          /* the breaker's own book */
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

  uint64_t calls, ok, bad, timeouts, ignored, slow_calls, rejected, stale;
  uint64_t ntransitions;
  fb_transition history[FB_BREAKER_HISTORY];
};

/* The window's slots, right after the breaker: count mode, FB_CALL_* per
 * call; time mode, a ring of buckets (b + 1 is aligned for any type). */
#define FB_RING(b) ((uint8_t *)((b) + 1))
#define FB_BUCKETS(b) ((fb_bucket *)((b) + 1))

/* The head of a breaker in shared memory (fb_breaker_init_shared); the
 * breaker follows it at FB_SHARED_HEAD. */
typedef struct fb_shared {
  _Atomic uint64_t magic;    /* FB_SHARED_MAGIC once built: written last */
  uint32_t version;          /* FB_SHARED_VERSION */
  uint32_t layout;           /* sizeof(fb_breaker) of the build that made it */
  uint64_t size;             /* bytes it was built in (header included) */
  _Atomic uint32_t owner;    /* the lock: its holder's process id, 0: free
                                (breaker.c, process_lock) */
} fb_shared;

#define FB_SHARED_MAGIC 0x66627368617265ULL /* "fbshare" */
#define FB_SHARED_VERSION 3u /* 2: the owner word instead of a mutex;
                                3: books of tokens per process */
#define FB_SHARED_HEAD ((sizeof(fb_shared) + 63) & ~(size_t)63)

/* A breaker in shared memory used by one process with a book of tokens
 * of its own (own, zeroed or used with this breaker only; one thread at a
 * time): fb_breaker_acquire and fb_breaker_record, but a CLOSED or
 * DISABLED breaker grants a permit without taking its lock, so a permit
 * and its record take the lock once, not twice. The tokens are own's: a
 * token of own is recorded with own. Other breakers: the plain calls. */
int64_t fb__breaker_acquire_own(fb_breaker *b, fb_tokens *own, double now);
int fb__breaker_record_own(fb_breaker *b, fb_tokens *own, int64_t permit,
                           fb_outcome outcome, double duration, double now);

/* Test hook: takes a shared breaker's lock and returns holding it, so a
 * test can kill the holder. */
void fb__breaker_hold_lock(fb_breaker *b);

#endif
