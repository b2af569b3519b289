/*
 * embed.c -- the runtime for C hosts: fb_runtime_new() and friends.
 *
 * A runtime owns a LuaJIT state with the fusebox module loaded. On a
 * host's loop it is "hosted": coroutines run whenever the host runs the
 * loop, and an uncaught Lua error goes to the host's callback, so policy
 * code can never take the host down. Objects cross from Lua to C by name
 * (fb.export); the exports table keeps them alive until the runtime is
 * freed or Lua unexports them.
 */
#include "lua_fusebox.h"
#include "lua_util.h"

#include <lualib.h>
#include <stdlib.h>
#include <string.h>

void fb_runtime_config_init(fb_runtime_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->magic = FB_CONFIG_MAGIC;
}

static void set_error(fb_runtime *rt, const char *msg) {
  char *copy = strdup(msg ? msg : "");
  if (!copy)
    return;
  free(rt->last_error);
  rt->last_error = copy;
}

const char *fb_runtime_last_error(const fb_runtime *rt) {
  return rt && rt->last_error ? rt->last_error : "";
}

/* Loads fusebox into L and makes require "fusebox" return it. */
static fb_runtime *open_module(lua_State *L) {
  lua_pushcfunction(L, luaopen_fusebox);
  if (lua_pcall(L, 0, 1, 0) != 0)
    return NULL;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "fusebox");
  lua_pop(L, 3);
  return fb_runtime_open(L);
}

fb_runtime *fb_runtime_new(const fb_runtime_config *cfg) {
  fb_runtime_config def;
  if (!cfg) {
    fb_runtime_config_init(&def);
    cfg = &def;
  }
  if (cfg->magic != FB_CONFIG_MAGIC || (cfg->loop && cfg->virtual_time))
    return NULL; /* uninitialised, or virtual time on a host's real loop */
  lua_State *L = luaL_newstate();
  if (!L)
    return NULL;
  luaL_openlibs(L);
  fb_runtime *rt = open_module(L);
  if (!rt || (cfg->loop && fb_runtime_use_loop(rt, cfg->loop) < 0)) {
    lua_close(L);
    return NULL;
  }
  rt->main = L;
  rt->L = L;
  rt->virtual_time = cfg->virtual_time;
  rt->on_error = cfg->on_error;
  rt->error_data = cfg->error_data;
  if (cfg->has_seed)
    fb_runtime_seed(rt, cfg->seed);
  if (cfg->loop)
    fb_runtime_host(L, rt);
  return rt;
}

int fb_runtime_set_clock(fb_runtime *rt, double (*now)(void *data),
                         void *data) {
  if (!rt || rt->virtual_time)
    return FB_EINVAL;
  rt->host_now = now;
  rt->host_now_data = now ? data : NULL;
  return 0;
}

void fb_runtime_free(fb_runtime *rt) {
  if (rt && rt->main) {
    fbl_host_closing(rt->main); /* what the host held is freed too */
    lua_close(rt->main); /* the runtime lives in a userdata: gone too */
  }
}

/* Spawns the chunk on top of the main state; reports a compile error. */
static int start_chunk(fb_runtime *rt, int status) {
  lua_State *L = rt->main;
  if (status != 0) {
    set_error(rt, lua_tostring(L, -1));
    if (rt->on_error)
      rt->on_error(rt->error_data, lua_tostring(L, -1));
    lua_pop(L, 1);
    return FB_ELUA;
  }
  fb_runtime_spawn(L, rt, 0);
  lua_pop(L, 1);
  return 0;
}

int fb_runtime_load(fb_runtime *rt, const char *path) {
  if (!rt || !path)
    return FB_EINVAL;
  return start_chunk(rt, luaL_loadfile(rt->main, path));
}

int fb_runtime_eval(fb_runtime *rt, const char *code, const char *name) {
  if (!rt || !code)
    return FB_EINVAL;
  lua_State *L = rt->main;
  /* "=name" makes Lua report name:line, not [string "name"]:line */
  lua_pushfstring(L, "=%s", name ? name : "eval");
  int status = luaL_loadbuffer(L, code, strlen(code), lua_tostring(L, -1));
  lua_remove(L, -2);
  return start_chunk(rt, status);
}

int fb_runtime_run(fb_runtime *rt) {
  if (!rt || rt->hosted)
    return FB_EINVAL;
  lua_State *L = rt->main;
  if (fb_runtime_loop(L, rt) < 0) {
    set_error(rt, lua_tostring(L, -1));
    lua_pop(L, 1);
    return FB_ELUA;
  }
  return 0;
}

/* Returns the core pointer of the object exported as name if it has
 * type tname; else NULL, with the reason in the last error. */
static void *exported(fb_runtime *rt, const char *name, const char *tname) {
  if (!rt || !name)
    return NULL;
  lua_State *L = rt->main;
  lua_getfield(L, LUA_REGISTRYINDEX, FBL_EXPORTS);
  lua_getfield(L, -1, name);
  void **p = luaL_testudata(L, -1, tname);
  if (!p) {
    const char *why = lua_isnil(L, -1) ? "nothing is exported as '%s'"
                                       : "'%s' is not a %s";
    set_error(rt, lua_pushfstring(L, why, name, tname));
    lua_pop(L, 1);
  } else {
    fbl_host_hold(L, -1); /* the pointer escapes: Lua cannot free it now */
  }
  lua_pop(L, 2);
  return p ? *p : NULL;
}

fb_breaker *fb_runtime_breaker(fb_runtime *rt, const char *name) {
  return exported(rt, name, FBL_BREAKER);
}

fb_balancer *fb_runtime_balancer(fb_runtime *rt, const char *name) {
  return exported(rt, name, FBL_BALANCER);
}

fb_registry *fb_runtime_registry(fb_runtime *rt, const char *name) {
  return exported(rt, name, FBL_REGISTRY);
}

fb_limiter *fb_runtime_limiter(fb_runtime *rt, const char *name) {
  return exported(rt, name, FBL_LIMITER);
}
