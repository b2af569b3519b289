/*
 * lua_registry.c -- fb.registry{...}: the registry's Lua face.
 *
 * Payload: the fb_registry pointer, NULL once collected. The environment
 * table holds `views`, instance id -> the Lua table that stands for that
 * instance (built in lua/fusebox/registry.lua, which also has discover());
 * deregister() drops the view with its instance.
 */
#include "lua_util.h"

static const char *const registry_options[] = {"heartbeat_timeout", NULL};

static int registry_new(lua_State *L) {
  fbl_check_options(L, 1, registry_options);
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout =
      fbl_opt_positive(L, 1, "heartbeat_timeout", cfg.heartbeat_timeout);
  fb_registry **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, FBL_REGISTRY);
  lua_setmetatable(L, -2);
  lua_createtable(L, 0, 1);
  lua_newtable(L);
  lua_setfield(L, -2, "views");
  lua_setfenv(L, -2);
  if (!(*p = fb_registry_new(&cfg)))
    return luaL_error(L, "registry: out of memory");
  fb_registry_set_listener(*p, fb_runtime_on_registry, fbl_runtime(L));
  return 1;
}

static int registry_gc(lua_State *L) {
  fb_registry **p = lua_touserdata(L, 1);
  fb_registry_release(*p); /* a balancer may still hold it */
  *p = NULL;
  return 0;
}

typedef int (*instance_op)(fb_registry *, const char *, const char *, int,
                           double);

static int registry_touch(lua_State *L, instance_op op) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  const char *service = fbl_check_name(L, 2, "service name");
  const char *host = fbl_check_name(L, 3, "host");
  int port = fbl_check_port(L, 4);
  int rc = op(*p, service, host, port, fb_runtime_now(fbl_runtime(L)));
  if (rc < 0)
    return luaL_error(L, "%s", fb_strerror(rc));
  lua_pushboolean(L, rc == FB_ADDED);
  return 1;
}

/* reg:register(service, host, port) -> true if added, false if refreshed */
static int registry_register(lua_State *L) {
  return registry_touch(L, fb_registry_register);
}

/* reg:heartbeat(service, host, port): refresh (or register) the instance */
static int registry_heartbeat(lua_State *L) {
  return registry_touch(L, fb_registry_heartbeat);
}

/* reg:deregister(service, host, port) -> true if it was there */
static int registry_deregister(lua_State *L) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  const char *service = fbl_check_name(L, 2, "service name");
  const char *host = fbl_check_name(L, 3, "host");
  int port = fbl_check_port(L, 4);
  fb_instance *i = fb_registry_find(*p, service, host, port);
  if (i) {
    lua_getfenv(L, 1);
    lua_getfield(L, -1, "views");
    lua_pushnumber(L, (double)fb_instance_id(i));
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 2);
  }
  lua_pushboolean(L, fb_registry_deregister(*p, service, host, port) == 1);
  return 1;
}

/* reg:views() -> the id -> view table (for lua/fusebox/registry.lua) */
static int registry_views(lua_State *L) {
  fbl_check_object(L, 1, FBL_REGISTRY);
  lua_getfenv(L, 1);
  lua_getfield(L, -1, "views");
  return 1;
}

static int registry_heartbeat_timeout(lua_State *L) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  lua_pushnumber(L, fb_registry_heartbeat_timeout(*p));
  return 1;
}

static const luaL_Reg registry_methods[] = {
    {"register", registry_register},
    {"heartbeat", registry_heartbeat},
    {"deregister", registry_deregister},
    {"heartbeat_timeout", registry_heartbeat_timeout},
    {"views", registry_views},
    {NULL, NULL},
};

void fbl_open_registry(lua_State *L, int rt_idx) {
  fbl_new_class(L, FBL_REGISTRY, registry_gc, registry_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, registry_new, 1);
  lua_setfield(L, -2, "registry");
}
