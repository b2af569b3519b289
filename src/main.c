/*
 * main.c -- the fusebox command: runs a Lua script on the runtime.
 */
#include "fusebox.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_fusebox.h"

static const char usage[] =
    "usage: fusebox run [--virtual-time] [--seed N] [--metrics HOST:PORT]\n"
    "                   script.lua [args...]\n"
    "       fusebox serve [--listen HOST:PORT] [--metrics HOST:PORT]\n"
    "                     [script.lua [args...]]\n"
    "       fusebox --help | --version\n"
    "\n"
    "Runs script.lua as the main coroutine of a libuv loop; the run ends\n"
    "when it and every coroutine it spawned (fb.spawn) are done. The script\n"
    "sees its arguments as ... and in the global table arg.\n"
    "\n"
    "options:\n"
    "  --virtual-time  a virtual clock starting at 0: fb.sleep returns at\n"
    "                  once, in deadline order (ties in the order they were\n"
    "                  scheduled), and fb.now() advances; a script that\n"
    "                  sleeps for minutes finishes at once, same output\n"
    "  --seed N        seed fb.random, the random balancer and every other\n"
    "                  random stream (default: a fresh seed, see fb.seed())\n"
    "  --metrics HOST:PORT  (run and serve) serve Prometheus metrics of the\n"
    "                  objects published with fb.export at /metrics\n"
    "  -h, --help      show this help\n"
    "  --version       show the version\n"
    "\n"
    "serve: a registry over HTTP + JSON for other processes (register,\n"
    "heartbeat, deregister, discover, blocking queries; see README), on\n"
    "127.0.0.1:8500 unless --listen says otherwise; prints the address it\n"
    "listens on. script.lua, if given, runs with the registry and the\n"
    "server as its arguments (it may register instances, add policy).\n"
    "\n"
    "exit status: 0 when the run finished, 1 on an uncaught Lua error (its\n"
    "message and traceback go to stderr), 2 on a usage error.\n";

typedef struct options {
  const char *listen;  /* serve: HOST:PORT */
  const char *metrics; /* --metrics HOST:PORT */
  int virtual_time;
  int has_seed;
  unsigned long long seed;
  const char *script;
  int argi; /* index in argv of the first script argument */
} options;

static int usage_error(const char *fmt, const char *what) {
  fprintf(stderr, "fusebox: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (see fusebox --help)\n");
  return 2;
}

static int parse_seed(const char *s, unsigned long long *out) {
  char *end;
  errno = 0;
  if (*s < '0' || *s > '9')
    return -1;
  *out = strtoull(s, &end, 10);
  return (errno || *end) ? -1 : 0;
}

static int parse_run(int argc, char **argv, options *o) {
  int i = 2;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--virtual-time") == 0) {
      o->virtual_time = 1;
    } else if (strcmp(argv[i], "--seed") == 0) {
      if (i + 1 >= argc)
        return usage_error("%s needs a value", "--seed");
      if (parse_seed(argv[++i], &o->seed) < 0)
        return usage_error("bad seed '%s': want a non-negative integer",
                           argv[i]);
      o->has_seed = 1;
    } else if (strcmp(argv[i], "--metrics") == 0 && i + 1 < argc) {
      o->metrics = argv[++i];
    } else if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else {
      return usage_error("unknown option '%s'", argv[i]);
    }
  }
  if (i >= argc)
    return usage_error("%s: no script given", "run");
  o->script = argv[i];
  o->argi = i + 1;
  return 0;
}

/* Pushes arg (script at 0, its arguments from 1) and leaves the script's
 * arguments on the stack too; returns how many. */
static int push_args(lua_State *L, int argc, char **argv, const options *o) {
  int n = argc - o->argi;
  lua_createtable(L, n, 1);
  lua_pushstring(L, o->script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, argv[o->argi + i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  for (int i = 0; i < n; i++)
    lua_pushstring(L, argv[o->argi + i]);
  return n;
}

static int check_script(const char *script) {
  FILE *f = fopen(script, "r");
  if (!f) {
    fprintf(stderr, "fusebox: cannot open script '%s': %s\n", script,
            strerror(errno));
    return 2;
  }
  fclose(f);
  return 0;
}

/* A state with the fusebox module loaded; pushes fb.run. */
static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "fusebox: out of memory\n");
    return NULL;
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_fusebox);
  lua_setfield(L, -2, "fusebox");
  lua_pop(L, 2);
  lua_getglobal(L, "require");
  lua_pushstring(L, "fusebox");
  if (lua_pcall(L, 1, 1, 0) == 0)
    lua_getfield(L, -1, "run");
  return L;
}

static int parse_listen(const char *s, char *host, size_t cap, int *port) {
  const char *colon = strrchr(s, ':');
  char *end;
  if (!colon || colon == s || (size_t)(colon - s) >= cap)
    return -1;
  long p = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || p < 0 || p > 65535)
    return -1;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = 0;
  *port = (int)p;
  return 0;
}

/* Runs main(...) after starting the metrics endpoint. */
static const char with_metrics[] =
    "local host, port, main = ...\n"
    "local fb = require 'fusebox'\n"
    "local m, err = fb.serve_metrics { host = host, port = port }\n"
    "if not m then error(string.format('fusebox: cannot serve metrics on "
    "%s:%d: %s', host, port, err), 0) end\n"
    "io.stdout:write(string.format('fusebox: metrics on http://%s:%d/metrics\\n',"
    " host, m:port()))\n"
    "io.stdout:flush()\n"
    "return main(select(4, ...))\n";

/* With [fb.run, fn] on top, pushes the options table (and, with
 * --metrics, wraps fn); returns how many arguments of fb.run are on the
 * stack, or -1 on a bad --metrics address. */
static int push_run(lua_State *L, const options *o) {
  int n = 2;
  if (o->metrics) {
    char host[256];
    int port;
    if (parse_listen(o->metrics, host, sizeof host, &port) < 0)
      return -1;
    luaL_loadbuffer(L, with_metrics, sizeof with_metrics - 1, "=metrics");
    lua_insert(L, -2);
    lua_pushstring(L, host);
    lua_insert(L, -2);
    lua_pushinteger(L, port);
    lua_insert(L, -2);
    n += 3;
  }
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, o->virtual_time);
  lua_setfield(L, -2, "virtual_time");
  if (o->has_seed) {
    lua_pushnumber(L, (double)o->seed);
    lua_setfield(L, -2, "seed");
  }
  lua_insert(L, -(n - 1)); /* right after the function fb.run calls */
  return n;
}

/* Calls fb.run with what is on the stack; reports an error. 0 or 1. */
static int call_run(lua_State *L, int nargs) {
  if (lua_pcall(L, nargs, 0, 0) == 0)
    return 0;
  fprintf(stderr, "%s\n", lua_tostring(L, -1) ? lua_tostring(L, -1)
                                             : "(error object is not a string)");
  return 1;
}

static int run(int argc, char **argv) {
  options o = {0};
  int rc = parse_run(argc, argv, &o);
  if (rc || (rc = check_script(o.script)))
    return rc;
  lua_State *L = new_state();
  if (!L)
    return 1;
  if (!lua_isfunction(L, -1) || luaL_loadfile(L, o.script) != 0) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  int n = push_run(L, &o);
  rc = n < 0 ? usage_error("bad --metrics '%s': want HOST:PORT", o.metrics)
             : call_run(L, n + push_args(L, argc, argv, &o));
  lua_close(L);
  return rc;
}

/* The main coroutine of `fusebox serve`: the API, then the script. */
static const char serve_main[] =
    "local host, port, script = ...\n"
    "local fb = require 'fusebox'\n"
    "local api, err = fb.serve_registry { host = host, port = port }\n"
    "if not api then error(string.format('fusebox: cannot listen on %s:%d: %s',"
    " host, port, err), 0) end\n"
    "io.stdout:write(string.format('fusebox: registry API on http://%s:%d/v1/"
    "services\\n', host, api:port()))\n"
    "io.stdout:flush()\n"
    "if script then assert(loadfile(script))(api.registry, api, select(4, ...)) end\n";

static int serve(int argc, char **argv) {
  options o = {.listen = "127.0.0.1:8500"};
  int i = 2;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
      o.listen = argv[++i];
    else if (strcmp(argv[i], "--metrics") == 0 && i + 1 < argc)
      o.metrics = argv[++i];
    else
      return usage_error("unknown option or missing value '%s'", argv[i]);
  }
  char host[256];
  int port;
  if (parse_listen(o.listen, host, sizeof host, &port) < 0)
    return usage_error("bad --listen '%s': want HOST:PORT", o.listen);
  o.script = i < argc ? argv[i] : NULL;
  o.argi = i + 1;
  int rc = o.script ? check_script(o.script) : 0;
  if (rc)
    return rc;
  lua_State *L = new_state();
  if (!L)
    return 1;
  if (!lua_isfunction(L, -1)) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  luaL_loadbuffer(L, serve_main, sizeof serve_main - 1, "=serve");
  int n = push_run(L, &o);
  if (n < 0) {
    lua_close(L);
    return usage_error("bad --metrics '%s': want HOST:PORT", o.metrics);
  }
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  if (o.script)
    lua_pushstring(L, o.script);
  else
    lua_pushnil(L);
  int nargs = 3;
  for (int k = o.argi; o.script && k < argc; k++, nargs++)
    lua_pushstring(L, argv[k]);
  rc = call_run(L, n + nargs);
  lua_close(L);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2)
    return usage_error("%s", "no command given");
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(usage, stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("fusebox %s\n", fb_version());
    return 0;
  }
  if (strcmp(argv[1], "run") == 0)
    return run(argc, argv);
  if (strcmp(argv[1], "serve") == 0)
    return serve(argc, argv);
  return usage_error("unknown command '%s'", argv[1]);
}
