/*
 * runtime.c -- coroutines, the clock-ordered queue, and the libuv loop.
 *
 * Each coroutine the runtime starts is held by a registry ref, and that
 * ref indexes its record in rt->coros. Queue entries carry the record's
 * token at the time they were queued; waking a coroutine early (wake
 * before its wait timed out) bumps the token, so the stale timeout entry
 * is skipped when it surfaces instead of being searched for and removed.
 */
#include "runtime.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUNTIME_KEY "fusebox.runtime"

static void free_handle(uv_handle_t *h) { free(h); }

/* A handle's memory outlives the runtime until libuv says it is closed:
 * on a host's loop that happens when the host next runs it. */
static void close_timer(fb_runtime *rt) {
  rt->timer->data = NULL;
  uv_close((uv_handle_t *)rt->timer, free_handle);
  rt->timer = NULL;
  rt->idle->data = NULL;
  uv_close((uv_handle_t *)rt->idle, free_handle);
  rt->idle = NULL;
}

/* The runtime's two wake-ups (arm): the timer, and the idle handle for
 * work already due. */
static int new_timer(fb_runtime *rt) {
  rt->timer = malloc(sizeof *rt->timer);
  rt->idle = malloc(sizeof *rt->idle);
  if (!rt->timer || !rt->idle || uv_timer_init(rt->loop, rt->timer) != 0) {
    free(rt->timer);
    free(rt->idle);
    rt->timer = NULL;
    rt->idle = NULL;
    return FB_ENOMEM;
  }
  uv_idle_init(rt->loop, rt->idle); /* cannot fail */
  rt->timer->data = rt;
  rt->idle->data = rt;
  return 0;
}

void fb_runtime_io_add(fb_runtime *rt, fb_io *io) {
  io->prev = NULL;
  io->next = rt->io;
  if (rt->io)
    rt->io->prev = io;
  rt->io = io;
}

void fb_runtime_io_remove(fb_runtime *rt, fb_io *io) {
  if (io->prev)
    io->prev->next = io->next;
  else if (rt->io == io)
    rt->io = io->next;
  if (io->next)
    io->next->prev = io->prev;
  io->prev = io->next = NULL;
}

static int runtime_gc(lua_State *L) {
  fb_runtime *rt = lua_touserdata(L, 1);
  while (rt->io) /* each close() unlinks itself */
    rt->io->close(rt->io, L);
  fb_runtime_check_fork(rt);
  if (rt->timer)
    close_timer(rt);
  if (rt->loop == &rt->own_loop) {
    uv_run(rt->loop, UV_RUN_DEFAULT); /* lets the close complete */
    uv_loop_close(rt->loop);
  }
  rt->loop = NULL;
  free(rt->last_error);
  rt->last_error = NULL;
  fb_timerq_free(&rt->queue);
  free(rt->coros);
  rt->coros = NULL;
  free(rt->pool);
  rt->pool = NULL;
  free(rt->threads);
  rt->threads = NULL;
  rt->threads_cap = rt->nthreads = 0;
  rt->npool = rt->pool_cap = 0;
  return 0;
}

/* 32 bits: a default seed must be easy to print, type and replay. */
static void default_seed(fb_runtime *rt) {
  fb_runtime_seed(rt, (uv_hrtime() ^ ((uint64_t)getpid() << 16)) & 0xffffffffu);
  rt->seed_set = 0;
}

void fb_runtime_check_fork(fb_runtime *rt) {
  int pid = getpid();
  if (pid == rt->pid)
    return;
  rt->pid = pid;
  if (!rt->seed_set)
    default_seed(rt);
  if (rt->loop == &rt->own_loop)
    uv_loop_fork(rt->loop);
}

int fb_runtime_need_loop(fb_runtime *rt) {
  fb_runtime_check_fork(rt);
  if (rt->loop)
    return 0;
  if (uv_loop_init(&rt->own_loop) != 0)
    return FB_ENOMEM;
  rt->loop = &rt->own_loop;
  if (new_timer(rt) < 0) {
    uv_loop_close(rt->loop);
    rt->loop = NULL;
    return FB_ENOMEM;
  }
  return 0;
}

fb_runtime *fb_runtime_open(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, RUNTIME_KEY);
  fb_runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (rt)
    return rt;
  rt = lua_newuserdata(L, sizeof *rt);
  memset(rt, 0, sizeof *rt);
  rt->error_ref = LUA_NOREF;
  rt->current_ref = LUA_NOREF;
  rt->vlimit = HUGE_VAL;
  rt->shutdown_timeout = FB_SHUTDOWN_TIMEOUT;
  rt->pid = getpid();
  default_seed(rt);
  lua_newtable(L);
  lua_pushcfunction(L, runtime_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, RUNTIME_KEY);
  return rt;
}

/* CLOCK_MONOTONIC, not a zero of our own (it was uv_hrtime() minus the
 * time the module loaded): every process on the machine reads the same
 * time base, so nginx workers can share breakers and ejections whose
 * times they all compare. Linux counts it from boot: about 1e6 s after
 * eleven days, where a double still resolves 0.1 ns. */

double fb_runtime_real_now(const fb_runtime *rt) {
  if (rt->host_now)
    return rt->host_now(rt->host_now_data);
  return fb_monotonic_now();
}

double fb_runtime_now(const fb_runtime *rt) {
  if (rt->virtual_time)
    return rt->vnow;
  return fb_runtime_real_now(rt);
}

void fb_runtime_seed(fb_runtime *rt, uint64_t seed) {
  rt->seed = seed;
  rt->seed_set = 1;
  rt->nstreams = 0;
  fb_rng_seed(&rt->rng, seed);
}

uint64_t fb_runtime_stream_seed(fb_runtime *rt) {
  fb_runtime_check_fork(rt); /* balancers made in a worker differ */
  fb_rng r;
  /* Stream k depends only on (seed, k): a new consumer shifts no one. */
  fb_rng_seed(&r, rt->seed ^ (++rt->nstreams * 0x9e3779b97f4a7c15ULL));
  return fb_rng_next(&r);
}

uint64_t fb_runtime_named_stream_seed(const fb_runtime *rt, const char *name,
                                      uint64_t n) {
  uint64_t h = 14695981039346656037ULL; /* FNV-1a over the name */
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    h = (h ^ *p) * 1099511628211ULL;
  fb_rng r;
  fb_rng_seed(&r, h ^ (n * 0x9e3779b97f4a7c15ULL));
  fb_rng_seed(&r, fb_rng_next(&r) ^ rt->seed);
  return fb_rng_next(&r);
}

void fb_runtime_report(fb_runtime *rt, const char *what, const char *msg) {
  (void)rt;
  fprintf(stderr, "fusebox: %s: %s\n", what, msg);
  fflush(stderr);
}

/* ------------------------------------------------------------ records */

static fb_coro *coro_new(lua_State *L, fb_runtime *rt, int ref) {
  if (ref >= rt->coros_cap) {
    int cap = rt->coros_cap ? rt->coros_cap : 64;
    while (cap <= ref)
      cap *= 2;
    fb_coro *v = realloc(rt->coros, (size_t)cap * sizeof *v);
    if (!v)
      luaL_error(L, "fusebox: out of memory starting a coroutine");
    memset(v + rt->coros_cap, 0, (size_t)(cap - rt->coros_cap) * sizeof *v);
    rt->coros = v;
    rt->coros_cap = cap;
  }
  fb_coro *c = &rt->coros[ref];
  uint32_t token = c->token; /* a reused slot: its old entries stay void */
  memset(c, 0, sizeof *c);
  c->token = token;
  c->what_ref = LUA_NOREF;
  return c;
}

/* ------------------------------------------------------ thread -> ref */

/* rt->threads finds a coroutine's ref from its thread (fb_runtime_wake
 * is handed the thread): open addressing keyed by the thread pointer,
 * linear probing, a slot 0 when empty or ref + 1, at most half full.
 * The key is rt->coros[ref].co, so the table holds refs alone. A Lua
 * table (thread -> ref) cost ~1,000 instructions a coroutine: each
 * spawn's new key and each end's removal churned its hash part. */
static size_t thread_home(const lua_State *co, size_t cap) {
  uint64_t h = (uint64_t)(uintptr_t)co * 0x9e3779b97f4a7c15ULL;
  return (size_t)(h >> 32) & (cap - 1);
}

/* The slot that holds co, or the empty one where it would go. */
static size_t thread_slot(const fb_runtime *rt, const lua_State *co) {
  size_t mask = rt->threads_cap - 1, i = thread_home(co, rt->threads_cap);
  while (rt->threads[i] && rt->coros[rt->threads[i] - 1].co != co)
    i = (i + 1) & mask;
  return i;
}

/* The ref of the coroutine running on co, or LUA_NOREF. */
static int thread_ref(const fb_runtime *rt, const lua_State *co) {
  if (!co || !rt->threads_cap)
    return LUA_NOREF;
  int v = rt->threads[thread_slot(rt, co)];
  return v ? v - 1 : LUA_NOREF;
}

/* Enters ref (rt->coros[ref].co set); 0, or -1 out of memory. */
static int thread_add(fb_runtime *rt, int ref) {
  if (2 * (rt->nthreads + 1) > rt->threads_cap) {
    size_t cap = rt->threads_cap ? 2 * rt->threads_cap : 64;
    int *old = rt->threads, *v = calloc(cap, sizeof *v);
    if (!v)
      return -1;
    size_t old_cap = rt->threads_cap;
    rt->threads = v;
    rt->threads_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
      if (old[i])
        rt->threads[thread_slot(rt, rt->coros[old[i] - 1].co)] = old[i];
    free(old);
  }
  rt->threads[thread_slot(rt, rt->coros[ref].co)] = ref + 1;
  rt->nthreads++;
  return 0;
}

/* Removes ref's thread; the entries after it in its run move back so
 * every probe still finds its own (no tombstones). */
static void thread_remove(fb_runtime *rt, int ref) {
  if (!rt->threads_cap)
    return;
  size_t mask = rt->threads_cap - 1, i = thread_slot(rt, rt->coros[ref].co);
  if (!rt->threads[i])
    return;
  for (size_t j = (i + 1) & mask; rt->threads[j]; j = (j + 1) & mask) {
    const lua_State *co = rt->coros[rt->threads[j] - 1].co;
    size_t home = thread_home(co, rt->threads_cap);
    /* j's entry may fill the hole at i unless its home lies in (i, j] */
    int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      rt->threads[i] = rt->threads[j];
      i = j;
    }
  }
  rt->threads[i] = 0;
  rt->nthreads--;
}

static void arm(fb_runtime *rt);
static int is_void(const fb_runtime *rt, const fb_timer *t);

static int drop_void(void *rt, const fb_timer *t) { return is_void(rt, t); }

/* Queues coroutine ref to run at `at`; entries queued before are void.
 * A void entry leaves the queue when it reaches the top, so under load
 * (every I/O wait queues its timeout, most end early) the queue held
 * rate x timeout entries: megabytes at 10,000 requests/s with 30 s
 * timeouts. Each coroutine has at most one live entry, so past twice
 * their number the void ones are dropped at once: the queue stays within
 * 2 x coroutines + 1024, at O(1) a push amortized. */
static void enqueue(lua_State *L, fb_runtime *rt, int ref, double at,
                    fb_coro_state state) {
  fb_coro *c = &rt->coros[ref];
  c->token++;
  c->state = (uint8_t)state;
  if (rt->queue.n > 2 * (size_t)rt->coros_cap + 1024)
    fb_timerq_drop(&rt->queue, drop_void, rt);
  if (fb_timerq_push(&rt->queue, at, ref, c->token) < 0)
    luaL_error(L, "fusebox: out of memory scheduling a coroutine");
  if (!rt->virtual_time && !rt->draining) /* a wake from an I/O callback */
    arm(rt);
}

static void coro_free(fb_runtime *rt, int ref) {
  lua_State *L = rt->L;
  fb_coro *c = &rt->coros[ref];
  luaL_unref(L, LUA_REGISTRYINDEX, c->what_ref);
  thread_remove(rt, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  if (c->daemon)
    rt->ndaemons--;
  uint32_t token = c->token;
  memset(c, 0, sizeof *c);
  c->token = token;
  rt->ncoroutines--;
}

/* Starts the coroutine; returns its ref. */
static int spawn(lua_State *L, fb_runtime *rt, int nargs) {
  lua_State *co = lua_newthread(L);
  lua_insert(L, -(nargs + 2));
  lua_xmove(L, co, nargs + 1);
  lua_pushvalue(L, -1);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  fb_coro *c = coro_new(L, rt, ref);
  c->co = co;
  if (thread_add(rt, ref) < 0) {
    c->co = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    luaL_error(L, "fusebox: out of memory starting a coroutine");
  }
  c->nargs = nargs;
  rt->ncoroutines++;
  enqueue(L, rt, ref, fb_runtime_now(rt), FB_CO_READY);
  return ref;
}

void fb_runtime_spawn(lua_State *L, fb_runtime *rt, int nargs) {
  spawn(L, rt, nargs);
}

void fb_runtime_spawn_daemon(lua_State *L, fb_runtime *rt, int nargs) {
  int ref = spawn(L, rt, nargs); /* first: spawn may move rt->coros */
  rt->coros[ref].daemon = 1;
  rt->ndaemons++;
}

/* A pooled thread that ended normally: its stack emptied, it waits in
 * rt->pool with its ref, record and rt->threads entry (a stale handle's
 * wake finds it FB_CO_FREE: false). 0, or -1 when the pool is full. */
static int pool_put(fb_runtime *rt, int ref) {
  if (rt->npool == rt->pool_cap) {
    if (rt->pool_cap >= FB_SPAWN_POOL)
      return -1;
    int cap = rt->pool_cap ? 2 * rt->pool_cap : 16;
    int *v = realloc(rt->pool, (size_t)cap * sizeof *v);
    if (!v)
      return -1; /* let it go instead */
    rt->pool = v;
    rt->pool_cap = cap;
  }
  fb_coro *c = &rt->coros[ref];
  lua_settop(c->co, 0); /* what its function returned */
  luaL_unref(rt->L, LUA_REGISTRYINDEX, c->what_ref);
  c->what_ref = LUA_NOREF;
  c->state = FB_CO_FREE;
  c->nargs = 0;
  rt->pool[rt->npool++] = ref;
  rt->ncoroutines--;
  return 0;
}

/* Lets every pooled thread go (the end of a run). */
static void pool_drain(fb_runtime *rt) {
  while (rt->npool > 0) {
    int ref = rt->pool[--rt->npool];
    rt->ncoroutines++; /* coro_free counts it out again */
    coro_free(rt, ref);
  }
}

void fb_runtime_spawn_pooled(lua_State *L, fb_runtime *rt, int nargs) {
  if (rt->npool == 0) {
    int ref = spawn(L, rt, nargs);
    rt->coros[ref].pooled = 1;
    return;
  }
  int ref = rt->pool[--rt->npool];
  fb_coro *c = &rt->coros[ref];
  /* A thread whose function returned is where a new one starts: status
   * 0, no C frame, an empty stack; lua_resume starts the function on it. */
  lua_xmove(L, c->co, nargs + 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref); /* the handle, as spawn leaves it */
  c->nargs = nargs;
  rt->ncoroutines++;
  enqueue(L, rt, ref, fb_runtime_now(rt), FB_CO_READY);
}

void fb_runtime_require_real(lua_State *L, fb_runtime *rt, const char *what) {
  if (rt->virtual_time)
    luaL_error(L, "%s is not available under --virtual-time", what);
}

static void check_current(lua_State *L, fb_runtime *rt, const char *fname) {
  if (!rt->running || L != rt->current)
    luaL_error(L, "%s: not in a coroutine run by fusebox (use 'fusebox run' "
                  "or fb.run)", fname);
}

void fb_runtime_park(lua_State *L, fb_runtime *rt, double seconds,
                     const char *fname) {
  check_current(L, rt, fname);
  enqueue(L, rt, rt->current_ref, fb_runtime_now(rt) + seconds,
          FB_CO_SLEEPING);
  rt->coros[rt->current_ref].nargs = 0;
}

void fb_runtime_wait(lua_State *L, fb_runtime *rt, int what_idx,
                     double timeout, const char *fname) {
  check_current(L, rt, fname);
  int ref = rt->current_ref;
  fb_coro *c = &rt->coros[ref];
  if (what_idx) {
    lua_pushvalue(L, what_idx);
    c->what_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (timeout >= 0) {
    enqueue(L, rt, ref, fb_runtime_now(rt) + timeout, FB_CO_WAITING);
  } else {
    c->token++;
    c->state = FB_CO_WAITING;
  }
}

int fb_runtime_wake(lua_State *L, fb_runtime *rt, int co_idx, int nargs) {
  lua_State *co = lua_tothread(L, co_idx);
  int ref = thread_ref(rt, co);
  if (ref < 0 || rt->coros[ref].state != FB_CO_WAITING) {
    lua_pop(L, nargs);
    return 0;
  }
  fb_coro *c = &rt->coros[ref];
  luaL_unref(L, LUA_REGISTRYINDEX, c->what_ref);
  c->what_ref = LUA_NOREF;
  lua_pushboolean(co, 1);
  lua_xmove(L, co, nargs);
  c->nargs = nargs + 1;
  enqueue(L, rt, ref, fb_runtime_now(rt), FB_CO_READY);
  return 1;
}

/* ------------------------------------------------------------- running */

/* An uncaught error: a hosted runtime tells the host and goes on; a run
 * stops at the first one and returns it. */
static void fail(fb_runtime *rt, lua_State *co) {
  lua_State *L = rt->L;
  const char *msg = lua_tostring(co, -1);
  if (!msg && luaL_callmeta(co, -1, "__tostring")) /* e.g. luassert's */
    msg = lua_tostring(co, -1);
  if (!msg)
    msg = lua_pushfstring(co, "(error object is a %s value)",
                          luaL_typename(co, -1));
  luaL_traceback(L, co, msg, 0);
  if (rt->on_error)
    rt->on_error(rt->error_data, lua_tostring(L, -1));
  if (rt->hosted) {
    lua_pop(L, 1);
    return;
  }
  if (!rt->failed) {
    rt->failed = 1;
    rt->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 1);
  }
  if (!rt->virtual_time && rt->loop)
    uv_stop(rt->loop);
}

static void resume(fb_runtime *rt, int ref) {
  lua_State *L = rt->L;
  fb_coro *c = &rt->coros[ref];
  lua_State *co = c->co;
  c->state = FB_CO_RUNNING;
  rt->current = co;
  rt->current_ref = ref;
  rt->clock.now = fb_runtime_now(rt);
  rt->clock.fresh = 1;
  int status = lua_resume(co, c->nargs);
  rt->clock.fresh = 0; /* a nested resume ended: the outer one reads anew */
  rt->current = NULL;
  rt->current_ref = LUA_NOREF;
  c = &rt->coros[ref]; /* the array may have grown meanwhile */
  if (status == LUA_YIELD) {
    if (lua_gettop(co)) /* what a bare coroutine.yield(...) passed */
      lua_settop(co, 0);
    c->nargs = 0;
    if (c->state == FB_CO_RUNNING) /* a bare coroutine.yield() */
      enqueue(L, rt, ref, fb_runtime_now(rt), FB_CO_READY);
    return;
  }
  if (status != 0)
    fail(rt, co);
  if (status != 0 || !c->pooled || pool_put(rt, ref) < 0)
    coro_free(rt, ref);
  if (rt->ncoroutines == rt->ndaemons && !rt->virtual_time && rt->loop)
    uv_stop(rt->loop); /* only daemons left: the run is over */
}

/* True when the queue entry no longer stands for a wake-up (its wait
 * was woken early, or its coroutine ended). */
static int is_void(const fb_runtime *rt, const fb_timer *t) {
  const fb_coro *c = &rt->coros[t->ref];
  return c->state == FB_CO_FREE || t->token != c->token;
}

/* Runs the coroutine a queue entry names, unless the entry is void. */
static void dispatch(fb_runtime *rt, const fb_timer *t) {
  fb_coro *c = &rt->coros[t->ref];
  if (is_void(rt, t))
    return;
  if (c->state == FB_CO_WAITING) { /* its wait timed out */
    lua_State *L = rt->L;
    luaL_unref(L, LUA_REGISTRYINDEX, c->what_ref);
    c->what_ref = LUA_NOREF;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    lua_pushboolean(lua_tothread(L, -1), 0);
    lua_pop(L, 1);
    c->nargs = 1;
  }
  resume(rt, t->ref);
}

static void fail_limit(fb_runtime *rt);

static void run_virtual(fb_runtime *rt) {
  fb_timer t;
  while (!rt->failed && !rt->stopped && rt->ncoroutines > rt->ndaemons &&
         fb_timerq_pop(&rt->queue, &t) == 0) {
    if (t.deadline > rt->vlimit && !is_void(rt, &t)) {
      fail_limit(rt);
      return;
    }
    if (t.deadline > rt->vnow)
      rt->vnow = t.deadline;
    dispatch(rt, &t);
  }
}

/* Runs what is due, but only what was queued before this turn began, so
 * a coroutine that keeps yielding cannot starve libuv's I/O (arm says how
 * the next turn comes after a poll). */
static void run_due(fb_runtime *rt) {
  double now = fb_runtime_now(rt);
  uint64_t limit = rt->queue.next_seq;
  const fb_timer *top;
  fb_timer t;
  rt->draining = 1;
  while (!rt->failed && !rt->stopped && (top = fb_timerq_peek(&rt->queue)) &&
         top->deadline <= now && top->seq < limit) {
    fb_timerq_pop(&rt->queue, &t);
    dispatch(rt, &t);
  }
  rt->draining = 0;
  arm(rt);
}

static void on_timer(uv_timer_t *timer) { run_due(timer->data); }
static void on_idle(uv_idle_t *idle) { run_due(idle->data); }

/* Arms the wake-up for the earliest live entry. Void entries on top are
 * dropped first: a stale 30 s I/O timeout must not keep the loop alive.
 * Work already due is run from the idle handle, not a timer of 0 ms:
 * libuv (1.44) runs a timer restarted from its own callback again in the
 * same pass when it is due, before any poll, so coroutines that keep each
 * other due would starve every socket (a GET waited out its timeout).
 * An active idle handle makes the loop poll without blocking, then call
 * it: one turn of due work per poll, as later libuv versions run timers
 * (so an answer in by that poll beats a timeout that passed while the
 * loop was busy). */
static void arm(fb_runtime *rt) {
  const fb_timer *top;
  fb_timer t;
  while ((top = fb_timerq_peek(&rt->queue)) && is_void(rt, top))
    fb_timerq_pop(&rt->queue, &t);
  if (!rt->timer) /* no loop yet: the run that makes it arms */
    return;
  if (rt->failed || rt->stopped || !top) {
    uv_timer_stop(rt->timer);
    uv_idle_stop(rt->idle);
    return;
  }
  double wait = top->deadline - fb_runtime_now(rt);
  if (wait > 0) {
    uv_idle_stop(rt->idle);
    uv_timer_start(rt->timer, on_timer, (uint64_t)ceil(wait * 1000.0), 0);
  } else {
    uv_timer_stop(rt->timer);
    uv_idle_start(rt->idle, on_idle);
  }
}

/* Appends where each coroutine of the run (daemons aside) is, with its
 * traceback: all of them, or only those waiting when waiting_only. */
static void add_coroutines(lua_State *L, fb_runtime *rt, luaL_Buffer *b,
                           int waiting_only) {
  for (int ref = 0; ref < rt->coros_cap; ref++) {
    fb_coro *c = &rt->coros[ref];
    if (c->state == FB_CO_FREE || c->daemon ||
        (waiting_only && c->state != FB_CO_WAITING))
      continue;
    if (c->state == FB_CO_WAITING) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, c->what_ref);
      lua_pushfstring(L, "\n- waiting on %s",
                      lua_isstring(L, -1) ? lua_tostring(L, -1) : "(unnamed)");
      lua_remove(L, -2);
    } else {
      lua_pushliteral(L, "\n- sleeping");
    }
    luaL_addvalue(b);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_traceback(L, lua_tothread(L, -1), "", 0); /* "\nstack traceback:" */
    lua_remove(L, -2);
    luaL_addvalue(b);
  }
}

/* Pushes a description of every coroutine left waiting, with where it
 * waits, for the error that ends a run nothing can wake. */
static void push_blocked(lua_State *L, fb_runtime *rt) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "fusebox: %d coroutine(s) blocked forever, with nothing "
                     "left that could wake them:", rt->ncoroutines);
  luaL_addvalue(&b);
  add_coroutines(L, rt, &b, 1);
  luaL_pushresult(&b);
}

/* Ends a virtual-time run that would need the clock past its limit, with
 * where each coroutine was. */
static void fail_limit(fb_runtime *rt) {
  lua_State *L = rt->L;
  char limit[FB_SECONDS_BUF];
  luaL_Buffer b;
  rt->vnow = rt->vlimit;
  luaL_buffinit(L, &b);
  lua_pushfstring(L,
                  "fusebox: virtual time limit of %s s reached, the run "
                  "still going; where its coroutines were:",
                  fb_format_seconds(limit, rt->vlimit));
  luaL_addvalue(&b);
  add_coroutines(L, rt, &b, 0);
  luaL_pushresult(&b);
  rt->failed = 1;
  rt->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void drop_all(fb_runtime *rt) {
  fb_timer t;
  while (fb_timerq_pop(&rt->queue, &t) == 0)
    ;
  for (int ref = 0; ref < rt->coros_cap; ref++)
    if (rt->coros[ref].state != FB_CO_FREE)
      coro_free(rt, ref);
  pool_drain(rt);
}

void fb_runtime_stop(lua_State *L, fb_runtime *rt, int failed) {
  if (failed && !rt->failed) {
    rt->failed = 1;
    rt->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (failed) {
    lua_pop(L, 1);
  }
  rt->stopped = 1;
  if (!rt->virtual_time && rt->loop) /* a flag the next uv_run would see */
    uv_stop(rt->loop);
}

int fb_runtime_use_loop(fb_runtime *rt, uv_loop_t *loop) {
  if (rt->running || rt->queue.n)
    return FB_EINVAL;
  if (rt->loop) {
    close_timer(rt);
    uv_run(rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(rt->loop);
  }
  rt->loop = loop;
  return new_timer(rt);
}

void fb_runtime_host(lua_State *L, fb_runtime *rt) {
  rt->L = L;
  rt->running = 1;
  rt->hosted = 1;
  arm(rt);
}

int fb_runtime_loop(lua_State *L, fb_runtime *rt) {
  rt->L = L;
  rt->running = 1;
  rt->failed = 0;
  rt->stopped = 0;
  if (rt->virtual_time) {
    run_virtual(rt);
  } else if (fb_runtime_need_loop(rt) < 0) {
    drop_all(rt);
    rt->running = 0;
    lua_pushstring(L, "fusebox: cannot create the libuv loop");
    return -1;
  } else {
    uv_update_time(rt->loop);
    arm(rt);
    uv_run(rt->loop, UV_RUN_DEFAULT);
  }
  rt->running = 0;
  if (rt->failed) {
    drop_all(rt);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->error_ref);
    rt->error_ref = LUA_NOREF;
    return -1;
  }
  if (rt->ncoroutines > rt->ndaemons && !rt->stopped) {
    push_blocked(L, rt);
    drop_all(rt);
    return -1;
  }
  drop_all(rt); /* daemons, or whatever a stop left */
  return 0;
}

/* ------------------------------------------------------------- events */

int fb_runtime_events_begin(fb_runtime *rt, const char *path,
                            int print_summary, const char *script,
                            cJSON *args) {
  fb_events was = rt->events; /* the tap a host set stays */
  if (fb_events_open(&rt->events, path, fb_runtime_now(rt)) < 0) {
    cJSON_Delete(args);
    return -1;
  }
  rt->events.tap = was.tap;
  rt->events.tap_arg = was.tap_arg;
  rt->events_on = path ? 2 : 1;
  rt->print_summary = print_summary;
  cJSON *e = fb_runtime_event(rt, "run_start");
  if (!e) {
    cJSON_Delete(args);
    return 0;
  }
  /* Seeds above 2^53 would lose digits as a JSON number. */
  if (rt->seed < (1ULL << 53)) {
    cJSON_AddNumberToObject(e, "seed", (double)rt->seed);
  } else {
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)rt->seed);
    cJSON_AddStringToObject(e, "seed", buf);
  }
  if (script)
    cJSON_AddStringToObject(e, "script", script);
  cJSON_AddBoolToObject(e, "virtual_time", rt->virtual_time);
  /* with seed, script and virtual_time: the command that replays the run */
  if (cJSON_GetArraySize(args) > 0)
    cJSON_AddItemToObject(e, "args", args);
  else
    cJSON_Delete(args);
  fb_runtime_emit(rt, e);
  return 0;
}

int fb_runtime_events_end(fb_runtime *rt, const char *error) {
  if (!rt->events_on)
    return 0;
  double now = fb_runtime_now(rt);
  cJSON *e = fb_runtime_event(rt, "run_end");
  if (e) {
    cJSON_AddBoolToObject(e, "ok", error == NULL);
    if (error) {
      size_t n = strcspn(error, "\n");
      char *line = strndup(error, n);
      cJSON_AddStringToObject(e, "error", line ? line : "");
      free(line);
    }
    cJSON_AddItemToObject(e, "summary", fb_events_summary(&rt->events, now));
    fb_runtime_emit(rt, e);
  }
  if (rt->print_summary)
    fb_events_print_summary(&rt->events, now, stderr);
  rt->events_on = 0;
  return fb_events_close(&rt->events);
}

cJSON *fb_runtime_event(fb_runtime *rt, const char *kind) {
  if (!rt->events_on)
    return NULL;
  return fb_events_new(fb_runtime_now(rt), kind);
}

void fb_runtime_emit(fb_runtime *rt, cJSON *event) {
  fb_events_write(&rt->events, event);
}

static const char *const registry_event_kinds[] = {"register", "register",
                                                   "deregister", "expire"};

void fb_runtime_on_registry(void *ud, fb_registry_event ev,
                            const fb_instance *i, double now) {
  fb_runtime *rt = ud;
  if (ev == FB_REG_REAPED)
    return; /* housekeeping: its expiry was the event */
  cJSON *e = fb_runtime_event(rt, registry_event_kinds[ev]);
  (void)now; /* the sink stamps events with the runtime's clock */
  if (!e)
    return;
  cJSON_AddStringToObject(e, "service",
                          fb_service_name(fb_instance_service(i)));
  cJSON_AddStringToObject(e, "host", fb_instance_host(i));
  cJSON_AddNumberToObject(e, "port", fb_instance_port(i));
  if (ev == FB_REG_RETURNED)
    cJSON_AddBoolToObject(e, "rejoined", 1);
  if (ev == FB_REG_EXPIRED)
    cJSON_AddNumberToObject(e, "last_heartbeat", fb_instance_last_heartbeat(i));
  fb_runtime_emit(rt, e);
}
