/*
 * main.c -- the fusebox command: runs a Lua script on the runtime.
 */
#include "fusebox.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "lua_fusebox.h"
#include "cli.h"
#include "report.h"
#include "runtime.h"

static const char usage[] =
    "usage: fusebox run [--virtual-time] [--seed N] [--events FILE.jsonl]\n"
    "                   [--summary] [--report FILE.html] [--metrics "
    "HOST:PORT]\n"
    "                   [--shutdown-timeout S] script.lua [args...]\n"
    "       fusebox test [--seed N] [--max-virtual-time S] [--timeout S]\n"
    "                    [path...]\n"
    "       fusebox report [-o FILE.html] events.jsonl\n"
    "       fusebox explore [--seeds N|A-B] [--jobs N] [--stop-at-first]\n"
    "                       [--list N] [--shrink N] [--max-virtual-time S]\n"
    "                       [--timeout S] scenario.lua\n"
    "       fusebox compare --policy FILE [--policy FILE...] [--seeds N|A-B]\n"
    "                       [--jobs N] [--report FILE.html]\n"
    "                       [--max-virtual-time S] [--timeout S] scenario.lua\n"
    "       fusebox serve [--listen HOST:PORT] [--metrics HOST:PORT]\n"
    "                     [--token-file FILE [--auth-reads]] [--insecure]\n"
    "                     [--heartbeat-timeout SECONDS] "
    "[--shutdown-timeout S]\n"
    "                     [--tls-cert FILE --tls-key FILE "
    "[--tls-client-ca FILE]]\n"
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
    "                  random stream, N in 0..18446744073709551615 (default:\n"
    "                  a fresh seed, see fb.seed())\n"
    "  --events FILE   write one JSON object per event (registrations,\n"
    "                  expiries, picks, calls, breaker state changes) to\n"
    "                  FILE, each with its time t; implies --summary\n"
    "  --summary       print calls, outcomes, rejections and time spent in\n"
    "                  each breaker state on stderr at the end\n"
    "  --report FILE   at the end, draw the run's events as a self-contained\n"
    "                  HTML page in FILE (as fusebox report does); implies\n"
    "                  --summary\n"
    "  --swarm-off A,B keep these fault kinds of fb.sim.swarm off (explore\n"
    "                  prints it in the replay of a shrunk seed)\n"
    "  --policy FILE   the policy fb.sim.policy() builds: JSON (fb.policy's\n"
    "                  fields) or Lua returning a policy or its options\n"
    "                  (compare prints it in the replay of a failed run)\n"
    "  --metrics HOST:PORT  (run and serve) serve Prometheus metrics of the\n"
    "                  objects published with fb.export at /metrics (real\n"
    "                  time only; serve publishes its registry as 'serve')\n"
    "  --shutdown-timeout S  (run and serve) on SIGTERM or SIGINT a run\n"
    "                  that serves HTTP stops accepting, answers blocking\n"
    "                  queries, lets requests in flight finish for up to S\n"
    "                  seconds (default 10) and exits 0; past S it closes\n"
    "                  them and exits 1; a second signal exits at once\n"
    "  -h, --help      show this help\n"
    "  --version       show the version\n"
    "\n"
    "fusebox serve: a registry over HTTP + JSON for other processes\n"
    "(register, heartbeat, deregister, discover, blocking queries; see\n"
    "README), on 127.0.0.1:8500 unless --listen says otherwise; prints the\n"
    "address it listens on. script.lua, if given, runs with the registry\n"
    "and the server as its arguments.\n"
    "  --token-file FILE  writes (PUT, DELETE) need 'Authorization: Bearer\n"
    "                  TOKEN', TOKEN being FILE's content (one line): 401\n"
    "                  without it, 403 with another\n"
    "  --auth-reads    GETs need the token too\n"
    "  --insecure      allow a non-loopback --listen without a token\n"
    "                  (anyone who can connect can change the registry)\n"
    "  --heartbeat-timeout SECONDS  an instance not heard from for this\n"
    "                  long is expired (default 30)\n"
    "  --tls-cert FILE --tls-key FILE  serve HTTPS with this certificate\n"
    "                  chain and key (PEM)\n"
    "  --tls-client-ca FILE  clients must present a certificate signed by\n"
    "                  a CA in FILE (mutual TLS)\n"
    "\n"
    "fusebox test runs each scenario file (each .lua file of a directory,\n"
    "in name order; tests/scenarios by default) as its own virtual-time run\n"
    "with a fixed seed (1, or --seed N), prints the TAP plan, one TAP line\n"
    "per scenario and a final 'N passed, N failed' line; a failure shows\n"
    "its virtual time, seed, where it was and the command that replays it.\n"
    "A scenario fails past --max-virtual-time S (default 86400) or after\n"
    "--timeout S wall-clock seconds (default 60; this also stops a loop\n"
    "that never yields); a line '-- fusebox test: --timeout 120' among a\n"
    "file's first comment lines sets its own.\n"
    "\n"
    "fusebox explore runs one scenario for each seed (1..100 unless\n"
    "--seeds says otherwise), each in a process of its own, --jobs at a time\n"
    "(default: the machine's cores), and lists the seeds that failed,\n"
    "earliest in virtual time first (--list N of them, default 10), each with the\n"
    "command that replays it; --stop-at-first stops at the first failure.\n"
    "For the first --shrink N failing seeds (default 1) of a scenario that\n"
    "uses fb.sim.swarm, it turns the seed's fault kinds off one at a time\n"
    "and prints the smallest set that still fails. Limits as fusebox test.\n"
    "\n"
    "fusebox compare runs the scenario under each --policy (at most 8) for\n"
    "each seed (1..20 unless --seeds says otherwise), each run in a process\n"
    "of its own, --jobs at a time, and prints one table: per policy, the\n"
    "success rate, p50/p99/p99.9 latency of the requests made through\n"
    "fb.sim.policy(), the calls offered to each backend (retries and hedges\n"
    "included) and the amplification, rejections by kind and the time\n"
    "breakers spent open, each as the median over the seeds (min-max). The\n"
    "same seeds print the same table. --report draws the first seed's run\n"
    "of each policy on one page, on one time axis. A bad --policy file is\n"
    "an error before any run (exit 2); a failed run is listed with its\n"
    "replay command (exit 1). Limits as fusebox test.\n"
    "\n"
    "fusebox report draws an events file as one HTML page (to stdout, or\n"
    "-o FILE): requests per second by outcome, latency p50/p99, breaker\n"
    "states and registry membership on one time axis, with the command\n"
    "that replays the run. Lines it cannot use are counted on the page\n"
    "and on stderr.\n"
    "\n"
    "exit status: 0 when the run finished (every scenario passed), 1 on an\n"
    "uncaught Lua error (its message and traceback go to stderr) or a\n"
    "failed scenario, 2 on a usage error.\n";

typedef struct options {
  const char *listen;  /* serve: HOST:PORT */
  const char *metrics; /* --metrics HOST:PORT */
  int virtual_time;
  int summary;
  const char *events;
  const char *report;
  int has_seed;
  unsigned long long seed;
  const char *script;
  const char *swarm_off; /* fault kinds fb.sim.swarm keeps off: "a,b" */
  const char *policy;    /* the policy file fb.sim.policy() builds */
  int argi; /* index in argv of the first script argument */
  int has_shutdown_timeout;
  double shutdown_timeout; /* --shutdown-timeout */
} options;

int fb_cli_usage_error(const char *fmt, const char *what) {
  fprintf(stderr, "fusebox: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (see fusebox --help)\n");
  return 2;
}

int fb_cli_parse_seed(const char *s, unsigned long long *out) {
  char *end;
  errno = 0;
  if (*s < '0' || *s > '9')
    return -1;
  *out = strtoull(s, &end, 10);
  return (errno || *end) ? -1 : 0;
}

/* --shutdown-timeout S: 0..FB_MAX_SLEEP seconds (0: no waiting). */
static int parse_shutdown_timeout(const char *s, options *o) {
  char *end;
  double v = strtod(s, &end);
  if (*end || end == s || !(v >= 0 && v <= 1e9))
    return fb_cli_usage_error("bad --shutdown-timeout '%s': want a number of "
                       "seconds in 0..1e9", s);
  o->shutdown_timeout = v;
  o->has_shutdown_timeout = 1;
  return 0;
}

static int parse_run(int argc, char **argv, options *o) {
  int i = 2;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--virtual-time") == 0) {
      o->virtual_time = 1;
    } else if (strcmp(argv[i], "--swarm-off") == 0) {
      if (i + 1 >= argc)
        return fb_cli_usage_error("%s needs fault kinds, as a,b", "--swarm-off");
      o->swarm_off = argv[++i];
    } else if (strcmp(argv[i], "--policy") == 0) {
      if (i + 1 >= argc)
        return fb_cli_usage_error("%s needs a file name", "--policy");
      o->policy = argv[++i];
    } else if (strcmp(argv[i], "--seed") == 0) {
      if (i + 1 >= argc)
        return fb_cli_usage_error("%s needs a value", "--seed");
      if (fb_cli_parse_seed(argv[++i], &o->seed) < 0)
        return fb_cli_usage_error(
            "bad seed '%s': want an integer in 0..18446744073709551615",
            argv[i]);
      o->has_seed = 1;
    } else if (strcmp(argv[i], "--events") == 0) {
      if (i + 1 >= argc)
        return fb_cli_usage_error("%s needs a file name", "--events");
      o->events = argv[++i];
    } else if (strcmp(argv[i], "--report") == 0) {
      if (i + 1 >= argc)
        return fb_cli_usage_error("%s needs a file name", "--report");
      o->report = argv[++i];
    } else if (strcmp(argv[i], "--summary") == 0) {
      o->summary = 1;
    } else if (strcmp(argv[i], "--metrics") == 0) {
      if (i + 1 >= argc)
        return fb_cli_usage_error("%s needs HOST:PORT", "--metrics");
      o->metrics = argv[++i];
    } else if (strcmp(argv[i], "--shutdown-timeout") == 0) {
      if (i + 1 >= argc)
        return fb_cli_usage_error("%s needs a number of seconds",
                           "--shutdown-timeout");
      int rc = parse_shutdown_timeout(argv[++i], o);
      if (rc)
        return rc;
    } else if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else {
      return fb_cli_usage_error("unknown option '%s'", argv[i]);
    }
  }
  if (o->metrics && o->virtual_time)
    return fb_cli_usage_error("%s: metrics are served in real time only",
                       "--metrics with --virtual-time");
  if (i >= argc)
    return fb_cli_usage_error("%s: no script given", "run");
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

/* Returns a new Lua state with the fusebox module on top of its stack,
 * or NULL with the error printed. */
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
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  return L;
}

/* Pushes fb.run's options table for o. */
static void push_run_options(lua_State *L, const options *o) {
  lua_createtable(L, 0, 5);
  lua_pushboolean(L, o->virtual_time);
  lua_setfield(L, -2, "virtual_time");
  if (o->has_seed) { /* as digits: a double would round seeds above 2^53 */
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", o->seed);
    lua_pushstring(L, seed);
    lua_setfield(L, -2, "seed");
  }
  if (o->events) {
    lua_pushstring(L, o->events);
    lua_setfield(L, -2, "events");
  }
  lua_pushboolean(L, o->summary || o->events || o->report);
  lua_setfield(L, -2, "summary");
  lua_pushstring(L, o->script);
  lua_setfield(L, -2, "script");
  lua_pushboolean(L, !o->virtual_time); /* a run that serves stops cleanly */
  lua_setfield(L, -2, "shutdown_on_signals");
  if (o->has_shutdown_timeout) {
    lua_pushnumber(L, o->shutdown_timeout);
    lua_setfield(L, -2, "shutdown_timeout");
  }
}

static int check_script(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "fusebox: cannot open script '%s': %s\n", path,
            strerror(errno));
    return 2;
  }
  fclose(f);
  return 0;
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

/* Starts the metrics endpoint before the run, so that a port in use is
 * one line and exit 2, not a run's traceback. Leaves the server on the
 * stack (it must live as long as the run); returns 0 or the exit status. */
static const char start_metrics[] =
    "local host, port = ...\n"
    "local m, err = require('fusebox').serve_metrics { host = host, port = "
    "port }\n"
    "if not m then return nil, string.format('cannot serve metrics on %s:%d: "
    "%s',"
    " host, port, err) end\n"
    "io.stdout:write(string.format('fusebox: metrics on "
    "http://%s:%d/metrics\\n',"
    " host, m:port()))\n"
    "io.stdout:flush()\n"
    "return m\n";

static int open_metrics(lua_State *L, const char *spec) {
  char host[256];
  int port;
  if (parse_listen(spec, host, sizeof host, &port) < 0)
    return fb_cli_usage_error("bad --metrics '%s': want HOST:PORT", spec);
  luaL_loadbuffer(L, start_metrics, sizeof start_metrics - 1, "=metrics");
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  if (lua_pcall(L, 2, 2, 0) != 0) {
    fprintf(stderr, "fusebox: %s\n", lua_tostring(L, -1));
    return 1;
  }
  if (lua_isnil(L, -2)) {
    fprintf(stderr, "fusebox: %s\n", lua_tostring(L, -1));
    return 2;
  }
  lua_pop(L, 1);
  return 0;
}

/* Runs the script of o in a new Lua state; returns the exit status. */
static int run_script(int argc, char **argv, const options *o) {
  lua_State *L = new_state();
  if (!L)
    return 1;
  int rc = o->metrics ? open_metrics(L, o->metrics) : 0;
  if (rc)
    goto done;
  rc = 1;
  if (o->swarm_off) {
    lua_pushstring(L, o->swarm_off);
    lua_setfield(L, LUA_REGISTRYINDEX, FB_CLI_SWARM_OFF);
  }
  if (o->policy) {
    lua_pushstring(L, o->policy);
    lua_setfield(L, LUA_REGISTRYINDEX, FB_CLI_POLICY);
  }
  lua_getfield(L, 1, "run");
  if (luaL_loadfile(L, o->script) != 0)
    goto error;
  push_run_options(L, o);
  int nargs = push_args(L, argc, argv, o);
  if (lua_pcall(L, 2 + nargs, 0, 0) != 0)
    goto error;
  rc = 0;
  goto done;
error:
  fprintf(stderr, "%s\n", lua_tostring(L, -1) ? lua_tostring(L, -1)
                                               : "(error object is not a string)");
done:
  lua_close(L);
  return rc;
}

/* --report without --events: the events go to a temporary file, removed
 * once the page is drawn. Returns its descriptor, or -1. */
static int temp_events(char *path, size_t size) {
  const char *dir = getenv("TMPDIR");
  snprintf(path, size, "%s/fusebox-events-XXXXXX.jsonl",
           dir && *dir ? dir : "/tmp");
  return mkstemps(path, 6);
}

static int run(int argc, char **argv) {
  options o = {0};
  char tmp[4096] = "";
  int rc = parse_run(argc, argv, &o);
  if (rc || (rc = check_script(o.script)))
    return rc;
  if (o.report && !o.events) {
    int fd = temp_events(tmp, sizeof tmp);
    if (fd < 0) {
      fprintf(stderr, "fusebox: cannot create a temporary events file '%s': "
                      "%s\n", tmp, strerror(errno));
      return 1;
    }
    close(fd);
    o.events = tmp;
  }
  rc = run_script(argc, argv, &o);
  /* a failed run is drawn too: that is when the page helps most */
  if (o.report && fb_report_file(o.events, *tmp ? "(a temporary file, removed)" : NULL,
                                  o.report, stderr) < 0)
    rc = 1;
  if (*tmp)
    remove(tmp);
  return rc;
}

/* ---------------------------------------------------------- fusebox report */

static int report(int argc, char **argv) {
  const char *out = "-", *in = NULL;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) {
      if (i + 1 >= argc)
        return fb_cli_usage_error("%s needs a file name", argv[i]);
      out = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return fb_cli_usage_error("unknown option '%s'", argv[i]);
    } else if (in) {
      return fb_cli_usage_error("report: one events file, got also '%s'", argv[i]);
    } else {
      in = argv[i];
    }
  }
  if (!in)
    return fb_cli_usage_error("%s: no events file given", "report");
  return fb_report_file(in, NULL, out, stderr) < 0 ? 1 : 0;
}

/* ------------------------------------------------------------ fusebox test */

typedef struct paths {
  char **v;
  size_t n, cap;
} paths;

static int paths_add(paths *p, const char *s) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    char **v = realloc(p->v, cap * sizeof *v);
    if (!v)
      return -1;
    p->v = v;
    p->cap = cap;
  }
  if (!(p->v[p->n] = strdup(s)))
    return -1;
  p->n++;
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds path, or the .lua files of directory path in name order. */
static int collect(paths *p, const char *path) {
  DIR *d = opendir(path);
  if (!d)
    return errno == ENOTDIR ? paths_add(p, path) : -1;
  size_t first = p->n;
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 5 || e->d_name[0] == '.' ||
        strcmp(e->d_name + len - 4, ".lua") != 0)
      continue;
    char *full = malloc(strlen(path) + len + 2);
    if (!full) {
      rc = -1;
      break;
    }
    sprintf(full, "%s/%s", path, e->d_name);
    rc = paths_add(p, full);
    free(full);
  }
  closedir(d);
  if (p->n > first) /* p->v is NULL while empty */
    qsort(p->v + first, p->n - first, sizeof *p->v, by_name);
  return rc;
}

/* print() inside a scenario: TAP comment lines, so output cannot be
 * mistaken for test results. */
static int tap_print(lua_State *L) {
  int n = lua_gettop(L);
  fputs("# ", stdout);
  for (int i = 1; i <= n; i++) {
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    for (const char *s = lua_tostring(L, -1); s && *s; s++) {
      putchar(*s);
      if (*s == '\n')
        fputs("# ", stdout);
    }
    lua_pop(L, 1);
    if (i < n)
      putchar('\t');
  }
  putchar('\n');
  return 0;
}

/* Prints msg as TAP comment lines. */
static void print_comment(const char *msg) {
  fputs("#   ", stdout);
  for (; *msg; msg++) {
    putchar(*msg);
    if (*msg == '\n')
      fputs("#   ", stdout);
  }
  putchar('\n');
}

static int parse_seconds(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !(v > 0) || isinf(v))
    return -1;
  *out = v;
  return 0;
}

int fb_cli_parse_limit(int argc, char **argv, int *i, fb_cli_limits *l,
                       char *err, size_t cap) {
  double *v = strcmp(argv[*i], "--max-virtual-time") == 0 ? &l->max_virtual_time
              : strcmp(argv[*i], "--timeout") == 0        ? &l->timeout
                                                          : NULL;
  if (!v)
    return 1;
  if (*i + 1 >= argc || parse_seconds(argv[*i + 1], v) < 0) {
    snprintf(err, cap, "%s needs a positive number of seconds, got '%s'",
             argv[*i], *i + 1 < argc ? argv[*i + 1] : "");
    return -1;
  }
  (*i)++;
  return 0;
}

#define HEADER_TAG "-- fusebox test:"

/* Reads the per-file limits from the leading comment lines of path into
 * l; returns 0, or -1 with the message in err. */
static int file_limits(const char *path, fb_cli_limits *l, char *err,
                       size_t cap) {
  FILE *f = fopen(path, "r");
  char line[512];
  int rc = 0;
  if (!f)
    return 0; /* the run says why it cannot load the file */
  while (rc == 0 && fgets(line, sizeof line, f) &&
         (strncmp(line, "--", 2) == 0 || strncmp(line, "#!", 2) == 0)) {
    if (strncmp(line, HEADER_TAG, sizeof HEADER_TAG - 1) != 0)
      continue;
    char *argv[16], *save;
    int argc = 0;
    for (char *t = strtok_r(line + sizeof HEADER_TAG - 1, " \t\r\n", &save);
         t && argc < 16; t = strtok_r(NULL, " \t\r\n", &save))
      argv[argc++] = t;
    char why[200] = "";
    for (int i = 0; rc == 0 && i < argc; i++)
      if ((rc = fb_cli_parse_limit(argc, argv, &i, l, why, sizeof why)) == 1) {
        snprintf(why, sizeof why, "unknown option '%s'", argv[i]);
        rc = -1;
      }
    if (rc)
      snprintf(err, cap, "its '" HEADER_TAG "' line: %s", why);
  }
  fclose(f);
  return rc;
}

/* The wall-clock limit. A count hook (lua_sethook) is never called inside
 * JIT-compiled code, so `while not ready do end` would not see one; the
 * LuaJIT profiler in line mode does stop compiled loops at a safe point.
 * Its sampler (every 100 ms of CPU time) compares the clock with the
 * deadline and, once past it, raises in the running coroutine, at its
 * line. Raising there leaves the profiler off, so a count hook takes
 * over for a loop that catches the error, and an alarm ends the process
 * (after printing the TAP line) if even that cannot run: a pcall around
 * a compiled loop. The cost: the sampler, and a flag test per source
 * line in compiled code (not measurable on tests/bench/bench_sim.lua).
 * One profiler per process: one scenario at a time. */
static struct {
  double deadline; /* CLOCK_MONOTONIC seconds */
  double timeout;
  char last_words[1024]; /* the alarm's TAP lines */
  size_t nlast;
} watchdog;


/* Raises the wall-clock error at the running function's line. */
static int over_time(lua_State *L) {
  char where[256] = "", secs[FB_SECONDS_BUF];
  lua_Debug here;
  if (lua_getstack(L, 0, &here) && lua_getinfo(L, "Sl", &here) &&
      here.currentline > 0)
    snprintf(where, sizeof where, "%s:%d: ", here.short_src, here.currentline);
  lua_pushfstring(L,
                  "%swall-clock limit of %s s reached (a loop that never "
                  "yields?)",
                  where, fb_format_seconds(secs, watchdog.timeout));
  return lua_error(L);
}

/* Whether the scenario's run is still going: once it ended (it failed,
 * and fb.run's Lua frame is raising its error on to run_scenario's
 * pcall) there is nothing left to stop, and raising again would replace
 * that error. */
static int scenario_running(lua_State *L) {
  if (fb_runtime_open(L)->running)
    return 1;
  lua_sethook(L, NULL, 0, 0);
  return 0;
}

static void over_time_again(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (scenario_running(L))
    over_time(L);
}

static void on_sample(void *data, lua_State *L, int samples, int vmstate) {
  (void)data, (void)samples, (void)vmstate;
  if (fb_monotonic_now() < watchdog.deadline || !scenario_running(L))
    return;
  lua_sethook(L, over_time_again, LUA_MASKCOUNT, 1);
  over_time(L);
}

static void on_alarm(int sig) {
  (void)sig;
  if (write(STDOUT_FILENO, watchdog.last_words, watchdog.nlast) < 0)
    _exit(1);
  _exit(1);
}

/* Arms the limits for scenario n; the alarm fires 5 s after the sampler
 * should have. */
static void watch(int n, const char *path, unsigned long long seed,
                  double timeout, lua_State *L) {
  char secs[FB_SECONDS_BUF];
  watchdog.timeout = timeout;
  watchdog.deadline = fb_monotonic_now() + timeout;
  int len = snprintf(watchdog.last_words, sizeof watchdog.last_words,
                     "not ok %d - %s\n#   wall-clock limit of %s s reached, "
                     "in code it cannot interrupt (a pcall around a loop that "
                     "never yields?); seed %llu\n#   replay: fusebox run "
                     "--virtual-time --seed %llu %s\nBail out! %s cannot be "
                     "stopped\n",
                     n, path, fb_format_seconds(secs, timeout), seed, seed,
                     path, path);
  watchdog.nlast = len < 0 ? 0
                   : (size_t)len < sizeof watchdog.last_words
                       ? (size_t)len
                       : sizeof watchdog.last_words - 1;
  signal(SIGALRM, on_alarm);
  /* The profiler restores this when it stops: a SIGPROF still in flight
   * then must not end the process (valgrind delays signals enough). */
  signal(SIGPROF, SIG_IGN);
  alarm(timeout + 5 < 1e6 ? (unsigned)ceil(timeout) + 5 : 1000000u);
  luaJIT_profile_start(L, "li100", on_sample, NULL);
}

static void unwatch(lua_State *L) {
  alarm(0);
  luaJIT_profile_stop(L);
  lua_sethook(L, NULL, 0, 0);
}

void fb_cli_scenario(int n, const char *path, unsigned long long seed,
                     fb_cli_limits lim, lua_CFunction print,
                     const fb_cli_extra *x, fb_cli_result *r) {
  static const fb_cli_extra none;
  x = x ? x : &none;
  options o = {.virtual_time = 1, .has_seed = 1, .seed = seed, .script = path,
               .events = x->events, .summary = x->report != NULL};
  r->ok = r->ran = 0;
  r->vtime = 0;
  r->error[0] = r->swarm[0] = 0;
  lua_State *L = file_limits(path, &lim, r->error, sizeof r->error) == 0
                     ? new_state()
                     : NULL;
  if (!L) {
    if (!r->error[0])
      snprintf(r->error, sizeof r->error, "cannot create a Lua state");
    return;
  }
  lua_pushcfunction(L, print);
  lua_setglobal(L, "print");
  if (x->swarm_off) {
    lua_pushstring(L, x->swarm_off);
    lua_setfield(L, LUA_REGISTRYINDEX, FB_CLI_SWARM_OFF);
  }
  if (x->policy) {
    lua_pushstring(L, x->policy);
    lua_setfield(L, LUA_REGISTRYINDEX, FB_CLI_POLICY);
  }
  if (x->report) { /* fb.run's sink keeps it (fb_runtime_events_begin) */
    fb_runtime *rt = fb_runtime_open(L);
    rt->events.tap = fb_report_tap;
    rt->events.tap_arg = x->report;
  }
  int fb = lua_gettop(L);
  lua_getfield(L, fb, "run");
  r->ran = 1;
  r->ok = luaL_loadfile(L, path) == 0;
  if (r->ok) {
    push_run_options(L, &o);
    lua_pushnumber(L, lim.max_virtual_time);
    lua_setfield(L, -2, "max_virtual_time");
    watch(n, path, seed, lim.timeout, L);
    r->ok = lua_pcall(L, 2, 0, 0) == 0;
    unwatch(L);
  }
  if (!r->ok) {
    const char *msg = lua_tostring(L, -1);
    snprintf(r->error, sizeof r->error, "%s",
             msg ? msg : "(error object is not a string)");
  }
  lua_getfield(L, fb, "now");
  lua_call(L, 0, 1);
  r->vtime = lua_tonumber(L, -1);
  lua_getfield(L, LUA_REGISTRYINDEX, FB_CLI_SWARM_ON);
  snprintf(r->swarm, sizeof r->swarm, "%s",
           lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
  lua_close(L);
}

/* A policy file checked in the parent has no watchdog: the interpreter
 * (JIT off, so the count hook sees every loop) stops it after this many
 * wall-clock seconds. */
#define CHECK_POLICY_SECONDS 10.0
static double check_deadline;

static void check_policy_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (fb_monotonic_now() > check_deadline)
    luaL_error(L, "building the policy took longer than %d s (a loop that "
                  "never ends?)", (int)CHECK_POLICY_SECONDS);
}

int fb_cli_check_policy(const char *path, char *err, size_t cap) {
  lua_State *L = new_state();
  if (!L) {
    snprintf(err, cap, "cannot create a Lua state");
    return -1;
  }
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  check_deadline = fb_monotonic_now() + CHECK_POLICY_SECONDS;
  lua_sethook(L, check_policy_hook, LUA_MASKCOUNT, 10000);
  lua_getfield(L, 1, "sim");
  lua_getfield(L, -1, "policy_file");
  lua_pushstring(L, path);
  int rc = lua_pcall(L, 1, 0, 0) == 0 ? 0 : -1;
  if (rc) {
    const char *msg = lua_tostring(L, -1);
    size_t n = msg ? strcspn(msg, "\n") : 0;
    snprintf(err, cap, "%.*s", (int)n, msg ? msg : "(error object is not a string)");
  }
  lua_sethook(L, NULL, 0, 0);
  lua_close(L);
  return rc;
}

/* Runs one scenario as TAP line n; returns 1 if it passed. */
static int run_scenario(int n, const char *path, unsigned long long seed,
                        fb_cli_limits lim) {
  fb_cli_result r;
  char secs[FB_SECONDS_BUF];
  fb_cli_scenario(n, path, seed, lim, tap_print, NULL, &r);
  if (r.ok) {
    printf("ok %d - %s\n", n, path);
    return 1;
  }
  printf("not ok %d - %s\n", n, path);
  if (!r.ran) { /* its limits line is bad, or no Lua state */
    print_comment(r.error);
    return 0;
  }
  printf("#   failed at t=%s (virtual time), seed %llu:\n",
         fb_format_seconds(secs, r.vtime), seed);
  print_comment(r.error);
  printf("#   replay: fusebox run --virtual-time --seed %llu %s\n", seed,
         path);
  return 0;
}

static int test(int argc, char **argv) {
  unsigned long long seed = 1;
  fb_cli_limits lim = {FB_CLI_MAX_VIRTUAL_TIME, FB_CLI_TIMEOUT};
  char err[256];
  int i = 2;
  for (; i < argc && argv[i][0] == '-'; i++) {
    int rc = fb_cli_parse_limit(argc, argv, &i, &lim, err, sizeof err);
    if (rc < 0)
      return fb_cli_usage_error("%s", err);
    if (rc == 0)
      continue;
    if (strcmp(argv[i], "--seed") != 0)
      return fb_cli_usage_error("unknown option '%s'", argv[i]);
    if (i + 1 >= argc || fb_cli_parse_seed(argv[++i], &seed) < 0)
      return fb_cli_usage_error("--seed needs an integer in 0..%s",
                         "18446744073709551615");
  }
  paths p = {0};
  const char *dflt[] = {"tests/scenarios"};
  char **roots = i < argc ? argv + i : (char **)dflt;
  int nroots = i < argc ? argc - i : 1;
  int rc = 0;
  for (int k = 0; k < nroots && rc == 0; k++) {
    size_t before = p.n;
    if (collect(&p, roots[k]) < 0) {
      fprintf(stderr, "fusebox: cannot read '%s': %s\n", roots[k],
              strerror(errno));
      rc = 2;
    } else if (p.n == before) {
      fprintf(stderr, "fusebox: no scenarios (.lua files) in '%s'\n", roots[k]);
      rc = 2;
    }
  }
  size_t passed = 0;
  if (rc == 0) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* a killed run leaves what it printed */
    printf("1..%zu\n", p.n);
    for (size_t k = 0; k < p.n; k++)
      passed += (size_t)run_scenario((int)k + 1, p.v[k], seed, lim);
    printf("%zu passed, %zu failed\n", passed, p.n - passed);
    rc = passed == p.n ? 0 : 1;
  }
  for (size_t k = 0; k < p.n; k++)
    free(p.v[k]);
  free(p.v);
  return rc;
}

/* The main coroutine of `fusebox serve`: the API, then the script. The
 * served registry is exported as "serve", so --metrics shows it. An
 * address it cannot listen on goes in failed.error, for one line and
 * exit 2 rather than a run's traceback. */
static const char serve_main[] =
    "local failed, host, port, token, auth_reads, insecure, timeout, tls, script = ...\n"
    "local fb = require 'fusebox'\n"
    "local reg = timeout and fb.registry { heartbeat_timeout = timeout }\n"
    "local made, api, err = pcall(fb.serve_registry, { host = host, port = port,\n"
    "  token = token, auth_reads = auth_reads, insecure = insecure, registry = reg,\n"
    "  tls = tls })\n"
    "if not made then\n" /* a TLS file it cannot use */
    "  failed.error = tostring(api):match('%((tls.*)%)$') or tostring(api)\n"
    "  return\n"
    "elseif not api then\n"
    "  failed.error = string.format('cannot listen on %s:%d: %s', host, port, err)\n"
    "  return\n"
    "end\n"
    "fb.export('serve', api.registry)\n"
    "io.stdout:write(string.format('fusebox: registry API on %s://%s:%d/v1/"
    "services\\n', tls and 'https' or 'http', host, api:port()))\n"
    "io.stdout:flush()\n"
    "if script then assert(loadfile(script))(api.registry, api, select(10, ...)) end\n";

#define TOKEN_MAX 4096

/* Reads the one-line token of path into buf (TOKEN_MAX + 1 bytes); 0, or
 * 2 after saying why. A trailing newline (and spaces) is not the token. */
static int read_token(const char *path, char *buf) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "fusebox: cannot read token file '%s': %s\n", path,
            strerror(errno));
    return 2;
  }
  size_t n = fread(buf, 1, TOKEN_MAX + 1, f);
  fclose(f);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                   buf[n - 1] == ' ' || buf[n - 1] == '\t'))
    n--;
  if (n > TOKEN_MAX) {
    fprintf(stderr, "fusebox: token file '%s' is longer than %d bytes\n",
            path, TOKEN_MAX);
    return 2;
  }
  buf[n] = 0;
  for (size_t k = 0; k < n; k++)
    if (buf[k] < 0x21 || buf[k] > 0x7e) {
      fprintf(stderr, "fusebox: token file '%s' must hold one token of "
                      "printable characters without spaces\n", path);
      return 2;
    }
  if (n == 0) {
    fprintf(stderr, "fusebox: token file '%s' is empty\n", path);
    return 2;
  }
  return 0;
}

/* The addresses fb.serve_registry takes as loopback (serve.lua). */
static int is_loopback(const char *host) {
  if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
    return 1;
  unsigned a, b, c, d;
  char end;
  return sscanf(host, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &end) == 4 &&
         a == 127;
}

static int serve(int argc, char **argv) {
  options o = {.listen = "127.0.0.1:8500"};
  const char *token_file = NULL;
  const char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
  int auth_reads = 0, insecure = 0;
  double timeout = 0;
  int i = 2;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
      o.listen = argv[++i];
    else if (strcmp(argv[i], "--metrics") == 0 && i + 1 < argc)
      o.metrics = argv[++i];
    else if (strcmp(argv[i], "--token-file") == 0 && i + 1 < argc)
      token_file = argv[++i];
    else if (strcmp(argv[i], "--auth-reads") == 0)
      auth_reads = 1;
    else if (strcmp(argv[i], "--insecure") == 0)
      insecure = 1;
    else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc)
      tls_cert = argv[++i];
    else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc)
      tls_key = argv[++i];
    else if (strcmp(argv[i], "--tls-client-ca") == 0 && i + 1 < argc)
      tls_ca = argv[++i];
    else if (strcmp(argv[i], "--shutdown-timeout") == 0 && i + 1 < argc) {
      int rc = parse_shutdown_timeout(argv[++i], &o);
      if (rc)
        return rc;
    }
    else if (strcmp(argv[i], "--heartbeat-timeout") == 0 && i + 1 < argc) {
      char *end;
      timeout = strtod(argv[++i], &end);
      if (*end || end == argv[i] || !isfinite(timeout) || !(timeout > 0))
        return fb_cli_usage_error("bad --heartbeat-timeout '%s': want a positive "
                           "number of seconds", argv[i]);
    } else
      return fb_cli_usage_error("unknown option or missing value '%s'", argv[i]);
  }
  char host[256];
  int port;
  if (parse_listen(o.listen, host, sizeof host, &port) < 0)
    return fb_cli_usage_error("bad --listen '%s': want HOST:PORT", o.listen);
  if (auth_reads && !token_file)
    return fb_cli_usage_error("%s needs --token-file", "--auth-reads");
  if (!tls_cert != !tls_key || (tls_ca && !tls_cert))
    return fb_cli_usage_error("%s", "--tls-cert and --tls-key go together (and "
                                    "--tls-client-ca needs them)");
  static char token[TOKEN_MAX + 1];
  if (token_file && read_token(token_file, token))
    return 2;
  if (!token_file && !is_loopback(host)) {
    if (!insecure) {
      fprintf(stderr, "fusebox: refusing to serve the registry on %s without "
                      "a token: give --token-file FILE, or --insecure\n", host);
      return 2;
    }
    fprintf(stderr, "fusebox: warning: serving the registry on %s without a "
                    "token (--insecure): anyone who can connect can change "
                    "it\n", host);
  }
  o.script = i < argc ? argv[i] : NULL;
  o.argi = i + 1;
  int rc = o.script ? check_script(o.script) : 0;
  if (rc)
    return rc;
  signal(SIGPIPE, SIG_IGN); /* a client that goes mid-answer is an error value */
  lua_State *L = new_state();
  if (!L)
    return 1;
  rc = o.metrics ? open_metrics(L, o.metrics) : 0;
  if (rc) {
    lua_close(L);
    return rc;
  }
  lua_newtable(L); /* serve_main's failed */
  int failed = lua_gettop(L);
  lua_getfield(L, 1, "run");
  luaL_loadbuffer(L, serve_main, sizeof serve_main - 1, "=serve");
  push_run_options(L, &o);
  lua_pushvalue(L, failed);
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  if (token_file)
    lua_pushstring(L, token);
  else
    lua_pushnil(L);
  lua_pushboolean(L, auth_reads);
  lua_pushboolean(L, insecure);
  if (timeout > 0)
    lua_pushnumber(L, timeout);
  else
    lua_pushnil(L);
  if (tls_cert) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, tls_cert);
    lua_setfield(L, -2, "cert_file");
    lua_pushstring(L, tls_key);
    lua_setfield(L, -2, "key_file");
    if (tls_ca) {
      lua_pushstring(L, tls_ca);
      lua_setfield(L, -2, "ca_file");
    }
  } else {
    lua_pushnil(L);
  }
  if (o.script)
    lua_pushstring(L, o.script);
  else
    lua_pushnil(L);
  int nargs = 9;
  for (int k = o.argi; o.script && k < argc; k++, nargs++)
    lua_pushstring(L, argv[k]);
  if (lua_pcall(L, 2 + nargs, 0, 0) != 0) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    rc = 1;
  } else {
    lua_getfield(L, failed, "error");
    if (lua_isstring(L, -1)) {
      fprintf(stderr, "fusebox: %s\n", lua_tostring(L, -1));
      rc = 2;
    }
  }
  lua_close(L);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2)
    return fb_cli_usage_error("%s", "no command given");
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
  if (strcmp(argv[1], "test") == 0)
    return test(argc, argv);
  if (strcmp(argv[1], "report") == 0)
    return report(argc, argv);
  if (strcmp(argv[1], "explore") == 0)
    return fb_cli_explore(argc, argv);
  if (strcmp(argv[1], "compare") == 0)
    return fb_cli_compare(argc, argv);
  return fb_cli_usage_error("unknown command '%s'", argv[1]);
}
