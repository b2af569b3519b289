/*
 * lua_events.c -- core.emit(kind, fields): Lua's way into the event log.
 *
 * Fields become JSON through cJSON with their keys sorted: Lua's table
 * order is not something a byte-identical log may depend on. Fields are
 * walked twice: once to check them (which may raise), then to build the
 * JSON (which does not), so a bad field never leaks a half-built event.
 */
#include "lua_util.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 64
#define MAX_DEPTH 8

/* Walks the value at idx; builds its JSON when build, else only checks. */
static cJSON *convert(lua_State *L, int idx, int depth, int build);

static int by_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Walks the string-keyed fields of the table at idx, sorted, into obj. */
static void convert_fields(lua_State *L, cJSON *obj, int idx, int depth,
                           int build) {
  const char *keys[MAX_FIELDS];
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "emit: field names must be strings, got a %s",
                 luaL_typename(L, -1));
    if (n == MAX_FIELDS)
      luaL_error(L, "emit: more than %d fields", MAX_FIELDS);
    keys[n++] = lua_tostring(L, -1); /* kept alive by the table */
  }
  qsort(keys, n, sizeof *keys, by_name);
  for (size_t i = 0; i < n; i++) {
    if (depth == 0 && (!strcmp(keys[i], "t") || !strcmp(keys[i], "kind")))
      luaL_error(L, "emit: field names 't' and 'kind' are reserved");
    lua_getfield(L, idx, keys[i]);
    cJSON *v = convert(L, lua_gettop(L), depth + 1, build);
    if (build)
      cJSON_AddItemToObject(obj, keys[i], v);
    lua_pop(L, 1);
  }
}

/* A table with a non-empty sequence part is an array; any other an object. */
static cJSON *convert_table(lua_State *L, int idx, int depth, int build) {
  if (depth > MAX_DEPTH)
    luaL_error(L, "emit: fields nested deeper than %d", MAX_DEPTH);
  size_t len = lua_objlen(L, idx);
  if (len == 0) {
    cJSON *obj = build ? cJSON_CreateObject() : NULL;
    convert_fields(L, obj, idx, depth, build);
    return obj;
  }
  cJSON *arr = build ? cJSON_CreateArray() : NULL;
  for (size_t i = 1; i <= len; i++) {
    lua_rawgeti(L, idx, (int)i);
    cJSON *v = convert(L, lua_gettop(L), depth + 1, build);
    if (build)
      cJSON_AddItemToArray(arr, v);
    lua_pop(L, 1);
  }
  return arr;
}

static cJSON *convert(lua_State *L, int idx, int depth, int build) {
  switch (lua_type(L, idx)) {
  case LUA_TNUMBER:
    return build ? cJSON_CreateNumber(lua_tonumber(L, idx)) : NULL;
  case LUA_TSTRING:
    return build ? cJSON_CreateString(lua_tostring(L, idx)) : NULL;
  case LUA_TBOOLEAN:
    return build ? cJSON_CreateBool(lua_toboolean(L, idx)) : NULL;
  case LUA_TTABLE:
    return convert_table(L, idx, depth, build);
  default:
    luaL_error(L, "emit: cannot log a %s value", luaL_typename(L, idx));
    return NULL;
  }
}

/* core.emit(kind [, fields]): logs one event when a sink is open */
static int l_emit(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  const char *kind = fbl_check_name(L, 1, "event kind");
  int has_fields = !lua_isnoneornil(L, 2);
  if (has_fields)
    luaL_checktype(L, 2, LUA_TTABLE);
  if (!rt->events_on)
    return 0;
  lua_settop(L, 2);
  if (has_fields)
    convert_fields(L, NULL, 2, 0, 0);
  cJSON *e = fb_runtime_event(rt, kind);
  if (e && has_fields)
    convert_fields(L, e, 2, 0, 1);
  fb_runtime_emit(rt, e);
  return 0;
}

void fbl_open_events(lua_State *L, int rt_idx) {
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, l_emit, 1);
  lua_setfield(L, -2, "emit");
}
