/*
 * lua_fusebox.c -- luaopen_fusebox: the module's C half.
 *
 * Builds a table of C functions (the clock, sleep, spawn, random, run,
 * constructors), then runs the embedded lua/fusebox.lua with it; that
 * chunk returns the module users see.
 */
#include "lua_api.h"
#include "lua_fusebox.h"
#include "lua_util.h"

typedef struct fb_embedded {
  const char *name;
  const unsigned char *code;
  size_t size;
} fb_embedded;

#include "fusebox_lib.h" /* generated: lua/ as bytecode, fb_embedded_modules */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fb.now() -> seconds on the runtime's clock */
static int l_now(lua_State *L) {
  lua_pushnumber(L, fb_runtime_now(fbl_runtime(L)));
  return 1;
}

/* Checks that the number at idx is a duration 0..FB_MAX_SLEEP (NaN and
 * infinities are not); raises "bad argument #idx to 'fname' (what must
 * be ..., got v)" else. Named here: a function called through pcall has
 * no name for luaL_argerror to find. */
static double check_duration(lua_State *L, int idx, const char *fname,
                             const char *what) {
  double s = luaL_checknumber(L, idx);
  if (!(s >= 0 && s <= FB_MAX_SLEEP))
    luaL_error(L, "bad argument #%d to '%s' (%s must be a number in 0..%f, "
                  "got %f)", idx, fname, what, FB_MAX_SLEEP, s);
  return s;
}

/* fb.sleep(seconds): yields the calling coroutine until then */
static int l_sleep(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  double s = lua_isnoneornil(L, 1) ? 0 : check_duration(L, 1, "sleep", "seconds");
  fb_runtime_park(L, rt, s, "sleep");
  return lua_yield(L, 0);
}

/* Checks fn and the run, then starts fn(...) the way `how` does;
 * returns the thread. */
static int start(lua_State *L, const char *fname,
                 void (*how)(lua_State *L, fb_runtime *rt, int nargs)) {
  fb_runtime *rt = fbl_runtime(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (!rt->running)
    return luaL_error(L, "%s: not inside a run (use 'fusebox run' or "
                         "fb.run)", fname);
  how(L, rt, lua_gettop(L) - 1);
  return 1;
}

/* fb.spawn(fn, ...): runs fn(...) as a new coroutine */
static int l_spawn(lua_State *L) {
  return start(L, "spawn", fb_runtime_spawn);
}

/* core.spawn_pooled(fn, ...): like spawn, on a thread a finished one
 * left (fb_runtime_spawn_pooled: for a caller that drops the handle when
 * fn ends) */
static int l_spawn_pooled(lua_State *L) {
  return start(L, "spawn", fb_runtime_spawn_pooled);
}

/* fb.daemon(fn, ...): like spawn, but the run does not wait for it */
static int l_daemon(lua_State *L) {
  return start(L, "daemon", fb_runtime_spawn_daemon);
}

/* fb.real_now() -> seconds on the real clock (CLOCK_MONOTONIC, or the
 * host's); an error under virtual time, where reading it would make runs
 * irreproducible */
static int l_real_now(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  fb_runtime_require_real(L, rt, "real_now (the real clock)");
  lua_pushnumber(L, fb_runtime_real_now(rt));
  return 1;
}

/* core.wait([what [, timeout]]) -> true, ... when woken; false on timeout */
static int l_wait(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  int has_what = !lua_isnoneornil(L, 1);
  if (has_what)
    luaL_checkstring(L, 1);
  double timeout = -1;
  if (!lua_isnoneornil(L, 2))
    timeout = check_duration(L, 2, "wait", "timeout");
  fb_runtime_wait(L, rt, has_what ? 1 : 0, timeout, "wait");
  return lua_yield(L, 0);
}

/* core.wake(co, ...) -> true if co was waiting (it resumes with ...) */
static int l_wake(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  int nargs = lua_gettop(L) - 1;
  lua_pushboolean(L, fb_runtime_wake(L, fbl_runtime(L), 1, nargs));
  return 1;
}

/* Seeds take the whole 64-bit range: an integral number, or a string of
 * decimal digits for the values a double cannot hold (above 2^53). */
static int to_seed(lua_State *L, int idx, uint64_t *out) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    double s = lua_tonumber(L, idx);
    if (!(s >= 0) || s != floor(s) || s >= 18446744073709551616.0)
      return -1;
    *out = (uint64_t)s;
    return 0;
  }
  if (lua_type(L, idx) != LUA_TSTRING)
    return -1;
  const char *s = lua_tostring(L, idx);
  char *end;
  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end)
    return -1;
  *out = v;
  return 0;
}

#define SEED_WANT                                                              \
  "seed must be an integer in 0..18446744073709551615 (a "                     \
  "string of digits above 2^53)"

static uint64_t check_seed(lua_State *L, int idx, int argn, const char *fname) {
  uint64_t seed;
  if (to_seed(L, idx, &seed) == 0)
    return seed;
  int t = lua_type(L, idx);
  const char *got =
      t == LUA_TNUMBER   ? lua_pushfstring(L, "%s", lua_tostring(L, idx))
      : t == LUA_TSTRING ? lua_pushfstring(L, "'%s'", lua_tostring(L, idx))
                         : luaL_typename(L, idx);
  luaL_error(L, "bad argument #%d to '%s' (" SEED_WANT ", got %s)", argn, fname,
             got);
  return 0;
}

/* fb.seed([n]) -> the seed as a string of digits: exact for every seed,
 * where a number would round above 2^53 and print as 1.2345678901234e+14
 * from 10^14; with n, reseeds every stream made after */
static int l_seed(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  char buf[24];
  fb_runtime_check_fork(rt);
  if (!lua_isnoneornil(L, 1))
    fb_runtime_seed(rt, check_seed(L, 1, 1, "seed"));
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)rt->seed);
  lua_pushstring(L, buf);
  return 1;
}

static const char *const run_options[] = {
    "virtual_time",     "seed", "events", "summary", "script",
    "max_virtual_time", "shutdown_timeout", "shutdown_on_signals", NULL};

/* The run's string arguments (stack indices first..last) as a cJSON
 * array: the script's command-line arguments when the CLI runs it. */
static cJSON *run_args(lua_State *L, int first, int last) {
  cJSON *args = cJSON_CreateArray();
  for (int i = first; args && i <= last; i++)
    if (lua_type(L, i) == LUA_TSTRING)
      cJSON_AddItemToArray(args, cJSON_CreateString(lua_tostring(L, i)));
  return args;
}

/* Opens the event sink if options at idx ask for one (events = path,
 * summary = true); script names the run in run_start. */
static void begin_events(lua_State *L, fb_runtime *rt, int idx) {
  int top = lua_gettop(L);
  if (!lua_istable(L, idx))
    return;
  lua_getfield(L, idx, "events");
  lua_getfield(L, idx, "summary");
  lua_getfield(L, idx, "script");
  const char *path = lua_isnil(L, -3) ? NULL : lua_tostring(L, -3);
  if (!lua_isnil(L, -3) && lua_type(L, -3) != LUA_TSTRING)
    luaL_argerror(L, idx, "events must be a file path");
  int summary = lua_toboolean(L, -2);
  if ((path || summary) &&
      fb_runtime_events_begin(rt, path, summary, lua_tostring(L, -1),
                              run_args(L, idx + 1, top)) < 0)
    luaL_error(L, "run: cannot create events file '%s': %s", path,
               strerror(errno));
  lua_pop(L, 3);
}

/* core.run(fn [, {virtual_time=, seed=, events=, summary=, script=}] [, ...])
 * -> true, or false and the first uncaught error with its traceback:
 * runs fn(...) as the main coroutine until it and all it spawned are done.
 * fb.run (lua/fusebox/host.lua) raises that error. Not from here: under
 * LuaJIT (OpenResty's 2.1 on Debian) a C function that raised after its
 * lua_resume calls had a coroutine fail or block left the calling
 * coroutine to crash in the JIT-compiled code it ran next. Bad arguments
 * are raised here still: nothing was resumed yet. */
static int l_run(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  fbl_check_options(L, 2, run_options);
  if (rt->running)
    return luaL_error(L, "run: already running");
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "virtual_time");
    rt->virtual_time = lua_toboolean(L, -1);
    lua_getfield(L, 2, "seed");
    if (!lua_isnil(L, -1))
      fb_runtime_seed(rt, check_seed(L, lua_gettop(L), 2, "run"));
    lua_pop(L, 2);
    rt->vlimit = fbl_opt_positive(L, 2, "max_virtual_time", HUGE_VAL);
    rt->shutdown_timeout = fbl_opt_at_least(L, 2, "shutdown_timeout",
                                            FB_SHUTDOWN_TIMEOUT, 0);
    lua_getfield(L, 2, "shutdown_on_signals");
    rt->shutdown_on_signals = lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else {
    rt->virtual_time = 0;
    rt->vlimit = HUGE_VAL;
    rt->shutdown_timeout = FB_SHUTDOWN_TIMEOUT;
    rt->shutdown_on_signals = 0;
  }
  rt->vnow = 0;
  rt->runs++;
  begin_events(L, rt, 2);
  int nargs = lua_gettop(L) > 2 ? lua_gettop(L) - 2 : 0;
  lua_pushvalue(L, 1);
  for (int i = 0; i < nargs; i++)
    lua_pushvalue(L, 3 + i);
  fb_runtime_spawn(L, rt, nargs);
  lua_pop(L, 1);
  int failed = fb_runtime_loop(L, rt) < 0; /* the error on top if failed */
  if (fb_runtime_events_end(rt, failed ? lua_tostring(L, -1) : NULL) < 0 &&
      !failed) {
    lua_pushliteral(L, "run: writing the events file failed");
    failed = 1;
  }
  if (!failed) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

/* fb.export(name, obj): publishes a registry, balancer, breaker or
 * limiter for a C host (fb_runtime_breaker(rt, name), ...); obj nil
 * unpublishes. */
static int l_export(lua_State *L) {
  fbl_check_name(L, 1, "name");
  if (!lua_isnil(L, 2) && !luaL_testudata(L, 2, FBL_REGISTRY) &&
      !luaL_testudata(L, 2, FBL_BALANCER) && !luaL_testudata(L, 2, FBL_BREAKER) &&
      !luaL_testudata(L, 2, FBL_LIMITER))
    return luaL_error(L, "bad argument #2 to 'export' (registry, balancer, "
                         "breaker or limiter expected, got %s)",
                      luaL_typename(L, 2));
  if (!lua_isnil(L, 2) && !*(void **)lua_touserdata(L, 2)) /* its __gc ran */
    return luaL_error(L, "bad argument #2 to 'export' (%s is closed)",
                      fbl_typename(L, 2));
  lua_settop(L, 2);
  lua_getfield(L, LUA_REGISTRYINDEX, FBL_EXPORTS);
  lua_insert(L, 1);
  lua_rawset(L, 1);
  return 0;
}

/* core.format_seconds(t) -> t as fusebox prints a time: "12.345", "7e+300" */
static int l_format_seconds(lua_State *L) {
  char buf[FB_SECONDS_BUF];
  lua_pushstring(L, fb_format_seconds(buf, luaL_checknumber(L, 1)));
  return 1;
}

/* fb.running() -> true inside a run */
static int l_running(lua_State *L) {
  lua_pushboolean(L, fbl_runtime(L)->running);
  return 1;
}

/* core.report(what, msg): an error that must not stop the run */
static int l_report(lua_State *L) {
  fb_runtime_report(fbl_runtime(L), luaL_checkstring(L, 1),
                    luaL_checkstring(L, 2));
  return 0;
}

static const luaL_Reg core_functions[] = {
    {"now", l_now},
    {"sleep", l_sleep},
    {"spawn", l_spawn},
    {"spawn_pooled", l_spawn_pooled},
    {"seed", l_seed},
    {"run", l_run},
    {"running", l_running},
    {"report", l_report},
    {"wait", l_wait},
    {"wake", l_wake},
    {"export", l_export},
    {"daemon", l_daemon},
    {"real_now", l_real_now},
    {"format_seconds", l_format_seconds},
    {NULL, NULL},
};

static void push_metatables(lua_State *L) {
  static const char *const classes[][2] = {{"registry", FBL_REGISTRY},
                                           {"balancer", FBL_BALANCER},
                                           {"breaker", FBL_BREAKER},
                                           {"outlier", FBL_OUTLIER},
                                           {"limiter", FBL_LIMITER}};
  lua_newtable(L);
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
    luaL_getmetatable(L, classes[i][1]);
    lua_setfield(L, -2, classes[i][0]);
  }
}

static int load_embedded(lua_State *L, const fb_embedded *m) {
  if (luaL_loadbuffer(L, (const char *)m->code, m->size, m->name) != 0)
    return lua_error(L);
  return 0;
}

/* core.import(name) -> the embedded module name, run once per module
 * load with (name, core) as its arguments. A private cache rather than
 * package.loaded: test runners and hosts may swap package tables. */
static int l_import(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  lua_pushvalue(L, 1);
  lua_rawget(L, lua_upvalueindex(2));
  if (!lua_isnil(L, -1))
    return 1;
  lua_pop(L, 1);
  int i = 0;
  while (fb_embedded_modules[i].name &&
         strcmp(fb_embedded_modules[i].name, name) != 0)
    i++;
  if (!fb_embedded_modules[i].name)
    return luaL_error(L, "import: no embedded module '%s'", name);
  load_embedded(L, &fb_embedded_modules[i]);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_call(L, 2, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_rawset(L, lua_upvalueindex(2));
  return 1;
}

int luaopen_fusebox(lua_State *L) {
  fb_runtime *rt = fb_runtime_open(L);
  lua_getfield(L, LUA_REGISTRYINDEX, FBL_EXPORTS);
  if (lua_isnil(L, -1)) {
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, FBL_EXPORTS);
  }
  lua_pop(L, 1);
  lua_pushlightuserdata(L, rt); /* placeholder index for the upvalue */
  lua_getfield(L, LUA_REGISTRYINDEX, "fusebox.runtime");
  lua_replace(L, -2);
  int rt_idx = lua_gettop(L);
  lua_newtable(L); /* core */
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, core_functions, 1);
  fbl_open_registry(L, rt_idx);
  fbl_open_balancer(L, rt_idx);
  fbl_open_breaker(L, rt_idx);
  fbl_open_limiter(L, rt_idx);
  fbl_open_events(L, rt_idx);
  fbl_open_json(L, rt_idx);
  fbl_open_tcp(L, rt_idx);
  fbl_open_http(L, rt_idx);
  fbl_open_catalog(L, rt_idx);
  fbl_open_backend(L, rt_idx);
  fbl_open_zone(L, rt_idx);
  fbl_open_signal(L, rt_idx);
  fbl_open_dns(L, rt_idx);
  push_metatables(L);
  lua_setfield(L, -2, "meta");
  lua_pushlightuserdata(L, (void *)fb_lua_api_get());
  lua_setfield(L, -2, "api");
  lua_pushstring(L, fb_lua_api_cdef());
  lua_setfield(L, -2, "cdef");
  lua_pushlightuserdata(L, rt);
  lua_setfield(L, -2, "rt");
  lua_pushstring(L, fb_version());
  lua_setfield(L, -2, "version");
  lua_pushnumber(L, FB_MAX_SLEEP);
  lua_setfield(L, -2, "max_sleep");
  int core_idx = lua_gettop(L);
  lua_pushvalue(L, rt_idx);
  lua_newtable(L); /* the import cache */
  lua_pushvalue(L, core_idx);
  lua_pushcclosure(L, l_import, 3);
  lua_setfield(L, core_idx, "import");
  lua_getfield(L, core_idx, "import");
  lua_pushstring(L, "fusebox"); /* lua/fusebox.lua */
  lua_call(L, 1, 1);
  return 1;
}

int luaopen_fusebox_ngx(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "fusebox"); /* sets package.preload["fusebox.ngx"] */
  lua_call(L, 1, 0);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_getfield(L, -1, "fusebox.ngx");
  lua_pushliteral(L, "fusebox.ngx");
  lua_call(L, 1, 1);
  return 1;
}
