/*
 * lua_zone.c -- fb.zone{...}: a named shared zone's Lua face (src/zone.h).
 *
 *   z = fb.zone{ name = "api", size = 1048576, owner = master_pid,
 *                dir = "/dev/shm" }
 *   cb = fb.breaker{ name = "api/10.0.0.1:80", zone = z, ... }
 *   z:info() -> {name=, size=, used=, entries=, max_entries=}
 *   z:peer(key) -> offset: the zone's peer record key (made if new), for
 *     the FFI entries zone_peer_stat and zone_peer_eject (lua_api.h)
 *   z:share_load(registry, id, key) -> offset: instance id of registry
 *     weighs the in-flight count of peer record key, every process's
 *     (fb_instance_share_load); the zone then stays mapped until exit
 *
 * Payload: the fb_zone pointer (NULL once __gc ran). The mapping is
 * reference-counted in C: the zone's userdata holds one reference and
 * every breaker built in it another (lua_breaker.c), so a zone collected,
 * or closed by a hand-called __gc, before its breakers stays mapped until
 * the last of them is gone.
 */
#include "lua_util.h"
#include "zone.h"

#include <errno.h>
#include <math.h>
#include <unistd.h>

static const char *const zone_options[] = {"name", "size", "owner", "dir",
                                           NULL};

#define DEFAULT_SIZE ((size_t)1 << 20)

/* Option key of table 1: an integer in lo..hi, or def. */
static double opt_integer(lua_State *L, const char *key, double lo,
                          double hi, double def) {
  lua_getfield(L, 1, key);
  double v = def;
  if (!lua_isnil(L, -1)) {
    v = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(v >= lo && v <= hi) ||
        v != floor(v)) {
      char want[64];
      snprintf(want, sizeof want, "an integer %.0f..%.0f", lo, hi);
      fbl_bad_option(L, 1, key, want);
    }
  }
  lua_pop(L, 1);
  return v;
}

static int zone_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  fbl_check_options(L, 1, zone_options);
  const char *name = fbl_opt_name(L, 1, "name");
  if (!name)
    luaL_argerror(L, 1, "name is required");
  size_t size = (size_t)opt_integer(L, "size", (double)FB_ZONE_MIN_SIZE,
                                    (double)FB_ZONE_MAX_SIZE,
                                    (double)DEFAULT_SIZE);
  long owner = (long)opt_integer(L, "owner", 1, 4194304, (double)getpid());
  const char *dir = fbl_opt_name(L, 1, "dir");
  char path[512], err[256];
  if (fb_zone_path(path, sizeof path, dir, name, owner, err, sizeof err) < 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "%s", err));
  fb_zone **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, FBL_ZONE);
  lua_setmetatable(L, -2);
  fb_zone_reap(dir); /* the files of masters that are gone (a restart) */
  if (!(*p = fb_zone_open(path, name, size, err, sizeof err)))
    return luaL_error(L, "%s", err);
  return 1;
}

static int zone_gc(lua_State *L) {
  fb_zone **p = fbl_check_gc(L, FBL_ZONE);
  if (!p) /* a host holds it */
    return 0;
  fb_zone_release(*p); /* NULL once closed */
  *p = NULL;
  return 0;
}

static void set_number(lua_State *L, const char *key, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, key);
}

/* z:info() -> {name=, size=, used=, entries=, max_entries=} */
static int zone_info(lua_State *L) {
  fb_zone *z = *(fb_zone **)fbl_check_object(L, 1, FBL_ZONE);
  /* copied before the table is made, which may close z (lua_util.h) */
  char name[FB_ZONE_NAME_MAX + 1];
  fbl_copy_name(name, sizeof name, fb_zone_name(z));
  double size = (double)fb_zone_size(z), used = (double)fb_zone_used(z);
  double entries = fb_zone_entries(z), max = fb_zone_max_entries(z);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  set_number(L, "size", size);
  set_number(L, "used", used);
  set_number(L, "entries", entries);
  set_number(L, "max_entries", max);
  return 1;
}

static fb_zone_peer *check_peer(lua_State *L, fb_zone *z, int idx) {
  char err[256];
  fb_zone_peer *p = fb_zone_peer_get(z, fbl_check_name(L, idx, "key"), err,
                                     sizeof err);
  if (!p)
    luaL_error(L, "%s", err);
  return p;
}

/* z:peer(key) -> offset */
static int zone_peer(lua_State *L) {
  fb_zone *z = *(fb_zone **)fbl_check_object(L, 1, FBL_ZONE);
  lua_pushnumber(L, (double)fb_zone_peer_offset(z, check_peer(L, z, 2)));
  return 1;
}

/* z:share_load(registry, id, key) -> offset */
static int zone_share_load(lua_State *L) {
  fb_zone *z = *(fb_zone **)fbl_check_object(L, 1, FBL_ZONE);
  fb_registry *r = *(fb_registry **)fbl_check_object(L, 2, FBL_REGISTRY);
  double id = luaL_checknumber(L, 3);
  fb_instance *i = id >= 0 && id < 18446744073709551616.0
                       ? fb_registry_instance(r, (uint64_t)id)
                       : NULL;
  if (!i)
    luaL_argerror(L, 3, lua_pushfstring(L, "no instance %f in the registry",
                                        id));
  fb_zone_peer *p = check_peer(L, z, 4);
  fb_zone_pin(z); /* the instance may outlive every handle: see zone.h */
  fb_instance_share_load(i, (int64_t *)&p->inflight);
  lua_pushnumber(L, (double)fb_zone_peer_offset(z, p));
  return 1;
}

static const luaL_Reg zone_methods[] = {
    {"info", zone_info},
    {"peer", zone_peer},
    {"share_load", zone_share_load},
    {NULL, NULL},
};

void fbl_open_zone(lua_State *L, int rt_idx) {
  fbl_new_plain_class(L, FBL_ZONE, zone_gc, zone_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, zone_new, 1);
  lua_setfield(L, -2, "zone");
}
