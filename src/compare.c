/*
 * compare.c -- fusebox compare: one scenario under several policies and
 * seeds, printed as one table (and drawn side by side with --report).
 *
 * Each (policy, seed) pair runs in a child process of its own, as
 * explore's seeds do (fb_cli_scenario in a fresh Lua state, at most
 * --jobs at a time), with fb.sim.policy() building that policy and the
 * report's aggregation (report.c) tapping the run's event sink: each
 * event is counted as it is written, with no file to write and parse
 * back (that cost 3 times the aggregation itself). The child sends the
 * figures as one fixed-size record on a pipe (below PIPE_BUF: one atomic
 * write) and exits. For --report, the first seed's run of each policy
 * also writes its events to a temporary file the parent named, read
 * back for the page and removed. The aggregation runs in the children,
 * so --jobs spreads it too.
 *
 * The table holds no wall time: the same seeds print the same bytes. A
 * cell is the median over the seeds, with the range (min-max) beside it.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>

#include "fusebox.h"
#include "report.h"

#define CMP_POLICIES 8     /* --policy at most this often */
#define CMP_RUNS 10000     /* policies times seeds */
#define CMP_BACKENDS 16    /* backends in a record; the rest pooled */
#define CMP_NAME 48        /* a backend's name in a record, cut */
#define CMP_ERROR 200      /* a failed run's first error line, cut */
#define CMP_LABEL 38       /* the table's first column */
#define CMP_COL 30         /* each policy's column */

/* One run's figures, as its child sends them. */
typedef struct stats {
  int policy;
  unsigned long long seed;
  int ok;              /* the scenario finished without an error */
  int measured;        /* the figures below are set (the child sent them) */
  double vtime;        /* virtual time it ended at */
  char error[CMP_ERROR];
  int from_requests;   /* request events (fb.sim.policy) or, without, call_end */
  uint64_t requests, outcome[FB_OUT_N];
  double p50, p99, p999; /* seconds; NAN without latencies */
  uint64_t offered;    /* calls to every backend (call_end) */
  int nbackends;
  char backend[CMP_BACKENDS][CMP_NAME];
  uint64_t load[CMP_BACKENDS];
  int nkinds;
  char kind[FB_REPORT_KINDS][32];
  uint64_t rejected[FB_REPORT_KINDS];
  double open_time;    /* seconds breakers spent open */
  uint64_t skipped;    /* event lines the aggregation could not use */
} stats;

_Static_assert(sizeof(stats) < PIPE_BUF, "a record is one atomic write");

typedef struct compare_opts {
  const char *path;
  const char *policy[CMP_POLICIES];
  int npolicies;
  unsigned long long first, last;
  int jobs;
  const char *report;
  fb_cli_limits lim;
} compare_opts;

static int quiet_print(lua_State *L) {
  (void)L;
  return 0;
}

/* ------------------------------------------------------------ figures */

/* The histogram of every call_end latency bucket summed: the latencies
 * of a scenario that calls its backends without fb.sim.policy. */
static void call_latency(const fb_report *r, uint32_t out[FB_REPORT_BINS]) {
  memset(out, 0, FB_REPORT_BINS * sizeof *out);
  for (size_t i = 0; i < r->nbuckets; i++)
    for (int b = 0; r->latency[i] && b < FB_REPORT_BINS; b++)
      out[b] = out[b] > UINT32_MAX - r->latency[i][b] ? UINT32_MAX
                                                       : out[b] + r->latency[i][b];
}

static void add_backend(stats *s, const char *name, uint64_t n) {
  int i = 0;
  if (s->nbackends == CMP_BACKENDS)
    name = "(others)";
  for (; i < s->nbackends; i++)
    if (strcmp(s->backend[i], name) == 0)
      break;
  if (i == s->nbackends) {
    if (i == CMP_BACKENDS)
      i--;
    else
      s->nbackends++;
    snprintf(s->backend[i], CMP_NAME, "%s", name);
  }
  s->load[i] += n;
}

/* The figures of the aggregated events r into s. */
static void figures(const fb_report *r, stats *s) {
  uint32_t h[FB_REPORT_BINS];
  const uint32_t *lat = r->request_latency;
  s->from_requests = r->requests > 0;
  s->requests = s->from_requests ? r->requests : r->calls;
  memcpy(s->outcome, s->from_requests ? r->request_totals : r->call_totals,
         sizeof s->outcome);
  if (!s->from_requests) {
    call_latency(r, h);
    lat = h;
  }
  s->p50 = lat ? fb_report_quantile(lat, 0.5) : NAN;
  s->p99 = lat ? fb_report_quantile(lat, 0.99) : NAN;
  s->p999 = lat ? fb_report_quantile(lat, 0.999) : NAN;
  for (size_t i = 0; i < r->nseries; i++) {
    const fb_report_series *se = &r->series[i];
    if (se->source != FB_SRC_CALL)
      continue;
    uint64_t n = 0;
    for (int o = 0; o < FB_OUT_N; o++)
      n += se->total[o];
    s->offered += n;
    add_backend(s, se->name, n);
  }
  s->nkinds = (int)r->nreject_kinds;
  for (size_t i = 0; i < r->nreject_kinds; i++) {
    memcpy(s->kind[i], r->reject_kinds[i], sizeof s->kind[i]);
    s->rejected[i] = r->reject_counts[i];
  }
  s->open_time = fb_report_open_time(r);
  s->skipped = r->bad_json.count + r->bad_event.count + r->too_long.count +
               r->bad_time.count;
}

/* The child's work: run, its events aggregated as they happen (and
 * written to events, unless NULL), and fill s. */
static void run_pair(const compare_opts *o, int p, unsigned long long seed,
                     const char *events, stats *s) {
  fb_cli_result res;
  fb_report *r = fb_report_new();
  fb_cli_extra x = {.policy = o->policy[p], .events = events, .report = r};
  memset(s, 0, sizeof *s);
  s->policy = p;
  s->seed = seed;
  if (!r) {
    snprintf(s->error, sizeof s->error, "out of memory");
    return;
  }
  fb_cli_scenario(1, o->path, seed, o->lim, quiet_print, &x, &res);
  s->ok = res.ok && !r->oom;
  s->vtime = res.vtime;
  snprintf(s->error, sizeof s->error, "%.*s", (int)strcspn(res.error, "\n"),
           r->oom ? "out of memory aggregating the events" : res.error);
  figures(r, s);
  s->measured = 1;
  fb_report_free(r);
}

/* ----------------------------------------------------------- children */

typedef struct child {
  pid_t pid;
  int fd;
  int policy;
  unsigned long long seed;
  char events[4096];
} child;

static int temp_file(char *path, size_t size) {
  const char *dir = getenv("TMPDIR");
  snprintf(path, size, "%s/fusebox-compare-XXXXXX.jsonl",
           dir && *dir ? dir : "/tmp");
  int fd = mkstemps(path, 6);
  if (fd < 0)
    return -1;
  close(fd);
  return 0;
}

/* Starts the run of policy p and seed; its events go to a file (named in
 * c->events) only when the page needs them. */
static int start(child *c, const compare_opts *o, int p,
                 unsigned long long seed) {
  int fds[2];
  c->events[0] = 0;
  if (o->report && seed == o->first &&
      temp_file(c->events, sizeof c->events) < 0)
    return -1;
  if (pipe(fds) < 0) {
    if (c->events[0])
      remove(c->events);
    return -1;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    if (c->events[0])
      remove(c->events);
    return -1;
  }
  if (pid == 0) {
    close(fds[0]);
    int null = open("/dev/null", O_WRONLY); /* the summary, the watchdog */
    if (null >= 0) {
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
    }
    static stats s;
    run_pair(o, p, seed, c->events[0] ? c->events : NULL, &s);
    ssize_t n = write(fds[1], &s, sizeof s);
    _exit(n == (ssize_t)sizeof s ? 0 : 3);
  }
  close(fds[1]);
  c->pid = pid;
  c->fd = fds[0];
  c->policy = p;
  c->seed = seed;
  return 0;
}

/* Waits for one of the n running children, moves it out of kids into
 * *done and its record into *s (one that says why, without a record). */
static void reap_one(child *kids, int *n, child *done, stats *s) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, 0)) < 0 && errno == EINTR)
    ;
  for (int k = 0; k < *n; k++) {
    if (kids[k].pid != pid)
      continue;
    *done = kids[k];
    kids[k] = kids[--*n];
    ssize_t got = read(done->fd, s, sizeof *s);
    close(done->fd);
    if (got == (ssize_t)sizeof *s && s->seed == done->seed &&
        s->policy == done->policy)
      return;
    memset(s, 0, sizeof *s);
    s->policy = done->policy;
    s->seed = done->seed;
    snprintf(s->error, sizeof s->error, "the run ended %s %d without a result",
             WIFSIGNALED(status) ? "on signal" : "with exit status",
             WIFSIGNALED(status) ? WTERMSIG(status)
             : WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return;
  }
  memset(done, 0, sizeof *done); /* not ours: never happens */
  done->policy = -1;
}

/* -------------------------------------------------------------- table */

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* "median (min-max)" of the n values v (sorted in place; NANs left out),
 * each through fmt; "-" when none. */
static void spread(double *v, size_t n, const char *fmt, double scale,
                   char *out, size_t cap) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (!isnan(v[i]))
      v[k++] = v[i] * scale;
  if (k == 0) {
    snprintf(out, cap, "-");
    return;
  }
  qsort(v, k, sizeof *v, by_value);
  double med = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
  char a[24], b[24], c[24];
  snprintf(a, sizeof a, fmt, med);
  snprintf(b, sizeof b, fmt, v[0]);
  snprintf(c, sizeof c, fmt, v[k - 1]);
  if (k == 1 || v[0] == v[k - 1])
    snprintf(out, cap, "%s", a);
  else
    snprintf(out, cap, "%s (%s-%s)", a, b, c);
}

typedef double (*getter)(const stats *s, const void *arg);

static double get_requests(const stats *s, const void *a) {
  (void)a;
  return (double)s->requests;
}
static double get_success(const stats *s, const void *a) {
  (void)a;
  return s->requests ? (double)s->outcome[FB_OUT_SUCCESS] / (double)s->requests
                     : NAN;
}
static double get_p50(const stats *s, const void *a) {
  (void)a;
  return s->p50;
}
static double get_p99(const stats *s, const void *a) {
  (void)a;
  return s->p99;
}
static double get_p999(const stats *s, const void *a) {
  (void)a;
  return s->p999;
}
static double get_offered(const stats *s, const void *a) {
  (void)a;
  return (double)s->offered;
}
static double get_amplification(const stats *s, const void *a) {
  (void)a;
  return s->requests ? (double)s->offered / (double)s->requests : NAN;
}
static double get_open(const stats *s, const void *a) {
  (void)a;
  return s->open_time;
}
static double get_load(const stats *s, const void *name) {
  for (int i = 0; i < s->nbackends; i++)
    if (strcmp(s->backend[i], name) == 0)
      return (double)s->load[i];
  return 0;
}
static double get_rejected(const stats *s, const void *kind) {
  for (int i = 0; i < s->nkinds; i++)
    if (strcmp(s->kind[i], kind) == 0)
      return (double)s->rejected[i];
  return 0;
}

typedef struct table {
  const compare_opts *o;
  const stats *runs; /* [policy * nseeds + seed index] */
  size_t nseeds;
  double *scratch;   /* nseeds values */
  FILE *f;
} table;

/* A policy's cell, padded to its column unless it is the last. */
static void column(FILE *f, const char *cell, int last) {
  if (last)
    fputs(cell, f);
  else
    fprintf(f, "%-*s", CMP_COL, cell);
}

static void cell_row(const table *t, const char *label, getter get,
                     const void *arg, const char *fmt, double scale) {
  char cell[112];
  fprintf(t->f, "%-*.*s", CMP_LABEL, CMP_LABEL - 1, label);
  for (int p = 0; p < t->o->npolicies; p++) {
    for (size_t k = 0; k < t->nseeds; k++) { /* runs without figures left out */
      const stats *s = &t->runs[(size_t)p * t->nseeds + k];
      t->scratch[k] = s->measured ? get(s, arg) : NAN;
    }
    spread(t->scratch, t->nseeds, fmt, scale, cell, sizeof cell);
    column(t->f, cell, p + 1 == t->o->npolicies);
  }
  fputc('\n', t->f);
}

/* Names (backends or kinds) every run has, in order of first appearance
 * (policy by policy, seed by seed): the same runs give the same rows. */
typedef struct names {
  char v[64][CMP_NAME];
  size_t n;
} names;

static void add_name(names *ns, const char *name) {
  for (size_t i = 0; i < ns->n; i++)
    if (strcmp(ns->v[i], name) == 0)
      return;
  if (ns->n < sizeof ns->v / sizeof ns->v[0])
    snprintf(ns->v[ns->n++], CMP_NAME, "%s", name);
}

static void print_table(const table *t) {
  const compare_opts *o = t->o;
  size_t nruns = (size_t)o->npolicies * t->nseeds;
  names backends = {.n = 0}, kinds = {.n = 0};
  for (size_t i = 0; i < nruns; i++) {
    for (int b = 0; b < t->runs[i].nbackends; b++)
      add_name(&backends, t->runs[i].backend[b]);
    for (int k = 0; k < t->runs[i].nkinds; k++)
      add_name(&kinds, t->runs[i].kind[k]);
  }
  fprintf(t->f, "compare: %s, seeds %llu-%llu, %d polic%s (median "
                "(min-max) over %zu seed%s)\n",
          o->path, o->first, o->last, o->npolicies,
          o->npolicies == 1 ? "y" : "ies", t->nseeds, t->nseeds == 1 ? "" : "s");
  fprintf(t->f, "%-*s", CMP_LABEL, "policy");
  for (int p = 0; p < o->npolicies; p++) {
    size_t len = strlen(o->policy[p]);
    const char *name = len > CMP_COL - 2 ? o->policy[p] + len - (CMP_COL - 2)
                                         : o->policy[p];
    column(t->f, name, p + 1 == o->npolicies);
  }
  fputc('\n', t->f);
  fprintf(t->f, "%-*s", CMP_LABEL, "runs failed");
  int any_failed = 0;
  for (int p = 0; p < o->npolicies; p++) {
    size_t failed = 0;
    for (size_t k = 0; k < t->nseeds; k++)
      failed += !t->runs[(size_t)p * t->nseeds + k].ok;
    any_failed |= failed > 0;
    char cell[48];
    snprintf(cell, sizeof cell, "%zu of %zu", failed, t->nseeds);
    column(t->f, cell, p + 1 == o->npolicies);
  }
  fputc('\n', t->f);
  int req = nruns > 0 && t->runs[0].from_requests;
  cell_row(t, req ? "requests" : "calls (no requests)", get_requests,
           NULL, "%.0f", 1);
  cell_row(t, "success rate %", get_success, NULL, "%.2f", 100);
  cell_row(t, "p50 latency ms", get_p50, NULL, "%.4g", 1e3);
  cell_row(t, "p99 latency ms", get_p99, NULL, "%.4g", 1e3);
  cell_row(t, "p99.9 latency ms", get_p999, NULL, "%.4g", 1e3);
  cell_row(t, "offered load (calls)", get_offered, NULL, "%.0f", 1);
  for (size_t b = 0; b < backends.n; b++) {
    char label[CMP_NAME + 4];
    snprintf(label, sizeof label, "  %s", backends.v[b]);
    cell_row(t, label, get_load, backends.v[b], "%.0f", 1);
  }
  cell_row(t, "amplification x", get_amplification, NULL, "%.3f", 1);
  for (size_t k = 0; k < kinds.n; k++) {
    char label[CMP_NAME + 16];
    snprintf(label, sizeof label, "rejected: %s", kinds.v[k]);
    cell_row(t, label, get_rejected, kinds.v[k], "%.0f", 1);
  }
  cell_row(t, "breaker open s", get_open, NULL, "%.3f", 1);
  if (!any_failed)
    return;
  for (size_t i = 0, shown = 0; i < nruns && shown < 10; i++) {
    const stats *s = &t->runs[i];
    if (s->ok)
      continue;
    shown++;
    fprintf(t->f, "failed: %s seed %llu: %s\n  replay: fusebox run "
                  "--virtual-time --seed %llu --policy %s %s\n",
            o->policy[s->policy], s->seed, s->error, s->seed,
            o->policy[s->policy], o->path);
  }
}

/* ------------------------------------------------------------ options */

static int parse_compare(int argc, char **argv, compare_opts *o) {
  char err[256];
  *o = (compare_opts){.first = 1, .last = 20, .jobs = fb_cli_cores(),
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
    if (strcmp(a, "--policy") == 0) {
      if (!v)
        return fb_cli_usage_error("%s needs a file name", a);
      if (o->npolicies == CMP_POLICIES)
        return fb_cli_usage_error("compare: at most 8 policies, got also '%s'", v);
      o->policy[o->npolicies++] = v;
      i++;
    } else if (strcmp(a, "--report") == 0) {
      if (!v)
        return fb_cli_usage_error("%s needs a file name", a);
      o->report = v;
      i++;
    } else if (a[0] == '-') {
      return fb_cli_usage_error("unknown option '%s'", a);
    } else if (o->path) {
      return fb_cli_usage_error("compare: one scenario, got also '%s'", a);
    } else {
      o->path = a;
    }
  }
  if (!o->path)
    return fb_cli_usage_error("%s: no scenario given", "compare");
  if (o->npolicies == 0)
    return fb_cli_usage_error("%s: no --policy FILE given", "compare");
  if (o->last - o->first >= CMP_RUNS / (unsigned)o->npolicies) {
    snprintf(err, sizeof err, "compare: at most %d runs (policies times "
             "seeds), got %d policies times seeds %llu-%llu", CMP_RUNS,
             o->npolicies, o->first, o->last);
    return fb_cli_usage_error("%s", err);
  }
  if (access(o->path, R_OK) < 0) {
    fprintf(stderr, "fusebox: compare: cannot open scenario '%s': %s\n",
            o->path, strerror(errno));
    return 2;
  }
  for (int p = 0; p < o->npolicies; p++)
    if (fb_cli_check_policy(o->policy[p], err, sizeof err) < 0) {
      fprintf(stderr, "fusebox: compare: bad --policy: %s\n", err);
      return 2;
    }
  return 0;
}

/* ------------------------------------------------------------- report */

/* Draws the kept first-seed runs of each policy side by side. */
static int write_page(const compare_opts *o, char (*kept)[4096],
                      const char *text) {
  fb_report *r[CMP_POLICIES] = {0};
  int rc = 0;
  for (int p = 0; p < o->npolicies && rc == 0; p++) {
    FILE *f = kept[p][0] ? fopen(kept[p], "r") : NULL;
    if (!(r[p] = fb_report_new()) || (f && fb_report_read(r[p], f) < 0))
      rc = -1;
    if (f)
      fclose(f);
  }
  FILE *out = rc == 0 ? fopen(o->report, "w") : NULL;
  if (rc == 0 && !out) {
    fprintf(stderr, "fusebox: compare: cannot create report '%s': %s\n",
            o->report, strerror(errno));
    rc = -1;
  } else if (rc < 0) {
    fprintf(stderr, "fusebox: compare: out of memory reading the events\n");
  }
  if (out) {
    char title[512];
    snprintf(title, sizeof title, "%s, seed %llu", o->path, o->first);
    rc = fb_report_compare_html(r, o->policy, (size_t)o->npolicies, title, text,
                                out);
    if (fclose(out) != 0)
      rc = -1;
    if (rc < 0)
      fprintf(stderr, "fusebox: compare: writing report '%s' failed\n",
              o->report);
  }
  for (int p = 0; p < o->npolicies; p++)
    fb_report_free(r[p]);
  return rc;
}

/* ------------------------------------------------------------ compare */

int fb_cli_compare(int argc, char **argv) {
  compare_opts o;
  int rc = parse_compare(argc, argv, &o);
  if (rc)
    return rc;
  size_t nseeds = (size_t)(o.last - o.first + 1);
  size_t nruns = (size_t)o.npolicies * nseeds;
  if ((size_t)o.jobs > nruns) /* no more children than runs */
    o.jobs = (int)nruns;
  stats *runs = calloc(nruns, sizeof *runs);
  child *kids = calloc((size_t)o.jobs, sizeof *kids);
  double *scratch = calloc(nseeds, sizeof *scratch);
  char(*kept)[4096] = calloc(CMP_POLICIES, sizeof *kept);
  if (!runs || !kids || !scratch || !kept) {
    fprintf(stderr, "fusebox: out of memory\n");
    rc = 1;
    goto done;
  }
  double t0 = fb_monotonic_now();
  size_t next = 0, finished = 0;
  int running = 0, fork_failed = 0;
  while (finished < nruns && !(fork_failed && running == 0)) {
    while (!fork_failed && running < o.jobs && next < nruns) {
      int p = (int)(next / nseeds);
      if (start(&kids[running], &o, p, o.first + next % nseeds) < 0) {
        fork_failed = errno;
        break;
      }
      running++;
      next++;
    }
    if (running == 0)
      break;
    child c;
    stats s;
    reap_one(kids, &running, &c, &s);
    if (c.policy < 0)
      continue;
    runs[(size_t)c.policy * nseeds + (size_t)(c.seed - o.first)] = s;
    finished++;
    if (c.events[0])
      memcpy(kept[c.policy], c.events, sizeof kept[c.policy]);
  }
  if (fork_failed) {
    fprintf(stderr, "fusebox: compare: cannot start a run: %s\n",
            strerror(fork_failed));
    rc = 1;
    goto done;
  }
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  table t = {&o, runs, nseeds, scratch, mem ? mem : stdout};
  print_table(&t);
  if (mem) {
    fclose(mem);
    fwrite(text, 1, len, stdout);
  }
  fprintf(stderr, "compare: %zu runs in %.2f s\n", nruns, fb_monotonic_now() - t0);
  if (o.report && write_page(&o, kept, text) < 0)
    rc = 1;
  free(text);
  for (size_t i = 0; i < nruns && rc == 0; i++)
    if (!runs[i].ok)
      rc = 1;
done:
  for (int p = 0; kept && p < CMP_POLICIES; p++)
    if (kept[p][0])
      remove(kept[p]);
  free(kept);
  free(scratch);
  free(kids);
  free(runs);
  return rc;
}
