/*
 * timerq.c -- a min-heap ordered by (deadline, seq), and lanes of rising
 * deadlines beside it (timerq.h).
 */
#include "timerq.h"
#include "util.h"

#include "fusebox.h"

#include <stdlib.h>
#include <string.h>

static int before(const fb_timer *a, const fb_timer *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

/* Doubles the array *v of *cap entries (64 at first); 0 or FB_ENOMEM. */
static int grow(fb_timer **v, size_t *cap) {
  size_t n = *cap ? *cap * 2 : 64;
  fb_timer *w = fb__realloc(*v, n * sizeof *w);
  if (!w)
    return FB_ENOMEM;
  *v = w;
  *cap = n;
  return 0;
}

/* ---------------------------------------------------------------- heap */

static int heap_push(fb_timerq *q, const fb_timer *t) {
  if (q->nheap == q->cap && grow(&q->heap, &q->cap) < 0)
    return FB_ENOMEM;
  size_t i = q->nheap++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(t, &q->heap[parent]))
      break;
    q->heap[i] = q->heap[parent];
    i = parent;
  }
  q->heap[i] = *t;
  return 0;
}

/* Moves heap[i] down to its place among its children. */
static void sift_down(fb_timerq *q, size_t i) {
  fb_timer t = q->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= q->nheap)
      break;
    if (child + 1 < q->nheap && before(&q->heap[child + 1], &q->heap[child]))
      child++;
    if (!before(&q->heap[child], &t))
      break;
    q->heap[i] = q->heap[child];
    i = child;
  }
  q->heap[i] = t;
}

/* --------------------------------------------------------------- lanes */

/* Appends t to lane l (due no earlier than l's newest, or l is empty). */
static int lane_push(fb_timer_lane *l, const fb_timer *t) {
  if (l->tail == l->cap) {
    /* slide the live part down when it is at most half the array (so a
     * slide is paid for by as many pops), else grow: a lane that never
     * empties -- a stream of rising deadlines -- must not slide on every
     * push */
    if (l->head > 0 && l->head >= l->cap / 2) {
      memmove(l->v, l->v + l->head, (l->tail - l->head) * sizeof *l->v);
      l->tail -= l->head;
      l->head = 0;
    } else if (grow(&l->v, &l->cap) < 0) {
      return FB_ENOMEM;
    }
  }
  l->v[l->tail++] = *t;
  return 0;
}

/* The lane that takes an entry at deadline: of those whose newest entry
 * is due no later, the one due latest (a stream of rising deadlines --
 * timeouts of one length, wakes at now, a trace's arrivals -- keeps to
 * its lane), else an empty one; NULL: the heap takes it. */
static fb_timer_lane *lane_for(fb_timerq *q, double deadline) {
  fb_timer_lane *fit = NULL, *empty = NULL;
  double fit_at = 0;
  for (int k = 0; k < FB_TIMER_LANES; k++) {
    fb_timer_lane *l = &q->lane[k];
    if (l->head == l->tail) {
      if (!empty)
        empty = l;
      continue;
    }
    double last = l->v[l->tail - 1].deadline;
    if (last <= deadline && (!fit || last > fit_at)) {
      fit = l;
      fit_at = last;
    }
  }
  return fit ? fit : empty;
}

/* Where the earliest entry is: lane k (0..FB_TIMER_LANES-1), the heap
 * (FB_TIMER_LANES), or -1 when the queue is empty. */
static int earliest(const fb_timerq *q) {
  const fb_timer *best = q->nheap ? &q->heap[0] : NULL;
  int where = best ? FB_TIMER_LANES : -1;
  for (int k = 0; k < FB_TIMER_LANES; k++) {
    const fb_timer_lane *l = &q->lane[k];
    if (l->head < l->tail && (!best || before(&l->v[l->head], best))) {
      best = &l->v[l->head];
      where = k;
    }
  }
  return where;
}

/* ---------------------------------------------------------------- queue */

int fb_timerq_push(fb_timerq *q, double deadline, int ref, uint32_t token) {
  fb_timer t = {deadline, q->next_seq, ref, token};
  fb_timer_lane *l = lane_for(q, deadline);
  int rc = l ? lane_push(l, &t) : heap_push(q, &t);
  if (rc < 0)
    return rc;
  q->next_seq++;
  q->n++;
  return 0;
}

const fb_timer *fb_timerq_peek(const fb_timerq *q) {
  int k = earliest(q);
  if (k < 0)
    return NULL;
  return k == FB_TIMER_LANES ? &q->heap[0] : &q->lane[k].v[q->lane[k].head];
}

int fb_timerq_pop(fb_timerq *q, fb_timer *out) {
  int k = earliest(q);
  if (k < 0)
    return -1;
  q->n--;
  if (k < FB_TIMER_LANES) {
    fb_timer_lane *l = &q->lane[k];
    *out = l->v[l->head++];
    if (l->head == l->tail)
      l->head = l->tail = 0;
    return 0;
  }
  *out = q->heap[0];
  if (--q->nheap) {
    q->heap[0] = q->heap[q->nheap];
    sift_down(q, 0);
  }
  return 0;
}

size_t fb_timerq_drop(fb_timerq *q, int (*drop)(void *ctx, const fb_timer *t),
                      void *ctx) {
  size_t kept = 0, n = q->n;
  for (size_t i = 0; i < q->nheap; i++)
    if (!drop(ctx, &q->heap[i]))
      q->heap[kept++] = q->heap[i];
  q->nheap = kept;
  for (size_t i = kept / 2; i-- > 0;) /* Floyd: O(n) */
    sift_down(q, i);
  for (int k = 0; k < FB_TIMER_LANES; k++) { /* in place, order kept */
    fb_timer_lane *l = &q->lane[k];
    size_t to = 0;
    for (size_t i = l->head; i < l->tail; i++)
      if (!drop(ctx, &l->v[i]))
        l->v[to++] = l->v[i];
    kept += to;
    l->head = 0;
    l->tail = to;
  }
  q->n = kept;
  return n - kept;
}

void fb_timerq_free(fb_timerq *q) {
  fb__free(q->heap);
  for (int k = 0; k < FB_TIMER_LANES; k++)
    fb__free(q->lane[k].v);
  uint64_t seq = q->next_seq; /* entries pushed later still come later */
  memset(q, 0, sizeof *q);
  q->next_seq = seq;
}
