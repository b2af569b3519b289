/*
 * lua_balancer.c -- fb.balancer(reg, algorithm [, opts]): the balancer's
 * Lua face.
 *
 * Payload: the fb_balancer pointer. The balancer's environment table holds
 * its registry userdata, so Lua keeps the registry alive while the
 * balancer lives; the core's reference count makes either collection
 * order safe. A balancer driven by a strategy written in Lua has no
 * built-in algorithm in the core; its environment also holds the strategy
 * function and name. pick(), done() and call() live in
 * lua/fusebox/balancer.lua (FFI fast path).
 */
#include "lua_util.h"

#include <math.h>
#include <string.h>

/* Named strategies (fb.strategy) live in the Lua registry under this key. */
#define STRATEGIES "fusebox.strategies"

typedef struct algo_options {
  const char *algorithm;
  const char *const *options;
} algo_options;

/* slow_start: the algorithms with a ramped picker (balancer.c). */
static const char *const opts_plain[] = {"panic_threshold", "outlier", NULL};
static const char *const opts_ramped[] = {"panic_threshold", "outlier",
                                          "slow_start", NULL};
static const char *const opts_p2c[] = {"panic_threshold", "choices", "outlier",
                                       "slow_start", NULL};
static const char *const opts_ewma[] = {"panic_threshold", "choices", "decay",
                                        "outlier", "slow_start", NULL};
static const char *const opts_ring[] = {"panic_threshold", "replicas",
                                        "outlier", NULL};
static const char *const opts_maglev[] = {"panic_threshold", "table_size",
                                          "outlier", NULL};
static const char *const opts_strategy[] = {"panic_threshold", "name",
                                            "outlier", NULL};

static const algo_options builtin_options[] = {
    {"round_robin", opts_plain},    {"random", opts_ramped},
    {"weighted_round_robin", opts_ramped}, {"least_request", opts_p2c},
    {"peak_ewma", opts_ewma},       {"consistent_hash", opts_ring},
    {"maglev", opts_maglev},
};

static const char *const *options_of(const char *algo) {
  for (size_t i = 0; i < sizeof builtin_options / sizeof builtin_options[0];
       i++)
    if (strcmp(builtin_options[i].algorithm, algo) == 0)
      return builtin_options[i].options;
  return NULL;
}

/* Whether the built-in algo takes a slow_start option (NULL: a strategy). */
static int has_slow_start(const char *algo) {
  const char *const *o = algo ? options_of(algo) : NULL;
  for (; o && *o; o++)
    if (strcmp(*o, "slow_start") == 0)
      return 1;
  return 0;
}

/* Raises "unknown algorithm 'x' (known: ...)", built-ins then strategies. */
static int unknown_algorithm(lua_State *L, const char *algo) {
  const char *const *n = fb_balancer_algorithms();
  lua_pushstring(L, *n);
  int known = lua_gettop(L);
  for (n++; *n; n++) {
    lua_pushfstring(L, ", %s", *n);
    lua_concat(L, 2);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, STRATEGIES);
  lua_pushnil(L);
  while (lua_next(L, known + 1)) {
    lua_pop(L, 1);
    lua_pushvalue(L, known);
    lua_pushfstring(L, ", %s", lua_tostring(L, -2));
    lua_concat(L, 2);
    lua_replace(L, known);
  }
  return luaL_argerror(L, 2, lua_pushfstring(L, "unknown algorithm '%s' "
                                                "(known: %s)",
                                             algo, lua_tostring(L, known)));
}

static double opt_fraction(lua_State *L, int idx, const char *key, double def) {
  if (lua_isnoneornil(L, idx))
    return def;
  lua_getfield(L, idx, key);
  double v = def;
  if (!lua_isnil(L, -1)) {
    v = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 0 && v <= 1))
      fbl_bad_option(L, idx, key, "a number 0..1");
  }
  lua_pop(L, 1);
  return v;
}

static void read_options(lua_State *L, int idx, fb_balancer_config *cfg) {
  cfg->panic_threshold =
      opt_fraction(L, idx, "panic_threshold", cfg->panic_threshold);
  cfg->choices = fbl_opt_count(L, idx, "choices", cfg->choices);
  cfg->decay = fbl_opt_positive(L, idx, "decay", cfg->decay);
  cfg->replicas = (uint32_t)fbl_opt_count(L, idx, "replicas", (int)cfg->replicas);
  cfg->table_size =
      (uint32_t)fbl_opt_count(L, idx, "table_size", (int)cfg->table_size);
  const char *field;
  if (fb_balancer_config_check(cfg, &field) < 0) {
    int choices = strcmp(field, "choices") == 0;
    int replicas = strcmp(field, "replicas") == 0;
    const char *want = choices    ? "an integer 1..64"
                       : replicas ? "an integer 1..10000"
                                  : "a prime 3..67108864";
    int got = choices ? cfg->choices
                      : (int)(replicas ? cfg->replicas : cfg->table_size);
    luaL_argerror(L, idx, lua_pushfstring(L, "%s must be %s, got %d", field,
                                          want, got));
  }
}

/* ------------------------------------------- nested option tables */

enum { NUM_POSITIVE, NUM_PERCENT, NUM_COUNT0, NUM_NONNEG };

/* Option key of the table at tidx (argument arg; prefix "outlier." when
 * it is nested in arg's table): a number of the kind, or def. */
static double opt_number(lua_State *L, int arg, int tidx, const char *prefix,
                         const char *key, double def, int kind) {
  lua_getfield(L, tidx, key);
  double v = def;
  if (!lua_isnil(L, -1)) {
    v = lua_tonumber(L, -1);
    int num = lua_type(L, -1) == LUA_TNUMBER;
    const char *want = NULL;
    if (kind == NUM_POSITIVE && !(num && v > 0 && v <= 1e9))
      want = "a positive number (at most 1e9)";
    else if (kind == NUM_PERCENT && !(num && v >= 0 && v <= 100))
      want = "a percentage 0..100";
    else if (kind == NUM_COUNT0 && !(num && v >= 0 && v == floor(v) && v <= 1e9))
      want = "an integer >= 0";
    else if (kind == NUM_NONNEG && !(num && v >= 0 && v <= 1e6))
      want = "a number 0..1e6";
    if (want) {
      lua_pushfstring(L, "%s%s", prefix, key);
      lua_insert(L, -2);
      fbl_bad_option(L, arg, lua_tostring(L, -2), want);
    }
  }
  lua_pop(L, 1);
  return v;
}

/* Raises unless the table at tidx has only the keys allowed. */
static void check_nested(lua_State *L, int arg, int tidx, const char *prefix,
                         const char *const *allowed) {
  lua_pushnil(L);
  while (lua_next(L, tidx)) {
    lua_pop(L, 1);
    const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    const char *const *a = allowed;
    while (key && *a && strcmp(*a, key) != 0)
      a++;
    if (!key || !*a)
      luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s%s'", prefix,
                                            key ? key : luaL_typename(L, -1)));
  }
}

static const char *const outlier_keys[] = {
    "interval", "base_ejection_time", "max_ejection_time",
    "max_ejection_percent", "consecutive_5xx", "consecutive_gateway_failure",
    "enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure",
    "success_rate_stdev_factor", "success_rate_minimum_hosts",
    "success_rate_request_volume", "enforcing_success_rate",
    "failure_percentage_threshold", "failure_percentage_minimum_hosts",
    "failure_percentage_request_volume", "enforcing_failure_percentage", NULL};

/* Envoy's OutlierDetection fields from the table at tidx. */
static void read_outlier(lua_State *L, int arg, int tidx, const char *prefix,
                         fb_outlier_config *c) {
  check_nested(L, arg, tidx, prefix, outlier_keys);
#define NUM(field, kind) c->field = opt_number(L, arg, tidx, prefix, #field, c->field, kind)
#define CNT(field) c->field = (uint32_t)opt_number(L, arg, tidx, prefix, #field, c->field, NUM_COUNT0)
  NUM(interval, NUM_POSITIVE);
  NUM(base_ejection_time, NUM_POSITIVE);
  NUM(max_ejection_time, NUM_POSITIVE);
  NUM(max_ejection_percent, NUM_PERCENT);
  CNT(consecutive_5xx);
  CNT(consecutive_gateway_failure);
  NUM(enforcing_consecutive_5xx, NUM_PERCENT);
  NUM(enforcing_consecutive_gateway_failure, NUM_PERCENT);
  NUM(success_rate_stdev_factor, NUM_NONNEG);
  CNT(success_rate_minimum_hosts);
  CNT(success_rate_request_volume);
  NUM(enforcing_success_rate, NUM_PERCENT);
  NUM(failure_percentage_threshold, NUM_PERCENT);
  CNT(failure_percentage_minimum_hosts);
  CNT(failure_percentage_request_volume);
  NUM(enforcing_failure_percentage, NUM_PERCENT);
#undef NUM
#undef CNT
}

static const char *const slow_start_keys[] = {
    "slow_start_window", "aggression", "min_weight_percent", NULL};

/* Envoy's slow_start_config from the table at tidx. */
static void read_slow_start(lua_State *L, int arg, int tidx,
                            fb_balancer_config *cfg) {
  const char *p = "slow_start.";
  check_nested(L, arg, tidx, p, slow_start_keys);
  cfg->slow_start_window = opt_number(L, arg, tidx, p, "slow_start_window",
                                      0, NUM_POSITIVE);
  if (cfg->slow_start_window == 0) {
    lua_pushnil(L);
    fbl_bad_option(L, arg, "slow_start.slow_start_window", "given (seconds)");
  }
  cfg->slow_start_aggression = opt_number(L, arg, tidx, p, "aggression",
                                          cfg->slow_start_aggression, NUM_POSITIVE);
  cfg->slow_start_min_weight_percent =
      opt_number(L, arg, tidx, p, "min_weight_percent",
                 cfg->slow_start_min_weight_percent, NUM_PERCENT);
  if (cfg->slow_start_min_weight_percent == 0) {
    lua_pushnumber(L, 0);
    fbl_bad_option(L, arg, "slow_start.min_weight_percent", "a percentage in (0, 100]");
  }
}

/* --------------------------------------------------------- detectors */

/* A new detector userdata over the registry userdata at reg_idx (checked
 * open), from the options table at tidx (0: defaults); its environment
 * holds the registry. */
static void push_outlier(lua_State *L, int reg_idx, int arg, int tidx,
                         const char *prefix) {
  fb_outlier_config c;
  fb_outlier_config_init(&c);
  if (tidx)
    read_outlier(L, arg, tidx, prefix, &c);
  c.seed = fb_runtime_stream_seed(fbl_runtime(L));
  const char *field;
  if (fb_outlier_config_check(&c, &field) < 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s%s is out of range", prefix, field));
  fb_outlier **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, FBL_OUTLIER);
  lua_setmetatable(L, -2);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, reg_idx);
  lua_setfield(L, -2, "registry");
  lua_setfenv(L, -2);
  /* after the last allocation (lua_util.h): the registry may be closed */
  fb_registry *reg = *(fb_registry **)fbl_check_object(L, reg_idx, FBL_REGISTRY);
  if (!(*p = fb_outlier_new(reg, &c)))
    luaL_error(L, "outlier: out of memory");
}

/* fb.outlier(reg [, opts]) -> a detector to give balancers (outlier =) */
static int outlier_new(lua_State *L) {
  fbl_check_object(L, 1, FBL_REGISTRY);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  push_outlier(L, 1, 2, lua_istable(L, 2) ? 2 : 0, "");
  return 1;
}

static int outlier_gc(lua_State *L) {
  fb_outlier **p = fbl_check_gc(L, FBL_OUTLIER);
  if (!p) /* a host holds it */
    return 0;
  fb_outlier_release(*p);
  *p = NULL;
  return 0;
}

static int outlier_registry(lua_State *L) {
  fbl_check_object(L, 1, FBL_OUTLIER);
  lua_getfenv(L, 1);
  lua_getfield(L, -1, "registry");
  return 1;
}

static void set_reasons(lua_State *L, const uint64_t *v, const char *name) {
  lua_createtable(L, 0, FB_OUTLIER_NREASONS);
  for (int r = 0; r < FB_OUTLIER_NREASONS; r++) {
    lua_pushnumber(L, (lua_Number)v[r]);
    lua_setfield(L, -2, fb_outlier_reason_name((fb_outlier_reason)r));
  }
  lua_setfield(L, -2, name);
}

/* d:stats() -> {ejections = {reason = n}, detected = {...}, overflow = n,
 * ejected = n (running now), dropped = n (events lost)} */
static int outlier_stats(lua_State *L) {
  fb_outlier **p = fbl_check_object(L, 1, FBL_OUTLIER);
  fb_outlier_stats st;
  fb_outlier_get_stats(*p, &st);
  lua_createtable(L, 0, 5);
  set_reasons(L, st.ejections, "ejections");
  set_reasons(L, st.detected, "detected");
  lua_pushnumber(L, (lua_Number)st.overflow);
  lua_setfield(L, -2, "overflow");
  lua_pushnumber(L, (lua_Number)st.ejected);
  lua_setfield(L, -2, "ejected");
  lua_pushnumber(L, (lua_Number)st.dropped);
  lua_setfield(L, -2, "dropped");
  return 1;
}

/* d:tick() -> runs what is due by the runtime's clock (the interval
 * analysis, the ends of ejections) without an outcome; for a caller whose
 * traffic stopped. */
static int outlier_tick(lua_State *L) {
  fb_outlier **p = fbl_check_object(L, 1, FBL_OUTLIER);
  if (fb_outlier_tick(*p, fb_runtime_now(fbl_runtime(L))) < 0)
    return luaL_error(L, "tick: out of memory");
  return 0;
}

/* core.outlier_events(d) -> the pending events, oldest first, each
 * {eject = bool, reason =, id =, at =, ["until"] =, ejections =, and
 * service =, host =, port = while the instance is there}, or nil. Each
 * round takes one event and copies its instance before it allocates
 * (lua_util.h); a finalizer that closes the detector meanwhile ends the
 * list there. */
static int outlier_events(lua_State *L) {
  fb_outlier **p = luaL_checkudata(L, 1, FBL_OUTLIER);
  if (!*p || !fb_outlier_pending(*p)) /* closed by hand: the balancer's */
    return 0;                         /* reference keeps it counting */
  lua_newtable(L);
  fb_outlier_event ev;
  fbl_instance_copy c;
  for (int n = 1; *p && fb_outlier_next_event(*p, &ev); n++) {
    /* the detector holds its registry: valid while the detector is */
    fb_instance *i = fb_registry_instance(fb_outlier_registry(*p), ev.id);
    if (i)
      fbl_instance_copy_of(i, &c);
    lua_createtable(L, 0, 6);
    lua_pushboolean(L, ev.eject);
    lua_setfield(L, -2, "eject");
    lua_pushstring(L, fb_outlier_reason_name(ev.reason));
    lua_setfield(L, -2, "reason");
    lua_pushnumber(L, (lua_Number)ev.id);
    lua_setfield(L, -2, "id");
    lua_pushnumber(L, ev.at);
    lua_setfield(L, -2, "at");
    lua_pushnumber(L, ev.until);
    lua_setfield(L, -2, "until");
    lua_pushnumber(L, ev.ejections);
    lua_setfield(L, -2, "ejections");
    if (i) /* else gone meanwhile: its id alone */
      fbl_set_instance_address(L, &c);
    lua_rawseti(L, -2, n);
  }
  return 1;
}

/* d:on("eject" | "readmit", fn): fn(event) for each of the detector's
 * events, as the balancer's done() drains them (lua/fusebox/balancer.lua
 * calls env.listeners[kind][1..n]) */
static int outlier_on(lua_State *L) {
  fbl_check_object(L, 1, FBL_OUTLIER);
  const char *ev = luaL_checkstring(L, 2);
  if (strcmp(ev, "eject") != 0 && strcmp(ev, "readmit") != 0)
    return luaL_argerror(L, 2, lua_pushfstring(L, "unknown event '%s' (known: "
                                                  "eject, readmit)", ev));
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_getfenv(L, 1);
  lua_getfield(L, -1, "listeners");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "listeners");
  }
  lua_getfield(L, -1, ev);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, ev);
  }
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  return 0;
}

static const luaL_Reg outlier_methods[] = {
    {"registry", outlier_registry},
    {"stats", outlier_stats},
    {"tick", outlier_tick},
    {"on", outlier_on},
    {NULL, NULL},
};

/* The open detector userdata at idx, option outlier of argument opts. */
static fb_outlier *check_detector(lua_State *L, int idx, int opts) {
  fb_outlier *d = *(fb_outlier **)lua_touserdata(L, idx);
  if (!d)
    luaL_argerror(L, opts, "outlier: " FBL_OUTLIER " is closed");
  return d;
}

/* The balancer's detector from option outlier of the table at opts (a
 * detector over the same registry, or a table of its options), pushed:
 * returns its stack index, 0 when there is none (nothing pushed). */
static int opt_outlier(lua_State *L, int opts) {
  if (!lua_istable(L, opts))
    return 0;
  lua_getfield(L, opts, "outlier");
  int t = lua_gettop(L);
  if (lua_isnil(L, t)) {
    lua_pop(L, 1);
    return 0;
  }
  if (luaL_testudata(L, t, FBL_OUTLIER)) {
    fb_outlier *d = check_detector(L, t, opts);
    /* a payload is NULL once closed, never another object: the match
     * holds while both stay open */
    if (fb_outlier_registry(d) !=
        *(fb_registry **)fbl_check_object(L, 1, FBL_REGISTRY))
      luaL_argerror(L, opts, "outlier is a detector over another registry");
    return t;
  }
  if (!lua_istable(L, t))
    fbl_bad_option(L, opts, "outlier", "a table of outlier options or an fb.outlier detector");
  push_outlier(L, 1, opts, t, "outlier.");
  lua_replace(L, t);
  return t;
}

/* Pushes the strategy for arg 2 (a function, or a name fb.strategy gave)
 * and its name; returns 1, or 0 if arg 2 names a built-in. */
static int push_strategy(lua_State *L, int opts) {
  if (lua_isfunction(L, 2)) {
    lua_pushvalue(L, 2);
    lua_pushstring(L, "anonymous");
    if (lua_istable(L, opts)) {
      const char *name = fbl_opt_name(L, opts, "name");
      if (name) {
        lua_pushstring(L, name);
        lua_replace(L, -2);
      }
    }
    return 1;
  }
  const char *algo = fbl_check_name(L, 2, "algorithm");
  if (options_of(algo))
    return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, STRATEGIES);
  lua_getfield(L, -1, algo);
  if (lua_isnil(L, -1))
    unknown_algorithm(L, algo);
  lua_remove(L, -2);
  lua_pushvalue(L, 2);
  return 1;
}

/* fb.balancer(reg, algorithm | strategy [, opts]) */
static int balancer_new(lua_State *L) {
  fbl_check_object(L, 1, FBL_REGISTRY);
  lua_settop(L, 3); /* what push_strategy() pushes goes above the options */
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  int strategy = push_strategy(L, 3);
  cfg.algorithm = strategy ? NULL : lua_tostring(L, 2);
  if (lua_istable(L, 3) && !has_slow_start(strategy ? NULL : cfg.algorithm)) {
    lua_getfield(L, 3, "slow_start");
    if (!lua_isnil(L, -1))
      luaL_argerror(L, 3, lua_pushfstring(L, "slow_start: %s has none (slow start "
                                             "needs weights or load: random, "
                                             "weighted_round_robin, least_request, "
                                             "peak_ewma)", lua_tostring(L, 2)));
    lua_pop(L, 1);
  }
  fbl_check_options(L, 3, strategy ? opts_strategy : options_of(cfg.algorithm));
  read_options(L, 3, &cfg);
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "slow_start");
    if (lua_istable(L, -1))
      read_slow_start(L, 3, lua_gettop(L), &cfg);
    else if (!lua_isnil(L, -1))
      fbl_bad_option(L, 3, "slow_start", "a table (slow_start_window =, aggression =, min_weight_percent =)");
    lua_pop(L, 1);
  }
  cfg.seed = fb_runtime_stream_seed(fbl_runtime(L));
  int outlier = opt_outlier(L, 3); /* pushed, if any */
  fb_balancer **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, FBL_BALANCER);
  lua_setmetatable(L, -2);
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "registry");
  if (strategy) {
    lua_pushvalue(L, 4);
    lua_setfield(L, -2, "strategy");
    lua_pushvalue(L, 5);
    lua_setfield(L, -2, "name");
  }
  if (outlier) {
    lua_pushvalue(L, outlier);
    lua_setfield(L, -2, "outlier");
  }
  lua_setfenv(L, -2);
  /* after the last allocation (lua_util.h): either may be closed now */
  fb_registry *reg = *(fb_registry **)fbl_check_object(L, 1, FBL_REGISTRY);
  fb_outlier *d = outlier ? check_detector(L, outlier, 3) : NULL;
  if (!(*p = fb_balancer_new_config(reg, &cfg)))
    return luaL_error(L, "balancer: out of memory");
  if (d)
    fb_balancer_set_outlier(*p, d); /* same registry: checked */
  return 1;
}

static int balancer_gc(lua_State *L) {
  fb_balancer **p = fbl_check_gc(L, FBL_BALANCER);
  if (!p) /* a host holds it */
    return 0;
  fb_balancer_free(*p); /* NULL once closed */
  *p = NULL;
  return 0;
}

/* lb:registry() -> the registry it balances over */
static int balancer_registry(lua_State *L) {
  fbl_check_object(L, 1, FBL_BALANCER);
  lua_getfenv(L, 1);
  lua_getfield(L, -1, "registry");
  return 1;
}

/* lb:algorithm() -> its algorithm's name (a strategy's name) */
static int balancer_algorithm(lua_State *L) {
  fb_balancer **p = fbl_check_object(L, 1, FBL_BALANCER);
  const char *name = fb_balancer_algorithm(*p);
  if (name) {
    lua_pushstring(L, name);
  } else {
    lua_getfenv(L, 1);
    lua_getfield(L, -1, "name");
  }
  return 1;
}

/* lb:outlier() -> its detector, or nil */
static int balancer_outlier(lua_State *L) {
  fbl_check_object(L, 1, FBL_BALANCER);
  lua_getfenv(L, 1);
  lua_getfield(L, -1, "outlier");
  return 1;
}

static const luaL_Reg balancer_methods[] = {
    {"registry", balancer_registry},
    {"algorithm", balancer_algorithm},
    {"outlier", balancer_outlier},
    {NULL, NULL},
};

/* Publishes core.balancer, core.algorithms (the built-in names) and
 * core.strategies (the table fb.strategy fills). */
void fbl_open_balancer(lua_State *L, int rt_idx) {
  fbl_new_class(L, FBL_BALANCER, balancer_gc, balancer_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, balancer_new, 1);
  lua_setfield(L, -2, "balancer");
  lua_newtable(L);
  int n = 0;
  for (const char *const *a = fb_balancer_algorithms(); *a; a++) {
    lua_pushstring(L, *a);
    lua_rawseti(L, -2, ++n);
  }
  lua_setfield(L, -2, "algorithms");
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, STRATEGIES);
  lua_setfield(L, -2, "strategies");
  fbl_new_plain_class(L, FBL_OUTLIER, outlier_gc, outlier_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, outlier_new, 1);
  lua_setfield(L, -2, "outlier");
  lua_pushvalue(L, rt_idx);
  lua_pushcclosure(L, outlier_events, 1);
  lua_setfield(L, -2, "outlier_events");
}
