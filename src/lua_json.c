/*
 * lua_json.c -- JSON for the Lua library (the registry API), on cJSON.
 *
 * Decoding maps objects and arrays to tables and null to core.json_null;
 * encoding writes a table as an array when it has a [1] or carries the
 * array metatable core.json_array_mt (so an empty list stays []), else
 * as an object with string keys.
 */
#include "lua_util.h"

#include <cJSON.h>
#include <math.h>
#include <string.h>

#define JSON_DEPTH 64

static void push_json(lua_State *L, const cJSON *j);

static void push_children(lua_State *L, const cJSON *j) {
  int i = 1;
  for (const cJSON *c = j->child; c; c = c->next) {
    push_json(L, c);
    if (cJSON_IsArray(j))
      lua_rawseti(L, -2, i++);
    else
      lua_setfield(L, -2, c->string);
  }
}

static void push_json(lua_State *L, const cJSON *j) {
  luaL_checkstack(L, 4, "json nesting too deep");
  if (cJSON_IsString(j))
    lua_pushstring(L, j->valuestring);
  else if (cJSON_IsNumber(j))
    lua_pushnumber(L, j->valuedouble);
  else if (cJSON_IsBool(j))
    lua_pushboolean(L, cJSON_IsTrue(j));
  else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
    lua_newtable(L);
    if (cJSON_IsArray(j)) {
      lua_getfield(L, LUA_REGISTRYINDEX, "fusebox.json_array");
      lua_setmetatable(L, -2);
    }
    push_children(L, j);
  } else
    lua_getfield(L, LUA_REGISTRYINDEX, "fusebox.json_null");
}

/* core.json_decode(text) -> value | nil, err */
static int json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
  if (!j) {
    lua_pushnil(L);
    lua_pushfstring(L, "malformed JSON at byte %d",
                    end ? (int)(end - s) + 1 : 1);
    return 2;
  }
  while (end < s + len && strchr(" \t\r\n", *end))
    end++;
  if (end != s + len) {
    cJSON_Delete(j);
    lua_pushnil(L);
    lua_pushfstring(L, "malformed JSON: trailing data at byte %d",
                    (int)(end - s) + 1);
    return 2;
  }
  push_json(L, j);
  cJSON_Delete(j);
  return 1;
}

static cJSON *to_json(lua_State *L, int idx, int depth, const char **err);

static int is_array(lua_State *L, int idx) {
  lua_rawgeti(L, idx, 1);
  int yes = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!yes && lua_getmetatable(L, idx)) {
    lua_getfield(L, LUA_REGISTRYINDEX, "fusebox.json_array");
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  return yes;
}

static cJSON *table_to_json(lua_State *L, int idx, int depth,
                            const char **err) {
  int array = is_array(L, idx);
  cJSON *j = array ? cJSON_CreateArray() : cJSON_CreateObject();
  if (array) {
    size_t n = lua_objlen(L, idx);
    for (size_t i = 1; j && i <= n; i++) {
      lua_rawgeti(L, idx, (int)i);
      cJSON *c = to_json(L, lua_gettop(L), depth + 1, err);
      lua_pop(L, 1);
      if (!c || !cJSON_AddItemToArray(j, c))
        goto fail;
    }
    return j;
  }
  lua_pushnil(L);
  while (j && lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      *err = "object keys must be strings";
      lua_pop(L, 2);
      goto fail;
    }
    cJSON *c = to_json(L, lua_gettop(L), depth + 1, err);
    lua_pop(L, 1);
    if (!c || !cJSON_AddItemToObject(j, lua_tostring(L, -1), c)) {
      lua_pop(L, 1);
      goto fail;
    }
  }
  return j;
fail:
  cJSON_Delete(j);
  return NULL;
}

static cJSON *to_json(lua_State *L, int idx, int depth, const char **err) {
  if (depth > JSON_DEPTH) {
    *err = "nested too deep (a cycle?)";
    return NULL;
  }
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    return cJSON_CreateString(lua_tostring(L, idx));
  case LUA_TNUMBER: {
    double d = lua_tonumber(L, idx);
    if (!isfinite(d)) {
      *err = "numbers must be finite";
      return NULL;
    }
    return cJSON_CreateNumber(d);
  }
  case LUA_TBOOLEAN:
    return cJSON_CreateBool(lua_toboolean(L, idx));
  case LUA_TTABLE:
    return table_to_json(L, idx, depth, err);
  case LUA_TLIGHTUSERDATA: /* json_null */
    return cJSON_CreateNull();
  default:
    *err = "cannot encode functions, userdata or threads";
    return NULL;
  }
}

/* core.json_encode(value) -> text; raises on values JSON cannot hold */
static int json_encode(lua_State *L) {
  const char *err = "out of memory";
  lua_settop(L, 1);
  cJSON *j = to_json(L, 1, 0, &err);
  if (!j)
    return luaL_error(L, "json_encode: %s", err);
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!s)
    return luaL_error(L, "json_encode: out of memory");
  lua_pushstring(L, s);
  cJSON_free(s);
  return 1;
}

void fbl_open_json(lua_State *L, int rt_idx) {
  (void)rt_idx;
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "fusebox.json_array");
  lua_setfield(L, -2, "json_array_mt");
  lua_pushlightuserdata(L, NULL);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "fusebox.json_null");
  lua_setfield(L, -2, "json_null");
  lua_pushcfunction(L, json_decode);
  lua_setfield(L, -2, "json_decode");
  lua_pushcfunction(L, json_encode);
  lua_setfield(L, -2, "json_encode");
}
