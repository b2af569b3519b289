/*
 * test_alloc_fail.c -- out of memory as a normal error path (SQLite's
 * approach): through fb_replace_allocator(), the N-th allocation fails,
 * for N over every allocation a representative operation makes -- once
 * with that one failure alone, once with every allocation after it
 * failing too. Each run goes on using what it built, checks it against a
 * model, frees it, and ends with no allocation left live: the allocator
 * counts them itself, so the test means the same plain, under ASan and
 * under valgrind.
 *
 * The operations: a registry's create, many registrations (with zones and
 * weights), heartbeats, expiry, late returns, reaping, deregistration and
 * queries, against a model; picks with every balancer algorithm while
 * membership and weights change (so tables are built again); service
 * names churning through a registry that removes empty services; breakers of
 * every mode across many windows; events written and summarised; a report
 * aggregated from every kind of line and written as a page; the timer
 * queue. An operation whose allocation failed must say so -- an error
 * code, NULL, a failed close, a page that is an error, a report marked
 * partial -- and what it built must go on working.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "fusebox.h"
#include "report.h"
#include "timerq.h"

/* ------------------------------------------------------ the allocator */

/* Each block carries its size in front, so live bytes are known too. */
typedef union header {
  size_t size;
  max_align_t align;
} header;

static struct {
  uint64_t calls;    /* allocations asked for (malloc, calloc, realloc) */
  uint64_t fail_at;  /* the call that fails; 0: none */
  int persist;       /* every call after fail_at fails as well */
  uint64_t failed;   /* calls made to fail */
  long live;         /* blocks not yet freed */
  size_t bytes;      /* their sizes */
} heap;

static int should_fail(void) {
  heap.calls++;
  if (heap.fail_at && (heap.calls == heap.fail_at ||
                       (heap.persist && heap.calls > heap.fail_at))) {
    heap.failed++;
    return 1;
  }
  return 0;
}

static void *t_malloc(size_t size) {
  if (should_fail())
    return NULL;
  header *h = malloc(sizeof *h + size);
  if (!h)
    return NULL;
  h->size = size;
  heap.live++;
  heap.bytes += size;
  return h + 1;
}

static void *t_calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size)
    return NULL;
  void *p = t_malloc(count * size);
  if (p)
    memset(p, 0, count * size);
  return p;
}

static void t_free(void *p) {
  if (!p)
    return; /* as free(NULL); cJSON_free passes NULL on */
  header *h = (header *)p - 1;
  heap.live--;
  heap.bytes -= h->size;
  free(h);
}

static void *t_realloc(void *p, size_t size) {
  if (!p)
    return t_malloc(size);
  if (should_fail())
    return NULL; /* p stays as it was */
  header *h = (header *)p - 1;
  size_t old = h->size;
  header *n = realloc(h, sizeof *n + size);
  if (!n)
    return NULL;
  n->size = size;
  heap.bytes = heap.bytes - old + size;
  return n + 1;
}

/* Each test starts with nothing live, whatever a failed one left. */
static int reset(void **state) {
  (void)state;
  heap.live = 0;
  heap.bytes = 0;
  return 0;
}

/* Starts a run in which allocation fail_at fails (0: none). */
static void arm(uint64_t fail_at, int persist) {
  assert_int_equal(heap.live, 0);
  heap.calls = heap.failed = 0;
  heap.fail_at = fail_at;
  heap.persist = persist;
}

/* True if an allocation failed since the mark `before` (heap.failed). */
#define FAILED_SINCE(before) (heap.failed > (before))

/* Runs op with the N-th allocation failing, for every N it reaches, in
 * both modes; each run must free all it allocated. */
static void every_failure(void (*op)(void)) {
  arm(0, 0);
  op();
  assert_int_equal(heap.live, 0);
  uint64_t total = heap.calls;
  assert_true(total > 0);
  for (int persist = 0; persist <= 1; persist++) {
    for (uint64_t n = 1; n <= total; n++) {
      arm(n, persist);
      op();
      if (heap.live != 0)
        fail_msg("%ld allocation(s) leaked with allocation %llu of %llu "
                 "failing%s", heap.live, (unsigned long long)n,
                 (unsigned long long)total, persist ? " and all after" : "");
    }
  }
  arm(0, 0);
}

/* ----------------------------------------------------------- registry */

/* A model of what the registry must hold: per key, present or not and the
 * last heartbeat. Keys are (service k % NSVC, host 10.0.0.k, port 80). */
#define NKEYS 120
#define NSVC 5
#define TIMEOUT 10.0
#define REAP 20.0 /* reaped once now - last >= TIMEOUT + REAP */

typedef struct model {
  int present[NKEYS];
  double last[NKEYS];
  int seq[NKEYS]; /* when it was added: registration order */
  int next_seq;
} model;

static void key_of(int k, char svc[16], char host[32]) {
  snprintf(svc, 16, "svc%d", k % NSVC);
  snprintf(host, 32, "10.0.0.%d", k);
}

/* What the registry's walk does at now: reap what stayed expired. */
static void model_walk(model *m, double now) {
  for (int k = 0; k < NKEYS; k++)
    if (m->present[k] && !(now - m->last[k] < TIMEOUT + REAP))
      m->present[k] = 0;
}

static void reg_put(fb_registry *r, model *m, int k, double now) {
  char svc[16], host[32];
  key_of(k, svc, host);
  fb_instance_opts o;
  fb_instance_opts_init(&o);
  if (k % 3 == 0)
    o.zone = k % 2 ? "zone-a" : "zone-b";
  o.weight = (uint32_t)(k % 4);
  uint64_t before = heap.failed;
  int rc = fb_registry_register_with(r, svc, host, 80, &o, now);
  model_walk(m, now);
  if (rc == FB_ENOMEM) {
    assert_true(FAILED_SINCE(before));
    return; /* nothing changed */
  }
  assert_int_equal(rc, m->present[k] ? FB_REFRESHED : FB_ADDED);
  if (!m->present[k])
    m->seq[k] = m->next_seq++;
  m->present[k] = 1;
  m->last[k] = now;
  fb_instance *i = fb_registry_find(r, svc, host, 80);
  assert_non_null(i);
  if (o.zone)
    assert_string_equal(fb_instance_zone(i), o.zone);
  if (o.weight)
    assert_int_equal(fb_instance_weight(i), o.weight);
}

/* Every service's live list (when it could be built) and every key's
 * presence agree with the model. */
static void reg_check(fb_registry *r, model *m, double now) {
  size_t present = 0;
  for (int s = 0; s < NSVC; s++) {
    char name[16];
    snprintf(name, sizeof name, "svc%d", s);
    fb_service *svc = fb_registry_service(r, name);
    if (!svc)
      continue;
    fb_instance *const *v;
    uint64_t before = heap.failed;
    size_t n = fb_service_live(svc, now, &v);
    model_walk(m, now);
    if (!v) {
      assert_true(FAILED_SINCE(before));
      continue;
    }
    int order[NKEYS];
    size_t want = 0;
    for (int k = s; k < NKEYS; k += NSVC) {
      if (!m->present[k] || !(now - m->last[k] < TIMEOUT))
        continue;
      size_t j = want++; /* insertion sort by registration order */
      for (; j > 0 && m->seq[order[j - 1]] > m->seq[k]; j--)
        order[j] = order[j - 1];
      order[j] = k;
    }
    assert_int_equal(n, want);
    for (size_t j = 0; j < n; j++) {
      char svc_name[16], host[32];
      key_of(order[j], svc_name, host);
      assert_string_equal(fb_instance_host(v[j]), host);
    }
    fb_instance *const *h;
    if (fb_service_healthy(svc, now, &h) > 0)
      assert_non_null(h);
  }
  for (int k = 0; k < NKEYS; k++) {
    char svc[16], host[32];
    key_of(k, svc, host);
    fb_instance *i = fb_registry_find(r, svc, host, 80);
    assert_int_equal(i != NULL, m->present[k]);
    if (i)
      assert_ptr_equal(fb_registry_instance(r, fb_instance_id(i)), i);
    present += m->present[k];
  }
  assert_int_equal(fb_registry_ninstances(r), present);
}

static void registry_op(void) {
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout = TIMEOUT;
  cfg.reap_after = REAP;
  fb_registry *r = fb_registry_new(&cfg);
  if (!r) {
    assert_true(heap.failed > 0);
    return;
  }
  model m = {{0}, {0}, {0}, 0};
  for (int k = 0; k < 100; k++) /* register many */
    reg_put(r, &m, k, 0);
  reg_check(r, &m, 1);
  for (int k = 0; k < 50; k++) /* heartbeats */
    reg_put(r, &m, k, 5);
  reg_check(r, &m, 12); /* 50..99 expired at 10 */
  for (int k = 50; k < 60; k++) /* late: back in their place */
    reg_put(r, &m, k, 14);
  reg_check(r, &m, 14);
  fb_registry_mark(r, "svc1", "10.0.0.51", 80, 0);
  reg_check(r, &m, 20);
  for (int k = 100; k < NKEYS; k++) /* at 40: 0..49, 60..99 reaped */
    reg_put(r, &m, k, 40);
  reg_check(r, &m, 40);
  for (int k = 100; k < 110; k++) { /* deregister */
    char svc[16], host[32];
    key_of(k, svc, host);
    assert_int_equal(fb_registry_deregister(r, svc, host, 80), m.present[k]);
    m.present[k] = 0;
  }
  reg_check(r, &m, 41);
  fb_registry_sweep(r, 100); /* every one reaped */
  reg_check(r, &m, 100);
  assert_int_equal(fb_registry_ninstances(r), 0);
  for (int k = 0; k < 30; k++) /* and the registry still works */
    reg_put(r, &m, k, 101);
  reg_check(r, &m, 102);
  fb_registry_release(r);
}

static void registry_survives_every_allocation_failure(void **state) {
  (void)state;
  every_failure(registry_op);
}

/* ----------------------------------------------------------- balancers */

static const char *algo;

/* A pick is an instance of the candidates, or NULL only when memory ran
 * out during it. */
static void check_pick(fb_balancer *lb, fb_service *s, const char *key,
                       double now) {
  fb_instance *const *v;
  if (!s || (fb_service_live(s, now, &v) == 0 && !v))
    return; /* every registration failed, or memory ran out in the query */
  if (fb_service_live(s, now, &v) == 0) {
    assert_null(fb_balancer_pick_key(lb, s, key, 0, now));
    return;
  }
  uint64_t before = heap.failed;
  fb_instance *i =
      fb_balancer_pick_key(lb, s, key, key ? strlen(key) : 0, now);
  if (!i) {
    assert_true(FAILED_SINCE(before));
    return;
  }
  assert_ptr_equal(fb_instance_service(i), s);
  assert_true(now - fb_instance_last_heartbeat(i) < TIMEOUT);
  assert_int_equal(fb_balancer_done(lb, i, 1, 0.01, now), 0);
}

static void balancer_op(void) {
  fb_registry_config rc;
  fb_registry_config_init(&rc);
  rc.heartbeat_timeout = TIMEOUT;
  fb_registry *r = fb_registry_new(&rc);
  if (!r)
    return;
  fb_balancer_config cfg;
  fb_balancer_config_init(&cfg);
  cfg.algorithm = algo;
  cfg.table_size = 251; /* maglev: small, so each run is quick */
  cfg.replicas = 20;
  fb_balancer *lb = fb_balancer_new_config(r, &cfg);
  for (int k = 0; k < 24; k++) {
    char host[32];
    snprintf(host, sizeof host, "10.0.1.%d", k);
    fb_instance_opts o;
    fb_instance_opts_init(&o);
    o.weight = (uint32_t)(1 + k % 3);
    fb_registry_register_with(r, k < 12 ? "a" : "b", host, 80, &o, 0);
  }
  if (lb) {
    char key[16];
    for (int round = 0; round < 3; round++) {
      for (int p = 0; p < 20; p++) {
        snprintf(key, sizeof key, "user%d", p);
        check_pick(lb, fb_registry_service(r, "a"), key, 1 + round);
        check_pick(lb, fb_registry_service(r, "b"), NULL, 1 + round);
      }
      /* membership and weights change: tables are built again */
      fb_registry_mark(r, "a", "10.0.1.3", 80, round == 1);
      fb_instance *i = fb_registry_find(r, "b", "10.0.1.13", 80);
      if (i)
        fb_instance_set_weight(i, (uint32_t)(2 + round));
      char host[32];
      snprintf(host, sizeof host, "10.0.2.%d", round);
      fb_registry_register(r, "a", host, 80, 1 + round);
    }
    fb_balancer_free(lb);
  }
  fb_registry_release(r);
}

static void balancers_survive_every_allocation_failure(void **state) {
  (void)state;
  for (const char *const *a = fb_balancer_algorithms(); *a; a++) {
    algo = *a;
    every_failure(balancer_op);
  }
}

/* remove_empty_services: names churn through a registry of 2 services
 * while a balancer picks from each; a registration that ran out of memory
 * after empty services were removed to make room leaves a registry (and
 * balancer) that still works. */
static void service_removal_op(void) {
  fb_registry_config rc;
  fb_registry_config_init(&rc);
  rc.max_services = 2;
  rc.remove_empty_services = 1;
  fb_registry *r = fb_registry_new(&rc);
  if (!r)
    return;
  fb_balancer *lb = fb_balancer_new(r, "weighted_round_robin", 1);
  if (!lb) {
    fb_registry_release(r);
    return;
  }
  fb_registry_register(r, "kept", "10.0.3.1", 80, 0);
  for (int k = 0; k < 12; k++) {
    char name[16], host[32];
    snprintf(name, sizeof name, "churn%d", k);
    snprintf(host, sizeof host, "10.0.4.%d", k);
    uint64_t before = heap.failed;
    int rc2 = fb_registry_register(r, name, host, 80, 1);
    if (rc2 < 0) { /* no room taken by another name: only memory ran out */
      assert_int_equal(rc2, FB_ENOMEM);
      assert_true(FAILED_SINCE(before));
      assert_null(fb_registry_find(r, name, host, 80));
      continue;
    }
    check_pick(lb, fb_registry_service(r, name), NULL, 1);
    check_pick(lb, fb_registry_service(r, "kept"), NULL, 1);
    assert_int_equal(fb_registry_deregister(r, name, host, 80), 1);
  }
  fb_balancer_free(lb);
  fb_registry_release(r);
}

static void service_removal_survives_every_allocation_failure(void **state) {
  (void)state;
  every_failure(service_removal_op);
}

/* ------------------------------------------------------------ breakers */

static fb_breaker_mode mode;

static void breaker_op(void) {
  fb_breaker_config cfg;
  fb_breaker_config_init(&cfg);
  cfg.mode = mode;
  cfg.window = 10;
  cfg.minimum_calls = 4;
  cfg.failure_threshold = 3;
  cfg.timeout = 5;
  uint64_t before = heap.failed;
  fb_breaker *b = fb_breaker_new(&cfg);
  if (!b) {
    assert_true(FAILED_SINCE(before));
    return;
  }
  for (int k = 0; k < 200; k++) { /* across many windows */
    double now = k * 0.7;
    int64_t p = fb_breaker_acquire(b, now);
    if (p >= 0)
      assert_true(fb_breaker_record(b, p, k % 3 ? FB_SUCCESS : FB_FAILURE,
                                    0.01, now) >= 0);
  }
  fb_breaker_metrics m;
  fb_breaker_metrics_get(b, 200, &m);
  assert_true(m.calls > 0);
  fb_breaker_free(b);
}

static void breakers_survive_every_allocation_failure(void **state) {
  (void)state;
  fb_breaker_mode modes[] = {FB_MODE_CONSECUTIVE, FB_MODE_COUNT,
                             FB_MODE_TIME};
  for (size_t i = 0; i < 3; i++) {
    mode = modes[i];
    every_failure(breaker_op);
  }
}

/* ----------------------------------------------------- outlier detection */

/* A detector on a weighted balancer with slow start: failing instances
 * ejected (consecutive and success-rate), readmitted, ramped, across many
 * intervals. A record that could not be made is lost, never the pick. */
static void outlier_op(void) {
  uint64_t before = heap.failed;
  fb_registry_config rc;
  fb_registry_config_init(&rc);
  rc.heartbeat_timeout = INFINITY;
  fb_registry *r = fb_registry_new(&rc);
  if (!r) {
    assert_true(FAILED_SINCE(before));
    return;
  }
  char host[32];
  for (int k = 0; k < 12; k++) {
    snprintf(host, sizeof host, "10.0.0.%d", k);
    if (fb_registry_register(r, "svc", host, 80, 0) < 0)
      assert_true(FAILED_SINCE(before));
  }
  fb_outlier_config oc;
  fb_outlier_config_init(&oc);
  oc.consecutive_5xx = 3;
  oc.max_ejection_percent = 50;
  oc.success_rate_request_volume = 5;
  oc.interval = 2;
  fb_outlier *d = fb_outlier_new(r, &oc);
  fb_balancer_config bc;
  fb_balancer_config_init(&bc);
  bc.algorithm = "weighted_round_robin";
  bc.slow_start_window = 5;
  fb_balancer *lb = fb_balancer_new_config(r, &bc);
  if (!d || !lb) {
    assert_true(FAILED_SINCE(before));
  } else {
    assert_int_equal(fb_balancer_set_outlier(lb, d), 0);
    fb_service *s = fb_registry_service(r, "svc");
    for (int k = 0; s && k < 600; k++) {
      double now = k * 0.1;
      fb_instance *i = fb_balancer_pick(lb, s, now);
      if (!i)
        continue;
      int bad = fb_instance_host(i)[7] < '4'; /* 10.0.0.0-3 fail */
      assert_true(fb_balancer_done(lb, i, !bad, 0.01, now) >= 0);
      fb_outlier_event ev;
      while (fb_outlier_next_event(d, &ev))
        assert_true(ev.reason < FB_OUTLIER_NREASONS);
    }
    fb_outlier_stats st;
    fb_outlier_get_stats(d, &st);
    assert_true(st.ejected <= 12);
  }
  fb_balancer_free(lb);
  fb_outlier_release(d);
  fb_registry_release(r);
}

static void outlier_survives_every_allocation_failure(void **state) {
  (void)state;
  every_failure(outlier_op);
}

/* -------------------------------------------------------------- events */

static cJSON *state_change(double t, int id, const char *from,
                           const char *to) {
  cJSON *e = fb_events_new(t, "state_change");
  if (e && (!cJSON_AddNumberToObject(e, "breaker", id) ||
            !cJSON_AddStringToObject(e, "from", from) ||
            !cJSON_AddStringToObject(e, "to", to))) {
    cJSON_Delete(e);
    return NULL;
  }
  return e;
}

static void events_op(void) {
  fb_events ev;
  assert_int_equal(fb_events_open(&ev, "/dev/null", 0), 0);
  int lost = 0;
  for (int k = 0; k < 40; k++) {
    uint64_t before = heap.failed;
    cJSON *e = k % 4 == 0 ? state_change(k, k % 7, "CLOSED", "OPEN")
               : k % 4 == 1 ? state_change(k, k % 7, "OPEN", "CLOSED")
                            : fb_events_new(k, k % 2 ? "call_end" : "reject");
    if (!e)
      assert_true(FAILED_SINCE(before));
    fb_events_write(&ev, e);
    lost |= FAILED_SINCE(before);
  }
  uint64_t before = heap.failed;
  cJSON *s = fb_events_summary(&ev, 50);
  if (!s)
    assert_true(FAILED_SINCE(before));
  cJSON_Delete(s);
  int rc = fb_events_close(&ev);
  /* an event it could not write or count is a failed close, never a
   * silently short log */
  if (lost)
    assert_int_equal(rc, -1);
  else
    assert_int_equal(rc, 0);
}

static void events_survive_every_allocation_failure(void **state) {
  (void)state;
  every_failure(events_op);
}

/* -------------------------------------------------------------- report */

static const char *const report_lines[] = {
    "{\"t\":0,\"kind\":\"run_start\",\"seed\":7,\"script\":\"x.lua\","
    "\"virtual_time\":true,\"args\":[\"a\",\"b\"]}",
    "{\"t\":0.1,\"kind\":\"register\",\"service\":\"s\",\"host\":\"h1\","
    "\"port\":80}",
    "{\"t\":0.2,\"kind\":\"register\",\"service\":\"s\",\"host\":\"h2\","
    "\"port\":80}",
    "{\"t\":0.5,\"kind\":\"pick\",\"service\":\"s\",\"host\":\"h1\","
    "\"port\":80}",
    "{\"t\":1,\"kind\":\"call_end\",\"name\":\"api\",\"outcome\":\"success\","
    "\"duration\":0.02}",
    "{\"t\":1.5,\"kind\":\"call_end\",\"name\":\"db\",\"outcome\":\"failure\","
    "\"duration\":0.3}",
    "{\"t\":2,\"kind\":\"state_change\",\"breaker\":1,\"name\":\"cb\","
    "\"from\":\"CLOSED\",\"to\":\"OPEN\"}",
    "{\"t\":2.5,\"kind\":\"reject\",\"breaker\":1,\"name\":\"cb\"}",
    "{\"t\":3,\"kind\":\"outcome\",\"breaker\":1,\"name\":\"cb\","
    "\"outcome\":\"failure\",\"duration\":0.1}",
    "{\"t\":4,\"kind\":\"instance\",\"service\":\"s\",\"host\":\"h2\","
    "\"port\":80,\"action\":\"crash\"}",
    "{\"t\":5,\"kind\":\"expire\",\"service\":\"s\",\"host\":\"h2\","
    "\"port\":80}",
    "{\"t\":6,\"kind\":\"mystery\"}",
    "not json",
    "{\"t\":9,\"kind\":\"run_end\",\"ok\":false,\"error\":\"boom\","
    "\"summary\":{\"duration\":9}}",
};

static void report_op(void) {
  uint64_t before = heap.failed;
  fb_report *r = fb_report_new();
  if (!r) {
    assert_true(FAILED_SINCE(before));
    return;
  }
  size_t n = sizeof report_lines / sizeof report_lines[0];
  for (size_t k = 0; k < n; k++) {
    uint64_t b = heap.failed, bad = r->bad_json.count;
    fb_report_line(r, report_lines[k], strlen(report_lines[k]), (long)k + 1);
    /* a line memory ran out on is never dropped silently: the page says
     * it is partial, or lists the line as skipped (cJSON's parser does not
     * tell running out of memory from bad JSON) */
    if (FAILED_SINCE(b))
      assert_true(r->oom || r->bad_json.count > bad);
  }
  FILE *f = fopen("/dev/null", "w");
  assert_non_null(f);
  uint64_t b = heap.failed;
  int rc = fb_report_html(r, "events.jsonl", f);
  fclose(f);
  if (FAILED_SINCE(b))
    assert_int_equal(rc, -1); /* a partial page is an error */
  else
    assert_int_equal(rc, 0);
  fb_report_free(r);
}

static void report_survives_every_allocation_failure(void **state) {
  (void)state;
  every_failure(report_op);
}

/* --------------------------------------------------------- timer queue */

static void timerq_op(void) {
  fb_timerq q = {0};
  int pushed = 0;
  for (int k = 0; k < 300; k++) {
    uint64_t before = heap.failed;
    int rc = fb_timerq_push(&q, (k * 37) % 101, k, 0);
    if (rc < 0)
      assert_true(FAILED_SINCE(before));
    else
      pushed++;
  }
  assert_int_equal(q.n, (size_t)pushed); /* a failed push added nothing */
  fb_timer t;
  double last = -1;
  while (fb_timerq_pop(&q, &t) == 0) {
    assert_true(t.deadline >= last);
    last = t.deadline;
    pushed--;
  }
  assert_int_equal(pushed, 0);
  fb_timerq_free(&q);
}

static void timer_queue_survives_every_allocation_failure(void **state) {
  (void)state;
  every_failure(timerq_op);
}

/* --------------------------------------------- reaping frees the memory */

static void register_all(fb_registry *r, int n, const char *prefix,
                         double now) {
  char svc[16], host[32];
  for (int i = 0; i < n; i++) {
    snprintf(svc, sizeof svc, "svc%d", i % 100);
    snprintf(host, sizeof host, "%s.%d.%d", prefix, i >> 8, i & 255);
    assert_int_equal(fb_registry_register(r, svc, host, 8080, now), FB_ADDED);
  }
}

/* 100,000 registrations expire and are reaped: the registry gives back
 * what they took -- all but the id slots (16 bytes per instance that was
 * ever live at once), which keep ids from being reused. */
static void reaping_returns_memory(void **state) {
  (void)state;
  arm(0, 0);
  fb_registry_config cfg;
  fb_registry_config_init(&cfg);
  cfg.heartbeat_timeout = 10;
  cfg.reap_after = 20;
  fb_registry *r = fb_registry_new(&cfg);
  register_all(r, 100, "10.0", 0); /* the 100 services, which stay */
  fb_registry_sweep(r, 30);
  assert_int_equal(fb_registry_ninstances(r), 0);
  size_t baseline = heap.bytes;
  register_all(r, 100000, "10.1", 40);
  size_t peak = heap.bytes;
  fb_registry_sweep(r, 60);
  assert_int_equal(fb_registry_ninstances(r), 100000); /* expired, kept */
  fb_registry_sweep(r, 70);
  assert_int_equal(fb_registry_ninstances(r), 0);
  assert_int_equal(fb_registry_reaped(r), 100100);
  size_t after = heap.bytes;
  print_message("# registry bytes: %zu empty, %zu with 100,000 instances, "
                "%zu once they were reaped\n", baseline, peak, after);
  assert_true(after - baseline < 131072 * 16 + 16384);
  assert_true(after - baseline < (peak - baseline) / 8);
  /* and it is as good as new */
  register_all(r, 1000, "10.2", 80);
  fb_instance *const *v;
  assert_int_equal(fb_service_live(fb_registry_service(r, "svc7"), 80, &v),
                   10);
  fb_registry_release(r);
  assert_int_equal(heap.live, 0);
}

/* ----------------------------------------------------- the hook itself */

static void replace_allocator_refuses_null(void **state) {
  (void)state;
  assert_int_equal(fb_replace_allocator(NULL, t_calloc, t_realloc, t_free),
                   FB_EINVAL);
  assert_int_equal(fb_replace_allocator(t_malloc, t_calloc, t_realloc, NULL),
                   FB_EINVAL);
  /* nothing was replaced: the core still allocates through t_malloc */
  arm(0, 0);
  fb_registry *r = fb_registry_new(NULL);
  assert_non_null(r);
  assert_true(heap.live > 0);
  fb_registry_release(r);
  assert_int_equal(heap.live, 0);
}

int main(void) {
  /* before anything allocates: memory is freed by the allocator it came
   * from */
  if (fb_replace_allocator(t_malloc, t_calloc, t_realloc, t_free) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(replace_allocator_refuses_null, reset),
      cmocka_unit_test_setup(registry_survives_every_allocation_failure, reset),
      cmocka_unit_test_setup(balancers_survive_every_allocation_failure, reset),
      cmocka_unit_test_setup(service_removal_survives_every_allocation_failure,
                             reset),
      cmocka_unit_test_setup(breakers_survive_every_allocation_failure, reset),
      cmocka_unit_test_setup(outlier_survives_every_allocation_failure, reset),
      cmocka_unit_test_setup(events_survive_every_allocation_failure, reset),
      cmocka_unit_test_setup(report_survives_every_allocation_failure, reset),
      cmocka_unit_test_setup(timer_queue_survives_every_allocation_failure,
                             reset),
      cmocka_unit_test_setup(reaping_returns_memory, reset),
  };
  return cmocka_run_group_tests_name("alloc_fail", tests, NULL, NULL);
}
