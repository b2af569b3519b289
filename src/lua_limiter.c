/*
 * lua_limiter.c -- fb.limiter{...}: the concurrency limiter's Lua face.
 *
 * Payload: the fb_limiter pointer; the userdata's environment table holds
 * the name, the algorithm's name and the classify function for
 * lua/fusebox/limiter.lua, where call(), acquire(), release() and the
 * events live (they run user functions, which may yield), reaching the
 * core through the FFI table. Here: construction and validation, the
 * history and the metrics.
 */
#include "lua_util.h"
#include "runtime.h"

#include <math.h>
#include <string.h>

static const char *const limiter_options[] = {
    "algorithm",     "initial",       "min",       "max",
    "smoothing",     "queue_size",    "rtt_tolerance", "long_window",
    "backoff_ratio", "timeout",       "alpha",     "beta",
    "probe_multiplier", "min_window", "max_window", "window_size",
    "min_rtt_threshold", "classify",  "name",      "shared", NULL};

static const char *const algorithms[] = {"gradient2", "aimd", "vegas", NULL};

/* The options that only one algorithm reads, by algorithm (smoothing:
 * gradient2 and vegas): giving one to another is a mistake worth an
 * error, not a silent no-op. */
static const char *const only[][4] = {
    [FB_LIMIT_GRADIENT2] = {"queue_size", "rtt_tolerance", "long_window", NULL},
    [FB_LIMIT_AIMD] = {"backoff_ratio", "timeout", NULL},
    [FB_LIMIT_VEGAS] = {"alpha", "beta", "probe_multiplier", NULL},
};

static void check_algorithm_options(lua_State *L, fb_limit_algorithm a) {
  for (int other = 0; other <= FB_LIMIT_VEGAS; other++)
    for (int i = 0; other != (int)a && only[other][i]; i++)
      if (fbl_opt_given(L, 1, only[other][i]))
        luaL_argerror(L, 1, lua_pushfstring(L, "%s applies to algorithm '%s' "
                                               "only",
                                            only[other][i], algorithms[other]));
  if (a == FB_LIMIT_AIMD && fbl_opt_given(L, 1, "smoothing"))
    luaL_argerror(L, 1, "smoothing applies to algorithms 'gradient2' and "
                        "'vegas' only");
}

static void read_options(lua_State *L, fb_limiter_config *cfg) {
  fbl_check_options(L, 1, limiter_options);
  int a = fbl_opt_choice(L, 1, "algorithm", algorithms, FB_LIMIT_GRADIENT2);
  fb_limiter_config_init(cfg, (fb_limit_algorithm)a);
  check_algorithm_options(L, cfg->algorithm);
  cfg->initial_limit = fbl_opt_count(L, 1, "initial", cfg->initial_limit);
  cfg->min_limit = fbl_opt_count(L, 1, "min", cfg->min_limit);
  cfg->max_limit = fbl_opt_count(L, 1, "max", cfg->max_limit);
  cfg->smoothing = fbl_opt_fraction(L, 1, "smoothing", cfg->smoothing);
  cfg->queue_size = fbl_opt_at_least(L, 1, "queue_size", cfg->queue_size, 0);
  cfg->rtt_tolerance =
      fbl_opt_at_least(L, 1, "rtt_tolerance", cfg->rtt_tolerance, 1);
  cfg->long_window = fbl_opt_count(L, 1, "long_window", cfg->long_window);
  cfg->backoff_ratio =
      fbl_opt_fraction(L, 1, "backoff_ratio", cfg->backoff_ratio);
  cfg->timeout = fbl_opt_positive(L, 1, "timeout", cfg->timeout);
  cfg->alpha = fbl_opt_positive(L, 1, "alpha", cfg->alpha);
  cfg->beta = fbl_opt_positive(L, 1, "beta", cfg->beta);
  cfg->probe_multiplier =
      fbl_opt_count(L, 1, "probe_multiplier", cfg->probe_multiplier);
  cfg->min_window = fbl_opt_at_least(L, 1, "min_window", cfg->min_window, 0);
  /* max_window follows a min_window given alone past its default */
  if (!fbl_opt_given(L, 1, "max_window") && cfg->min_window > cfg->max_window)
    cfg->max_window = cfg->min_window;
  cfg->max_window = fbl_opt_at_least(L, 1, "max_window", cfg->max_window, 0);
  cfg->window_size = fbl_opt_count(L, 1, "window_size", cfg->window_size);
  cfg->min_rtt_threshold = fbl_opt_at_least(L, 1, "min_rtt_threshold",
                                            cfg->min_rtt_threshold, 0);
}

/* What the core's check can still reject once every option is in range
 * on its own: bounds and the ones that depend on another. */
static void check_config(lua_State *L, const fb_limiter_config *c) {
  const char *field;
  if (fb_limiter_config_check(c, &field) == 0)
    return;
  if (strcmp(field, "max_limit") == 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "max must be at most %d, got %d",
                                        FB_LIMITER_MAX, c->max_limit));
  if (strcmp(field, "min_limit") == 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "min must not exceed max (%d > %d)",
                                        c->min_limit, c->max_limit));
  if (strcmp(field, "initial_limit") == 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "initial must be in min..max "
                                           "(%d..%d), got %d",
                                        c->min_limit, c->max_limit,
                                        c->initial_limit));
  if (strcmp(field, "backoff_ratio") == 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "backoff_ratio must be in "
                                           "[0.5, 1), got %f",
                                        c->backoff_ratio));
  if (strcmp(field, "max_window") == 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "max_window must be >= min_window "
                                           "(%f < %f)",
                                        c->max_window, c->min_window));
  if (strcmp(field, "beta") == 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "beta must be >= alpha (%f < %f)",
                                        c->beta, c->alpha));
  luaL_argerror(L, 1, lua_pushfstring(L, "%s is out of range", field));
}

/* The environment table {name = s, algorithm = s, classify = fn}. */
static void push_env(lua_State *L, const fb_limiter_config *cfg) {
  lua_newtable(L);
  lua_pushstring(L, fb_limiter_algorithm_name(cfg->algorithm));
  lua_setfield(L, -2, "algorithm");
  if (!lua_istable(L, 1))
    return;
  const char *name = fbl_opt_name(L, 1, "name");
  if (name) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
  }
  lua_getfield(L, 1, "classify");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    luaL_argerror(L, 1, lua_pushfstring(L, "classify must be a function, "
                                           "got %s",
                                        luaL_typename(L, -1)));
  lua_setfield(L, -2, "classify");
}

static int limiter_new(lua_State *L) {
  if (!lua_isnoneornil(L, 1))
    luaL_checktype(L, 1, LUA_TTABLE);
  fb_limiter_config cfg;
  read_options(L, &cfg);
  check_config(L, &cfg);
  /* Vegas' probe jitter comes from the runtime's seeded stream, so a run
   * replays with its seed. */
  cfg.seed = fb_rng_next(&fbl_runtime(L)->rng);
  fb_limiter **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, FBL_LIMITER);
  lua_setmetatable(L, -2);
  push_env(L, &cfg);
  lua_setfenv(L, -2);
  if (!(*p = fb_limiter_new(&cfg)))
    return luaL_error(L, "limiter: out of memory");
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "shared"); /* for C host threads: see fusebox.h */
    fb_limiter_set_shared(*p, lua_toboolean(L, -1));
    lua_pop(L, 1);
  }
  return 1;
}

static int limiter_gc(lua_State *L) {
  fb_limiter **p = fbl_check_gc(L, FBL_LIMITER);
  if (!p) /* a host holds it */
    return 0;
  fb_limiter_free(*p); /* NULL once closed */
  *p = NULL;
  return 0;
}

/* l:change(n) -> from, to, at: the n-th change of the limit (0-based),
 * or nothing once it is no longer kept */
static int limiter_change(lua_State *L) {
  fb_limiter **p = fbl_check_object(L, 1, FBL_LIMITER);
  double n = luaL_checknumber(L, 2);
  int from, to;
  double at;
  if (!(n >= 0) || fb_limiter_change(*p, (uint64_t)n, &from, &to, &at) < 0)
    return 0;
  lua_pushinteger(L, from);
  lua_pushinteger(L, to);
  lua_pushnumber(L, at);
  return 3;
}

/* l:metrics() -> {algorithm=, limit=, estimate=, inflight=, rtt=,
 * rtt_noload=, successes=, dropped=, ignored=, rejected=, changes=} */
static int limiter_metrics(lua_State *L) {
  fb_limiter **p = fbl_check_object(L, 1, FBL_LIMITER);
  fb_limiter_metrics m;
  fb_limiter_metrics_get(*p, &m);
  const struct {
    const char *name;
    double value;
  } all[] = {
      {"limit", m.limit},
      {"estimate", m.estimate},
      {"inflight", m.inflight},
      {"rtt", m.rtt},
      {"rtt_noload", m.rtt_noload},
      {"successes", (double)m.successes},
      {"dropped", (double)m.dropped},
      {"ignored", (double)m.ignored},
      {"rejected", (double)m.rejected},
      {"changes", (double)m.changes},
  };
  size_t n = sizeof all / sizeof all[0];
  lua_createtable(L, 0, (int)n + 1);
  for (size_t i = 0; i < n; i++) {
    lua_pushnumber(L, all[i].value);
    lua_setfield(L, -2, all[i].name);
  }
  lua_getfenv(L, 1);
  lua_getfield(L, -1, "algorithm");
  lua_setfield(L, -3, "algorithm");
  lua_pop(L, 1);
  return 1;
}

static const luaL_Reg limiter_methods[] = {
    {"change", limiter_change},
    {"metrics", limiter_metrics},
    {NULL, NULL},
};

void fbl_open_limiter(lua_State *L, int rt_idx) {
  fbl_new_class(L, FBL_LIMITER, limiter_gc, limiter_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, limiter_new, 1);
  lua_setfield(L, -2, "limiter");
}
