/*
 * naive.c -- the baseline of the hot-path rows: a naive binding in the
 * classic Lua C API, the way most C libraries reach Lua (a userdata, a
 * metatable, lua_CFunction methods checking self with luaL_checkudata).
 * Built as build/cmp/naive.so and loaded with require "naive" into the
 * same process as fusebox, so "× naive" is measured in one run:
 *   u:call(fn, ...)  pcalls fn, counts the call, returns fn's results
 *                    (re-raising its error): a guarded call without the
 *                    breaker's decisions
 *   u:noop(...)      checks self and returns nothing: the floor of any
 *                    classic method call (a pick, for instance)
 */
#include <lauxlib.h>
#include <lua.h>

#define NAIVE "fusebox.bench.naive"

typedef struct naive {
  double calls;
} naive;

static int naive_new(lua_State *L) {
  naive *u = lua_newuserdata(L, sizeof *u);
  u->calls = 0;
  luaL_getmetatable(L, NAIVE);
  lua_setmetatable(L, -2);
  return 1;
}

static int naive_call(lua_State *L) {
  naive *u = luaL_checkudata(L, 1, NAIVE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  u->calls++;
  if (lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0) != 0)
    return lua_error(L);
  return lua_gettop(L) - 1;
}

static int naive_noop(lua_State *L) {
  luaL_checkudata(L, 1, NAIVE);
  return 0;
}

int luaopen_naive(lua_State *L);
int luaopen_naive(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"call", naive_call}, {"noop", naive_noop}, {NULL, NULL}};
  luaL_newmetatable(L, NAIVE);
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, naive_new);
  return 1;
}
