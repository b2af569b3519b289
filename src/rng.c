/*
 * rng.c -- xoshiro256** seeded through splitmix64.
 *
 * The runtime owns one generator per stream (fb.random, each balancer, ...)
 * so a seed replays a run exactly and adding one consumer does not shift
 * another's draws.
 */
#include "fusebox.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

void fb_rng_seed(fb_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
}

uint64_t fb_rng_next(fb_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double fb_rng_double(fb_rng *r) {
  /* The top 53 bits fill a double's mantissa exactly. */
  return (double)(fb_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t fb_rng_below(fb_rng *r, uint64_t n) {
  /* Lemire's multiply-shift with rejection: unbiased, usually one draw. */
  __uint128_t m = (__uint128_t)fb_rng_next(r) * n;
  uint64_t low = (uint64_t)m;
  if (low < n) {
    uint64_t threshold = -n % n;
    while (low < threshold) {
      m = (__uint128_t)fb_rng_next(r) * n;
      low = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}

void fb_rng_split(fb_rng *parent, fb_rng *child) {
  fb_rng_seed(child, fb_rng_next(parent));
}
