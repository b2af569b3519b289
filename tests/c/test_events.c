/*
 * test_events.c -- the registry listener hook and the event sink's summary.
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
#include <unistd.h>

#include "events.h"
#include "fusebox.h"

typedef struct heard {
  int n;
  fb_registry_event ev[16];
  char host[16][32];
  double now[16];
} heard;

static void listen(void *ud, fb_registry_event ev, const fb_instance *i,
                   double now) {
  heard *h = ud;
  assert_true(h->n < 16);
  h->ev[h->n] = ev;
  snprintf(h->host[h->n], sizeof h->host[0], "%s", fb_instance_host(i));
  h->now[h->n] = now;
  h->n++;
}

static void registry_reports_membership_changes(void **state) {
  (void)state;
  heard h = {0};
  fb_registry *r = fb_registry_new(NULL); /* 30 s timeout */
  fb_registry_set_listener(r, listen, &h);
  assert_int_equal(fb_registry_register(r, "s", "a", 1, 0), FB_ADDED);
  assert_int_equal(fb_registry_register(r, "s", "b", 1, 5), FB_ADDED);
  assert_int_equal(fb_registry_heartbeat(r, "s", "a", 1, 10), FB_REFRESHED);
  assert_int_equal(h.n, 2); /* a refresh of a live instance is silent */
  /* b's heartbeat (t=5) is 30 s old at 35: a heartbeat from a notices */
  assert_int_equal(fb_registry_heartbeat(r, "s", "a", 1, 35), FB_REFRESHED);
  assert_int_equal(h.n, 3);
  assert_int_equal(h.ev[2], FB_REG_EXPIRED);
  assert_string_equal(h.host[2], "b");
  assert_true(h.now[2] == 35);
  assert_int_equal(fb_registry_heartbeat(r, "s", "b", 1, 36), FB_REFRESHED);
  assert_int_equal(h.ev[3], FB_REG_RETURNED);
  assert_int_equal(fb_registry_deregister(r, "s", "a", 1), 1);
  assert_int_equal(h.ev[4], FB_REG_REMOVED);
  assert_string_equal(h.host[4], "a");
  assert_true(isnan(h.now[4]));
  fb_registry_set_listener(r, NULL, NULL);
  assert_int_equal(fb_registry_register(r, "s", "c", 1, 40), FB_ADDED);
  assert_int_equal(h.n, 5);
  fb_registry_release(r);
}

static cJSON *state_change(double t, int breaker, const char *from,
                           const char *to) {
  cJSON *e = fb_events_new(t, "state_change");
  cJSON_AddNumberToObject(e, "breaker", breaker);
  cJSON_AddStringToObject(e, "from", from);
  cJSON_AddStringToObject(e, "to", to);
  return e;
}

static cJSON *call_end(double t, const char *outcome) {
  cJSON *e = fb_events_new(t, "call_end");
  cJSON_AddStringToObject(e, "outcome", outcome);
  return e;
}

static void summary_counts_calls_and_time_in_states(void **state) {
  (void)state;
  fb_events ev;
  assert_int_equal(fb_events_open(&ev, NULL, 0), 0);
  fb_events_write(&ev, call_end(1, "success"));
  fb_events_write(&ev, call_end(2, "failure"));
  fb_events_write(&ev, call_end(3, "failure"));
  fb_events_write(&ev, call_end(3, "timeout")); /* an outcome of its own */
  fb_events_write(&ev, fb_events_new(4, "reject"));
  fb_events_write(&ev, state_change(3, 7, "CLOSED", "OPEN"));
  fb_events_write(&ev, state_change(8, 7, "OPEN", "HALF_OPEN"));
  fb_events_write(&ev, state_change(9, 7, "HALF_OPEN", "CLOSED"));
  fb_events_write(&ev, state_change(5, 2, "CLOSED", "OPEN"));
  cJSON *s = fb_events_summary(&ev, 10);
  char *text = cJSON_PrintUnformatted(s);
  /* breaker 7: CLOSED 3 + 1, OPEN 5, HALF_OPEN 1; breaker 2: CLOSED 5,
   * OPEN 5 (still open at t=10) */
  assert_string_equal(text, "{\"duration\":10,\"calls\":4,\"successes\":1,"
                            "\"failures\":2,\"timeouts\":1,\"rejections\":1,"
                            "\"breaker_time\":"
                            "{\"CLOSED\":9,\"OPEN\":10,\"HALF_OPEN\":1}}");
  cJSON_free(text);
  cJSON_Delete(s);
  char *line = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&line, &size);
  fb_events_print_summary(&ev, 10, f);
  fclose(f);
  assert_non_null(strstr(line, ": 4 calls, 1 success, 2 failures, 1 timeout, "
                               "1 rejection\n"));
  free(line);
  assert_int_equal(fb_events_close(&ev), 0);
}

static void sink_writes_json_lines(void **state) {
  (void)state;
  char path[] = "/tmp/fb_events_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  fb_events ev;
  assert_int_equal(fb_events_open(&ev, path, 0), 0);
  cJSON *e = fb_events_new(0.5, "note");
  cJSON_AddStringToObject(e, "text", "a \"quoted\"\nline");
  fb_events_write(&ev, e);
  fb_events_write(&ev, fb_events_new(1, "end"));
  assert_int_equal(fb_events_close(&ev), 0);
  FILE *f = fopen(path, "r");
  char buf[256] = {0};
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  remove(path);
  buf[n] = 0;
  assert_string_equal(buf, "{\"t\":0.5,\"kind\":\"note\",\"text\":\"a "
                           "\\\"quoted\\\"\\nline\"}\n{\"t\":1,\"kind\":\"end\"}\n");
  assert_int_equal(fb_events_open(&ev, "/nonexistent/dir/x", 0), -1);
}

/* A tap sees every event as it is written, in order, file or not. */
static void note_kind(void *arg, const fb_event *e) {
  char *seen = arg;
  strcat(seen, e->kind);
  strcat(seen, ",");
}

static void a_tap_sees_every_event(void **state) {
  (void)state;
  char seen[64] = "";
  fb_events ev;
  assert_int_equal(fb_events_open(&ev, NULL, 0), 0);
  assert_null(ev.tap); /* open sets none */
  ev.tap = note_kind;
  ev.tap_arg = seen;
  fb_events_write(&ev, fb_events_new(0.5, "call_end"));
  fb_events_write(&ev, fb_events_new(1, "reject"));
  assert_string_equal(seen, "call_end,reject,");
  assert_int_equal(ev.calls, 1); /* the summary counts as before */
  assert_int_equal(fb_events_close(&ev), 0);
}

/* An event with fixed fields is counted as its JSON twin is, read
 * through the same accessor, and written as the same line. */
static void fixed_fields_log_as_json_does(void **state) {
  (void)state;
  char path[] = "/tmp/fusebox-events-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  cJSON *args = cJSON_CreateArray();
  cJSON_AddItemToArray(args, cJSON_CreateString("x"));
  fb_event e = {.t = 2.5, .kind = "call_end", .n = 6};
  e.field[0] = (fb_event_field){.name = "args", .type = FB_FIELD_JSON, .json = args};
  e.field[1] = (fb_event_field){.name = "call", .type = FB_FIELD_NUMBER, .num = 7};
  e.field[2] = (fb_event_field){.name = "late", .type = FB_FIELD_BOOL, .num = 1};
  e.field[3] = (fb_event_field){.name = "latency", .type = FB_FIELD_NUMBER, .num = 0.1};
  e.field[4] = (fb_event_field){.name = "none", .type = FB_FIELD_NULL};
  e.field[5] = (fb_event_field){.name = "outcome", .type = FB_FIELD_STRING, .str = "timeout"};
  fb_events ev;
  assert_int_equal(fb_events_open(&ev, path, 0), 0);
  fb_events_put(&ev, &e);
  cJSON *twin = fb_event_to_json(&e);
  assert_non_null(twin);
  fb_events_write(&ev, twin); /* the same event, the JSON way */
  assert_int_equal(ev.calls, 2);
  assert_int_equal(ev.timeouts, 2);
  assert_int_equal(fb_events_close(&ev), 0);
  FILE *f = fopen(path, "r");
  char buf[512] = {0};
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  remove(path);
  buf[n] = 0;
  const char *line = "{\"t\":2.5,\"kind\":\"call_end\",\"args\":[\"x\"],\"call\":7,"
                     "\"late\":true,\"latency\":0.1,\"none\":null,\"outcome\":\"timeout\"}\n";
  char both[512];
  snprintf(both, sizeof both, "%s%s", line, line);
  assert_string_equal(buf, both);
  /* the accessor reads either form alike */
  cJSON *parsed = cJSON_Parse(line);
  fb_event view, *forms[2] = {&e, &view};
  assert_int_equal(fb_event_of_json(parsed, &view), 0);
  assert_string_equal(view.kind, "call_end");
  assert_true(view.t == 2.5);
  for (int i = 0; i < 2; i++) {
    fb_event_field got;
    assert_int_equal(fb_event_get(forms[i], "outcome", &got), 0);
    assert_int_equal(got.type, FB_FIELD_STRING);
    assert_string_equal(got.str, "timeout");
    assert_int_equal(fb_event_get(forms[i], "late", &got), 0);
    assert_int_equal(got.type, FB_FIELD_BOOL);
    assert_true(got.num == 1);
    assert_int_equal(fb_event_get(forms[i], "args", &got), 0);
    assert_int_equal(got.type, FB_FIELD_JSON);
    assert_true(cJSON_IsArray(got.json));
    assert_int_equal(fb_event_get(forms[i], "none", &got), 0);
    assert_int_equal(got.type, FB_FIELD_NULL);
    assert_int_equal(fb_event_get(forms[i], "service", &got), -1);
  }
  /* no object, or no string kind or number t: no event */
  cJSON *bad = cJSON_Parse("{\"t\":\"1\",\"kind\":\"x\"}");
  assert_int_equal(fb_event_of_json(bad, &view), -1);
  cJSON_Delete(bad);
  bad = cJSON_Parse("[1]");
  assert_int_equal(fb_event_of_json(bad, &view), -1);
  cJSON_Delete(bad);
  cJSON_Delete(parsed);
  cJSON_Delete(args);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(registry_reports_membership_changes),
      cmocka_unit_test(summary_counts_calls_and_time_in_states),
      cmocka_unit_test(sink_writes_json_lines),
      cmocka_unit_test(a_tap_sees_every_event),
      cmocka_unit_test(fixed_fields_log_as_json_does),
  };
  return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
