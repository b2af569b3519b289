/*
 * lua_events.c -- core.emit(kind, fields) and core.put(kind, name, value,
 * ...): Lua's ways into the event log.
 *
 * Both fill one fb_event with fixed fields (events.h) and hand it to the
 * sink, which builds JSON only when a file is written. Fields are sorted
 * by name: Lua's table order is not something a byte-identical log may
 * depend on, and the two ways log the same fields alike. Flat values
 * (numbers, strings, booleans) are the event's own fields; a table value
 * becomes JSON, built apart and freed after the event. Fields are walked
 * twice: once to check them (which may raise), then to fill the event
 * (which does not), so a bad field never leaks a half-built event.
 *
 * put is emit without a table for the hot paths (a call's start and end,
 * a request through a policy): a classic C call with positional
 * arguments costs the same compiled or interpreted, where filling an FFI
 * struct field by field costs a microsecond once a trace aborts.
 */
#include "lua_api.h"
#include "lua_util.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 64
#define MAX_DEPTH 8

_Static_assert(MAX_FIELDS <= FB_EVENT_FIELDS, "an event holds every field");

/* Walks the value at idx; builds its JSON when build, else only checks. */
static cJSON *convert(lua_State *L, int idx, int depth, int build);

static int by_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The field names of the table at idx into keys (MAX_FIELDS at most,
 * every one a string: raises otherwise), in no order; returns how many.
 * The table keeps them alive. */
static size_t field_names(lua_State *L, int idx, const char **keys) {
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "emit: field names must be strings, got a %s",
                 luaL_typename(L, -1));
    if (n == MAX_FIELDS)
      luaL_error(L, "emit: more than %d fields", MAX_FIELDS);
    keys[n++] = lua_tostring(L, -1);
  }
  return n;
}

/* Walks the string-keyed fields of the table at idx, sorted, into obj. */
static void convert_fields(lua_State *L, cJSON *obj, int idx, int depth,
                           int build) {
  const char *keys[MAX_FIELDS];
  size_t n = field_names(L, idx, keys);
  qsort(keys, n, sizeof *keys, by_name);
  for (size_t i = 0; i < n; i++) {
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

/* One field to be: its name and the stack slot of its value. */
typedef struct pending {
  const char *name;
  int idx;
} pending;

/* Sorts the n fields by name: an insertion sort, as put's callers list
 * them sorted already (one comparison each) and n is at most 64. */
static void sort_fields(pending *p, size_t n) {
  for (size_t i = 1; i < n; i++) {
    pending x = p[i];
    size_t j = i;
    for (; j > 0 && strcmp(p[j - 1].name, x.name) > 0; j--)
      p[j] = p[j - 1];
    p[j] = x;
  }
}

static int reserved(const char *name) {
  return (name[0] == 't' && name[1] == 0) ||
         (name[0] == 'k' && strcmp(name, "kind") == 0);
}

/* Checks the n fields (sorting them by name): reserved names, names
 * given twice, and what their values may be; raises on a bad one. */
static void check_fields(lua_State *L, pending *p, size_t n) {
  sort_fields(p, n);
  for (size_t i = 0; i < n; i++) {
    if (reserved(p[i].name))
      luaL_error(L, "emit: field names 't' and 'kind' are reserved");
    if (i > 0 && strcmp(p[i - 1].name, p[i].name) == 0)
      luaL_error(L, "emit: field '%s' given twice", p[i].name);
    int type = lua_type(L, p[i].idx);
    if (type != LUA_TNUMBER && type != LUA_TSTRING && type != LUA_TBOOLEAN)
      convert(L, p[i].idx, 1, 0); /* a table's check, or the error */
  }
}

/* Fills e with the n checked fields and hands it to the sink; a table
 * value is built as JSON for the event and freed after it. */
static void put_fields(fb_runtime *rt, lua_State *L, const char *kind,
                       const pending *p, size_t n) {
  fb_event e;
  int lost = 0;
  e.t = fb_runtime_now(rt);
  e.kind = kind;
  e.json = NULL;
  e.n = n;
  for (size_t i = 0; i < n; i++) {
    fb_event_field *f = &e.field[i];
    *f = (fb_event_field){.name = p[i].name};
    switch (lua_type(L, p[i].idx)) {
    case LUA_TNUMBER:
      f->type = FB_FIELD_NUMBER;
      f->num = lua_tonumber(L, p[i].idx);
      break;
    case LUA_TSTRING:
      f->type = FB_FIELD_STRING;
      f->str = lua_tostring(L, p[i].idx);
      break;
    case LUA_TBOOLEAN:
      f->type = FB_FIELD_BOOL;
      f->num = lua_toboolean(L, p[i].idx);
      break;
    default: /* a table: checked already */
      f->type = FB_FIELD_JSON;
      lost |= !(f->json = convert_table(L, p[i].idx, 1, 1));
    }
  }
  if (lost) /* out of memory building a table's JSON */
    fb_events_lost(&rt->events);
  else
    fb_events_put(&rt->events, &e);
  for (size_t i = 0; i < n; i++)
    if (e.field[i].type == FB_FIELD_JSON)
      cJSON_Delete((cJSON *)e.field[i].json);
}

/* core.emit(kind [, fields]): logs one event when a sink is open */
static int l_emit(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  const char *kind = fbl_check_name(L, 1, "event kind");
  int has_fields = !lua_isnoneornil(L, 2);
  pending p[MAX_FIELDS];
  size_t n = 0;
  if (has_fields)
    luaL_checktype(L, 2, LUA_TTABLE);
  if (!rt->events_on)
    return 0;
  lua_settop(L, 2);
  /* each value pushed: its slot is the field's until the call returns */
  luaL_checkstack(L, MAX_FIELDS + 8, "emit: too many fields");
  if (has_fields) {
    const char *names[MAX_FIELDS];
    n = field_names(L, 2, names);
    for (size_t i = 0; i < n; i++) {
      lua_getfield(L, 2, names[i]);
      p[i] = (pending){names[i], lua_gettop(L)};
    }
  }
  check_fields(L, p, n);
  put_fields(rt, L, kind, p, n);
  return 0;
}

/* core.put(kind, name, value, ...): emit's fields as name, value pairs,
 * a nil value leaving its field out; no table to make and walk. */
static int l_put(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  const char *kind = fbl_check_name(L, 1, "event kind");
  int top = lua_gettop(L);
  pending p[MAX_FIELDS];
  size_t n = 0;
  if (top % 2 == 0)
    luaL_error(L, "put: a field name without a value (%d arguments)", top);
  if (!rt->events_on)
    return 0;
  for (int i = 2; i < top; i += 2) {
    if (lua_type(L, i) != LUA_TSTRING)
      luaL_error(L, "emit: field names must be strings, got a %s",
                 luaL_typename(L, i));
    if (lua_isnil(L, i + 1))
      continue;
    if (n == MAX_FIELDS)
      luaL_error(L, "emit: more than %d fields", MAX_FIELDS);
    p[n++] = (pending){lua_tostring(L, i), i + 1};
  }
  check_fields(L, p, n);
  put_fields(rt, L, kind, p, n);
  return 0;
}

/* ---------------------------------------------- the fixed-field events */

/* The events every simulated call and request logs, through the FFI
 * (lua_api.h): what put logs with the same arguments, field for field,
 * with no Lua value to check, sort or convert (it cost a sixth of a
 * replayed call), and no C function stopping a trace. The fields are
 * added in name order, as put sorts them. */

static void add_string(fb_event *e, const char *name, const char *s) {
  if (s)
    e->field[e->n++] = (fb_event_field){.name = name, .type = FB_FIELD_STRING, .str = s};
}

static void add_number(fb_event *e, const char *name, double v) {
  e->field[e->n++] = (fb_event_field){.name = name, .type = FB_FIELD_NUMBER, .num = v};
}

static void begin(fb_event *e, fb_runtime *rt, const char *kind) {
  e->t = fb_runtime_now(rt);
  e->kind = kind;
  e->json = NULL;
  e->n = 0;
}

void fbl_events_call_start(fb_runtime *rt, const char *service, double call) {
  fb_event e;
  if (!rt->events_on)
    return;
  begin(&e, rt, "call_start");
  add_number(&e, "call", call);
  add_string(&e, "service", service);
  fb_events_put(&rt->events, &e);
}

void fbl_events_call_end(fb_runtime *rt, const char *service, double call,
                         const char *outcome, const char *error, int late,
                         const char *result, double latency) {
  fb_event e;
  if (!rt->events_on)
    return;
  begin(&e, rt, "call_end");
  add_number(&e, "call", call);
  add_string(&e, "error", error);
  if (late)
    e.field[e.n++] = (fb_event_field){.name = "late", .type = FB_FIELD_BOOL, .num = 1};
  add_number(&e, "latency", latency);
  add_string(&e, "outcome", outcome);
  add_string(&e, "result", result);
  add_string(&e, "service", service);
  fb_events_put(&rt->events, &e);
}

void fbl_events_request(fb_runtime *rt, const char *outcome, double latency,
                        const char *rejection) {
  fb_event e;
  if (!rt->events_on)
    return;
  begin(&e, rt, "request");
  add_number(&e, "latency", latency);
  add_string(&e, "outcome", outcome);
  add_string(&e, "rejection", rejection);
  fb_events_put(&rt->events, &e);
}

void fbl_open_events(lua_State *L, int rt_idx) {
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, l_emit, 1);
  lua_setfield(L, -2, "emit");
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, l_put, 1);
  lua_setfield(L, -2, "put");
}
