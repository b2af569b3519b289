/*
 * outlier.h -- what the balancers call of the outlier detector (outlier.c);
 * the public API is in fusebox.h.
 */
#ifndef FB_OUTLIER_H
#define FB_OUTLIER_H

#include "fusebox.h"

/* fb_outlier_record() for a balancer's done(): 1 when d has events
 * pending, else 0 (a record that could not be made is lost, not the
 * done(): its counts are taken). A function of its own, so done() reaches
 * it by a tail call and pays nothing for it without a detector. */
int fb__outlier_done(fb_outlier *d, fb_instance *i, fb_lb_outcome outcome,
                     double now);

#endif
