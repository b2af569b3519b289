/*
 * lua_catalog.c -- what the registry API (lua/fusebox/serve.lua) needs
 * beyond the registry's methods: modification indexes for blocking
 * queries, a sweep that notices expiry, and the list of services.
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
  return 0;
}

/* core.registry_services(reg) -> array of service names, oldest first */
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

static const luaL_Reg catalog_functions[] = {
    {"registry_index", registry_index},
    {"registry_sweep", registry_sweep},
    {"registry_services", registry_services},
    {NULL, NULL},
};

void fbl_open_catalog(lua_State *L, int rt_idx) {
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, catalog_functions, 1);
}
