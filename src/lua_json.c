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
 *                    beyond 2^53 are rounded and 1e-400 reads as 0; NaN
 *                    and infinities have no JSON form, and a number
 *                    beyond the doubles (1e400) is refused both ways
 *   string       <-> string, byte for byte: NUL bytes included (\u0000),
 *                    and bytes that are not UTF-8 pass through as they
 *                    are (Lua strings are bytes); an escape must name a
 *                    real character (a lone surrogate is refused)
 *
 * Limits: nesting at most JSON_MAX_DEPTH (1000, cJSON's) arrays and
 * objects deep, both ways; a key twice in one object is refused (which
 * one counts differs between parsers, so a checker and a user could
 * disagree).
 *
 * cJSON keeps strings as C strings, which end at a NUL byte. So a NUL
 * travels through cJSON as a stand-in: a noncharacter U+FDD0..U+FDEF
 * (never used for text) that the text does not contain. Decoding, each
 * \u0000 escape is rewritten as \uFDDx (the same length, so positions
 * in messages hold) and the stand-in is turned back into NUL in every
 * decoded string; encoding, NUL goes in as the stand-in and cJSON's text
 * has it rewritten as \u0000. Only texts and values with NUL pay.
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
  if (!p) /* a host holds it */
    return 0;
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

/* ---------------------------------------------------------------- paths */

/* Where a value is, for messages: .a.b[3] */
typedef struct json_path {
  char text[256];
  size_t len;
} json_path;

/* Appends the formatted step (truncating); returns the old length for
 * path_pop. */
static size_t path_push(json_path *p, int n) {
  size_t old = p->len, room = sizeof p->text - old;
  p->len = n < 0 || (size_t)n >= room ? sizeof p->text - 1 : old + (size_t)n;
  return old;
}

static size_t path_key(json_path *p, const char *key) {
  return path_push(p, snprintf(p->text + p->len, sizeof p->text - p->len,
                               ".%s", key));
}

static size_t path_index(json_path *p, int i) {
  return path_push(p, snprintf(p->text + p->len, sizeof p->text - p->len,
                               "[%d]", i));
}

static void path_pop(json_path *p, size_t old) {
  p->len = old;
  p->text[old] = '\0';
}

static const char *path_text(const json_path *p) {
  return p->len ? p->text : "the top level";
}

/* ----------------------------------------------------------- stand-ins */

#define STANDINS 32 /* U+FDD0..U+FDEF: EF B7 90..EF B7 AF in UTF-8 */

static void standin_bytes(int k, char out[3]) {
  out[0] = (char)0xEF;
  out[1] = (char)0xB7;
  out[2] = (char)(0x90 + k);
}

/* Returns the number of times the 3-byte stand-in occurs in s. */
static size_t count_standin(const char *s, size_t len, const char *sb) {
  size_t n = 0;
  for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), sb, 3));
       p += 3)
    n++;
  return n;
}

/* ------------------------------------------------------------ decoding */

/* What a pass over the text found: how deep it nests, its \u0000
 * escapes, which stand-ins it holds (as escapes or bytes), and where the
 * first problem is. Only quotes, backslashes and brackets are looked at:
 * cJSON does the parsing. */
typedef struct scan {
  size_t nuls;     /* \u0000 escapes */
  uint32_t used;   /* bit k: U+FDD0 + k occurs */
  size_t bad;      /* offset of the problem, if why */
  const char *why;
} scan;

static int hex4(const char *h, unsigned *v) {
  unsigned x = 0;
  for (int i = 0; i < 4; i++) {
    char c = h[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0)
      return 0;
    x = x << 4 | (unsigned)d;
  }
  *v = x;
  return 1;
}

/* Writes the 4 hex digits of U+FDD0 + k (FDD0..FDEF) at out. */
static void standin_escape(int k, char out[4]) {
  static const char digits[] = "0123456789ABCDEF";
  out[0] = 'F';
  out[1] = 'D';
  out[2] = k < 16 ? 'D' : 'E';
  out[3] = digits[k & 15];
}

/* Scans the text; with patch (a copy of it), rewrites each \u0000 there
 * as the stand-in k's escape. Stops at the first problem (sc->why). */
static void scan_text(const char *s, size_t len, scan *sc, char *patch,
                      int k) {
  int depth = 0, in_string = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == 0) {
      sc->bad = i, sc->why = "a NUL byte (in a string, write \\u0000)";
      return;
    }
    if (c == 0xEF && i + 2 < len && (unsigned char)s[i + 1] == 0xB7 &&
        (unsigned char)s[i + 2] >= 0x90 && (unsigned char)s[i + 2] < 0x90 + STANDINS)
      sc->used |= 1u << ((unsigned char)s[i + 2] - 0x90);
    if (in_string) {
      if (c == '"') {
        in_string = 0;
      } else if (c == '\\' && i + 1 < len) {
        unsigned v;
        if (s[i + 1] == 'u' && i + 5 < len && hex4(s + i + 2, &v)) {
          if (v == 0) {
            sc->nuls++;
            if (patch)
              standin_escape(k, patch + i + 2);
          } else if (v >= 0xFDD0 && v < 0xFDD0 + STANDINS) {
            sc->used |= 1u << (v - 0xFDD0);
          }
          i += 5;
        } else {
          i++;
        }
      }
    } else if (c == '"') {
      in_string = 1;
    } else if (c == '[' || c == '{') {
      if (++depth > JSON_MAX_DEPTH) {
        sc->bad = i, sc->why = "nested deeper than 1000 arrays and objects";
        return;
      }
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
}

typedef struct decoder {
  lua_State *L;
  char standin[3]; /* what stands for NUL in cJSON's strings */
  int has_standin;
  json_path path;
  char err[320]; /* set when the tree holds what we refuse */
} decoder;

static int dec_fail(decoder *d, const char *what) {
  snprintf(d->err, sizeof d->err, "invalid JSON: %s at %s", what,
           path_text(&d->path));
  return -1;
}

/* Pushes the cJSON string s, its stand-ins turned back into NUL bytes. */
static void push_string(decoder *d, const char *s) {
  size_t len = strlen(s);
  const char *p;
  if (!d->has_standin || !(p = memmem(s, len, d->standin, 3))) {
    lua_pushlstring(d->L, s, len);
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(d->L, &b);
  const char *end = s + len;
  for (; p; p = memmem(s, (size_t)(end - s), d->standin, 3)) {
    luaL_addlstring(&b, s, (size_t)(p - s));
    luaL_addchar(&b, '\0');
    s = p + 3;
  }
  luaL_addlstring(&b, s, (size_t)(end - s));
  luaL_pushresult(&b);
}

static int push_item(decoder *d, const cJSON *it);

static int push_container(decoder *d, const cJSON *it) {
  lua_State *L = d->L;
  int is_array = cJSON_IsArray(it);
  lua_createtable(L, is_array ? cJSON_GetArraySize(it) : 0,
                  is_array ? 0 : cJSON_GetArraySize(it));
  int i = 1;
  for (const cJSON *c = it->child; c; c = c->next, i++) {
    if (!lua_checkstack(L, 4))
      return dec_fail(d, "nested too deeply for the Lua stack");
    size_t old = is_array ? path_index(&d->path, i)
                          : path_key(&d->path, c->string);
    if (!is_array) {
      push_string(d, c->string);
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      if (!lua_isnil(L, -1))
        return dec_fail(d, "a key given twice");
      lua_pop(L, 1);
    }
    if (push_item(d, c) < 0)
      return -1;
    path_pop(&d->path, old);
    if (is_array)
      lua_rawseti(L, -2, i);
    else
      lua_rawset(L, -3);
  }
  if (is_array) {
    luaL_getmetatable(L, JSON_ARRAY_MT);
    lua_setmetatable(L, -2);
  }
  return 0;
}

/* Pushes the Lua value of it; -1 (d->err set) on what we refuse. */
static int push_item(decoder *d, const cJSON *it) {
  lua_State *L = d->L;
  if (cJSON_IsObject(it) || cJSON_IsArray(it))
    return push_container(d, it);
  if (cJSON_IsString(it)) {
    push_string(d, it->valuestring);
  } else if (cJSON_IsNumber(it)) {
    if (isinf(it->valuedouble))
      return dec_fail(d, "a number beyond the doubles (+-1.8e308)");
    lua_pushnumber(L, it->valuedouble);
  } else if (cJSON_IsBool(it)) {
    lua_pushboolean(L, cJSON_IsTrue(it));
  } else {
    lua_pushlightuserdata(L, NULL);
  }
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
  size_t n = off < len ? strnlen(s + off, len - off < 16 ? len - off : 16) : 0;
  if (n == 0) { /* at the end, or at a NUL byte, which a message cannot show */
    lua_pushfstring(L, "invalid JSON at line %d, column %d: %s%s", line, col,
                    why, off >= len ? " (at the end of the text)" : "");
  } else {
    lua_pushfstring(L, "invalid JSON at line %d, column %d: %s near '", line,
                    col, why);
    lua_pushlstring(L, s + off, n);
    lua_pushliteral(L, "'");
    lua_concat(L, 3);
  }
  return 2;
}

/* Returns the first stand-in the scan did not see, or -1. */
static int free_standin(uint32_t used) {
  for (int k = 0; k < STANDINS; k++)
    if (!(used & 1u << k))
      return k;
  return -1;
}

/* core.json_decode(text) -> value, or nil, message */
static int json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  decoder d = {.L = L};
  scan sc = {0};
  scan_text(s, len, &sc, NULL, 0);
  if (sc.why)
    return decode_error(L, s, len, sc.bad, sc.why);
  const char *text = s; /* what cJSON parses: s, or s with its NULs */
  if (sc.nuls) {
    int k = free_standin(sc.used);
    if (k < 0)
      return decode_error(L, s, len, 0, "\\u0000 in a text that also "
                          "holds every U+FDD0..U+FDEF (no stand-in left)");
    char *copy = lua_newuserdata(L, len + 1);
    memcpy(copy, s, len + 1);
    scan_text(s, len, &(scan){0}, copy, k);
    text = copy;
    standin_bytes(k, d.standin);
    d.has_standin = 1;
  }
  const char *end = NULL;
  cJSON **box = new_box(L);
  *box = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!*box) {
    size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    return decode_error(L, s, len, off, "syntax error");
  }
  while (end < text + len && *end && strchr(" \t\r\n", *end))
    end++;
  if (end != text + len)
    return decode_error(L, s, len, (size_t)(end - text), "text after the value");
  int top = lua_gettop(L);
  if (push_item(&d, *box) < 0) {
    box_free(box);
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushstring(L, d.err);
    return 2;
  }
  box_free(box);
  return 1;
}

/* ------------------------------------------------------------ encoding */

typedef struct encoder {
  lua_State *L;
  json_path path;
  const char *err;
  char standin[3]; /* what NUL bytes go into cJSON as */
  size_t nuls;     /* how many went in */
} encoder;

static cJSON *encode_value(encoder *e, int idx, int depth);

/* Sets e->err to "<what> at <path>" (left on the Lua stack). */
static cJSON *enc_fail(encoder *e, const char *what) {
  e->err = lua_pushfstring(e->L, "%s at %s", what, path_text(&e->path));
  return NULL;
}

/* Returns s (len bytes) as a C string cJSON can copy: s itself, or, when
 * it holds NUL bytes, a copy on the Lua stack (the caller pops it) with
 * each NUL as the stand-in. *pushed says which. */
static const char *c_string(encoder *e, const char *s, size_t len,
                            int *pushed) {
  size_t n = 0;
  for (const char *p = s; (p = memchr(p, 0, len - (size_t)(p - s))); p++)
    n++;
  *pushed = n > 0;
  if (!n)
    return s;
  e->nuls += n;
  char *out = lua_newuserdata(e->L, len + 2 * n + 1), *o = out;
  for (size_t i = 0; i < len; i++) {
    if (s[i]) {
      *o++ = s[i];
    } else {
      memcpy(o, e->standin, 3);
      o += 3;
    }
  }
  *o = '\0';
  return out;
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
    size_t old = path_index(&e->path, i);
    cJSON *v = encode_value(e, lua_gettop(e->L), depth + 1);
    path_pop(&e->path, old);
    lua_pop(e->L, 1);
    if (!v || !cJSON_AddItemToArray(arr, v)) {
      cJSON_Delete(v);
      cJSON_Delete(arr);
      return e->err ? NULL : enc_fail(e, "out of memory");
    }
  }
  return arr;
}

/* An object's key: its bytes, anchored by the table being encoded. */
typedef struct json_key {
  const char *s;
  size_t len;
} json_key;

/* Byte order, a prefix first: the same table always gives the same text. */
static int compare_keys(const void *a, const void *b) {
  const json_key *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
  return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Collects the string keys of the table at idx, sorted; NULL (with
 * e->err set) on a key JSON cannot hold. The keys stay valid: the table
 * anchors them. */
static json_key *sorted_keys(encoder *e, int idx, size_t *count) {
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
  json_key *keys = lua_newuserdata(L, (n ? n : 1) * sizeof *keys);
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    keys[i].s = lua_tolstring(L, -1, &keys[i].len);
    i++;
  }
  qsort(keys, n, sizeof *keys, compare_keys);
  *count = n;
  return keys; /* the userdata stays on the stack until the caller pops */
}

static cJSON *encode_object(encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  size_t n;
  int top = lua_gettop(L);
  json_key *keys = sorted_keys(e, idx, &n);
  if (!keys)
    return NULL;
  cJSON *obj = cJSON_CreateObject();
  if (!obj)
    return enc_fail(e, "out of memory");
  for (size_t i = 0; i < n; i++) {
    int pushed;
    const char *key = c_string(e, keys[i].s, keys[i].len, &pushed);
    lua_pushlstring(L, keys[i].s, keys[i].len);
    lua_rawget(L, idx);
    size_t old = path_key(&e->path, keys[i].s);
    cJSON *v = encode_value(e, lua_gettop(L), depth + 1);
    path_pop(&e->path, old);
    if (!v || !cJSON_AddItemToObject(obj, key, v)) {
      cJSON_Delete(v);
      cJSON_Delete(obj);
      return e->err ? NULL : enc_fail(e, "out of memory");
    }
    lua_pop(L, 1 + pushed);
  }
  lua_settop(L, top);
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
  case LUA_TSTRING: {
    int pushed;
    s = lua_tolstring(L, idx, &len);
    s = c_string(e, s, len, &pushed);
    cJSON *str = cJSON_CreateString(s);
    lua_pop(L, pushed);
    return str;
  }
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

/* Pushes text with each stand-in (e->standin) rewritten as \u0000. */
static void push_unstood(lua_State *L, const char *text, const char *sb) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *end = text + strlen(text), *p;
  while ((p = memmem(text, (size_t)(end - text), sb, 3))) {
    luaL_addlstring(&b, text, (size_t)(p - text));
    luaL_addlstring(&b, "\\u0000", 6);
    text = p + 3;
  }
  luaL_addlstring(&b, text, (size_t)(end - text));
  luaL_pushresult(&b);
}

/* core.json_encode(value [, pretty]) -> text, or nil, message */
static int json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  int pretty = lua_toboolean(L, 2);
  lua_settop(L, 1);
  cJSON **box = new_box(L);
  /* With NUL bytes, the stand-in is right when cJSON's text holds it
   * exactly as often as we put it in (none of the strings had it);
   * else the next one is tried. */
  for (int k = 0; k < STANDINS; k++) {
    encoder e = {.L = L};
    standin_bytes(k, e.standin);
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
    size_t len = strlen(text);
    if (!e.nuls) {
      lua_pushlstring(L, text, len);
    } else if (count_standin(text, len, e.standin) == e.nuls) {
      push_unstood(L, text, e.standin);
    } else {
      cJSON_free(text);
      continue;
    }
    cJSON_free(text);
    return 1;
  }
  lua_pushnil(L);
  lua_pushliteral(L, "cannot encode as JSON: NUL bytes in strings that "
                     "also hold every U+FDD0..U+FDEF (no stand-in left)");
  return 2;
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
