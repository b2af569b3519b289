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

static const char *const opts_plain[] = {"panic_threshold", NULL};
static const char *const opts_p2c[] = {"panic_threshold", "choices", NULL};
static const char *const opts_ewma[] = {"panic_threshold", "choices", "decay",
                                        NULL};
static const char *const opts_ring[] = {"panic_threshold", "replicas", NULL};
static const char *const opts_maglev[] = {"panic_threshold", "table_size",
                                          NULL};
static const char *const opts_strategy[] = {"panic_threshold", "name", NULL};

static const algo_options builtin_options[] = {
    {"round_robin", opts_plain},    {"random", opts_plain},
    {"weighted_round_robin", opts_plain}, {"least_request", opts_p2c},
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
  fb_registry **reg = fbl_check_object(L, 1, FBL_REGISTRY);
  lua_settop(L, 3); /* what push_strategy() pushes goes above the options */
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  int strategy = push_strategy(L, 3);
  cfg.algorithm = strategy ? NULL : lua_tostring(L, 2);
  fbl_check_options(L, 3, strategy ? opts_strategy : options_of(cfg.algorithm));
  read_options(L, 3, &cfg);
  cfg.seed = fb_runtime_stream_seed(fbl_runtime(L));
  fb_balancer **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, FBL_BALANCER);
  lua_setmetatable(L, -2);
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "registry");
  if (strategy) {
    lua_pushvalue(L, -4);
    lua_setfield(L, -2, "strategy");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "name");
  }
  lua_setfenv(L, -2);
  if (!(*p = fb_balancer_new_config(*reg, &cfg)))
    return luaL_error(L, "balancer: out of memory");
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

static const luaL_Reg balancer_methods[] = {
    {"registry", balancer_registry},
    {"algorithm", balancer_algorithm},
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
}
