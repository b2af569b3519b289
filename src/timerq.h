/*
 * timerq.h -- a queue of (deadline, sequence) keyed entries: a binary
 * min-heap, and lanes for runs of one deadline.
 *
 * The scheduler's one clock-ordered queue: earliest deadline first, and
 * among equal deadlines the one scheduled first, which is what makes runs
 * with the same seed replay exactly. Pure C: no Lua, no I/O.
 *
 * Lanes: a thousand clients that each sleep the same pace wake in waves
 * of one deadline; timeouts of one length, wakes at now and a trace's
 * arrivals come in rising deadlines. An entry due no earlier than a
 * lane's newest goes to that lane's end (of such lanes, the one whose
 * newest is due latest), so a lane is a FIFO sorted by (deadline, seq);
 * an entry no lane takes starts an empty one, and only the rest go to the
 * heap: a push and a pop of such a stream cost O(1), not two sifts through
 * a heap of every sleeper. A pop takes the least of the heap's top and the
 * lanes' heads, so the order is exactly the heap's alone.
 */
#ifndef FB_TIMERQ_H
#define FB_TIMERQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct fb_timer {
  double deadline;
  uint64_t seq;
  int ref;       /* what to wake: opaque to the queue */
  uint32_t token; /* lets the owner recognise entries it has cancelled */
} fb_timer;

#define FB_TIMER_LANES 4

typedef struct fb_timer_lane {
  fb_timer *v;             /* v[head .. tail): sorted by (deadline, seq) */
  size_t head, tail, cap;
} fb_timer_lane;

typedef struct fb_timerq {
  fb_timer *heap;
  size_t nheap, cap;
  size_t n;                /* entries in all: the heap's and the lanes' */
  uint64_t next_seq;
  fb_timer_lane lane[FB_TIMER_LANES];
} fb_timerq;

/* Pushes an entry; returns 0 or FB_ENOMEM. */
int fb_timerq_push(fb_timerq *q, double deadline, int ref, uint32_t token);

/* Returns the earliest entry, or NULL when empty. */
const fb_timer *fb_timerq_peek(const fb_timerq *q);

/* Removes the earliest entry into *out; returns 0, or -1 when empty. */
int fb_timerq_pop(fb_timerq *q, fb_timer *out);

/* Removes every entry drop(ctx, entry) says to, keeping the order of the
 * rest (it is (deadline, seq), whatever the heap's layout); returns how
 * many went. O(n). */
size_t fb_timerq_drop(fb_timerq *q, int (*drop)(void *ctx, const fb_timer *t),
                      void *ctx);

/* Frees the heap's storage. */
void fb_timerq_free(fb_timerq *q);

#endif
