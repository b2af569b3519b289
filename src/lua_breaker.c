/*
 * lua_breaker.c -- fb.breaker{...}: the breaker's Lua face.
 *
 * Payload: the fb_breaker pointer. call(), on() and the state property
 * live in lua/fusebox.lua: call() must be Lua so the guarded function may
 * yield (sleep) inside it, and acquire/record go through the FFI table.
 */
#include "lua_util.h"

static const char *const breaker_options[] = {
    "failure_threshold", "timeout", "success_threshold", NULL};

static int breaker_new(lua_State *L) {
  fbl_check_options(L, 1, breaker_options);
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.failure_threshold =
      fbl_opt_count(L, 1, "failure_threshold", cfg.failure_threshold);
  cfg.timeout = fbl_opt_positive(L, 1, "timeout", cfg.timeout);
  cfg.success_threshold =
      fbl_opt_count(L, 1, "success_threshold", cfg.success_threshold);
  fb_breaker **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, FBL_BREAKER);
  lua_setmetatable(L, -2);
  if (!(*p = fb_breaker_new(&cfg)))
    return luaL_error(L, "breaker: out of memory");
  return 1;
}

static int breaker_gc(lua_State *L) {
  fb_breaker **p = lua_touserdata(L, 1);
  fb_breaker_free(*p);
  *p = NULL;
  return 0;
}

/* cb:transition(n) -> from, to, at: the n-th state change (0-based) */
static int breaker_transition(lua_State *L) {
  fb_breaker **p = fbl_check_object(L, 1, FBL_BREAKER);
  double n = luaL_checknumber(L, 2);
  fb_breaker_state from, to;
  double at;
  if (n < 0 || fb_breaker_transition(*p, (uint64_t)n, &from, &to, &at) < 0)
    return 0;
  lua_pushstring(L, fb_breaker_state_name(from));
  lua_pushstring(L, fb_breaker_state_name(to));
  lua_pushnumber(L, at);
  return 3;
}

static const luaL_Reg breaker_methods[] = {
    {"transition", breaker_transition},
    {NULL, NULL},
};

void fbl_open_breaker(lua_State *L, int rt_idx) {
  fbl_new_class(L, FBL_BREAKER, breaker_gc, breaker_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, breaker_new, 1);
  lua_setfield(L, -2, "breaker");
}
