/*
 * lua_breaker.c -- fb.breaker{...}: the breaker's Lua face.
 *
 * Payload: the fb_breaker pointer; the userdata's environment table holds
 * the is_failure predicate for lua/fusebox/breaker.lua, where call(),
 * try(), acquire(), the permits, on() and the manual controls live: they
 * call user functions or announce state changes, so they must be Lua (the
 * guarded function may yield), and they reach the core through the FFI
 * table. Here: construction and validation, history and metrics.
 *
 * A breaker given zone = z (fb.zone) lives in that shared zone, found there
 * by its name and config or built (zone.h), so every process that maps the
 * zone shares it. Its userdata holds a second pointer, the zone, whose
 * mapping it keeps referenced until __gc. It runs on the runtime's clock
 * like any breaker: on the real clock that is CLOCK_MONOTONIC, one time
 * base for every process (a host that supplies a clock must supply one
 * its processes share).
 */
#include "lua_util.h"

#include "zone.h"

#include <cJSON.h>
#include <math.h>
#include <string.h>

static const char *const breaker_options[] = {
    "mode",           "failure_threshold",  "timeout",
    "success_threshold", "window",          "minimum_calls",
    "failure_rate",   "slow_call_duration", "slow_call_rate",
    "timeout_multiplier", "timeout_max",    "half_open_max_calls",
    "half_open_max_wait", "is_failure",     "shared", "name", "zone", NULL};

static const char *const modes[] = {"consecutive", "count", "time", NULL};

/* Options that only one family of modes reads: giving one to the other is
 * a mistake worth an error, not a silent no-op. */
static const char *const rate_options[] = {
    "window", "minimum_calls", "failure_rate", "slow_call_duration",
    "slow_call_rate", NULL};

static void check_mode_options(lua_State *L, fb_breaker_mode mode) {
  if (mode == FB_MODE_CONSECUTIVE) {
    for (const char *const *o = rate_options; *o; o++)
      if (fbl_opt_given(L, 1, *o))
        luaL_argerror(L, 1, lua_pushfstring(L, "%s applies to modes 'count' "
                                               "and 'time' only", *o));
  } else if (fbl_opt_given(L, 1, "failure_threshold")) {
    luaL_argerror(L, 1, "failure_threshold applies to mode 'consecutive' "
                        "only (use failure_rate)");
  }
}

static void read_rate_options(lua_State *L, fb_breaker_config *cfg) {
  if (cfg->mode == FB_MODE_COUNT)
    cfg->window = fbl_opt_count(L, 1, "window", (int)cfg->window);
  else
    cfg->window = fbl_opt_positive(L, 1, "window", cfg->window);
  cfg->minimum_calls = fbl_opt_count(L, 1, "minimum_calls", cfg->minimum_calls);
  cfg->failure_rate = fbl_opt_fraction(L, 1, "failure_rate", cfg->failure_rate);
  cfg->slow_call_duration =
      fbl_opt_positive(L, 1, "slow_call_duration", cfg->slow_call_duration);
  cfg->slow_call_rate =
      fbl_opt_fraction(L, 1, "slow_call_rate", cfg->slow_call_rate);
}

static void read_options(lua_State *L, fb_breaker_config *cfg) {
  fbl_check_options(L, 1, breaker_options);
  cfg->mode = (fb_breaker_mode)fbl_opt_choice(L, 1, "mode", modes, cfg->mode);
  check_mode_options(L, cfg->mode);
  cfg->failure_threshold =
      fbl_opt_count(L, 1, "failure_threshold", cfg->failure_threshold);
  cfg->timeout = fbl_opt_positive(L, 1, "timeout", cfg->timeout);
  cfg->success_threshold =
      fbl_opt_count(L, 1, "success_threshold", cfg->success_threshold);
  if (cfg->mode != FB_MODE_CONSECUTIVE)
    read_rate_options(L, cfg);
  cfg->timeout_multiplier =
      fbl_opt_at_least(L, 1, "timeout_multiplier", cfg->timeout_multiplier, 1);
  cfg->timeout_max = fbl_opt_positive(L, 1, "timeout_max", cfg->timeout_max);
  cfg->half_open_max_calls =
      fbl_opt_count(L, 1, "half_open_max_calls", cfg->half_open_max_calls);
  cfg->half_open_max_wait =
      fbl_opt_positive(L, 1, "half_open_max_wait", cfg->half_open_max_wait);
}

/* What the core's check can still reject once every option is in range
 * on its own: the ones that depend on another. */
static void check_config(lua_State *L, const fb_breaker_config *cfg) {
  const char *field;
  if (fb_breaker_config_check(cfg, &field) == 0)
    return;
  if (strcmp(field, "minimum_calls") == 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "minimum_calls must not exceed "
                                           "window in mode 'count' (%d > %d)",
                                        cfg->minimum_calls, (int)cfg->window));
  if (strcmp(field, "timeout_max") == 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "timeout_max must be >= timeout "
                                           "(%f < %f)",
                                        cfg->timeout_max, cfg->timeout));
  if (strcmp(field, "window") == 0)
    luaL_argerror(L, 1, "window must be at most 1000000 calls in mode 'count'");
  luaL_argerror(L, 1, lua_pushfstring(L, "%s is out of range", field));
}

/* The environment table {is_failure = fn, name = s, timed = b}, read by
 * breaker.lua: the name labels the breaker in events, the report and
 * metrics; timed says that every call's duration is needed (a slow-call
 * rule), so the clock is read at acquire even when nothing else needs it. */
static void push_env(lua_State *L, const fb_breaker_config *cfg) {
  lua_newtable(L);
  lua_pushboolean(L, !isinf(cfg->slow_call_duration));
  lua_setfield(L, -2, "timed");
  if (lua_istable(L, 1)) {
    const char *name = fbl_opt_name(L, 1, "name");
    if (name) {
      lua_pushstring(L, name);
      lua_setfield(L, -2, "name");
    }
    lua_getfield(L, 1, "is_failure");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
      luaL_argerror(L, 1, lua_pushfstring(L, "is_failure must be a function, "
                                             "got %s",
                                          luaL_typename(L, -1)));
    lua_setfield(L, -2, "is_failure");
  }
}

static int is_zone(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
    return 0;
  luaL_getmetatable(L, FBL_ZONE);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* The open fb_zone of the zone userdata at idx. */
static fb_zone *check_zone(lua_State *L, int idx) {
  fb_zone *z = *(fb_zone **)lua_touserdata(L, idx);
  if (!z)
    luaL_argerror(L, 1, "zone is closed");
  return z;
}

/* The zone option, checked open and left pushed: returns its stack
 * index, or 0 when absent (nothing pushed). A zone breaker needs a name:
 * its key in the zone. */
static int opt_zone(lua_State *L) {
  if (!lua_istable(L, 1))
    return 0;
  lua_getfield(L, 1, "zone");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!is_zone(L, -1))
    fbl_bad_option(L, 1, "zone", "a fusebox.zone (fb.zone)");
  int idx = lua_gettop(L);
  check_zone(L, idx);
  if (!fbl_opt_name(L, 1, "name"))
    luaL_argerror(L, 1, "a breaker in a zone needs a name (its key there)");
  return idx;
}

/* The breaker of the zone userdata at idx, read after the breaker's
 * userdata is made: that allocation may have closed the zone
 * (lua_util.h), so it is checked again here, after the name's metamethods
 * too. */
static fb_breaker *zone_breaker(lua_State *L, int idx,
                                const fb_breaker_config *cfg) {
  char err[256];
  const char *name = fbl_opt_name(L, 1, "name");
  fb_breaker *b = fb_zone_breaker(check_zone(L, idx), name, cfg,
                                  fb_runtime_now(fbl_runtime(L)), err,
                                  sizeof err);
  if (!b)
    luaL_error(L, "breaker: %s", err);
  return b;
}

static int breaker_new(lua_State *L) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  read_options(L, &cfg);
  check_config(L, &cfg);
  int zone = opt_zone(L); /* pushed, if any */
  fbl_breaker_slot *s = lua_newuserdata(L, sizeof *s);
  memset(s, 0, sizeof *s);
  fb_breaker **p = &s->b;
  luaL_getmetatable(L, FBL_BREAKER);
  lua_setmetatable(L, -2);
  push_env(L, &cfg);
  lua_setfenv(L, -2);
  if (zone) {
    fb_breaker *b = zone_breaker(L, zone, &cfg);
    fb_zone *z = check_zone(L, zone); /* no allocation since */
    if (!(s->own = fb_zone_book(z, b)))
      return luaL_error(L, "breaker: out of memory");
    fb_zone_retain(z);
    s->zone = z;
    *p = b;
    /* the state changes made before this process found it are not this
     * object's to announce (breaker.lua reads env.seen) */
    lua_getfenv(L, -1);
    lua_pushnumber(L, (double)fb_breaker_transitions(b));
    lua_setfield(L, -2, "seen");
    lua_pop(L, 1);
    return 1;
  }
  if (!(*p = fb_breaker_new(&cfg)))
    return luaL_error(L, "breaker: out of memory");
  lua_getfield(L, 1, "shared"); /* for C host threads: see fusebox.h */
  fb_breaker_set_shared(*p, lua_toboolean(L, -1));
  lua_pop(L, 1);
  return 1;
}

static int breaker_gc(lua_State *L) {
  fbl_breaker_slot *s = fbl_check_gc(L, FBL_BREAKER);
  if (!s) /* a host holds it */
    return 0;
  if (s->b && s->zone) /* in a zone */
    fb_zone_release(s->zone);
  else
    fb_breaker_free(s->b); /* NULL once closed */
  s->b = NULL;
  s->own = NULL; /* the book is the zone handle's, which may go now */
  return 0;
}

/* cb:transition(n) -> from, to, at: the n-th state change (0-based) */
static int breaker_transition(lua_State *L) {
  fb_breaker **p = fbl_check_object(L, 1, FBL_BREAKER);
  double n = luaL_checknumber(L, 2);
  fb_breaker_state from, to;
  double at;
  if (n < 0 || fb_breaker_transition(*p, (uint64_t)n, &from, &to, &at) < 0)
    return 0;
  lua_pushstring(L, fb_breaker_state_name(from));
  lua_pushstring(L, fb_breaker_state_name(to));
  lua_pushnumber(L, at);
  return 3;
}

/* The metrics as (name, value) pairs, shared by the table and the JSON. */
typedef struct metric {
  const char *name;
  double value;
} metric;

enum { NMETRICS = 16 };

static void collect(lua_State *L, metric *out, const char **state) {
  fb_breaker **p = fbl_check_object(L, 1, FBL_BREAKER);
  fb_breaker_metrics m;
  double now = fb_runtime_now(fbl_runtime(L));
  fb_breaker_metrics_get(*p, now, &m);
  *state = fb_breaker_state_name(m.state);
  const metric all[NMETRICS] = {
      {"failure_rate", m.failure_rate},
      {"slow_rate", m.slow_rate},
      {"buffered", (double)m.buffered},
      {"failed", (double)m.failed},
      {"slow", (double)m.slow},
      {"calls", (double)m.calls},
      {"successes", (double)m.successes},
      {"failures", (double)m.failures},
      {"timeouts", (double)m.timeouts},
      {"ignored", (double)m.ignored},
      {"slow_calls", (double)m.slow_calls},
      {"rejected", (double)m.rejected},
      {"stale", (double)m.stale},
      {"half_open_calls", (double)m.half_open_calls},
      {"time_in_state", m.time_in_state},
      {"open_timeout", m.open_timeout},
  };
  memcpy(out, all, sizeof all);
}

/* cb:metrics() -> {state=, failure_rate=, ...} */
static int breaker_metrics(lua_State *L) {
  metric m[NMETRICS];
  const char *state;
  collect(L, m, &state);
  lua_createtable(L, 0, NMETRICS + 1);
  lua_pushstring(L, state);
  lua_setfield(L, -2, "state");
  for (int i = 0; i < NMETRICS; i++) {
    lua_pushnumber(L, m[i].value);
    lua_setfield(L, -2, m[i].name);
  }
  return 1;
}

/* cb:metrics_json() -> the same as a JSON object (cJSON writes a
 * non-finite number, which only an uncapped open_timeout grown past
 * 1e308 could be, as null). */
static int breaker_metrics_json(lua_State *L) {
  metric m[NMETRICS];
  const char *state;
  collect(L, m, &state);
  cJSON *o = cJSON_CreateObject();
  int ok = o && cJSON_AddStringToObject(o, "state", state);
  for (int i = 0; ok && i < NMETRICS; i++)
    ok = cJSON_AddNumberToObject(o, m[i].name, m[i].value) != NULL;
  char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!s)
    return luaL_error(L, "metrics_json: out of memory");
  lua_pushstring(L, s);
  cJSON_free(s);
  return 1;
}

static const luaL_Reg breaker_methods[] = {
    {"transition", breaker_transition},
    {"metrics", breaker_metrics},
    {"metrics_json", breaker_metrics_json},
    {NULL, NULL},
};

void fbl_open_breaker(lua_State *L, int rt_idx) {
  fbl_new_class(L, FBL_BREAKER, breaker_gc, breaker_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, breaker_new, 1);
  lua_setfield(L, -2, "breaker");
}
