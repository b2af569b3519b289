/*
 * trace.h -- the fast path of fb.trace.read (lua/fusebox/trace.lua) for
 * fusebox's own events files (internal).
 *
 * Most lines of a run's events file are either a "done" event exactly as
 * fusebox writes it (keys sorted, plain strings, JSON numbers) or another
 * kind's event, which a trace passes over. fb_trace_scan_line() tells the
 * two apart, and reads a done line's fields, without the JSON parser and
 * without making the line a Lua string; anything else it leaves to the
 * parser. No Lua, no I/O, no allocation.
 */
#ifndef FB_TRACE_H
#define FB_TRACE_H

#include <stddef.h>

/* What fb_trace_scan_line() found. */
enum {
  FB_TRACE_PARSE,  /* not a line it reads: parse it as JSON */
  FB_TRACE_DONE,   /* a done event, read into out (below) */
  FB_TRACE_OTHER,  /* another kind's event ({"t":...}, no "done", no
                    * escape or NUL): pass over */
  FB_TRACE_BLANK   /* nothing but white space: not a line of the trace */
};

/* out[] of a done line: t, latency (finite, >= 0), port (an integer in
 * 1..65535), ok (1 or 0), host's offset and length in the line (non-empty,
 * no quote, backslash or control byte), service's offset and length (-1
 * and 0 without one). */
enum { FB_TRACE_T, FB_TRACE_LATENCY, FB_TRACE_PORT, FB_TRACE_OK,
       FB_TRACE_HOST, FB_TRACE_HOST_LEN, FB_TRACE_SERVICE,
       FB_TRACE_SERVICE_LEN, FB_TRACE_OUT };

/* Reads the line s (len bytes, without its newline; one trailing CR is
 * not part of it) and returns FB_TRACE_*. A line it calls DONE is one a
 * JSON parser reads as the same done event, field for field. */
int fb_trace_scan_line(const char *s, size_t len, double out[FB_TRACE_OUT]);

#endif
