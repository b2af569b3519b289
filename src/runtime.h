/*
 * runtime.h -- the loop that runs Lua coroutines on libuv (internal).
 *
 * One runtime per lua_State. Every coroutine the runtime starts waits in
 * one clock-ordered queue (timerq) when it sleeps. On the real clock a
 * single libuv timer is armed for the earliest deadline; on the virtual
 * clock nothing waits: the clock jumps to the earliest deadline. Either
 * way, equal deadlines wake in the order they were scheduled.
 */
#ifndef FB_RUNTIME_H
#define FB_RUNTIME_H

#include "events.h"
#include "fusebox.h"
#include "lua_api.h"
#include "timerq.h"

#include <lua.h>
#include <uv.h>

/* What a coroutine the runtime started is doing. */
typedef enum fb_coro_state {
  FB_CO_FREE = 0, /* slot unused */
  FB_CO_READY,    /* queued to run at the current time */
  FB_CO_SLEEPING, /* queued to run at a deadline */
  FB_CO_WAITING,  /* parked until fb_runtime_wake() (or its timeout) */
  FB_CO_RUNNING
} fb_coro_state;

/* An open I/O object (a socket, a server) the runtime must close when it
 * goes away first: close() detaches it from Lua and starts uv_close. */
typedef struct fb_io fb_io;
struct fb_io {
  fb_io *prev, *next;
  void (*close)(fb_io *io, lua_State *L);
};

typedef struct fb_coro {
  lua_State *co;  /* the thread, anchored by its registry ref meanwhile */
  uint32_t token; /* bumped at each queueing: older queue entries are void */
  uint8_t state;
  int nargs;      /* values on its stack for the next resume */
  int what_ref;   /* Lua string: what a WAITING coroutine waits on */
  uint8_t daemon; /* the run does not wait for it */
  uint8_t pooled; /* its thread goes back to rt->pool when it ends */
} fb_coro;

/* The most finished threads of fb_runtime_spawn_pooled() kept for reuse:
 * past it one that ends is let go as any other. */
#define FB_SPAWN_POOL 256

/* The longest fb.sleep or fb.wait, in seconds (about 31.7 years): every
 * deadline stays finite and the clock keeps its resolution, and the
 * policies cap their waits (retry backoff, timeouts) by it too. */
#define FB_MAX_SLEEP 1e9

/* How long a graceful shutdown may take unless the run says otherwise
 * (fb.run's shutdown_timeout, --shutdown-timeout): in-flight requests
 * get this long to finish after SIGTERM. */
#define FB_SHUTDOWN_TIMEOUT 10.0

struct fb_runtime {
  lua_State *L;         /* thread that called run: used for refs */
  uv_loop_t *loop;      /* NULL until something needs it */
  uv_loop_t own_loop;
  int pid;              /* the process that made loop and seed: a host
                           that forks (nginx's master) gives each child
                           its own (fb_runtime_check_fork) */
  int seed_set;         /* the seed was chosen (fb.seed, run, embed):
                           kept across a fork */
  uv_timer_t *timer;    /* own allocation: freed by its close callback */
  uv_idle_t *idle;      /* the same: wakes the loop for work already due */
  fb_timerq queue;
  int virtual_time;
  double vnow;          /* the virtual clock */
  /* The loop-cached clock, as nginx's ngx.now and libuv's uv_now: the
   * time read when the running coroutine was resumed (virtual: vnow,
   * exact, as vnow moves only between resumes). Fresh only while a
   * coroutine of the runtime runs; anywhere else (a host calling in, a
   * plain luajit) readers take the clock itself. Error on the real clock:
   * the running coroutine's time since its resume (until it yields), so
   * it serves decisions measured in seconds (instance expiry, the picks
   * of a balancer) and never a duration (call latency, slow calls, the
   * breaker: durations and timeouts read the clock). */
  fb_clock_cache clock;
  double vlimit;        /* a run needing the virtual clock past this fails */
  /* The real clock: fb_monotonic_now(), or a host's (fb_runtime_set_clock),
   * read whenever the clock is not virtual. */
  double (*host_now)(void *data);
  void *host_now_data;
  double shutdown_timeout; /* fb.run's: how long a graceful shutdown may
                              take (lua/fusebox/lifecycle.lua) */
  int shutdown_on_signals; /* fb.run's: SIGTERM/SIGINT start one */
  uint64_t seed;
  fb_rng rng;           /* fb.random's stream */
  uint64_t nstreams;    /* streams handed out since the seed was set */
  uint64_t runs;        /* fb.run calls so far: Lua resets per-run tables */
  lua_State *current;   /* running coroutine, NULL between resumes */
  int current_ref;
  int parked;           /* the running coroutine queued itself to wake */
  int running;
  int failed;
  int stopped;          /* fb_runtime_stop(): the run ends this loop turn */
  int error_ref;        /* message + traceback of the failure */
  int ncoroutines;      /* started and not finished */
  int *pool;            /* refs of finished pooled threads, kept for reuse:
                           each keeps its ref, record (FB_CO_FREE, co set)
                           and rt->threads entry while it waits here */
  int npool, pool_cap;
  int *threads;         /* thread -> ref (runtime.c: thread_slot) */
  size_t threads_cap, nthreads;
  int ndaemons;         /* of which daemons: the run ends without them */
  int events_on;        /* a sink is open: read through FFI before emitting;
                         * 2 when it writes a file, which every event is
                         * for (1: the summary and a tap, which read only
                         * some kinds: fusebox.events' logged()) */
  int print_summary;    /* print the summary on stderr at the end */
  fb_events events;
  fb_coro *coros;       /* by registry ref of the coroutine's thread */
  int coros_cap;
  int draining;         /* inside on_timer: it re-arms the timer itself */
  /* Embedding (src/embed.c): a host's loop and error callback. */
  int hosted;           /* the host runs the loop; errors do not stop it */
  void (*on_error)(void *data, const char *message);
  void *error_data;
  lua_State *main;      /* the state fb_runtime_new() made, to close */
  char *last_error;
  fb_io *io;            /* open I/O objects (src/lua_tcp.c) */
};

/* The real clock in seconds: the host's (fb_runtime_set_clock), else
 * fb_monotonic_now(); what fb_runtime_now() reads unless time is
 * virtual, and fb.real_now() always. */
double fb_runtime_real_now(const fb_runtime *rt);

/* Creates the runtime inside a userdata stored in L's registry. */
fb_runtime *fb_runtime_open(lua_State *L);


/* Makes the runtime's own loop if it has none yet (after
 * fb_runtime_check_fork): loading fusebox opens no file descriptor, so a
 * process that loads it and then forks leaks none into its children.
 * 0 or FB_ENOMEM. */
int fb_runtime_need_loop(fb_runtime *rt);

/* In a child forked since the runtime's last check: re-seeds (unless the
 * seed was chosen) and gives its own loop fresh kernel state
 * (uv_loop_fork: the parent's epoll fd and eventfd are closed here). */
void fb_runtime_check_fork(fb_runtime *rt);

/* Sets the seed: fb.random restarts, and so does stream numbering. */
void fb_runtime_seed(fb_runtime *rt, uint64_t seed);

/* Returns a seed for a new independent stream (a balancer, a model). */
uint64_t fb_runtime_stream_seed(fb_runtime *rt);

/* Returns a seed for the stream called name (the n-th of that name):
 * it depends only on the run's seed, name and n, so streams made in any
 * order, or alongside any others, draw the same numbers. */
uint64_t fb_runtime_named_stream_seed(const fb_runtime *rt, const char *name,
                                      uint64_t n);

/* Starts the function at L[-nargs-1] with its nargs arguments as a new
 * coroutine, woken at the current time; replaces them with the thread. */
void fb_runtime_spawn(lua_State *L, fb_runtime *rt, int nargs);

/* Queues the running coroutine to wake after seconds; the caller then
 * returns lua_yield(). Raises a Lua error outside a runtime coroutine. */
void fb_runtime_park(lua_State *L, fb_runtime *rt, double seconds,
                     const char *fname);

/* Parks the running coroutine until fb_runtime_wake() or, when
 * timeout >= 0, until that many seconds pass; what (a string at stack
 * index what_idx, or 0 for none) names what it waits on. The caller then
 * returns lua_yield(): the coroutine resumes with true and the waker's
 * values, or with false on timeout. */
void fb_runtime_wait(lua_State *L, fb_runtime *rt, int what_idx,
                     double timeout, const char *fname);

/* Wakes the coroutine at stack index co_idx if it is parked in
 * fb_runtime_wait(), handing it the nargs values on top of L (popped
 * either way). Returns 1 if it was parked, else 0. */
int fb_runtime_wake(lua_State *L, fb_runtime *rt, int co_idx, int nargs);

/* Runs until every coroutine is done. Returns 0, or -1 with the error
 * message (with traceback) pushed on L. */
int fb_runtime_loop(lua_State *L, fb_runtime *rt);

/* Ends the run at the end of this loop turn, whatever coroutines are
 * left: they are dropped, as daemons are (a graceful shutdown, see
 * src/lua_signal.c). fb_runtime_loop() then returns 0, or, when failed,
 * -1 with the message that was on top of L (popped; no traceback: it
 * is the process's last word, not a bug's). */
void fb_runtime_stop(lua_State *L, fb_runtime *rt, int failed);

/* Moves the runtime onto a host's loop, before anything was scheduled;
 * from then on coroutines run whenever the host runs that loop. */
int fb_runtime_use_loop(fb_runtime *rt, uv_loop_t *loop);

/* Starts hosted mode: coroutines run as the host runs the loop, and an
 * uncaught error goes to rt->on_error instead of ending anything. */
void fb_runtime_host(lua_State *L, fb_runtime *rt);

/* Like fb_runtime_spawn(), but the run does not wait for the coroutine:
 * when only daemons are left, the run ends and they are dropped. */
void fb_runtime_spawn_daemon(lua_State *L, fb_runtime *rt, int nargs);

/* Like fb_runtime_spawn(), on a thread that a pooled coroutine which
 * ended normally left (a new one when none is left): no thread, stack or
 * ref to make. For callers that keep the handle only while the coroutine
 * runs (fb.timeout's child): once it ends, the same thread may run the
 * next one, so a handle kept past that could wake a stranger. */
void fb_runtime_spawn_pooled(lua_State *L, fb_runtime *rt, int nargs);

/* Raises "<what> is not available under --virtual-time" on a virtual
 * clock: real I/O and real timers must never mix silently with it. */
void fb_runtime_require_real(lua_State *L, fb_runtime *rt, const char *what);

/* Opens the event sink for the next run: events to path (NULL: none)
 * and to the tap set in rt->events before (it stays from run to run),
 * the summary on stderr at the end if print_summary; emits run_start,
 * naming script and the script's arguments (args, a cJSON array taken
 * over, NULL or empty: none). Returns 0, or -1 with errno set if path
 * cannot be created. */
int fb_runtime_events_begin(fb_runtime *rt, const char *path,
                            int print_summary, const char *script,
                            cJSON *args);

/* Emits run_end (with error's first line when the run failed, and the
 * summary), prints the summary if asked, closes the sink. Returns 0, or
 * -1 if writing the event file failed. */
int fb_runtime_events_end(fb_runtime *rt, const char *error);

/* Returns a new event {t = now, kind} to fill and pass to
 * fb_runtime_emit(), or NULL when no sink is open. */
cJSON *fb_runtime_event(fb_runtime *rt, const char *kind);

/* Writes an event from fb_runtime_event() to the sink and frees it. */
void fb_runtime_emit(fb_runtime *rt, cJSON *event);

/* A registry listener (ud: the runtime) that logs membership changes. */
void fb_runtime_on_registry(void *ud, fb_registry_event ev,
                            const fb_instance *i, double now);
/* Links io into the runtime's list of open I/O objects. */
void fb_runtime_io_add(fb_runtime *rt, fb_io *io);

/* Unlinks io from that list (it is closing). */
void fb_runtime_io_remove(fb_runtime *rt, fb_io *io);

/* Reports an error that must not stop the run (a listener that raised). */
void fb_runtime_report(fb_runtime *rt, const char *what, const char *msg);

#endif
