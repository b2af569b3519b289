/*
 * cli.h -- what the fusebox command's subcommands share (main.c): usage
 * errors, seeds, scenario limits, and running one scenario in a Lua state
 * of its own. explore.c runs thousands of them.
 */
#ifndef FB_CLI_H
#define FB_CLI_H

#include <lua.h>
#include <stddef.h>

/* Prints "fusebox: <fmt, what> (see fusebox --help)"; returns 2. */
int fb_cli_usage_error(const char *fmt, const char *what);

/* Parses a seed, digits only, 0..2^64-1; 0 or -1. */
int fb_cli_parse_seed(const char *s, unsigned long long *out);

/* Parses seeds "N" (1..N) or "A-B" into first..last; 0 or -1. */
int fb_cli_parse_seeds(const char *s, unsigned long long *first,
                       unsigned long long *last);

/* Parses a whole number min..1000000 into *out; 0 or -1. */
int fb_cli_parse_count(const char *s, int *out, int min);

/* A scenario's limits: virtual seconds it may take, wall-clock seconds
 * it may run. Command flags set them for every scenario; a line
 * "-- fusebox test: --timeout 120" in a file's leading comments sets them
 * for that file. */
typedef struct fb_cli_limits {
  double max_virtual_time;
  double timeout;
} fb_cli_limits;

#define FB_CLI_MAX_VIRTUAL_TIME 86400.0 /* one virtual day */
#define FB_CLI_TIMEOUT 60.0

/* Applies the limit option argv[*i] (with its value) to l; returns 0, 1
 * when argv[*i] is not a limit option, or -1 (message in err). */
int fb_cli_parse_limit(int argc, char **argv, int *i, fb_cli_limits *l,
                       char *err, size_t cap);

/* The outcome of one scenario run. */
typedef struct fb_cli_result {
  int ok;
  int ran;            /* 0: not started (bad limits line, no Lua state) */
  double vtime;       /* virtual time when it ended or failed */
  char error[1024];   /* why it failed ("" when ok), truncated */
  char swarm[256];    /* the fault kinds fb.sim.swarm turned on: "a,b" */
} fb_cli_result;

struct fb_report;

/* What a scenario run may be given besides its seed (NULL: nothing):
 * fault kinds fb.sim.swarm must keep off ("a,b"), the policy file
 * fb.sim.policy() builds, the file its events go to, the report
 * (report.h) that aggregates them as they happen. */
typedef struct fb_cli_extra {
  const char *swarm_off;
  const char *policy;
  const char *events;
  struct fb_report *report;
} fb_cli_extra;

/* Runs the scenario at path in a new Lua state, in virtual time with
 * seed, under its limits (the file's own, over lim), print() going to
 * print, with x (NULL: no extras). n numbers it in the wall-clock limit's
 * last words. */
void fb_cli_scenario(int n, const char *path, unsigned long long seed,
                     fb_cli_limits lim, lua_CFunction print,
                     const fb_cli_extra *x, fb_cli_result *r);

/* Builds the policy in file path (as fb.sim.policy() does) in a Lua
 * state of its own; returns 0, or -1 with a one-line reason in err. */
int fb_cli_check_policy(const char *path, char *err, size_t cap);

/* The registry field fb.sim.swarm reads the kinds to keep off from, and
 * the one it leaves the kinds it turned on in (a string "a,b"). */
#define FB_CLI_SWARM_OFF "fusebox.swarm_off"
#define FB_CLI_SWARM_ON "fusebox.swarm_on"
/* The registry field fb.sim.policy() reads the policy file's path from. */
#define FB_CLI_POLICY "fusebox.compare_policy"

/* The machine's cores: the default --jobs. */
int fb_cli_cores(void);

/* --seeds, --jobs and the limits, as explore and compare both take them:
 * 0 when argv[*i] was one (its value consumed into the pointers), 1 when
 * it is none of them, or 2 after printing its usage error. */
int fb_cli_run_option(int argc, char **argv, int *i, unsigned long long *first,
                      unsigned long long *last, int *jobs, fb_cli_limits *lim);

/* fusebox explore (explore.c). */
int fb_cli_explore(int argc, char **argv);

/* fusebox compare (compare.c). */
int fb_cli_compare(int argc, char **argv);

#endif
