/*
 * rng.h -- the generator's step, inline for the core's hot paths (internal).
 *
 * A least_request or peak_ewma pick draws twice; as calls into rng.c the
 * two draws cost about as much as the rest of the pick. rng.c's public
 * fb_rng_next() and fb_rng_below() are these same functions.
 */
#ifndef FB_RNG_H
#define FB_RNG_H

#include "fusebox.h"

static inline uint64_t fb__rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

/* xoshiro256**. */
static inline uint64_t fb__rng_next(fb_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = fb__rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = fb__rotl(s[3], 45);
  return result;
}

/* Lemire's multiply-shift with rejection: unbiased, usually one draw. */
static inline uint64_t fb__rng_below(fb_rng *r, uint64_t n) {
  __uint128_t m = (__uint128_t)fb__rng_next(r) * n;
  uint64_t low = (uint64_t)m;
  if (low < n) {
    uint64_t threshold = -n % n;
    while (low < threshold) {
      m = (__uint128_t)fb__rng_next(r) * n;
      low = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}

#endif
