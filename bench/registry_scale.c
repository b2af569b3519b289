/*
 * registry_scale.c -- row 3, fusebox from C: 1,000,000 instances across
 * 10,000 services. Virtual time: register all at t=0, heartbeat all at
 * t=10 (timed), heartbeat all but every 10th again at t=20, then at t=41
 * expire (the 10% whose last beat was t=10; timed per expired instance)
 * and discover every service (timed per call). Resident memory: VmRSS
 * growth over the whole life cycle, per instance, host strings made
 * beforehand (the registry's own copy of each host is included).
 *
 * Two extra cases test the costs the issue asks for: heartbeat in a
 * 10,000-instance registry (O(1): should match the 1,000,000 case) and
 * expiring 1% instead of 10% (O(expired): same cost per expired instance).
 */
#include "bench_util.h"
#include "fusebox.h"
#include "registry.h" /* fb_registry_expire: expiry timed on its own */

#define RUNS 3
#define HOST_LEN 16

typedef struct scenario {
  int instances, services, expire_every;
} scenario;

typedef struct result {
  double reg, beat, expire, discover, rss, host_bytes;
} result;

static char (*hosts)[HOST_LEN];
static char (*names)[16];

static void make_strings(int instances, int services) {
  hosts = malloc((size_t)instances * HOST_LEN);
  names = malloc((size_t)services * sizeof *names);
  if (!hosts || !names)
    exit(1);
  for (int i = 0; i < instances; i++)
    snprintf(hosts[i], HOST_LEN, "10.%d.%d.%d", i >> 16 & 255, i >> 8 & 255,
             i & 255);
  for (int s = 0; s < services; s++)
    snprintf(names[s], sizeof names[s], "service-%05d", s);
}

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "registry_scale: %s: %s\n", what, fb_strerror(rc));
    exit(1);
  }
}

/* Calls op on every instance (or every one but each skip-th) at now. */
static double each(fb_registry *r, const scenario *sc, int skip, double now) {
  double t0 = bench_ns();
  for (int i = 0; i < sc->instances; i++)
    if (!skip || i % skip)
      check(fb_registry_heartbeat(r, names[i % sc->services], hosts[i], 8080,
                                  now),
            "heartbeat");
  return (bench_ns() - t0) / sc->instances;
}

static result run(const scenario *sc) {
  result res = {0};
  double rss0 = bench_rss_bytes();
  fb_registry_config cfg; /* the default limit is 100,000 instances */
  fb_registry_config_init(&cfg);
  cfg.max_instances = (uint32_t)sc->instances;
  fb_registry *r = fb_registry_new(&cfg);
  double t0 = bench_ns();
  for (int i = 0; i < sc->instances; i++) {
    check(fb_registry_register(r, names[i % sc->services], hosts[i], 8080, 0),
          "register");
    res.host_bytes += (double)strlen(hosts[i]) + 1;
  }
  res.reg = (bench_ns() - t0) / sc->instances;
  res.beat = each(r, sc, 0, 10);
  each(r, sc, sc->expire_every, 20);
  t0 = bench_ns();
  fb_registry_expire(r, 41);
  res.expire = (bench_ns() - t0) / (sc->instances / sc->expire_every);
  size_t live = 0;
  fb_instance *const *out;
  t0 = bench_ns();
  for (int s = 0; s < sc->services; s++)
    live += fb_service_live(fb_registry_service(r, names[s]), 41, &out);
  res.discover = (bench_ns() - t0) / sc->services;
  if (live != (size_t)(sc->instances - sc->instances / sc->expire_every)) {
    fprintf(stderr, "registry_scale: %zu live, expected 90%%\n", live);
    exit(1);
  }
  res.rss = (bench_rss_bytes() - rss0) / sc->instances;
  res.host_bytes /= sc->instances;
  fb_registry_release(r);
  return res;
}

#define EMIT(name, field, unit, note)                                          \
  do {                                                                         \
    double v[RUNS];                                                            \
    for (int k = 0; k < RUNS; k++)                                             \
      v[k] = res[k].field;                                                     \
    bench_emit(B, name, "fusebox C", n, v, RUNS, unit, note);                  \
  } while (0)

static const char *const B = "registry at scale";

int main(void) {
  const scenario full = {1000000, 10000, 10}, small = {10000, 100, 10},
                 few = {1000000, 10000, 100};
  result res[RUNS];
  char note[128];
  double n = full.instances;
  make_strings(full.instances, full.services);
  for (int k = 0; k < RUNS; k++)
    res[k] = run(&full);
  EMIT("register, per instance", reg, "ns/op", NULL);
  EMIT("heartbeat, per instance", beat, "ns/op", NULL);
  EMIT("expire 10%, per expired instance", expire, "ns/op", NULL);
  n = full.services;
  EMIT("discover, per service", discover, "ns/op",
       "first call after expiry rebuilds the live list");
  n = full.instances;
  snprintf(note, sizeof note,
           "VmRSS growth, first run; includes the host copy (%.1f bytes)",
           res[0].host_bytes);
  bench_emit(B, "memory, per instance", "fusebox C", n, &res[0].rss, 1,
             "bytes", note);
  n = small.instances;
  for (int k = 0; k < RUNS; k++)
    res[k] = run(&small);
  EMIT("heartbeat, per instance (10,000-instance registry)", beat, "ns/op",
       "O(1) check: compare with 1,000,000");
  n = few.instances;
  for (int k = 0; k < RUNS; k++)
    res[k] = run(&few);
  EMIT("expire 1%, per expired instance", expire, "ns/op",
       "O(expired) check: compare with 10%");
  free(hosts);
  free(names);
  return 0;
}
