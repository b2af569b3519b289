/*
 * timerq.c -- binary min-heap ordered by (deadline, seq).
 */
#include "timerq.h"
#include "util.h"

#include "fusebox.h"

#include <stdlib.h>

static int before(const fb_timer *a, const fb_timer *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

int fb_timerq_push(fb_timerq *q, double deadline, int ref, uint32_t token) {
  if (q->n == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 64;
    fb_timer *h = fb__realloc(q->heap, cap * sizeof *h);
    if (!h)
      return FB_ENOMEM;
    q->heap = h;
    q->cap = cap;
  }
  fb_timer t = {deadline, q->next_seq++, ref, token};
  size_t i = q->n++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(&t, &q->heap[parent]))
      break;
    q->heap[i] = q->heap[parent];
    i = parent;
  }
  q->heap[i] = t;
  return 0;
}

/* Moves heap[i] down to its place among its children. */
static void sift_down(fb_timerq *q, size_t i) {
  fb_timer t = q->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= q->n)
      break;
    if (child + 1 < q->n && before(&q->heap[child + 1], &q->heap[child]))
      child++;
    if (!before(&q->heap[child], &t))
      break;
    q->heap[i] = q->heap[child];
    i = child;
  }
  q->heap[i] = t;
}

size_t fb_timerq_drop(fb_timerq *q, int (*drop)(void *ctx, const fb_timer *t),
                      void *ctx) {
  size_t kept = 0, n = q->n;
  for (size_t i = 0; i < n; i++)
    if (!drop(ctx, &q->heap[i]))
      q->heap[kept++] = q->heap[i];
  q->n = kept;
  for (size_t i = kept / 2; i-- > 0;) /* Floyd: O(n) */
    sift_down(q, i);
  return n - kept;
}

const fb_timer *fb_timerq_peek(const fb_timerq *q) {
  return q->n ? &q->heap[0] : NULL;
}

int fb_timerq_pop(fb_timerq *q, fb_timer *out) {
  if (!q->n)
    return -1;
  *out = q->heap[0];
  if (--q->n) {
    q->heap[0] = q->heap[q->n];
    sift_down(q, 0);
  }
  return 0;
}

void fb_timerq_free(fb_timerq *q) {
  fb__free(q->heap);
  q->heap = NULL;
  q->n = q->cap = 0;
}
