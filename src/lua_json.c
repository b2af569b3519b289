/*
 * lua_json.c -- core.json_decode / core.json_encode: Lua values <-> JSON
 * through cJSON.
 *
 *   JSON object  <-> table with string keys (encoded with sorted keys, so
 *                    the same table always gives the same text)
 *   JSON array   <-> sequence 1..n; decoded arrays carry the metatable
 *                    core.json_array, which also makes an empty table
 *                    encode as [] (an unmarked empty table is {})
 *   null         <-> core.json_null (a light userdata), since nil cannot
 *                    live in a table
 *   number       <-> number: cJSON parses into a double, so integers
 *                    beyond 2^53 are rounded; NaN and infinities have no
 *                    JSON form and are refused
 *
 * Both return nil plus a message on failure (a malformed text, a value
 * JSON cannot hold): the message says where, as line:column for text and
 * as a path (.retry.attempts, [3]) for values.
 */
#include "lua_util.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_ARRAY_MT "fusebox.json_array"
#define JSON_BOX "fusebox.json_box"
#define JSON_MAX_DEPTH CJSON_NESTING_LIMIT

/* A cJSON tree owned by a userdata while Lua code may raise (out of
 * memory): the tree is freed by __gc if we never get to free it. */
static int box_gc(lua_State *L) {
  cJSON **p = fbl_check_gc(L, JSON_BOX);
  cJSON_Delete(*p);
  *p = NULL;
  return 0;
}

static cJSON **new_box(lua_State *L) {
  cJSON **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, JSON_BOX);
  lua_setmetatable(L, -2);
  return p;
}

static void box_free(cJSON **p) {
  cJSON_Delete(*p);
  *p = NULL;
}

/* ------------------------------------------------------------ decoding */

static int push_item(lua_State *L, const cJSON *it);

static int push_container(lua_State *L, const cJSON *it) {
  int is_array = cJSON_IsArray(it);
  lua_createtable(L, is_array ? cJSON_GetArraySize(it) : 0,
                  is_array ? 0 : cJSON_GetArraySize(it));
  int i = 1;
  for (const cJSON *c = it->child; c; c = c->next) {
    if (!lua_checkstack(L, 3) || push_item(L, c) < 0)
      return -1;
    if (is_array) {
      lua_rawseti(L, -2, i++);
    } else {
      lua_pushstring(L, c->string);
      lua_insert(L, -2);
      lua_rawset(L, -3);
    }
  }
  if (is_array) {
    luaL_getmetatable(L, JSON_ARRAY_MT);
    lua_setmetatable(L, -2);
  }
  return 0;
}

/* Pushes the Lua value of it; -1 if the Lua stack cannot grow. */
static int push_item(lua_State *L, const cJSON *it) {
  if (cJSON_IsObject(it) || cJSON_IsArray(it))
    return push_container(L, it);
  if (cJSON_IsString(it))
    lua_pushstring(L, it->valuestring);
  else if (cJSON_IsNumber(it))
    lua_pushnumber(L, it->valuedouble);
  else if (cJSON_IsBool(it))
    lua_pushboolean(L, cJSON_IsTrue(it));
  else
    lua_pushlightuserdata(L, NULL);
  return 0;
}

/* Pushes nil and "invalid JSON at line L, column C: why" for the byte
 * at offset off, with the text there. */
static int decode_error(lua_State *L, const char *s, size_t len, size_t off,
                        const char *why) {
  int line = 1, col = 1;
  for (size_t i = 0; i < off; i++) {
    if (s[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  lua_pushnil(L);
  if (off >= len) {
    lua_pushfstring(L, "invalid JSON at line %d, column %d: %s (at the end "
                       "of the text)", line, col, why);
  } else {
    size_t n = len - off < 16 ? len - off : 16;
    lua_pushfstring(L, "invalid JSON at line %d, column %d: %s near '", line,
                    col, why);
    lua_pushlstring(L, s + off, n);
    lua_pushliteral(L, "'");
    lua_concat(L, 3);
  }
  return 2;
}

/* core.json_decode(text) -> value, or nil, message */
static int json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *end = NULL;
  cJSON **box = new_box(L);
  *box = cJSON_ParseWithLengthOpts(s, len, &end, 0);
  if (!*box) {
    size_t off = end && end >= s && end <= s + len ? (size_t)(end - s) : 0;
    return decode_error(L, s, len, off, "syntax error");
  }
  while (end < s + len && *end && strchr(" \t\r\n", *end))
    end++;
  if (end != s + len)
    return decode_error(L, s, len, (size_t)(end - s), "text after the value");
  if (push_item(L, *box) < 0) {
    box_free(box);
    lua_pushnil(L);
    lua_pushliteral(L, "invalid JSON: nested too deeply for the Lua stack");
    return 2;
  }
  box_free(box);
  return 1;
}

/* ------------------------------------------------------------ encoding */

typedef struct encoder {
  lua_State *L;
  char path[256]; /* where we are, for messages: .a.b[3] */
  size_t pathlen;
  const char *err;
} encoder;

static cJSON *encode_value(encoder *e, int idx, int depth);

/* Sets e->err to "<what> at <path>" (left on the Lua stack). */
static cJSON *enc_fail(encoder *e, const char *what) {
  e->err = lua_pushfstring(e->L, "%s at %s", what,
                           e->pathlen ? e->path : "the top level");
  return NULL;
}

/* Appends the formatted step to the path (truncating); returns the old
 * length for path_pop. */
static size_t path_push(encoder *e, int n) {
  size_t old = e->pathlen, room = sizeof e->path - old;
  e->pathlen = n < 0 || (size_t)n >= room ? sizeof e->path - 1 : old + (size_t)n;
  return old;
}

static size_t path_key(encoder *e, const char *key) {
  return path_push(e, snprintf(e->path + e->pathlen,
                               sizeof e->path - e->pathlen, ".%s", key));
}

static size_t path_index(encoder *e, int i) {
  return path_push(e, snprintf(e->path + e->pathlen,
                               sizeof e->path - e->pathlen, "[%d]", i));
}

static void path_pop(encoder *e, size_t old) {
  e->pathlen = old;
  e->path[old] = '\0';
}

/* Returns n when the keys of the table at idx are exactly 1..n (n > 0,
 * or any n for a table marked as a JSON array), -1 when it must be an
 * object. */
static int array_length(lua_State *L, int idx) {
  int marked = 0;
  if (lua_getmetatable(L, idx)) {
    luaL_getmetatable(L, JSON_ARRAY_MT);
    marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  size_t n = lua_objlen(L, idx), count = 0;
  int only_indexes = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (!(k >= 1 && k <= (double)n && k == floor(k)))
      only_indexes = 0;
    count++;
  }
  if (only_indexes && (n > 0 || marked) && count == n && n <= INT32_MAX)
    return (int)n;
  return -1;
}

static cJSON *encode_array(encoder *e, int idx, int n, int depth) {
  cJSON *arr = cJSON_CreateArray();
  if (!arr)
    return enc_fail(e, "out of memory");
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(e->L, idx, i);
    size_t old = path_index(e, i);
    cJSON *v = encode_value(e, lua_gettop(e->L), depth + 1);
    path_pop(e, old);
    lua_pop(e->L, 1);
    if (!v || !cJSON_AddItemToArray(arr, v)) {
      cJSON_Delete(v);
      cJSON_Delete(arr);
      return e->err ? NULL : enc_fail(e, "out of memory");
    }
  }
  return arr;
}

static int compare_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Collects the string keys of the table at idx, sorted; NULL (with
 * e->err set) on a key JSON cannot hold. The keys stay valid: the table
 * anchors them. */
static const char **sorted_keys(encoder *e, int idx, size_t *count) {
  lua_State *L = e->L;
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      enc_fail(e, lua_pushfstring(L, "a %s key in a table that is not the "
                                     "array 1..n (objects need string keys)",
                                  luaL_typename(L, -1)));
      return NULL;
    }
    n++;
  }
  const char **keys = lua_newuserdata(L, (n ? n : 1) * sizeof *keys);
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    keys[i++] = lua_tostring(L, -1);
  }
  qsort(keys, n, sizeof *keys, compare_keys);
  *count = n;
  return keys; /* the userdata stays on the stack until the caller pops */
}

static cJSON *encode_object(encoder *e, int idx, int depth) {
  size_t n;
  int top = lua_gettop(e->L);
  const char **keys = sorted_keys(e, idx, &n);
  if (!keys)
    return NULL;
  cJSON *obj = cJSON_CreateObject();
  if (!obj)
    return enc_fail(e, "out of memory");
  for (size_t i = 0; i < n; i++) {
    lua_getfield(e->L, idx, keys[i]);
    size_t old = path_key(e, keys[i]);
    cJSON *v = encode_value(e, lua_gettop(e->L), depth + 1);
    path_pop(e, old);
    lua_pop(e->L, 1);
    if (!v || !cJSON_AddItemToObject(obj, keys[i], v)) {
      cJSON_Delete(v);
      cJSON_Delete(obj);
      return e->err ? NULL : enc_fail(e, "out of memory");
    }
  }
  lua_settop(e->L, top);
  return obj;
}

static cJSON *encode_table(encoder *e, int idx, int depth) {
  if (depth >= JSON_MAX_DEPTH)
    return enc_fail(e, "tables nested too deeply (a cycle?)");
  if (!lua_checkstack(e->L, 8))
    return enc_fail(e, "tables nested too deeply for the Lua stack");
  int n = array_length(e->L, idx);
  return n >= 0 ? encode_array(e, idx, n, depth) : encode_object(e, idx, depth);
}

/* cJSON prints 15 significant digits whenever they read back within a
 * relative epsilon, which rounds integers near 2^53 (9007199254740993
 * prints as 9.00719925474099e+15). We print the shortest of %.15g and
 * %.17g that reads back exactly, and hand cJSON that text. */
static cJSON *encode_number(double d) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.15g", d);
  if (strtod(buf, NULL) != d)
    snprintf(buf, sizeof buf, "%.17g", d);
  return cJSON_CreateRaw(buf);
}

static cJSON *encode_value(encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  size_t len;
  const char *s;
  double d;
  switch (lua_type(L, idx)) {
  case LUA_TTABLE:
    return encode_table(e, idx, depth);
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len)
      return enc_fail(e, "a string with a NUL byte");
    return cJSON_CreateString(s);
  case LUA_TNUMBER:
    d = lua_tonumber(L, idx);
    if (isnan(d) || isinf(d))
      return enc_fail(e, "a NaN or infinite number");
    return encode_number(d);
  case LUA_TBOOLEAN:
    return cJSON_CreateBool(lua_toboolean(L, idx));
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL)
      return cJSON_CreateNull();
    /* fall through */
  default:
    return enc_fail(e, lua_pushfstring(L, "a %s value (JSON has none)",
                                       luaL_typename(L, idx)));
  }
}

/* core.json_encode(value [, pretty]) -> text, or nil, message */
static int json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  int pretty = lua_toboolean(L, 2);
  lua_settop(L, 1);
  cJSON **box = new_box(L);
  encoder e = {.L = L};
  *box = encode_value(&e, 1, 0);
  if (!*box) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot encode as JSON: %s",
                    e.err ? e.err : "out of memory");
    return 2;
  }
  char *text = pretty ? cJSON_Print(*box) : cJSON_PrintUnformatted(*box);
  box_free(box);
  if (!text)
    return luaL_error(L, "json_encode: out of memory");
  lua_pushstring(L, text);
  cJSON_free(text);
  return 1;
}

void fbl_open_json(lua_State *L, int rt_idx) {
  (void)rt_idx;
  luaL_newmetatable(L, JSON_BOX);
  lua_pushliteral(L, JSON_BOX);
  lua_setfield(L, -2, "__name");
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, json_decode);
  lua_setfield(L, -2, "json_decode");
  lua_pushcfunction(L, json_encode);
  lua_setfield(L, -2, "json_encode");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "json_null");
  luaL_newmetatable(L, JSON_ARRAY_MT);
  lua_pushliteral(L, "json_array");
  lua_setfield(L, -2, "__name");
  lua_setfield(L, -2, "json_array");
}
