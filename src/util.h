/*
 * util.h -- the core's one allocation home (internal).
 *
 * Every allocation of the core goes through these, so that
 * fb_replace_allocator() sees all of them: a host can route them to its
 * own allocator, and the tests make the N-th one fail (SQLite's approach)
 * to walk every out-of-memory path. Memory from one allocator must be
 * freed by the same one; buffers libc hands out itself (getline) go back
 * through free().
 */
#ifndef FB_UTIL_H
#define FB_UTIL_H

#include "fusebox.h"

#include <stddef.h>

void *fb__malloc(size_t size);
void *fb__calloc(size_t count, size_t size);
void *fb__realloc(void *ptr, size_t size);
void fb__free(void *ptr);

/* strdup() through the allocator above; NULL when out of memory. */
char *fb__strdup(const char *s);

#endif
