/*
 * util.c -- error names and the version string.
 */
#include "fusebox.h"

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
  }
  return "unknown error";
}

const char *fb_version(void) { return FB_VERSION_STRING; }
