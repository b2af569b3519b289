/*
 * util.c -- error names, the version string and the allocator hooks.
 */
#include "util.h"

#include <time.h>

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

/* The allocator every core allocation goes through (as libuv's uv__malloc
 * and friends do); process-wide, replaced only before anything is made. */
static struct {
  fb_malloc_func malloc;
  fb_calloc_func calloc;
  fb_realloc_func realloc;
  fb_free_func free;
} allocator = {malloc, calloc, realloc, free};

int fb_replace_allocator(fb_malloc_func malloc_func,
                         fb_calloc_func calloc_func,
                         fb_realloc_func realloc_func, fb_free_func free_func) {
  if (!malloc_func || !calloc_func || !realloc_func || !free_func)
    return FB_EINVAL;
  allocator.malloc = malloc_func;
  allocator.calloc = calloc_func;
  allocator.realloc = realloc_func;
  allocator.free = free_func;
  /* cJSON builds and parses the events and the report's data: the same
   * allocator (it reallocates by malloc + copy when given hooks). */
  cJSON_Hooks hooks = {malloc_func, free_func};
  cJSON_InitHooks(&hooks);
  return 0;
}

void *fb__malloc(size_t size) { return allocator.malloc(size); }

void *fb__calloc(size_t count, size_t size) {
  return allocator.calloc(count, size);
}

void *fb__realloc(void *ptr, size_t size) {
  return allocator.realloc(ptr, size);
}

void fb__free(void *ptr) {
  if (ptr)
    allocator.free(ptr);
}

char *fb__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = fb__malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

const char *fb_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
  case FB_EINVAL:
    return "invalid argument";
  case FB_ENOMEM:
    return "out of memory";
  case FB_EREJECTED:
    return "circuit open: call rejected";
  case FB_ENOENT:
    return "no such entry";
  case FB_ESTALE:
    return "stale permit: the breaker changed state since it was issued";
  case FB_ELUA:
    return "Lua error";
  case FB_EFULL:
    return "registry full: max_services or max_instances reached";
  case FB_ENOW:
    return "the time is needed: call again with now";
  case FB_ELIMIT:
    return "concurrency limit reached: as many calls in flight as the limit "
           "allows";
  }
  return "unknown error";
}

const char *fb_version(void) { return FB_VERSION_STRING; }

/* The machine's one monotonic clock (fusebox.h): core code that must
 * agree across processes (a zone's ejections) and the runtime's real
 * clock both read it. */
double fb_monotonic_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
