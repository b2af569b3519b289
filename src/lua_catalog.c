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
  fb_service *s = fb_registry_service(*p, luaL_checkstring(L, 2));
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

/* core.registry_services(reg) -> array of service names, oldest first
 * (once empty services were removed, the newest moved into their places) */
static int registry_services(lua_State *L) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  uint32_t n = fb_registry_nservices(*p);
  lua_createtable(L, (int)n, 0);
  for (uint32_t i = 0; i < n; i++) {
    lua_pushstring(L, fb_service_name(fb_registry_service_at(*p, i)));
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

/* core.registry_stats(reg) -> expirations, array of {service=, host=,
 * port=, live=, picks=, inflight=, healthy=, successes=, failures=} over
 * every member, live or expired */
static int registry_stats(lua_State *L) {
  fb_registry **p = fbl_check_object(L, 1, FBL_REGISTRY);
  lua_pushnumber(L, (double)fb_registry_expirations(*p));
  lua_newtable(L);
  int k = 1;
  for (uint32_t i = 0; i < fb_registry_nservices(*p); i++) {
    fb_service *s = fb_registry_service_at(*p, i);
    for (uint32_t j = 0; j < s->nmembers; j++) {
      fb_instance *in = s->members[j];
      if (!in)
        continue; /* a removed member's hole */
      lua_createtable(L, 0, 9);
      lua_pushstring(L, s->name);
      lua_setfield(L, -2, "service");
      lua_pushstring(L, in->host);
      lua_setfield(L, -2, "host");
      lua_pushinteger(L, in->port);
      lua_setfield(L, -2, "port");
      lua_pushboolean(L, in->live);
      lua_setfield(L, -2, "live");
      lua_pushnumber(L, (double)fb_instance_picks(in));
      lua_setfield(L, -2, "picks");
      lua_pushnumber(L, fb_instance_inflight(in));
      lua_setfield(L, -2, "inflight");
      lua_pushboolean(L, fb_instance_healthy(in));
      lua_setfield(L, -2, "healthy");
      lua_pushnumber(L, (double)fb_instance_successes(in));
      lua_setfield(L, -2, "successes");
      lua_pushnumber(L, (double)fb_instance_failures(in));
      lua_setfield(L, -2, "failures");
      lua_rawseti(L, -2, k++);
    }
  }
  return 2;
}

/* core.breaker_stats(cb) -> state, successes, failures, rejected,
 * transitions, timeouts */
static int breaker_stats(lua_State *L) {
  fb_breaker **p = fbl_check_object(L, 1, FBL_BREAKER);
  fb_breaker_metrics m;
  fb_breaker_metrics_get(*p, fb_runtime_now(fbl_runtime(L)), &m);
  lua_pushstring(L, fb_breaker_state_name(m.state));
  lua_pushnumber(L, (double)m.successes);
  lua_pushnumber(L, (double)m.failures);
  lua_pushnumber(L, (double)m.rejected);
  lua_pushnumber(L, (double)fb_breaker_transitions(*p));
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
