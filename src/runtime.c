/*
 * runtime.c -- coroutines, the clock-ordered queue, and the libuv loop.
 */
#include "runtime.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RUNTIME_KEY "fusebox.runtime"

static int runtime_gc(lua_State *L) {
  fb_runtime *rt = lua_touserdata(L, 1);
  if (rt->loop) {
    uv_close((uv_handle_t *)&rt->timer, NULL);
    uv_run(rt->loop, UV_RUN_DEFAULT); /* lets the close complete */
    uv_loop_close(rt->loop);
    rt->loop = NULL;
  }
  fb_timerq_free(&rt->queue);
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
  if (uv_loop_init(&rt->own_loop) != 0)
    luaL_error(L, "fusebox: cannot create the libuv loop");
  rt->loop = &rt->own_loop;
  uv_timer_init(rt->loop, &rt->timer);
  rt->timer.data = rt;
  rt->t0 = uv_hrtime();
  fb_runtime_seed(rt, rt->t0 ^ ((uint64_t)getpid() << 32));
  lua_newtable(L);
  lua_pushcfunction(L, runtime_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, RUNTIME_KEY);
  return rt;
}

double fb_runtime_now(const fb_runtime *rt) {
  if (rt->virtual_time)
    return rt->vnow;
  return (double)(uv_hrtime() - rt->t0) * 1e-9;
}

void fb_runtime_seed(fb_runtime *rt, uint64_t seed) {
  rt->seed = seed;
  rt->nstreams = 0;
  fb_rng_seed(&rt->rng, seed);
}

uint64_t fb_runtime_stream_seed(fb_runtime *rt) {
  fb_rng r;
  /* Stream k depends only on (seed, k): a new consumer shifts no one. */
  fb_rng_seed(&r, rt->seed ^ (++rt->nstreams * 0x9e3779b97f4a7c15ULL));
  return fb_rng_next(&r);
}

static void schedule(lua_State *L, fb_runtime *rt, double at, int ref) {
  if (fb_timerq_push(&rt->queue, at, ref) < 0)
    luaL_error(L, "fusebox: out of memory scheduling a coroutine");
}

void fb_runtime_spawn(lua_State *L, fb_runtime *rt, int nargs) {
  lua_State *co = lua_newthread(L);
  lua_insert(L, -(nargs + 2));
  lua_xmove(L, co, nargs + 1);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  schedule(L, rt, fb_runtime_now(rt), ref);
  rt->ncoroutines++;
}

void fb_runtime_park(lua_State *L, fb_runtime *rt, double seconds,
                     const char *fname) {
  if (!rt->running || L != rt->current)
    luaL_error(L, "%s: not in a coroutine run by fusebox (use 'fusebox run' "
                  "or fb.run)", fname);
  schedule(L, rt, fb_runtime_now(rt) + seconds, rt->current_ref);
  rt->parked = 1;
}

void fb_runtime_report(fb_runtime *rt, const char *what, const char *msg) {
  (void)rt;
  fprintf(stderr, "fusebox: %s: %s\n", what, msg);
  fflush(stderr);
}

static void fail(fb_runtime *rt, lua_State *co) {
  lua_State *L = rt->L;
  const char *msg = lua_tostring(co, -1);
  if (!msg)
    msg = lua_pushfstring(co, "(error object is a %s value)",
                          luaL_typename(co, -1));
  luaL_traceback(L, co, msg, 0);
  if (!rt->failed) {
    rt->failed = 1;
    rt->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 1);
  }
  if (!rt->virtual_time)
    uv_stop(rt->loop);
}

static void wake(fb_runtime *rt, int ref) {
  lua_State *L = rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_State *co = lua_tothread(L, -1);
  lua_pop(L, 1);
  int nargs = lua_status(co) == LUA_YIELD ? 0 : lua_gettop(co) - 1;
  rt->current = co;
  rt->current_ref = ref;
  rt->parked = 0;
  int status = lua_resume(co, nargs);
  rt->current = NULL;
  rt->current_ref = LUA_NOREF;
  if (status == LUA_YIELD) {
    lua_settop(co, 0);
    if (!rt->parked) /* a bare coroutine.yield(): let the others run */
      schedule(L, rt, fb_runtime_now(rt), ref);
  } else if (status == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    rt->ncoroutines--;
  } else {
    fail(rt, co);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    rt->ncoroutines--;
  }
}

static void run_virtual(fb_runtime *rt) {
  fb_timer t;
  while (!rt->failed && fb_timerq_pop(&rt->queue, &t) == 0) {
    if (t.deadline > rt->vnow)
      rt->vnow = t.deadline;
    wake(rt, t.ref);
  }
}

static void arm(fb_runtime *rt);

/* Wakes what is due, but only what was queued before this turn began, so
 * a coroutine that keeps yielding cannot starve libuv's I/O. */
static void on_timer(uv_timer_t *timer) {
  fb_runtime *rt = timer->data;
  double now = fb_runtime_now(rt);
  uint64_t limit = rt->queue.next_seq;
  const fb_timer *top;
  fb_timer t;
  while (!rt->failed && (top = fb_timerq_peek(&rt->queue)) &&
         top->deadline <= now && top->seq < limit) {
    fb_timerq_pop(&rt->queue, &t);
    wake(rt, t.ref);
  }
  arm(rt);
}

static void arm(fb_runtime *rt) {
  const fb_timer *top = fb_timerq_peek(&rt->queue);
  if (rt->failed || !top) {
    uv_timer_stop(&rt->timer);
    return;
  }
  double wait = top->deadline - fb_runtime_now(rt);
  uint64_t ms = wait > 0 ? (uint64_t)ceil(wait * 1000.0) : 0;
  uv_timer_start(&rt->timer, on_timer, ms, 0);
}

static void drop_queue(fb_runtime *rt) {
  fb_timer t;
  while (fb_timerq_pop(&rt->queue, &t) == 0)
    luaL_unref(rt->L, LUA_REGISTRYINDEX, t.ref);
  rt->ncoroutines = 0;
}

int fb_runtime_run(lua_State *L, fb_runtime *rt) {
  rt->L = L;
  rt->running = 1;
  rt->failed = 0;
  if (rt->virtual_time) {
    run_virtual(rt);
  } else {
    uv_update_time(rt->loop);
    arm(rt);
    uv_run(rt->loop, UV_RUN_DEFAULT);
  }
  rt->running = 0;
  if (!rt->failed && rt->ncoroutines > 0) {
    drop_queue(rt);
    lua_pushfstring(L, "fusebox: %d coroutine(s) blocked forever: nothing "
                       "left that could wake them", rt->ncoroutines);
    return -1;
  }
  drop_queue(rt);
  if (rt->failed) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->error_ref);
    rt->error_ref = LUA_NOREF;
    return -1;
  }
  return 0;
}
