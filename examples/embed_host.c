/*
 * embed_host.c -- a small C host embedding fusebox on its own libuv loop.
 *
 * It starts three TCP backends on 127.0.0.1 (the second one broken: it
 * hangs up without answering), loads the policy from a Lua file
 * (examples/embed_policy.lua: a registry, a round-robin balancer and one
 * breaker per backend), registers the backends, and sends 60 requests,
 * 20 ms apart, each to the instance the balancer picks -- skipping any
 * whose breaker is open. It prints what each backend got.
 *
 *   cc embed_host.c $(pkg-config --cflags --libs fusebox libuv) -o host
 *   ./host examples/embed_policy.lua
 */
#include <fusebox.h>
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBACKENDS 3
#define NREQUESTS 60

typedef struct backend {
  uv_tcp_t server;
  int port, broken;
  int sent, ok, failed, rejected;
  fb_breaker *breaker;
} backend;

typedef struct request {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  backend *to;
  int64_t permit;
  double started;
  char reply[16];
  size_t got;
} request;

static uv_loop_t loop;
static fb_runtime *rt;
static fb_balancer *lb;
static fb_service *service;
static backend backends[NBACKENDS];
static uv_timer_t ticker;
static int requests_left = NREQUESTS, in_flight;

static void on_error(void *data, const char *msg) {
  (void)data;
  fprintf(stderr, "policy error: %s\n", msg);
}

/* ------------------------------------------------------------ backends */

static void alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(size);
  buf->len = buf->base ? size : 0;
}

static void free_handle(uv_handle_t *h) { free(h); }

static void after_reply(uv_write_t *w, int status) {
  (void)status;
  uv_close((uv_handle_t *)w->handle, free_handle);
  free(w);
}

static void server_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  free(buf->base);
  if (n < 0) {
    uv_close((uv_handle_t *)s, free_handle);
    return;
  }
  if (n > 0) { /* a whole "ping\n" arrives in one read on loopback */
    uv_read_stop(s);
    static char ok[] = "OK\n";
    uv_buf_t b = uv_buf_init(ok, 3);
    uv_write_t *w = malloc(sizeof *w);
    uv_write(w, s, &b, 1, after_reply);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  backend *be = server->data;
  uv_tcp_t *c = malloc(sizeof *c);
  if (status < 0 || !c)
    return free(c);
  uv_tcp_init(&loop, c);
  if (uv_accept(server, (uv_stream_t *)c) != 0 || be->broken)
    uv_close((uv_handle_t *)c, free_handle); /* hang up, say nothing */
  else
    uv_read_start((uv_stream_t *)c, alloc, server_read);
}

static void start_backend(backend *be, int broken) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(&loop, &be->server);
  be->server.data = be;
  be->broken = broken;
  uv_tcp_bind(&be->server, (const struct sockaddr *)&addr, 0);
  uv_listen((uv_stream_t *)&be->server, 64, on_connection);
  uv_tcp_getsockname(&be->server, (struct sockaddr *)&bound, &len);
  be->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/* ------------------------------------------------------------- client */

static void maybe_stop(void);

static void finish(request *r, int ok) {
  double now = fb_runtime_now(rt);
  fb_breaker_record(r->to->breaker, r->permit, ok ? FB_SUCCESS : FB_FAILURE,
                    now - r->started, now);
  if (ok)
    r->to->ok++;
  else
    r->to->failed++;
  uv_close((uv_handle_t *)&r->tcp, free_handle);
  in_flight--;
  maybe_stop();
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  request *r = s->data;
  if (n > 0 && r->got + (size_t)n < sizeof r->reply) {
    memcpy(r->reply + r->got, buf->base, (size_t)n);
    r->got += (size_t)n;
  }
  free(buf->base);
  if (n < 0 || memchr(r->reply, '\n', r->got)) {
    uv_read_stop(s);
    finish(r, r->got == 3 && memcmp(r->reply, "OK\n", 3) == 0);
  }
}

static void on_sent(uv_write_t *w, int status) {
  request *r = w->data;
  if (status < 0)
    finish(r, 0);
  else
    uv_read_start((uv_stream_t *)&r->tcp, alloc, client_read);
}

static void on_connect(uv_connect_t *c, int status) {
  request *r = c->data;
  if (status < 0)
    return finish(r, 0);
  static char ping[] = "ping\n";
  uv_buf_t b = uv_buf_init(ping, 5);
  r->write.data = r;
  uv_write(&r->write, (uv_stream_t *)&r->tcp, &b, 1, on_sent);
}

static backend *backend_at(int port) {
  for (int i = 0; i < NBACKENDS; i++)
    if (backends[i].port == port)
      return &backends[i];
  return NULL;
}

/* Picks until a backend's breaker lets the call through (at most one
 * round over the backends), then sends it a request. */
static void send_request(void) {
  double now = fb_runtime_now(rt);
  for (int tries = 0; tries < NBACKENDS; tries++) {
    fb_instance *inst = fb_balancer_pick(lb, service, now);
    backend *be = inst ? backend_at(fb_instance_port(inst)) : NULL;
    if (!be)
      return;
    int64_t permit = fb_breaker_acquire(be->breaker, now);
    if (permit < 0) {
      be->rejected++;
      continue;
    }
    request *r = calloc(1, sizeof *r);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", be->port, &addr);
    uv_tcp_init(&loop, &r->tcp);
    r->tcp.data = r->connect.data = r;
    r->to = be;
    r->permit = permit;
    r->started = now;
    be->sent++;
    in_flight++;
    uv_tcp_connect(&r->connect, &r->tcp, (const struct sockaddr *)&addr,
                   on_connect);
    return;
  }
}

static void tick(uv_timer_t *t) {
  (void)t;
  if (requests_left-- > 0)
    send_request();
  maybe_stop();
}

static void maybe_stop(void) {
  if (requests_left > 0 || in_flight > 0)
    return;
  uv_timer_stop(&ticker);
  uv_close((uv_handle_t *)&ticker, NULL);
  for (int i = 0; i < NBACKENDS; i++)
    uv_close((uv_handle_t *)&backends[i].server, NULL);
}

/* --------------------------------------------------------------- main */

static int load_policy(const char *path) {
  fb_runtime_config cfg;
  fb_runtime_config_init(&cfg);
  cfg.loop = &loop;
  cfg.on_error = on_error;
  if (!(rt = fb_runtime_new(&cfg)) || fb_runtime_load(rt, path) < 0)
    return -1;
  uv_run(&loop, UV_RUN_NOWAIT); /* the policy file runs on the loop */
  fb_registry *reg = fb_runtime_registry(rt, "backends");
  lb = fb_runtime_balancer(rt, "lb");
  char name[32];
  for (int i = 0; i < NBACKENDS; i++) {
    snprintf(name, sizeof name, "breaker%d", i + 1);
    backends[i].breaker = fb_runtime_breaker(rt, name);
    if (!backends[i].breaker)
      return -1;
  }
  if (!reg || !lb)
    return -1;
  for (int i = 0; i < NBACKENDS; i++)
    fb_registry_register(reg, "echo", "127.0.0.1", backends[i].port,
                         fb_runtime_now(rt));
  service = fb_registry_service(reg, "echo");
  return 0;
}

int main(int argc, char **argv) {
  const char *policy = argc > 1 ? argv[1] : "examples/embed_policy.lua";
  uv_loop_init(&loop);
  for (int i = 0; i < NBACKENDS; i++)
    start_backend(&backends[i], i == 1);
  if (load_policy(policy) < 0) {
    fprintf(stderr, "embed_host: cannot load %s: %s\n", policy,
            fb_runtime_last_error(rt));
    return 1;
  }
  uv_timer_init(&loop, &ticker);
  uv_timer_start(&ticker, tick, 20, 20);
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < NBACKENDS; i++) {
    backend *be = &backends[i];
    printf("backend %d%s: sent %d, ok %d, failed %d, rejected %d, breaker %s\n",
           i + 1, be->broken ? " (broken)" : "", be->sent, be->ok, be->failed,
           be->rejected, fb_breaker_state_name(fb_breaker_state_of(be->breaker)));
  }
  fb_runtime_free(rt);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}
