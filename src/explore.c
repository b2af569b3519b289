/*
 * explore.c -- fusebox explore: one scenario over many seeds, across
 * processes, listing the seeds that fail fastest-first with the command
 * that replays each, and shrinking a failing seed's fault mix.
 *
 * Each seed runs in a child process of its own (fork, then a fresh Lua
 * state), at most --jobs at a time: a seed that crashes, leaks or hangs
 * in code the wall-clock limit cannot interrupt costs only its child,
 * and the parent, which holds no Lua state, forks cheaply. A child sends
 * its result as one fixed-size record on a pipe (below PIPE_BUF: one
 * atomic write) and exits; a child that ends without one is a failed
 * seed, with what ended it.
 *
 * Shrinking (swarm testing, as TigerBeetle's VOPR does it): a scenario
 * that asks fb.sim.swarm{...} for its fault kinds gets a different mix
 * per seed. For a failing seed, the same seed is run again with each kind
 * it had on switched off in turn (--swarm-off); a kind whose absence
 * still fails stays off. What is left is a set that fails where removing
 * any one kind (one pass, greedy) does not.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <lua.h>

#include "events.h"
#include "fusebox.h"

typedef struct outcome {
  unsigned long long seed;
  double wall;     /* seconds the child took */
  fb_cli_result r; /* r.ran 0 and "..." when the child gave no result */
} outcome;

_Static_assert(sizeof(outcome) < PIPE_BUF, "a result is one atomic write");

typedef struct explore_opts {
  const char *path;
  unsigned long long first, last; /* seeds first..last */
  int jobs;
  int stop_at_first;
  int list;   /* failing seeds printed */
  int shrink; /* failing seeds shrunk */
  fb_cli_limits lim;
} explore_opts;


/* A scenario's print() under explore: thousands of runs, so discarded. */
static int quiet_print(lua_State *L) {
  (void)L;
  return 0;
}

/* --------------------------------------------------------- children */

typedef struct child {
  pid_t pid;
  int fd; /* read end of its pipe */
  unsigned long long seed;
  double started;
} child;

/* Forks a child that runs seed (with the kinds in off kept off) and
 * writes its outcome to a pipe; returns 0, or -1 with errno. */
static int start(child *c, const explore_opts *o, unsigned long long seed,
                 const char *off) {
  int p[2];
  if (pipe(p) < 0)
    return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return -1;
  }
  if (pid == 0) {
    close(p[0]);
    int null = open("/dev/null", O_WRONLY); /* the watchdog's last words */
    if (null >= 0)
      dup2(null, STDOUT_FILENO);
    outcome out = {.seed = seed};
    double t0 = fb_monotonic_now();
    fb_cli_extra x = {.swarm_off = off};
    fb_cli_scenario(1, o->path, seed, o->lim, quiet_print, &x, &out.r);
    out.wall = fb_monotonic_now() - t0;
    ssize_t n = write(p[1], &out, sizeof out);
    _exit(n == (ssize_t)sizeof out ? 0 : 3);
  }
  close(p[1]);
  *c = (child){pid, p[0], seed, fb_monotonic_now()};
  return 0;
}

/* Collects the child that ended (its wait status in status) into *out. */
static void collect_child(child *c, int status, outcome *out) {
  ssize_t n = read(c->fd, out, sizeof *out);
  close(c->fd);
  if (n == (ssize_t)sizeof *out && out->seed == c->seed)
    return;
  memset(out, 0, sizeof *out);
  out->seed = c->seed;
  out->wall = fb_monotonic_now() - c->started;
  out->r.ran = 1;
  if (WIFSIGNALED(status))
    snprintf(out->r.error, sizeof out->r.error,
             "the run ended on signal %d (%s) without a result",
             WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(out->r.error, sizeof out->r.error,
             "the run ended with exit status %d without a result (a "
             "wall-clock limit in code it cannot interrupt?)",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Waits for one of the n running children; moves it out of kids and
 * returns its outcome in *out. */
static void reap_one(child *kids, int *n, outcome *out) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, 0)) < 0 && errno == EINTR)
    ;
  for (int k = 0; k < *n; k++)
    if (kids[k].pid == pid) {
      collect_child(&kids[k], status, out);
      kids[k] = kids[--*n];
      return;
    }
  memset(out, 0, sizeof *out); /* not ours: never happens */
  out->r.ok = 1;
}

/* Runs one seed to the end in a child; the outcome in *out. */
static int run_one(const explore_opts *o, unsigned long long seed,
                   const char *off, outcome *out) {
  child c;
  int n = 1;
  if (start(&c, o, seed, off) < 0)
    return -1;
  reap_one(&c, &n, out);
  return 0;
}

/* ---------------------------------------------------------- failures */

typedef struct failures {
  outcome *v;
  size_t n, cap;
} failures;

static int keep(failures *f, const outcome *o) {
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 16;
    outcome *v = realloc(f->v, cap * sizeof *v);
    if (!v)
      return -1;
    f->v = v;
    f->cap = cap;
  }
  f->v[f->n++] = *o;
  return 0;
}

/* Fastest to fail first: the earliest in virtual time (the shortest run
 * to replay and read), then the quickest on the wall clock, the seed. */
static int fastest_first(const void *a, const void *b) {
  const outcome *x = a, *y = b;
  if (x->r.vtime != y->r.vtime)
    return x->r.vtime < y->r.vtime ? -1 : 1;
  if (x->wall != y->wall)
    return x->wall < y->wall ? -1 : 1;
  return (x->seed > y->seed) - (x->seed < y->seed);
}

/* The error's first line, at most 300 characters, for a one-line list. */
static void first_line(const char *s, char *out, size_t cap) {
  size_t n = strcspn(s, "\n");
  if (n >= cap)
    n = cap - 1;
  memcpy(out, s, n);
  out[n] = 0;
}

static void print_failure(const explore_opts *o, const outcome *f,
                          const char *off) {
  char secs[FB_SECONDS_BUF], line[300];
  first_line(f->r.error, line, sizeof line);
  printf("seed %llu: failed at t=%s (virtual) in %.0f ms: %s\n", f->seed,
         fb_format_seconds(secs, f->r.vtime), f->wall * 1e3, line);
  if (f->r.swarm[0])
    printf("  faults on: %s\n", f->r.swarm);
  printf("  replay: fusebox run --virtual-time --seed %llu%s%s %s\n", f->seed,
         off && *off ? " --swarm-off " : "", off && *off ? off : "", o->path);
}

/* Appends kind to the comma list off (of cap bytes). */
static void add_kind(char *off, size_t cap, const char *kind, size_t len) {
  size_t n = strlen(off);
  if (n + (n > 0) + len + 1 > cap)
    return;
  if (n)
    off[n++] = ',';
  memcpy(off + n, kind, len);
  off[n + len] = 0;
}

/* Shrinks failing seed f: each kind it had on, switched off in turn,
 * stays off while the seed still fails. */
static void shrink(const explore_opts *o, const outcome *f) {
  char off[sizeof f->r.swarm] = "", needed[sizeof f->r.swarm] = "";
  const char *k = f->r.swarm;
  int runs = 0;
  while (*k) {
    size_t len = strcspn(k, ",");
    char trial[sizeof off];
    memcpy(trial, off, sizeof off);
    add_kind(trial, sizeof trial, k, len);
    outcome t;
    if (run_one(o, f->seed, trial, &t) == 0 && (runs++, !t.r.ok))
      memcpy(off, trial, sizeof off); /* not needed for the failure */
    else
      add_kind(needed, sizeof needed, k, len);
    k += len + (k[len] == ',');
  }
  printf("shrunk seed %llu (%d runs): fails with %s%s\n", f->seed, runs,
         *needed ? "only " : "no fault kind on",
         *needed ? needed : "");
  if (*off)
    printf("  not needed: %s\n", off);
  printf("  replay: fusebox run --virtual-time --seed %llu%s%s %s\n", f->seed,
         *off ? " --swarm-off " : "", off, o->path);
}

/* ------------------------------------------------------------ options */

int fb_cli_parse_count(const char *s, int *out, int min) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > 1000000)
    return -1;
  *out = (int)v;
  return 0;
}

int fb_cli_parse_seeds(const char *s, unsigned long long *first,
                       unsigned long long *last) {
  const char *dash = strchr(s, '-');
  if (!dash) {
    if (fb_cli_parse_seed(s, last) < 0 || *last == 0)
      return -1;
    *first = 1;
    return 0;
  }
  char a[24];
  if ((size_t)(dash - s) >= sizeof a)
    return -1;
  memcpy(a, s, (size_t)(dash - s));
  a[dash - s] = 0;
  return fb_cli_parse_seed(a, first) < 0 ||
                 fb_cli_parse_seed(dash + 1, last) < 0 || *last < *first
             ? -1
             : 0;
}

int fb_cli_cores(void) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  return cores > 0 ? (int)cores : 1;
}

int fb_cli_run_option(int argc, char **argv, int *i, unsigned long long *first,
                      unsigned long long *last, int *jobs, fb_cli_limits *lim) {
  char err[256];
  const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
  int rc = fb_cli_parse_limit(argc, argv, i, lim, err, sizeof err);
  if (rc < 0)
    return fb_cli_usage_error("%s", err);
  if (rc == 0)
    return 0;
  if (strcmp(a, "--seeds") == 0) {
    if (!v || fb_cli_parse_seeds(v, first, last) < 0)
      return fb_cli_usage_error("--seeds needs N (1..N) or A-B, got '%s'",
                                v ? v : "");
  } else if (strcmp(a, "--jobs") == 0) {
    if (!v || fb_cli_parse_count(v, jobs, 1) < 0)
      return fb_cli_usage_error("--jobs needs a whole number of at least 1, "
                                "got '%s'", v ? v : "");
  } else {
    return 1;
  }
  (*i)++;
  return 0;
}

static int parse_explore(int argc, char **argv, explore_opts *o) {
  char err[256];
  *o = (explore_opts){.first = 1, .last = 100, .jobs = fb_cli_cores(),
                      .list = 10, .shrink = 1,
                      .lim = {FB_CLI_MAX_VIRTUAL_TIME, FB_CLI_TIMEOUT}};
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int rc = fb_cli_run_option(argc, argv, &i, &o->first, &o->last, &o->jobs,
                               &o->lim);
    if (rc != 1) {
      if (rc)
        return rc;
      continue;
    }
    if (strcmp(a, "--stop-at-first") == 0) {
      o->stop_at_first = 1;
    } else if (strcmp(a, "--list") == 0 || strcmp(a, "--shrink") == 0) {
      int *dst = a[2] == 'l' ? &o->list : &o->shrink;
      if (!v || fb_cli_parse_count(v, dst, 0) < 0) {
        snprintf(err, sizeof err, "%s needs a whole number, got '%s'", a,
                 v ? v : "");
        return fb_cli_usage_error("%s", err);
      }
      i++;
    } else if (a[0] == '-') {
      return fb_cli_usage_error("unknown option '%s'", a);
    } else if (o->path) {
      return fb_cli_usage_error("explore: one scenario, got also '%s'", a);
    } else {
      o->path = a;
    }
  }
  if (!o->path)
    return fb_cli_usage_error("%s: no scenario given", "explore");
  if (access(o->path, R_OK) < 0) {
    fprintf(stderr, "fusebox: cannot open scenario '%s': %s\n", o->path,
            strerror(errno));
    return 2;
  }
  return 0;
}

/* ---------------------------------------------------------- explore */

int fb_cli_explore(int argc, char **argv) {
  explore_opts o;
  int rc = parse_explore(argc, argv, &o);
  if (rc)
    return rc;
  child *kids = calloc((size_t)o.jobs, sizeof *kids);
  failures f = {0};
  if (!kids) {
    fprintf(stderr, "fusebox: out of memory\n");
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("explore: %s, seeds %llu-%llu, %d job%s\n", o.path, o.first, o.last,
         o.jobs, o.jobs == 1 ? "" : "s");
  double t0 = fb_monotonic_now();
  unsigned long long next = o.first, done = 0;
  int running = 0, stop = 0, fork_failed = 0;
  while (running > 0 || (!stop && next <= o.last && next >= o.first)) {
    while (!stop && running < o.jobs && next <= o.last && next >= o.first) {
      if (start(&kids[running], &o, next, NULL) < 0) {
        fork_failed = errno;
        stop = 1;
        break;
      }
      running++;
      next++; /* wraps after 2^64-1: the loop ends there */
    }
    if (running == 0)
      break;
    outcome out;
    reap_one(kids, &running, &out);
    done++;
    if (!out.r.ok) {
      if (keep(&f, &out) < 0) {
        fprintf(stderr, "fusebox: out of memory\n");
        stop = 1;
      }
      if (o.stop_at_first)
        stop = 1;
    }
  }
  double took = fb_monotonic_now() - t0;
  if (fork_failed)
    fprintf(stderr, "fusebox: explore: cannot start a run: %s\n",
            strerror(fork_failed));
  qsort(f.v, f.n, sizeof *f.v, fastest_first);
  printf("explore: %llu seed%s in %.2f s (%.0f seeds/s): %zu failed (%.1f%%)%s\n",
         done, done == 1 ? "" : "s", took, took > 0 ? (double)done / took : 0,
         f.n, done ? 100.0 * (double)f.n / (double)done : 0,
         stop && o.stop_at_first && f.n ? ", stopped at the first" : "");
  for (size_t k = 0; k < f.n && k < (size_t)o.list; k++)
    print_failure(&o, &f.v[k], NULL);
  if (f.n > (size_t)o.list)
    printf("... and %zu more (--list N shows more)\n", f.n - (size_t)o.list);
  for (size_t k = 0; k < f.n && k < (size_t)o.shrink; k++)
    if (f.v[k].r.swarm[0])
      shrink(&o, &f.v[k]);
  rc = fork_failed ? 1 : f.n ? 1 : 0;
  free(f.v);
  free(kids);
  return rc;
}
