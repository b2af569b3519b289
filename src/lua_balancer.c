/*
 * lua_balancer.c -- fb.balancer(reg, algorithm): the balancer's Lua face.
 *
 * Payload: the fb_balancer pointer. The balancer's environment table holds
 * its registry userdata, so Lua keeps the registry alive while the
 * balancer lives; the core's reference count makes either collection
 * order safe. pick() lives in lua/fusebox.lua (FFI fast path).
 */
#include "lua_util.h"

#include <string.h>

static int balancer_new(lua_State *L) {
  fb_registry **reg = fbl_check_object(L, 1, FBL_REGISTRY);
  const char *algo = luaL_checkstring(L, 2);
  const char *const *names = fb_balancer_algorithms();
  const char *const *n = names;
  while (*n && strcmp(*n, algo) != 0)
    n++;
  if (!*n) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (n = names; *n; n++) {
      luaL_addstring(&b, *n);
      if (n[1])
        luaL_addstring(&b, ", ");
    }
    luaL_pushresult(&b);
    return luaL_argerror(
        L, 2, lua_pushfstring(L, "unknown algorithm '%s' (known: %s)", algo,
                              lua_tostring(L, -1)));
  }
  fb_balancer **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, FBL_BALANCER);
  lua_setmetatable(L, -2);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "registry");
  lua_setfenv(L, -2);
  *p = fb_balancer_new(*reg, algo, fb_runtime_stream_seed(fbl_runtime(L)));
  if (!*p)
    return luaL_error(L, "balancer: out of memory");
  return 1;
}

static int balancer_gc(lua_State *L) {
  fb_balancer **p = lua_touserdata(L, 1);
  fb_balancer_free(*p);
  *p = NULL;
  return 0;
}

/* lb:registry() -> the registry it balances over */
static int balancer_registry(lua_State *L) {
  fbl_check_object(L, 1, FBL_BALANCER);
  lua_getfenv(L, 1);
  lua_getfield(L, -1, "registry");
  return 1;
}

/* lb:algorithm() -> its algorithm's name */
static int balancer_algorithm(lua_State *L) {
  fb_balancer **p = fbl_check_object(L, 1, FBL_BALANCER);
  lua_pushstring(L, fb_balancer_algorithm(*p));
  return 1;
}

static const luaL_Reg balancer_methods[] = {
    {"registry", balancer_registry},
    {"algorithm", balancer_algorithm},
    {NULL, NULL},
};

void fbl_open_balancer(lua_State *L, int rt_idx) {
  fbl_new_class(L, FBL_BALANCER, balancer_gc, balancer_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, balancer_new, 1);
  lua_setfield(L, -2, "balancer");
}
