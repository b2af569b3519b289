/*
 * lua_registry.c -- fb.registry{...}: the registry's Lua face.
 *
 * Payload: the fb_registry pointer, NULL once collected. discover() lives
 * in lua/fusebox/registry.lua, where instance views are cached. The core
 * knows nothing of Lua, so an instance's meta table lives here, in the
 * userdata's environment: env.meta[instance id] = table.
 *
 * A reaped instance's meta goes too, but not from the registry listener:
 * reaping happens in any walk, including those inside FFI calls
 * (discover, picks), where the Lua API must not be used. So the functions
 * here that may reap compare the core's count of reaped instances with
 * the one they last saw (env.reaped) and copy the meta of ids that still
 * resolve into a new env.meta -- once reaped ones are at least half the
 * instances, so the stale entries stay fewer than half the live ones and
 * copying costs O(1) amortised per reaped instance. A new table, because
 * a Lua table never shrinks in place: emptied, the old one would keep its
 * largest size. (So env.meta is read through env each time, never kept.)
 */
#include "lua_util.h"

#include <math.h>

static const char *const registry_options[] = {
    "heartbeat_timeout", "reap_after", "max_services", "max_instances", NULL};

static int registry_new(lua_State *L) {
  fbl_check_options(L, 1, registry_options);
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  /* math.huge: a static registry, whose instances never expire */
  int never = 0;
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "heartbeat_timeout");
    never = lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == HUGE_VAL;
    lua_pop(L, 1);
  }
  cfg.heartbeat_timeout = never ? HUGE_VAL
      : fbl_opt_positive(L, 1, "heartbeat_timeout", cfg.heartbeat_timeout);
  cfg.reap_after = fbl_opt_positive(L, 1, "reap_after",
                                    3 * cfg.heartbeat_timeout);
  cfg.max_services = (uint32_t)fbl_opt_count(L, 1, "max_services",
                                             (int)cfg.max_services);
  cfg.max_instances = (uint32_t)fbl_opt_count(L, 1, "max_instances",
                                              (int)cfg.max_instances);
  /* registry.lua drops the fb_service pointers it keeps whenever
   * fb_registry_services_removed() changed, so churned names need not
   * lock the registry out */
  cfg.remove_empty_services = 1;
  fb_registry **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, FBL_REGISTRY);
  lua_setmetatable(L, -2);
  lua_createtable(L, 0, 2);
  lua_newtable(L);
  lua_setfield(L, -2, "meta");
  lua_pushnumber(L, 0);
  lua_setfield(L, -2, "reaped"); /* see the top of this file */
  lua_setfenv(L, -2);
  if (!(*p = fb_registry_new(&cfg)))
    return luaL_error(L, "registry: out of memory");
  fb_registry_set_listener(*p, fb_runtime_on_registry, fbl_runtime(L));
  return 1;
}

static int registry_gc(lua_State *L) {
  fb_registry **p = fbl_check_gc(L, FBL_REGISTRY);
  if (!p) /* a host holds it */
    return 0;
  fb_registry_release(*p); /* a balancer may still hold it; NULL: closed */
  *p = NULL;
  return 0;
}

void fbl_registry_drop_reaped(lua_State *L, int idx) {
  fb_registry *r = *(fb_registry **)lua_touserdata(L, idx);
  double reaped = (double)fb_registry_reaped(r);
  lua_getfenv(L, idx);
  int env = lua_gettop(L);
  lua_getfield(L, env, "reaped");
  double pending = reaped - lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (pending == 0 || pending < (double)fb_registry_ninstances(r) / 2) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, env, "meta");
  int meta = lua_gettop(L);
  lua_newtable(L);
  /* the registry again: the allocation may have closed it (lua_util.h);
   * then its meta go with it */
  if (!(r = *(fb_registry **)lua_touserdata(L, idx))) {
    lua_pop(L, 3);
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, meta)) {
    if (lua_type(L, -2) != LUA_TNUMBER ||
        fb_registry_instance(r, (uint64_t)lua_tonumber(L, -2))) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, meta + 1); /* still registered: kept */
    } else {
      lua_pop(L, 1);
    }
  }
  lua_setfield(L, env, "meta");
  lua_pushnumber(L, reaped);
  lua_setfield(L, env, "reaped");
  lua_pop(L, 2);
}

/* Raises the error rc of an operation on r, naming the function (and for
 * FB_EFULL the limit). */
static int registry_error(lua_State *L, fb_registry *r, const char *fname,
                          int rc) {
  char buf[128];
  return luaL_error(L, "%s: %s", fname,
                    fb_registry_strerror(r, rc, buf, sizeof buf));
}

/* fbl_check_name() for what a registration stores: also at most
 * FB_NAME_MAX bytes. The value at stack slot idx; errors name argument
 * arg (idx itself, or the options table a value came from). */
static const char *check_stored_at(lua_State *L, int idx, int arg,
                                   const char *what) {
  const char *s = fbl_check_name_at(L, idx, arg, what);
  size_t len = lua_objlen(L, idx);
  if (len > FB_NAME_MAX)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must be at most %d bytes, "
                                             "got %d", what, (int)FB_NAME_MAX,
                                          (int)len));
  return s;
}

static const char *check_stored_name(lua_State *L, int idx, const char *what) {
  return check_stored_at(L, idx, idx, what);
}

typedef int (*instance_op)(fb_registry *, const char *, const char *, int,
                           double);

static int registry_touch(lua_State *L, instance_op op, const char *fname) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  const char *service = check_stored_name(L, 2, "service name");
  const char *host = check_stored_name(L, 3, "host");
  int port = fbl_check_port(L, 4);
  int rc = op(*p, service, host, port, fb_runtime_now(fbl_runtime(L)));
  if (rc < 0)
    return registry_error(L, *p, fname, rc);
  fbl_registry_drop_reaped(L, 1);
  lua_pushboolean(L, rc == FB_ADDED);
  return 1;
}

static const char *const register_options[] = {"weight", "zone", "meta",
                                                NULL};

static uint32_t check_weight(lua_State *L, int idx) {
  lua_getfield(L, idx, "weight");
  uint32_t w = 0;
  if (!lua_isnil(L, -1)) {
    double d = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(d >= 1 && d <= FB_WEIGHT_MAX) ||
        d != floor(d))
      luaL_argerror(L, idx, lua_pushfstring(L, "weight must be an integer "
                                               "1..%d, got %s", FB_WEIGHT_MAX,
                                            lua_type(L, -1) == LUA_TNUMBER
                                                ? lua_tostring(L, -1)
                                                : luaL_typename(L, -1)));
    w = (uint32_t)d;
  }
  lua_pop(L, 1);
  return w;
}

/* Reads {weight=, zone=, meta=} at idx into o; leaves meta (or nil) pushed. */
static void check_register_options(lua_State *L, int idx, fb_instance_opts *o) {
  fb_instance_opts_init(o);
  fbl_check_options(L, idx, register_options);
  if (lua_isnoneornil(L, idx)) {
    lua_pushnil(L);
    return;
  }
  o->weight = check_weight(L, idx);
  lua_getfield(L, idx, "zone");
  if (!lua_isnil(L, -1)) /* an option: the error names the options table */
    o->zone = check_stored_at(L, lua_gettop(L), idx, "zone");
  lua_getfield(L, idx, "meta");
  if (!lua_isnil(L, -1) && !lua_istable(L, -1))
    luaL_argerror(L, idx, lua_pushfstring(L, "meta must be a table, got %s",
                                          luaL_typename(L, -1)));
}

/* reg:register(service, host, port [, {weight=, zone=, meta=}]) -> true
 * if added, false if refreshed; given options replace the old ones */
static int registry_register(lua_State *L) {
  fbl_check_object(L, 1, FBL_REGISTRY);
  const char *service = check_stored_name(L, 2, "service name");
  const char *host = check_stored_name(L, 3, "host");
  int port = fbl_check_port(L, 4);
  fb_instance_opts o;
  check_register_options(L, 5, &o);
  /* after the options, whose metamethods may have closed it (lua_util.h) */
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  int rc = fb_registry_register_with(*p, service, host, port, &o,
                                     fb_runtime_now(fbl_runtime(L)));
  if (rc < 0)
    return registry_error(L, *p, "register", rc);
  double id = (double)fb_instance_id(fb_registry_find(*p, service, host, port));
  fbl_registry_drop_reaped(L, 1);
  if (!lua_isnil(L, -1)) {
    int meta = lua_gettop(L);
    lua_getfenv(L, 1);
    lua_getfield(L, -1, "meta");
    lua_pushnumber(L, id);
    lua_pushvalue(L, meta);
    lua_rawset(L, -3);
  }
  lua_pushboolean(L, rc == FB_ADDED);
  return 1;
}

/* reg:heartbeat(service, host, port): refresh (or register) the instance */
static int registry_heartbeat(lua_State *L) {
  return registry_touch(L, fb_registry_heartbeat, "heartbeat");
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
    lua_getfield(L, -1, "meta");
    lua_pushnumber(L, (lua_Number)fb_instance_id(i));
    lua_pushnil(L);
    lua_rawset(L, -3);
  }
  int rc = fb_registry_deregister(*p, service, host, port);
  if (rc < 0)
    return luaL_error(L, "%s", fb_strerror(rc));
  lua_pushboolean(L, rc == 1);
  return 1;
}

static int registry_mark(lua_State *L, int up) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  const char *service = fbl_check_name(L, 2, "service name");
  const char *host = fbl_check_name(L, 3, "host");
  int port = fbl_check_port(L, 4);
  int rc = fb_registry_mark(*p, service, host, port, up);
  if (rc < 0)
    return luaL_error(L, "%s", fb_strerror(rc));
  lua_pushboolean(L, rc == 1);
  return 1;
}

/* reg:mark_down(service, host, port) -> true if the instance exists;
 * balancers skip it (panic mode aside) until mark_up */
static int registry_mark_down(lua_State *L) { return registry_mark(L, 0); }

/* reg:mark_up(service, host, port) -> true if the instance exists */
static int registry_mark_up(lua_State *L) { return registry_mark(L, 1); }

/* reg:set_healthy(service, host, port, healthy) -> true if the instance
 * exists: the health-check verdict (outlier ejection, active checks),
 * independent of mark_down/mark_up; balancers skip unhealthy instances */
static int registry_set_healthy(lua_State *L) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  const char *service = fbl_check_name(L, 2, "service name");
  const char *host = fbl_check_name(L, 3, "host");
  int port = fbl_check_port(L, 4);
  luaL_checktype(L, 5, LUA_TBOOLEAN);
  fb_instance *i = fb_registry_find(*p, service, host, port);
  if (i)
    fb_instance_set_healthy(i, lua_toboolean(L, 5));
  lua_pushboolean(L, i != NULL);
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
    {"mark_down", registry_mark_down},
    {"mark_up", registry_mark_up},
    {"set_healthy", registry_set_healthy},
    {"heartbeat_timeout", registry_heartbeat_timeout},
    {NULL, NULL},
};

void fbl_open_registry(lua_State *L, int rt_idx) {
  fbl_new_class(L, FBL_REGISTRY, registry_gc, registry_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, registry_new, 1);
  lua_setfield(L, -2, "registry");
}
