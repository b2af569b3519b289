/*
 * lua_catalog.c -- what the registry API (lua/fusebox/serve.lua) needs
 * beyond the registry's methods: modification indexes for blocking
 * queries, a sweep that notices expiry, and the list of services; and
 * what metrics (lua/fusebox/metrics.lua) read: counters of exported
 * objects.
 */
#include "lua_util.h"
#include "registry.h"


/* core.registry_index(reg [, service]) -> the registry's index, or the
 * service's (0 for a service never registered) */
static int registry_index(lua_State *L) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  if (lua_isnoneornil(L, 2)) {
    lua_pushnumber(L, (double)fb_registry_index(*p));
    return 1;
  }
  const char *name = luaL_checkstring(L, 2); /* a number: converted, which
                                               allocates (lua_util.h) */
  p = fbl_check_object(L, 1, FBL_REGISTRY);
  fb_service *s = fb_registry_service(*p, name);
  lua_pushnumber(L, s ? (double)fb_service_index(s) : 0);
  return 1;
}

/* core.registry_sweep(reg): expires what is due now */
static int registry_sweep(lua_State *L) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  fb_registry_sweep(*p, fb_runtime_now(fbl_runtime(L)));
  fbl_registry_drop_reaped(L, 1);
  return 0;
}

/* The walks below build a table per item, and a finalizer run by any of
 * those allocations may change the registry (lua_util.h): each round
 * re-reads the registry (a clean "closed" error once it is) and its
 * position by index, and copies the item before it allocates. A service
 * removed or an instance deregistered meanwhile is missed, one added
 * may be listed if the walk reaches it; each is listed once at most and
 * as it was when copied, and a walk lists at most as many items as the
 * registry held when it began (finalizers that keep adding would make
 * it endless). */

/* core.registry_services(reg) -> array of service names, oldest first
 * (once empty services were removed, the newest moved into their places) */
static int registry_services(lua_State *L) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  uint32_t n = fb_registry_nservices(*p);
  lua_createtable(L, (int)n, 0);
  char name[FB_NAME_MAX + 1];
  for (uint32_t i = 0;
       i < n &&
       i < fb_registry_nservices(*(p = fbl_check_object(L, 1, FBL_REGISTRY)));
       i++) {
    fbl_copy_name(name, sizeof name, fb_service_name(fb_registry_service_at(*p, i)));
    lua_pushstring(L, name);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

/* The next instance of reg's walk from service *i, member *j on, copied
 * into *c, and the position moved past it; 0 at the end. */
static int next_member(fb_registry *reg, uint32_t *i, uint32_t *j,
                       fbl_instance_copy *c) {
  for (; *i < fb_registry_nservices(reg); (*i)++, *j = 0) {
    fb_service *s = fb_registry_service_at(reg, *i);
    for (; *j < s->nmembers; (*j)++) {
      fb_instance *in = s->members[*j];
      if (in) { /* else a removed member's hole */
        fbl_instance_copy_of(in, c);
        (*j)++;
        return 1;
      }
    }
  }
  return 0;
}

/* core.registry_stats(reg) -> expirations, array of {service=, host=,
 * port=, live=, picks=, inflight=, healthy=, successes=, failures=} over
 * every member, live or expired */
static int registry_stats(lua_State *L) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  lua_pushnumber(L, (double)fb_registry_expirations(*p));
  size_t left = fb_registry_ninstances(*p);
  lua_newtable(L);
  int k = 1;
  uint32_t i = 0, j = 0;
  fbl_instance_copy c;
  while (left-- > 0 &&
         next_member(*(fb_registry **)fbl_check_object(L, 1, FBL_REGISTRY),
                     &i, &j, &c)) {
    lua_createtable(L, 0, 9);
    fbl_set_instance_address(L, &c);
    lua_pushboolean(L, c.live);
    lua_setfield(L, -2, "live");
    lua_pushnumber(L, (double)c.picks);
    lua_setfield(L, -2, "picks");
    lua_pushnumber(L, c.inflight);
    lua_setfield(L, -2, "inflight");
    lua_pushboolean(L, c.healthy);
    lua_setfield(L, -2, "healthy");
    lua_pushnumber(L, (double)c.successes);
    lua_setfield(L, -2, "successes");
    lua_pushnumber(L, (double)c.failures);
    lua_setfield(L, -2, "failures");
    lua_rawseti(L, -2, k++);
  }
  return 2;
}

/* core.breaker_stats(cb) -> state, successes, failures, rejected,
 * transitions, timeouts */
static int breaker_stats(lua_State *L) {
  fb_breaker **p = fbl_check_object(L, 1, FBL_BREAKER);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(*p, fb_runtime_now(fbl_runtime(L)), &m);
  double transitions = (double)fb_breaker_transitions(*p); /* before the
                                     push, which may close it: lua_util.h */
  lua_pushstring(L, fb_breaker_state_name(m.state));
  lua_pushnumber(L, (double)m.successes);
  lua_pushnumber(L, (double)m.failures);
  lua_pushnumber(L, (double)m.rejected);
  lua_pushnumber(L, transitions);
  lua_pushnumber(L, (double)m.timeouts);
  return 6;
}

/* core.exports() -> the name -> object table fb.export fills */
static int exports(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, FBL_EXPORTS);
  return 1;
}

static const luaL_Reg catalog_functions[] = {
    {"registry_stats", registry_stats},
    {"breaker_stats", breaker_stats},
    {"exports", exports},
    {"registry_index", registry_index},
    {"registry_sweep", registry_sweep},
    {"registry_services", registry_services},
    {NULL, NULL},
};

void fbl_open_catalog(lua_State *L, int rt_idx) {
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, catalog_functions, 1);
}
