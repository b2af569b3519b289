/*
 * lua_util.c -- argument checking shared by the bindings.
 */
#include "lua_util.h"
#include "registry.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void fbl_check_options(lua_State *L, int idx, const char *const *allowed) {
  if (lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, idx, lua_pushfstring(L, "option names must be strings, "
                                               "got a %s", luaL_typename(L, -1)));
    const char *key = lua_tostring(L, -1);
    const char *const *a = allowed;
    while (*a && strcmp(*a, key) != 0)
      a++;
    if (!*a)
      luaL_argerror(L, idx, lua_pushfstring(L, "unknown option '%s'", key));
  }
}

/* Pushes option key (nil when idx is absent); returns its Lua type. */
static int get_option(lua_State *L, int idx, const char *key) {
  if (lua_isnoneornil(L, idx)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_getfield(L, idx, key);
  return lua_type(L, -1);
}

void fbl_bad_option(lua_State *L, int idx, const char *key,
                    const char *want) {
  const char *got = lua_type(L, -1) == LUA_TNUMBER
                        ? lua_pushfstring(L, "%f", lua_tonumber(L, -1))
                        : luaL_typename(L, -1);
  luaL_argerror(L, idx, lua_pushfstring(L, "%s must be %s, got %s", key, want,
                                        got));
}

double fbl_opt_positive(lua_State *L, int idx, const char *key, double def) {
  int t = get_option(L, idx, key);
  double v = def;
  if (t != LUA_TNIL) {
    v = lua_tonumber(L, -1);
    if (t != LUA_TNUMBER || !(v > 0) || isinf(v))
      fbl_bad_option(L, idx, key, "a positive number");
  }
  lua_pop(L, 1);
  return v;
}

int fbl_opt_count(lua_State *L, int idx, const char *key, int def) {
  int t = get_option(L, idx, key);
  int v = def;
  if (t != LUA_TNIL) {
    double d = lua_tonumber(L, -1);
    if (t != LUA_TNUMBER || !(d >= 1) || d != floor(d) || d > 1e9)
      fbl_bad_option(L, idx, key, "a positive integer");
    v = (int)d;
  }
  lua_pop(L, 1);
  return v;
}

double fbl_opt_fraction(lua_State *L, int idx, const char *key, double def) {
  int t = get_option(L, idx, key);
  double v = def;
  if (t != LUA_TNIL) {
    v = lua_tonumber(L, -1);
    if (t != LUA_TNUMBER || !(v > 0 && v <= 1))
      fbl_bad_option(L, idx, key, "a number in (0, 1]");
  }
  lua_pop(L, 1);
  return v;
}

double fbl_opt_at_least(lua_State *L, int idx, const char *key, double def,
                        double min) {
  int t = get_option(L, idx, key);
  double v = def;
  if (t != LUA_TNIL) {
    v = lua_tonumber(L, -1);
    if (t != LUA_TNUMBER || !(v >= min) || isinf(v)) {
      char want[64];
      snprintf(want, sizeof want, "a finite number >= %g", min);
      fbl_bad_option(L, idx, key, want);
    }
  }
  lua_pop(L, 1);
  return v;
}

int fbl_opt_choice(lua_State *L, int idx, const char *key,
                   const char *const *names, int def) {
  int t = get_option(L, idx, key);
  int v = def;
  if (t != LUA_TNIL) {
    const char *s = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    for (v = 0; names[v] && !(s && strcmp(names[v], s) == 0);)
      v++;
    if (!names[v]) {
      char want[256] = "one of";
      for (int i = 0; names[i]; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s '%s'",
                 i ? "," : "", names[i]);
      if (s)
        luaL_argerror(L, idx, lua_pushfstring(L, "%s must be %s, got '%s'",
                                              key, want, s));
      fbl_bad_option(L, idx, key, want);
    }
  }
  lua_pop(L, 1);
  return v;
}

int fbl_opt_given(lua_State *L, int idx, const char *key) {
  int t = get_option(L, idx, key);
  lua_pop(L, 1);
  return t != LUA_TNIL;
}

const char *fbl_check_name_at(lua_State *L, int idx, int arg,
                              const char *what) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must be a string, got %s",
                                          what, luaL_typename(L, idx)));
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (len == 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must not be empty", what));
  if (strlen(s) != len)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must not contain NUL", what));
  return s;
}

const char *fbl_check_name(lua_State *L, int idx, const char *what) {
  return fbl_check_name_at(L, idx, idx, what);
}

const char *fbl_opt_name(lua_State *L, int idx, const char *key) {
  const char *s = NULL;
  if (get_option(L, idx, key) != LUA_TNIL)
    s = fbl_check_name_at(L, lua_gettop(L), idx, key);
  lua_pop(L, 1); /* the options table keeps the string alive */
  return s;
}

int fbl_check_port(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_argerror(L, idx, lua_pushfstring(L, "port must be a number, got %s",
                                          luaL_typename(L, idx)));
  double p = lua_tonumber(L, idx);
  if (!(p >= 1 && p <= 65535) || p != floor(p))
    luaL_argerror(L, idx, lua_pushfstring(L, "port must be 1..65535, got %s",
                                          lua_tostring(L, idx)));
  return (int)p;
}

void *fbl_check_object(lua_State *L, int idx, const char *tname) {
  void **p = luaL_checkudata(L, idx, tname);
  if (!*p)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s is closed", tname));
  return p;
}

void fbl_copy_name(char *out, size_t size, const char *name) {
  size_t n = strlen(name);
  assert(n < size);
  memcpy(out, name, n + 1);
}

void fbl_instance_copy_of(const fb_instance *i, fbl_instance_copy *c) {
  c->id = fb_instance_id(i);
  c->port = fb_instance_port(i);
  c->live = i->live;
  c->healthy = fb_instance_healthy(i);
  c->weight = fb_instance_weight(i);
  c->inflight = fb_instance_inflight(i);
  c->picks = fb_instance_picks(i);
  c->successes = fb_instance_successes(i);
  c->failures = fb_instance_failures(i);
  fbl_copy_name(c->service, sizeof c->service,
                fb_service_name(fb_instance_service(i)));
  fbl_copy_name(c->host, sizeof c->host, fb_instance_host(i));
  const char *zone = fb_instance_zone(i);
  c->has_zone = zone != NULL;
  fbl_copy_name(c->zone, sizeof c->zone, zone ? zone : "");
}

void fbl_set_instance_address(lua_State *L, const fbl_instance_copy *c) {
  lua_pushstring(L, c->service);
  lua_setfield(L, -2, "service");
  lua_pushstring(L, c->host);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, c->port);
  lua_setfield(L, -2, "port");
}

const char *fbl_typename(lua_State *L, int idx) {
  const char *name = luaL_typename(L, idx);
  if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
    lua_getfield(L, -1, "__name");
    if (lua_type(L, -1) == LUA_TSTRING)
      name = lua_tostring(L, -1); /* anchored: the metatable holds it */
    lua_pop(L, 2);
  }
  return name;
}

/* Registry tables: userdata -> true for those whose pointer a host
 * holds; FBL_HOST_CLOSING set while the runtime closes. */
#define FBL_HOST_HELD "fusebox.host_held"
#define FBL_HOST_CLOSING "fusebox.closing"

void fbl_host_hold(lua_State *L, int idx) {
  if (idx < 0)
    idx = lua_gettop(L) + idx + 1;
  lua_getfield(L, LUA_REGISTRYINDEX, FBL_HOST_HELD);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, FBL_HOST_HELD);
  }
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

void fbl_host_closing(lua_State *L) {
  lua_pushboolean(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, FBL_HOST_CLOSING);
}

/* Whether the userdata at 1 must outlive a __gc called by hand: a host
 * holds it. (A collector's __gc never meets one: the table keeps it
 * reachable until the runtime closes, and then this says no.) */
static int host_held(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, FBL_HOST_CLOSING);
  int closing = lua_toboolean(L, -1);
  lua_getfield(L, LUA_REGISTRYINDEX, FBL_HOST_HELD);
  int held = 0;
  if (!closing && lua_istable(L, -1)) {
    lua_pushvalue(L, 1);
    lua_rawget(L, -2);
    held = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return held;
}

void *fbl_check_gc(lua_State *L, const char *tname) {
  void *p = lua_touserdata(L, 1);
  if (p && lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, tname);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same)
      return host_held(L) ? NULL : p;
  }
  luaL_error(L, "bad argument #1 to '__gc' (%s expected, got %s)", tname,
             fbl_typename(L, 1));
  return NULL;
}

void fbl_new_class(lua_State *L, const char *tname, lua_CFunction gc,
                   const luaL_Reg *methods, int rt_idx) {
  luaL_newmetatable(L, tname);
  lua_pushstring(L, tname);
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, methods, 1);
  lua_setfield(L, -2, "methods");
  lua_pop(L, 1);
}

void fbl_new_plain_class(lua_State *L, const char *tname, lua_CFunction gc,
                         const luaL_Reg *methods, int rt_idx) {
  fbl_new_class(L, tname, gc, methods, rt_idx);
  luaL_getmetatable(L, tname);
  lua_getfield(L, -1, "methods");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
