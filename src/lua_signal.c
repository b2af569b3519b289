/*
 * lua_signal.c -- POSIX signals on the runtime's loop, and the way a run
 * ends on one: the primitives lua/fusebox/lifecycle.lua wraps into
 * fb.on_signal and fb.shutdown.
 *
 * A watch is a uv_signal_t: libuv catches the signal in its handler and
 * runs our callback on the loop, so Lua never runs inside a signal
 * handler; the callback starts the watch's function as a new coroutine.
 * The handle is unreferenced: a watch alone never keeps a run going.
 * Memory, as in lua_tcp.c: the struct is freed by the handle's close
 * callback; the userdata's payload points to it until it is closed, and
 * the runtime closes what is still open when it goes. When the last
 * watch of a signal stops, libuv puts its default disposition back, so
 * a process that watches nothing dies of SIGTERM as any other would.
 */
#include "lua_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FBL_SIGNAL "fusebox.signal"

/* The signals a script may watch: the ones sent to ask a process
 * something (stop, reload, report), never those that report a fault
 * (SIGSEGV, SIGFPE) or cannot be caught (SIGKILL, SIGSTOP). */
static const struct {
  const char *name;
  int signum;
} signals[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT},
    {"SIGTERM", SIGTERM}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},
    {"SIGWINCH", SIGWINCH},
};
#define NSIGNALS (sizeof signals / sizeof signals[0])

typedef struct watch {
  fb_io io; /* first: the runtime's list of open I/O */
  uv_signal_t handle;
  fb_runtime *rt;
  struct watch **slot; /* the userdata's payload */
  int fn;              /* ref of the function run on each signal */
  int name;            /* index in signals[] */
  int closed;
} watch;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void watch_close(watch *w, lua_State *L) {
  if (w->closed)
    return;
  w->closed = 1;
  fb_runtime_io_remove(w->rt, &w->io);
  if (w->slot)
    *w->slot = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, w->fn);
  w->fn = LUA_NOREF;
  uv_close((uv_handle_t *)&w->handle, on_closed);
}

static void io_close(fb_io *io, lua_State *L) { watch_close((watch *)io, L); }

static int watch_gc(lua_State *L) {
  watch **slot = fbl_check_gc(L, FBL_SIGNAL);
  if (!slot) /* a host holds it */
    return 0;
  if (*slot)
    watch_close(*slot, L);
  return 0;
}

/* w:close(): stops watching (idempotent) */
static int watch_close_method(lua_State *L) {
  watch **slot = luaL_checkudata(L, 1, FBL_SIGNAL);
  if (*slot)
    watch_close(*slot, L);
  return 0;
}

/* Runs the watch's function as a new coroutine, with the signal's name.
 * Between runs (nothing resumes coroutines) the signal is dropped. */
static void on_signal(uv_signal_t *h, int signum) {
  watch *w = h->data;
  fb_runtime *rt = w->rt;
  (void)signum;
  if (w->closed || !rt->running || !rt->L)
    return;
  lua_State *L = rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->fn);
  lua_pushstring(L, signals[w->name].name);
  fb_runtime_spawn(L, rt, 1);
  lua_pop(L, 1);
}

static int signal_index(const char *name) {
  for (size_t i = 0; i < NSIGNALS; i++)
    if (strcmp(signals[i].name, name) == 0)
      return (int)i;
  return -1;
}

/* core.signal_watch(name, fn) -> a watch: fn(name) runs as a new
 * coroutine on each delivery, until w:close(). name is one of
 * core.signal_names (lifecycle.lua checks it with a clear error first). */
static int signal_watch(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  int k = signal_index(luaL_checkstring(L, 1));
  luaL_argcheck(L, k >= 0, 1, "unknown signal name");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  watch **slot = lua_newuserdata(L, sizeof *slot);
  *slot = NULL;
  luaL_getmetatable(L, FBL_SIGNAL);
  lua_setmetatable(L, -2);
  if (fb_runtime_need_loop(rt) < 0)
    return luaL_error(L, "on_signal: cannot create the libuv loop");
  watch *w = calloc(1, sizeof *w);
  if (!w)
    return luaL_error(L, "on_signal: out of memory");
  if (uv_signal_init(rt->loop, &w->handle) != 0) {
    free(w);
    return luaL_error(L, "on_signal: cannot create a signal handle");
  }
  w->handle.data = w;
  w->rt = rt;
  w->name = k;
  w->io.close = io_close;
  lua_pushvalue(L, 2);
  w->fn = luaL_ref(L, LUA_REGISTRYINDEX);
  fb_runtime_io_add(rt, &w->io);
  w->slot = slot;
  *slot = w;
  int rc = uv_signal_start(&w->handle, on_signal, signals[k].signum);
  if (rc != 0) {
    watch_close(w, L);
    return luaL_error(L, "on_signal: cannot watch %s: %s", signals[k].name,
                      uv_strerror(rc));
  }
  uv_unref((uv_handle_t *)&w->handle);
  return 1;
}

/* core.signal_exit(name): the second signal of a shutdown. The process
 * dies of it, as if nothing had caught it (its parent sees 128 + N),
 * with what stdio holds written first. */
static int signal_exit(lua_State *L) {
  int k = signal_index(luaL_checkstring(L, 1));
  luaL_argcheck(L, k >= 0, 1, "unknown signal name");
  fflush(NULL);
  signal(signals[k].signum, SIG_DFL);
  raise(signals[k].signum);
  _exit(128 + signals[k].signum); /* a signal blocked by the host */
}

/* core.stop_run([message]): ends the run at the end of this loop turn,
 * dropping what is left (runtime.h); with a message, the run fails with
 * it. Raises in a hosted runtime: the host owns its loop. */
static int stop_run(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  if (rt->hosted)
    return luaL_error(L, "shutdown: a host's runtime ends when its host "
                         "says so");
  int failed = !lua_isnoneornil(L, 1);
  if (failed)
    luaL_checkstring(L, 1);
  lua_settop(L, 1);
  fb_runtime_stop(L, rt, failed);
  return 0;
}

/* core.run_info() -> runs so far (a new run starts afresh), the run's
 * shutdown_timeout, whether SIGTERM and SIGINT shut it down (its
 * shutdown_on_signals, never in a host's runtime) */
static int run_info(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  lua_pushnumber(L, (double)rt->runs);
  lua_pushnumber(L, rt->shutdown_timeout);
  lua_pushboolean(L, rt->shutdown_on_signals && !rt->hosted);
  return 3;
}

static const luaL_Reg watch_methods[] = {
    {"close", watch_close_method},
    {NULL, NULL},
};

static const luaL_Reg signal_functions[] = {
    {"signal_watch", signal_watch},
    {"signal_exit", signal_exit},
    {"stop_run", stop_run},
    {"run_info", run_info},
    {NULL, NULL},
};

void fbl_open_signal(lua_State *L, int rt_idx) {
  fbl_new_plain_class(L, FBL_SIGNAL, watch_gc, watch_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, signal_functions, 1);
  lua_createtable(L, (int)NSIGNALS, 0);
  for (size_t i = 0; i < NSIGNALS; i++) {
    lua_pushstring(L, signals[i].name);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "signal_names");
}
