/*
 * rng.c -- xoshiro256** seeded through splitmix64.
 *
 * The runtime owns one generator per stream (fb.random, each balancer, ...)
 * so a seed replays a run exactly and adding one consumer does not shift
 * another's draws.
 */
#include "rng.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void fb_rng_seed(fb_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
}

uint64_t fb_rng_next(fb_rng *r) { return fb__rng_next(r); }

double fb_rng_double(fb_rng *r) {
  /* The top 53 bits fill a double's mantissa exactly. */
  return (double)(fb_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t fb_rng_below(fb_rng *r, uint64_t n) { return fb__rng_below(r, n); }

void fb_rng_split(fb_rng *parent, fb_rng *child) {
  fb_rng_seed(child, fb_rng_next(parent));
}
