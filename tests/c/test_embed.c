/*
 * test_embed.c -- the runtime API for C hosts: Lua publishes objects the
 * host uses through the core API; Lua errors reach the host's callback,
 * never exit(); a host-owned loop keeps running through them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "fusebox.h"

typedef struct errors {
  int n;
  char last[512];
} errors;

static void on_error(void *data, const char *msg) {
  errors *e = data;
  e->n++;
  strncpy(e->last, msg, sizeof e->last - 1);
}

static fb_runtime *virtual_runtime(errors *e) {
  fb_runtime_config cfg;
  fb_runtime_config_init(&cfg);
  cfg.virtual_time = 1;
  cfg.has_seed = 1;
  cfg.seed = 7;
  cfg.on_error = on_error;
  cfg.error_data = e;
  fb_runtime *rt = fb_runtime_new(&cfg);
  assert_non_null(rt);
  return rt;
}

static void exports_reach_c(void **state) {
  (void)state;
  errors e = {0};
  fb_runtime *rt = virtual_runtime(&e);
  assert_int_equal(fb_runtime_eval(rt,
      "local fb = require 'fusebox'\n"
      "local reg = fb.registry()\n"
      "reg:register('pay', '127.0.0.1', 9000)\n"
      "fb.export('payments', fb.breaker { failure_threshold = 2, timeout = 5 })\n"
      "fb.export('lb', fb.balancer(reg, 'round_robin'))\n"
      "fb.export('reg', reg)\n"
      "fb.sleep(60)\n", "policy"), 0);
  assert_int_equal(fb_runtime_run(rt), 0);
  assert_true(fb_runtime_now(rt) == 60);
  fb_breaker *b = fb_runtime_breaker(rt, "payments");
  assert_non_null(b);
  for (int i = 0; i < 2; i++)
    fb_breaker_record(b, fb_breaker_acquire(b, 60), FB_FAILURE, 0, 60);
  assert_int_equal(fb_breaker_state_of(b), FB_OPEN);
  fb_registry *reg = fb_runtime_registry(rt, "reg");
  fb_balancer *lb = fb_runtime_balancer(rt, "lb");
  assert_non_null(reg);
  fb_instance *i = fb_balancer_pick(lb, fb_registry_service(reg, "pay"), 20);
  assert_non_null(i);
  assert_int_equal(fb_instance_port(i), 9000);
  assert_int_equal(e.n, 0);
  fb_runtime_free(rt);
}

static void lookups_explain_failures(void **state) {
  (void)state;
  errors e = {0};
  fb_runtime *rt = virtual_runtime(&e);
  fb_runtime_eval(rt, "require('fusebox').export('b', require('fusebox').breaker())", NULL);
  assert_int_equal(fb_runtime_run(rt), 0);
  assert_null(fb_runtime_balancer(rt, "b"));
  assert_string_equal(fb_runtime_last_error(rt), "'b' is not a fusebox.balancer");
  assert_null(fb_runtime_breaker(rt, "nope"));
  assert_string_equal(fb_runtime_last_error(rt), "nothing is exported as 'nope'");
  assert_null(fb_runtime_breaker(NULL, "b"));
  assert_null(fb_runtime_breaker(rt, NULL));
  assert_int_equal(fb_runtime_load(NULL, "x.lua"), FB_EINVAL);
  assert_int_equal(fb_runtime_eval(rt, NULL, NULL), FB_EINVAL);
  assert_int_equal(fb_runtime_load(rt, "/no/such/policy.lua"), FB_ELUA);
  assert_non_null(strstr(fb_runtime_last_error(rt), "/no/such/policy.lua"));
  assert_int_equal(e.n, 1);
  fb_runtime_free(rt);
  fb_runtime_free(NULL);
}

/* A pointer the host holds stays valid whatever Lua does: a __gc called
 * by hand, the export dropped and the object collected (under ASan a use
 * after free here fails the run; in any build Lua would see "closed"). */
static void host_pointers_outlive_lua(void **state) {
  (void)state;
  errors e = {0};
  fb_runtime *rt = virtual_runtime(&e);
  assert_int_equal(fb_runtime_eval(rt,
      "local fb = require 'fusebox'\n"
      "held = fb.breaker { failure_threshold = 2, timeout = 5 }\n"
      "fb.export('held', held)\n"
      "reg = fb.registry()\n"
      "reg:register('pay', '127.0.0.1', 9000)\n"
      "fb.export('reg', reg)\n"
      "fb.export('lb', fb.balancer(reg, 'round_robin'))\n"
      "lim = fb.limiter { algorithm = 'aimd' }\n"
      "fb.export('lim', lim)\n", "policy"), 0);
  assert_int_equal(fb_runtime_run(rt), 0);
  fb_breaker *b = fb_runtime_breaker(rt, "held");
  fb_limiter *lim = fb_runtime_limiter(rt, "lim");
  assert_non_null(lim);
  fb_registry *reg = fb_runtime_registry(rt, "reg");
  fb_balancer *lb = fb_runtime_balancer(rt, "lb");
  assert_non_null(b);
  assert_non_null(lb);
  assert_int_equal(fb_runtime_eval(rt,
      "local fb = require 'fusebox'\n"
      "getmetatable(held).__gc(held)\n"
      "getmetatable(reg).__gc(reg)\n"
      "getmetatable(lim).__gc(lim)\n"
      "fb.export('held', nil) fb.export('lb', nil) fb.export('reg', nil)\n"
      "fb.export('lim', nil) lim = nil\n"
      "assert(held.state == 'CLOSED', 'the host holds it: still open')\n"
      "held, reg = nil, nil\n"
      "collectgarbage() collectgarbage()\n", "hostile"), 0);
  assert_int_equal(fb_runtime_run(rt), 0);
  assert_int_equal(e.n, 0);
  for (int i = 0; i < 2; i++)
    fb_breaker_record(b, fb_breaker_acquire(b, 1), FB_FAILURE, 0, 1);
  assert_int_equal(fb_breaker_state_of(b), FB_OPEN);
  fb_instance *i = fb_balancer_pick(lb, fb_registry_service(reg, "pay"), 1);
  assert_non_null(i);
  assert_int_equal(fb_instance_port(i), 9000);
  int64_t permit = fb_limiter_acquire(lim);
  assert_true(permit >= 0);
  assert_true(fb_limiter_release(lim, permit, FB_LIMIT_SUCCESS, 0.01, 1) >= 0);
  fb_runtime_free(rt); /* frees them: valgrind and ASan see no leak */
}

static void lua_errors_are_returned_not_fatal(void **state) {
  (void)state;
  errors e = {0};
  fb_runtime *rt = virtual_runtime(&e);
  assert_int_equal(fb_runtime_eval(rt, "local x = = 1", "bad"), FB_ELUA);
  assert_non_null(strstr(fb_runtime_last_error(rt), "bad:1:"));
  assert_int_equal(fb_runtime_eval(rt, "require('fusebox').export('x', 42)", "wrongtype"), 0);
  assert_int_equal(fb_runtime_run(rt), FB_ELUA);
  assert_non_null(strstr(fb_runtime_last_error(rt),
                         "registry, balancer, breaker or limiter expected, got number"));
  assert_non_null(strstr(fb_runtime_last_error(rt), "stack traceback"));
  assert_int_equal(e.n, 2);
  /* the runtime is still usable */
  assert_int_equal(fb_runtime_eval(rt, "require('fusebox').sleep(1)", NULL), 0);
  assert_int_equal(fb_runtime_run(rt), 0);
  fb_runtime_free(rt);
}

static void host_loop_survives_lua_errors(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  errors e = {0};
  fb_runtime_config cfg;
  fb_runtime_config_init(&cfg);
  cfg.loop = &loop;
  cfg.on_error = on_error;
  cfg.error_data = &e;
  cfg.virtual_time = 1;
  assert_null(fb_runtime_new(&cfg)); /* a host's loop is real time */
  cfg.virtual_time = 0;
  fb_runtime *rt = fb_runtime_new(&cfg);
  assert_non_null(rt);
  assert_int_equal(fb_runtime_run(rt), FB_EINVAL); /* the host runs it */
  assert_int_equal(fb_runtime_eval(rt,
      "local fb = require 'fusebox'\n"
      "fb.spawn(function() fb.sleep(0.01); error('policy bug') end)\n"
      "fb.sleep(0.03)\n"
      "fb.export('late', fb.breaker())\n", "host"), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(e.n, 1);
  assert_non_null(strstr(e.last, "host:2: policy bug"));
  assert_non_null(fb_runtime_breaker(rt, "late")); /* ran after the error */
  fb_runtime_free(rt);
  uv_run(&loop, UV_RUN_DEFAULT); /* completes the runtime's handle close */
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A host clock that counts the reads, so the test knows it was used. */
typedef struct host_clock {
  double t;
  int reads;
} host_clock;

static double host_now(void *data) {
  host_clock *c = data;
  c->reads++;
  return c->t;
}

static void the_real_clock_is_absolute_or_the_hosts(void **state) {
  (void)state;
  errors e = {0};
  fb_runtime *rt = fb_runtime_new(NULL);
  assert_non_null(rt);
  /* CLOCK_MONOTONIC itself, not time since the module loaded: every
   * process reads one time base */
  double before = fb_monotonic_now();
  double t = fb_runtime_now(rt);
  assert_true(before <= t && t <= fb_monotonic_now());
  assert_true(before > 0);
  host_clock c = {1000.5, 0};
  assert_int_equal(fb_runtime_set_clock(rt, host_now, &c), 0);
  assert_true(fb_runtime_now(rt) == 1000.5);
  /* Lua reads it too (fb.now through the FFI, fb.real_now), and the
   * loop-cached clock a pick reads is stamped from it at each resume */
  assert_int_equal(fb_runtime_eval(rt,
      "local fb = require 'fusebox'\n"
      "assert(fb.now() == 1000.5, 'fb.now ' .. fb.now())\n"
      "assert(fb.real_now() == 1000.5, 'real_now ' .. fb.real_now())\n"
      "local reg = fb.registry { heartbeat_timeout = 10 }\n"
      "reg:register('s', '127.0.0.1', 1)\n"
      "fb.export('reg', reg)\n", "clock"), 0);
  assert_int_equal(fb_runtime_run(rt), 0);
  assert_true(c.reads >= 3);
  fb_registry *reg = fb_runtime_registry(rt, "reg");
  assert_non_null(reg);
  fb_service *s = fb_registry_service(reg, "s");
  fb_instance *const *live;
  assert_int_equal(fb_service_live(s, 1005, &live), 1);  /* registered at 1000.5 */
  assert_int_equal(fb_service_live(s, 1011, &live), 0);  /* expired by the host's time */
  assert_int_equal(fb_runtime_set_clock(rt, NULL, NULL), 0);
  t = fb_runtime_now(rt);
  assert_true(t >= before && t <= fb_monotonic_now());
  assert_int_equal(fb_runtime_set_clock(NULL, host_now, &c), FB_EINVAL);
  fb_runtime_free(rt);
  rt = virtual_runtime(&e); /* a virtual clock is its own */
  assert_int_equal(fb_runtime_set_clock(rt, host_now, &c), FB_EINVAL);
  assert_true(fb_runtime_now(rt) == 0);
  fb_runtime_free(rt);
  assert_int_equal(e.n, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(exports_reach_c),
      cmocka_unit_test(host_pointers_outlive_lua),
      cmocka_unit_test(lookups_explain_failures),
      cmocka_unit_test(lua_errors_are_returned_not_fatal),
      cmocka_unit_test(host_loop_survives_lua_errors),
      cmocka_unit_test(the_real_clock_is_absolute_or_the_hosts),
  };
  return cmocka_run_group_tests_name("embed", tests, NULL, NULL);
}
