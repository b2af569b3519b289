/*
 * spin.h -- the spinlock of core objects shared by threads (internal):
 * a breaker's (fb_breaker_set_shared) and a limiter's. Every critical
 * section is a few dozen instructions, so waiting threads spin briefly
 * instead of sleeping, and yield once the holder may have been preempted.
 */
#ifndef FB_SPIN_H
#define FB_SPIN_H

#include <sched.h>
#include <stdatomic.h>

static inline void fb__spin_lock(atomic_flag *f) {
  for (unsigned spins = 0; atomic_flag_test_and_set_explicit(f, memory_order_acquire);
       spins++) {
    if (spins > 100)
      sched_yield(); /* the holder may have been preempted */
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

static inline void fb__spin_unlock(atomic_flag *f) {
  atomic_flag_clear_explicit(f, memory_order_release);
}

#endif
