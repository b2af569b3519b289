/*
 * lua_target.c -- the libFuzzer entry of the targets written in Lua
 * (tests/fuzz/<target>.lua), compiled once per target with that script
 * embedded as fuzz_script.h (and tests/fuzz/lib.lua as fuzz_lib.h).
 *
 * One LuaJIT state with fusebox loaded is made on the first input and
 * kept: a fresh state per input would cost more than the input. Its
 * allocator is malloc, so AddressSanitizer sees C code use Lua memory
 * that was freed. The state is closed at exit, before LeakSanitizer
 * looks: what is still allocated then is a real leak. (While the state
 * lives, LeakSanitizer cannot follow LuaJIT's tagged pointers, so
 * libFuzzer's leak check per input is off for these targets, see
 * tests/fuzz/run.sh.) The script
 * gets (fb, core, lib) and returns the function run on every input; an
 * error it raises is a finding: printed with its traceback, then abort(),
 * which libFuzzer and the replay both treat as a crash.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_fusebox.h"

#include "fuzz_lib.h"
#include "fuzz_script.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static int target_ref = LUA_NOREF;

#ifdef FUZZ_LUA_COVERAGE
/* Lua lines as coverage (the libFuzzer build only): libFuzzer sees the
 * edges of instrumented C, but the code these targets drive is mostly
 * Lua (serve.lua, http.lua, etcd.lua, policy.lua), so a line hook counts
 * each pair of consecutive lines in libFuzzer's extra counters. The hook
 * keeps LuaJIT in its interpreter: slower, guided. */
#define LUA_COUNTERS 16384
__attribute__((section("__libfuzzer_extra_counters")))
static uint8_t lua_counters[LUA_COUNTERS];

static void line_hook(lua_State *S, lua_Debug *ar) {
  static uintptr_t prev;
  if (!lua_getinfo(S, "Sl", ar))
    return;
  uintptr_t h = ((uintptr_t)ar->source ^ ((uintptr_t)ar->currentline << 20)) *
                (uintptr_t)0x9E3779B97F4A7C15ull;
  h >>= 40;
  lua_counters[(h ^ prev) % LUA_COUNTERS]++;
  prev = h >> 1;
}
#endif

static void *alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, nsize);
}

static void die(const char *what) {
  fprintf(stderr, "fuzz: %s: %s\n", what, lua_tostring(L, -1));
  abort();
}

static int traceback(lua_State *S) {
  luaL_traceback(S, S, lua_tostring(S, 1), 1);
  return 1;
}

/* Pushes fusebox's private `core` table: the upvalue of that name of
 * fb.reporter, which every module gets as its second argument. */
static void push_core(int fb) {
  lua_getfield(L, fb, "reporter");
  for (int i = 1;; i++) {
    const char *name = lua_getupvalue(L, -1, i);
    if (!name) {
      lua_pushliteral(L, "fb.reporter has no upvalue 'core'");
      die("setup");
    }
    if (strcmp(name, "core") == 0 && lua_istable(L, -1))
      break;
    lua_pop(L, 1);
  }
  lua_remove(L, -2);
}

static void close_state(void) {
  lua_close(L);
  L = NULL;
}

static void open_state(void) {
  L = lua_newstate(alloc, NULL);
  if (!L) {
    fprintf(stderr, "fuzz: cannot make a Lua state\n");
    abort();
  }
  atexit(close_state);
  luaL_openlibs(L);
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, luaopen_fusebox);
  if (lua_pcall(L, 0, 1, 1) != 0)
    die("loading fusebox");
  int fb = lua_gettop(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_pushvalue(L, fb);
  lua_setfield(L, -2, "fusebox");
  lua_pop(L, 2);
  push_core(fb);
  int core = lua_gettop(L);
  if (luaL_loadbuffer(L, (const char *)luaJIT_BC_fuzz_lib,
                      luaJIT_BC_fuzz_lib_SIZE, "=fuzz_lib") != 0)
    die("loading lib.lua");
  lua_pushvalue(L, fb);
  if (lua_pcall(L, 1, 1, 1) != 0)
    die("running lib.lua");
  int lib = lua_gettop(L);
  if (luaL_loadbuffer(L, (const char *)luaJIT_BC_fuzz_script,
                      luaJIT_BC_fuzz_script_SIZE, "=fuzz_script") != 0)
    die("loading the target script");
  lua_pushvalue(L, fb);
  lua_pushvalue(L, core);
  lua_pushvalue(L, lib);
  if (lua_pcall(L, 3, 1, 1) != 0)
    die("running the target script");
  if (!lua_isfunction(L, -1)) {
    lua_pushliteral(L, "the target script must return a function");
    die("setup");
  }
  target_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
#ifdef FUZZ_LUA_COVERAGE
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
#endif
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L)
    open_state();
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, target_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 1) != 0)
    die("finding");
  lua_settop(L, 0);
  return 0;
}
