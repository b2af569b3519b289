/*
 * lua_tcp.c -- TCP connections and servers on the runtime's loop: the
 * primitives lua/fusebox/tcp.lua wraps into fb.tcp.
 *
 * Each primitive either finishes at once, returning true and its results,
 * or parks the calling coroutine (fb_runtime_wait) and yields; the libuv
 * callback wakes it with the results, and a wait that times out resumes
 * it with false, after which the wrapper cancels the operation (read) or
 * closes the socket (connect, write). Cancelling drops the waiter's ref
 * at once, so a late callback can never wake a coroutine that has moved
 * on to wait for something else.
 *
 * Memory, as in luv: the struct holding the uv handle is freed by the
 * handle's close callback, never by __gc; the userdata's payload points
 * to it and is NULL once the socket is closed. A listening server is
 * pinned by a registry ref, so it serves until closed even when Lua
 * drops it. The runtime closes whatever is still open when it goes.
 *
 * TLS (sock:_tls_start, then sock:_handshake): from then on every byte
 * passes through a session of src/tls.c. What arrives is fed to it and
 * only whole records' plaintext reaches a reader (a read that brings
 * none, a partial record or a session ticket, reads on); what is written
 * is encrypted and sent like plain data; whatever the session makes on
 * its own (handshake flights, alerts, close_notify) is sent in order
 * behind the writes already queued. Nothing waits but the coroutine that
 * asked: the handshake parks its caller like a read.
 */
#include "lua_util.h"
#include "tls.h"

#include <stdlib.h>
#include <string.h>

#define FBL_TCP "fusebox.tcp"

typedef struct tcp tcp;

typedef struct connect_req {
  uv_connect_t req; /* first: the callback casts back */
  int waiter;
} connect_req;

typedef struct write_req {
  uv_write_t req; /* first: the callback casts back */
  int waiter;
  size_t unasked; /* bytes of TLS output nobody asked to write */
  char data[];
} write_req;

/* The most TLS output a socket queues on its own (key update answers,
 * alerts) while its peer reads nothing: a peer that keeps asking for
 * answers it never takes fails the connection instead of filling memory. */
#define TLS_UNASKED_MAX (1024 * 1024)

struct tcp {
  fb_io io;                /* first: the runtime's list of open I/O */
  uv_tcp_t handle;
  fb_runtime *rt;          /* NULL once detached from a closing Lua state */
  tcp **slot;              /* the userdata's payload */
  int reader;              /* ref of the coroutine parked in read */
  int watcher;             /* ref of the coroutine watching (sock:_watch) */
  int handler;             /* server: function run for each connection */
  int self;                /* server: pins the userdata while listening */
  int error;               /* sticky read error; UV_EOF at end of stream */
  connect_req *connecting;
  write_req *writing;
  char *pending;           /* data that arrived for a reader who had gone */
  size_t npending;
  fb_tls *tls;             /* NULL: plain text */
  size_t unasked;          /* TLS output queued on its own, not yet sent */
  int handshaking;         /* the reader waits for the TLS handshake */
  int reading;             /* uv_read_start'ed: see start_reading */
  int closed;
};

/* t->error when t's TLS session failed: fb_tls_error() says why (libuv's
 * errors are negative). */
#define TLS_ERROR 1

static void unref(lua_State *L, int *ref) {
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* Wakes the coroutine behind *ref with the nargs values on top of L and
 * drops the ref; returns 1 if it was parked (else the values are lost).
 * Callers pass the runtime they read before pushing the values: a push
 * may run a finalizer that closes the socket (lua_util.h), which sets
 * t->rt NULL and drops *ref (then nothing is woken). */
static int wake(lua_State *L, fb_runtime *rt, int *ref, int nargs) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
  lua_insert(L, -(nargs + 1));
  int woke = fb_runtime_wake(L, rt, lua_gettop(L) - nargs, nargs);
  lua_pop(L, 1);
  unref(L, ref);
  return woke;
}

static int push_error(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushstring(L, err == UV_EOF ? "closed" : uv_strerror(err));
  return 2;
}

/* push_error() for t's sticky error, which may be its TLS session's. */
static int push_tcp_error(lua_State *L, tcp *t, int err) {
  if (err != TLS_ERROR)
    return push_error(L, err);
  lua_pushnil(L);
  lua_pushstring(L, fb_tls_error(t->tls));
  return 2;
}

/* Wakes *ref with nil and the error, if anyone waits there. */
static void wake_error(lua_State *L, fb_runtime *rt, int *ref, int err) {
  if (*ref == LUA_NOREF)
    return;
  if (rt) {
    push_error(L, err);
    wake(L, rt, ref, 2);
  } else {
    unref(L, ref);
  }
}

/* Wakes the coroutine watching t (parked in core.wait elsewhere) with
 * why; a watch ends with its first wake. */
static void wake_watcher(lua_State *L, fb_runtime *rt, tcp *t, const char *why) {
  if (t->watcher == LUA_NOREF)
    return;
  if (rt) {
    lua_pushstring(L, why);
    wake(L, rt, &t->watcher, 1);
  } else {
    unref(L, &t->watcher);
  }
}

static void on_closed(uv_handle_t *h) {
  tcp *t = h->data;
  fb_tls_free(t->tls);
  free(t->pending);
  free(t);
}

/* Closes t. Waiters wake with "closed" unless the Lua state is going
 * away (wake_waiters 0: __gc, runtime teardown), when t is detached so
 * callbacks still due do not touch Lua. */
static void tcp_close(tcp *t, lua_State *L, int wake_waiters) {
  if (t->closed)
    return;
  t->closed = 1;
  fb_runtime_io_remove(t->rt, &t->io);
  if (t->slot)
    *t->slot = NULL;
  t->slot = NULL;
  fb_runtime *rt = wake_waiters ? t->rt : NULL;
  wake_error(L, rt, &t->reader, UV_EOF);
  wake_watcher(L, rt, t, "closed");
  if (t->connecting)
    wake_error(L, rt, &t->connecting->waiter, UV_ECANCELED);
  if (t->writing)
    wake_error(L, rt, &t->writing->waiter, UV_ECANCELED);
  unref(L, &t->handler);
  unref(L, &t->self);
  if (!wake_waiters)
    t->rt = NULL;
  uv_close((uv_handle_t *)&t->handle, on_closed);
}

static void io_close(fb_io *io, lua_State *L) { tcp_close((tcp *)io, L, 0); }

static int tcp_gc(lua_State *L) {
  tcp **slot = fbl_check_gc(L, FBL_TCP);
  if (!slot) /* a host holds it */
    return 0;
  if (*slot) /* NULL once closed */
    tcp_close(*slot, L, 0);
  return 0;
}

/* Pushes a new socket userdata; raises outside a run. */
static tcp *tcp_push_new(lua_State *L, fb_runtime *rt) {
  tcp **slot = lua_newuserdata(L, sizeof *slot);
  *slot = NULL;
  luaL_getmetatable(L, FBL_TCP);
  lua_setmetatable(L, -2);
  if (fb_runtime_need_loop(rt) < 0)
    luaL_error(L, "tcp: cannot create the libuv loop");
  tcp *t = calloc(1, sizeof *t);
  if (!t)
    luaL_error(L, "tcp: out of memory");
  if (uv_tcp_init(rt->loop, &t->handle) != 0) {
    free(t);
    luaL_error(L, "tcp: cannot create a socket");
  }
  t->handle.data = t;
  t->rt = rt;
  t->slot = slot;
  t->reader = t->watcher = t->handler = t->self = LUA_NOREF;
  t->io.close = io_close;
  fb_runtime_io_add(rt, &t->io);
  *slot = t;
  return t;
}

/* The open socket at idx, or NULL once it is closed. */
static tcp *check_tcp(lua_State *L, int idx) {
  return *(tcp **)luaL_checkudata(L, idx, FBL_TCP);
}

/* Raises unless L is a coroutine the runtime runs, before an operation
 * starts, so that parking it afterwards cannot fail. */
static void check_coroutine(lua_State *L, tcp *t, const char *fname) {
  if (!t->rt->running || L != t->rt->current)
    luaL_error(L, "%s: not in a coroutine run by fusebox (use 'fusebox run' "
                  "or fb.run)", fname);
}

/* Reading stays on from one read to the next: restarting it costs two
 * epoll_ctl calls, half a keep-alive request's syscalls. It keeps the
 * loop alive only while a coroutine waits on the socket (a reader, a
 * watcher, a handshake): start_reading refs the handle, a delivery to
 * no one left waiting unrefs it (read_on). What arrives while no one
 * waits is kept (keep_pending) and reading stops until the next reader
 * takes it: at most one chunk is ever held. */
static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static int start_reading(tcp *t) {
  if (!t->reading) {
    int rc = uv_read_start((uv_stream_t *)&t->handle, on_alloc, on_read);
    if (rc != 0)
      return rc;
    t->reading = 1;
  }
  uv_ref((uv_handle_t *)&t->handle);
  return 0;
}

static void stop_reading(tcp *t) {
  uv_read_stop((uv_stream_t *)&t->handle);
  t->reading = 0;
}

/* Reading goes on for the next reader, who is not waiting yet. */
static void read_on(tcp *t) { uv_unref((uv_handle_t *)&t->handle); }

/* Parks the running coroutine until *ref is woken or timeout passes: 0,
 * or -1 (*ref LUA_NOREF, nothing parked) when t was closed meanwhile:
 * pushing what may run a finalizer that closes it (lua_util.h), and
 * nothing would wake a coroutine parked on a closed socket. */
static int park(lua_State *L, tcp *t, int *ref, const char *what,
                double timeout) {
  lua_pushstring(L, what);
  if (t->closed) {
    lua_pop(L, 1);
    *ref = LUA_NOREF;
    return -1;
  }
  fb_runtime_wait(L, t->rt, lua_gettop(L), timeout, what);
  lua_pop(L, 1);
  lua_pushthread(L);
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static double opt_timeout(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) ? -1 : luaL_checknumber(L, idx);
}

/* ------------------------------------------------------------- connect */

static int parse_addr(const char *host, int port, struct sockaddr_storage *sa) {
  if (strcmp(host, "localhost") == 0)
    host = "127.0.0.1";
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) == 0)
    return 0;
  return uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa);
}

static void on_connect(uv_connect_t *req, int status) {
  connect_req *c = (connect_req *)req;
  tcp *t = req->handle->data;
  if (t->connecting == c)
    t->connecting = NULL;
  if (status == 0)
    uv_tcp_nodelay(&t->handle, 1);
  if (c->waiter != LUA_NOREF && t->rt) {
    if (status == 0) {
      lua_pushboolean(t->rt->L, 1);
      wake(t->rt->L, t->rt, &c->waiter, 1);
    } else {
      wake_error(t->rt->L, t->rt, &c->waiter, status);
    }
  }
  free(c);
}

/* sock:_connect(host, port [, timeout]) -> true, true | true, nil, err |
 * false (timed out) */
static int tcp_connect(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  const char *host = luaL_checkstring(L, 2);
  int port = (int)luaL_checkinteger(L, 3);
  double timeout = opt_timeout(L, 4);
  struct sockaddr_storage sa;
  lua_pushboolean(L, 1);
  if (!t)
    return 1 + push_error(L, UV_EOF);
  if (parse_addr(host, port, &sa) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "bad address '%s' (want an IP address)", host);
    return 3;
  }
  check_coroutine(L, t, "tcp.connect");
  connect_req *c = malloc(sizeof *c);
  if (!c)
    return luaL_error(L, "tcp.connect: out of memory");
  int rc = uv_tcp_connect(&c->req, &t->handle, (struct sockaddr *)&sa,
                          on_connect);
  if (rc != 0) {
    free(c);
    return 1 + push_error(L, rc);
  }
  if (park(L, t, &c->waiter, "tcp.connect", timeout) < 0)
    return 1 + push_error(L, UV_EOF); /* the close cancels c */
  t->connecting = c;
  return lua_yield(L, 0);
}

/* ---------------------------------------------------------------- read */

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  static _Thread_local char space[65536]; /* copied into Lua at once */
  (void)h;
  (void)size;
  *buf = uv_buf_init(space, sizeof space);
}

static void keep_pending(tcp *t, const char *data, size_t n) {
  char *p = realloc(t->pending, t->npending + n);
  if (!p)
    return; /* out of memory: the data is lost, like a reset */
  memcpy(p + t->npending, data, n);
  t->pending = p;
  t->npending += n;
}

static void on_write(uv_write_t *req, int status);

/* Sends what t's TLS session has for the peer: what the kernel takes at
 * once, the rest by uv_write, in order behind the writes in flight.
 * *in_flight (NULL: output the session made on its own) is that write,
 * or NULL when all went at once. Returns 0 or a libuv error. */
static int tls_send(tcp *t, write_req **in_flight) {
  if (in_flight)
    *in_flight = NULL;
  size_t n = fb_tls_output_size(t->tls);
  if (n == 0)
    return 0;
  if (!in_flight && t->unasked + n > TLS_UNASKED_MAX)
    return UV_ENOBUFS;
  write_req *w = malloc(sizeof *w + n);
  if (!w)
    return UV_ENOMEM;
  w->waiter = LUA_NOREF;
  w->unasked = 0;
  n = fb_tls_take_output(t->tls, w->data, n);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  int sent = uv_try_write((uv_stream_t *)&t->handle, &b, 1);
  if (sent == (int)n || (sent < 0 && sent != UV_EAGAIN)) {
    free(w);
    return sent < 0 ? sent : 0;
  }
  size_t done = sent > 0 ? (size_t)sent : 0;
  b = uv_buf_init(w->data + done, (unsigned)(n - done));
  int rc = uv_write(&w->req, (uv_stream_t *)&t->handle, &b, 1, on_write);
  if (rc != 0) {
    free(w);
    return rc;
  }
  if (in_flight) {
    *in_flight = w;
  } else {
    w->unasked = n - done;
    t->unasked += w->unasked;
  }
  return 0;
}

/* Decrypts every whole record t's session holds into t->pending and
 * sends what reading made; close_notify or a failure becomes t->error,
 * after the data that came before it. */
static void tls_decrypt(tcp *t) {
  char buf[16384]; /* a record's plaintext at most */
  int n;
  while ((n = fb_tls_read(t->tls, buf, sizeof buf)) > 0)
    keep_pending(t, buf, (size_t)n);
  if (n == FB_TLS_CLOSED)
    t->error = UV_EOF;
  else if (n == FB_TLS_FAILED)
    t->error = TLS_ERROR;
  int rc = tls_send(t, NULL);
  if (rc < 0 && !t->error)
    t->error = rc;
}

/* Advances t's handshake on what was fed and sends its next flight (an
 * alert, when it failed): FB_TLS_OK, FB_TLS_AGAIN, or FB_TLS_FAILED with
 * t->error set. Data that came with the peer's last flight is decrypted
 * at once, for the first read. */
static int tls_step(tcp *t) {
  int r = fb_tls_handshake(t->tls);
  int rc = tls_send(t, NULL);
  if (r == FB_TLS_FAILED) {
    t->error = TLS_ERROR;
    return r;
  }
  if (rc < 0) {
    t->error = rc;
    return FB_TLS_FAILED;
  }
  if (r == FB_TLS_OK)
    tls_decrypt(t);
  return r;
}

/* Pushes why t's handshake failed. */
static void push_handshake_error(lua_State *L, tcp *t) {
  if (t->error == TLS_ERROR)
    lua_pushstring(L, fb_tls_error(t->tls));
  else
    lua_pushfstring(L, "tls handshake failed: %s",
                    t->error == UV_EOF ? "closed" : uv_strerror(t->error));
}

/* Ends the handshake t's reader waits on: wakes it with true, or with
 * nil and why it failed. */
static void end_handshake(tcp *t) {
  stop_reading(t);
  t->handshaking = 0;
  fb_runtime *rt = t->rt;
  if (!rt || t->reader == LUA_NOREF)
    return;
  lua_State *L = rt->L;
  if (t->error && !fb_tls_ready(t->tls)) {
    lua_pushnil(L);
    push_handshake_error(L, t);
    wake(L, rt, &t->reader, 2);
  } else {
    lua_pushboolean(L, 1);
    wake(L, rt, &t->reader, 1);
  }
}

/* Hands what t holds to whoever waits: the pending data (else the
 * error) to the reader, or news of either to the watcher. */
static void deliver(tcp *t) {
  fb_runtime *rt = t->rt;
  if (!rt)
    return;
  lua_State *L = rt->L;
  if (t->reader != LUA_NOREF) {
    if (t->npending) {
      lua_pushlstring(L, t->pending, t->npending);
      if (wake(L, rt, &t->reader, 1)) {
        free(t->pending);
        t->pending = NULL;
        t->npending = 0;
      }
    } else {
      push_tcp_error(L, t, t->error);
      wake(L, rt, &t->reader, 2);
    }
    return;
  }
  wake_watcher(L, rt, t, t->npending ? "data" : "closed");
}

/* on_read() of a TLS socket: ciphertext in, whole records' plaintext
 * out; reads on while there is nothing yet for whoever waits. */
static void on_read_tls(tcp *t, const char *data, size_t n) {
  if (fb_tls_feed(t->tls, data, n) != FB_TLS_OK)
    t->error = TLS_ERROR;
  else if (t->handshaking && tls_step(t) == FB_TLS_AGAIN)
    return;
  else if (!t->handshaking)
    tls_decrypt(t);
  if (t->handshaking) {
    end_handshake(t);
    return;
  }
  if (!t->npending && !t->error)
    return;
  if (t->error || t->reader == LUA_NOREF || !t->rt)
    stop_reading(t);
  else
    read_on(t);
  deliver(t);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tcp *t = s->data;
  if (nread == 0)
    return;
  if (t->tls && nread > 0) {
    on_read_tls(t, buf->base, (size_t)nread);
    return;
  }
  if (nread < 0 && t->handshaking) {
    t->error = (int)nread;
    end_handshake(t);
    return;
  }
  if (nread < 0) {
    stop_reading(t);
    t->error = (int)nread;
    if (t->rt) {
      wake_error(t->rt->L, t->rt, &t->reader, t->error);
      wake_watcher(t->rt->L, t->rt, t, "closed");
    }
    return;
  }
  fb_runtime *rt = t->rt;
  if (rt && t->reader != LUA_NOREF) {
    lua_pushlstring(rt->L, buf->base, (size_t)nread);
    if (wake(rt->L, rt, &t->reader, 1)) {
      read_on(t);
      return;
    }
  }
  stop_reading(t); /* no one reads: the rest waits in the kernel */
  keep_pending(t, buf->base, (size_t)nread);
  if (t->rt)
    wake_watcher(t->rt->L, t->rt, t, "data");
}

/* sock:_read([timeout]) -> true, data | true, nil, err | false */
static int tcp_read(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  double timeout = opt_timeout(L, 2);
  lua_pushboolean(L, 1);
  if (!t)
    return 1 + push_error(L, UV_EOF);
  if (t->npending) {
    lua_pushlstring(L, t->pending, t->npending);
    free(t->pending);
    t->pending = NULL;
    t->npending = 0;
    return 2;
  }
  if (t->error)
    return 1 + push_tcp_error(L, t, t->error);
  if (t->reader != LUA_NOREF || t->watcher != LUA_NOREF)
    return luaL_error(L, "tcp read: another coroutine is reading this socket");
  if (t->tls && !fb_tls_ready(t->tls))
    return luaL_error(L, "tcp read: the TLS handshake is not done");
  check_coroutine(L, t, "tcp.read");
  int rc = start_reading(t);
  if (rc != 0)
    return 1 + push_error(L, rc);
  if (park(L, t, &t->reader, "tcp.read", timeout) < 0)
    return 1 + push_error(L, UV_EOF);
  return lua_yield(L, 0);
}

/* sock:_cancel_read(): a timed-out reader gives up its turn */
static int tcp_cancel_read(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  if (t && t->reader != LUA_NOREF) {
    stop_reading(t);
    unref(L, &t->reader);
    t->handshaking = 0;
  }
  return 0;
}

/* sock:_watch() -> true when data or the end of the stream is already
 * there; else false, and the calling coroutine, parked in a wait of its
 * own (core.wait), is woken with "data" or "closed" as soon as either
 * arrives. Whatever arrives stays for the next read: a server parked in
 * a handler (a long poll) notices a client that left without reading for
 * it. Ends at the first wake, or with sock:_unwatch(). */
static int tcp_watch(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  if (!t || t->npending || t->error) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (t->reader != LUA_NOREF)
    return luaL_error(L, "tcp watch: another coroutine is reading this socket");
  check_coroutine(L, t, "tcp.watch");
  if (t->watcher == LUA_NOREF) {
    int rc = start_reading(t);
    if (rc != 0) {
      t->error = rc;
      lua_pushboolean(L, 1);
      return 1;
    }
  } else {
    unref(L, &t->watcher);
  }
  lua_pushthread(L);
  t->watcher = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 0);
  return 1;
}

/* sock:_unwatch(): ends a watch (idempotent) */
static int tcp_unwatch(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  if (t && t->watcher != LUA_NOREF) {
    stop_reading(t);
    unref(L, &t->watcher);
  }
  return 0;
}

/* sock:_park() -> true, or false when the socket cannot idle (closed,
 * or something already arrived): an idle keep-alive connection in
 * fb.http's pool. It reads on with no reader, so whatever the peer sends
 * while it idles -- the end of the stream, a reset, stray bytes -- is
 * kept for _unpark to see, at most one read's worth (on_read stops after
 * a chunk); and, no one waiting on it, it does not keep the loop alive
 * (a run blocked on something else must still end). */
static int tcp_park(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  if (!t || t->npending || t->error) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (t->reader != LUA_NOREF || t->watcher != LUA_NOREF)
    return luaL_error(L, "tcp park: another coroutine is reading this socket");
  int rc = start_reading(t);
  if (rc != 0)
    t->error = rc;
  read_on(t);
  lua_pushboolean(L, rc == 0);
  return 1;
}

/* sock:_unpark() -> true when nothing arrived while the socket was
 * parked, so it can carry another request; false when it is closed or
 * the peer sent anything (its end, or bytes no request asked for).
 * Reading stays on, for the request's response. */
static int tcp_unpark(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  if (!t) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, !t->npending && !t->error);
  return 1;
}

/* --------------------------------------------------------------- write */

static void on_write(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  tcp *t = req->handle->data;
  t->unasked -= w->unasked;
  if (t->writing == w)
    t->writing = NULL;
  if (w->waiter != LUA_NOREF && t->rt) {
    if (status == 0) {
      lua_pushboolean(t->rt->L, 1);
      wake(t->rt->L, t->rt, &w->waiter, 1);
    } else {
      wake_error(t->rt->L, t->rt, &w->waiter, status);
    }
  }
  free(w);
}

/* tcp_write() of a TLS socket: encrypts data, sends the records like
 * plain data. Once encrypted they must all go out, in order: a caller
 * outside a coroutine (nothing to park) leaves the rest in flight. */
static int tls_write(lua_State *L, tcp *t, const char *data, size_t len,
                     double timeout) {
  if (!fb_tls_ready(t->tls))
    return luaL_error(L, "tcp write: the TLS handshake is not done");
  if (t->error == TLS_ERROR)
    return 1 + push_tcp_error(L, t, t->error);
  if (fb_tls_write(t->tls, data, len) != FB_TLS_OK) {
    t->error = TLS_ERROR;
    return 1 + push_tcp_error(L, t, t->error);
  }
  write_req *w;
  int rc = tls_send(t, &w);
  if (rc != 0)
    return 1 + push_error(L, rc);
  if (!w || !t->rt->running || L != t->rt->current) {
    lua_pushboolean(L, 1);
    return 2;
  }
  if (park(L, t, &w->waiter, "tcp.write", timeout) < 0)
    return 1 + push_error(L, UV_ECANCELED); /* the close cancels w */
  t->writing = w;
  return lua_yield(L, 0);
}

/* sock:_write(data [, timeout]) -> true, true | true, nil, err | false.
 * Tries to write at once; only what the kernel did not take is copied
 * and waited for. */
static int tcp_write(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  double timeout = opt_timeout(L, 3);
  lua_pushboolean(L, 1);
  if (!t)
    return 1 + push_error(L, UV_EOF);
  if (t->writing)
    return luaL_error(L, "tcp write: another coroutine is writing this socket");
  if (t->tls)
    return tls_write(L, t, data, len, timeout);
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int n = len ? uv_try_write((uv_stream_t *)&t->handle, &b, 1) : 0;
  if (n == (int)len) {
    lua_pushboolean(L, 1);
    return 2;
  }
  if (n < 0 && n != UV_EAGAIN)
    return 1 + push_error(L, n);
  size_t done = n > 0 ? (size_t)n : 0;
  check_coroutine(L, t, "tcp.write");
  write_req *w = malloc(sizeof *w + len - done);
  if (!w)
    return luaL_error(L, "tcp write: out of memory");
  w->unasked = 0;
  memcpy(w->data, data + done, len - done);
  b = uv_buf_init(w->data, (unsigned)(len - done));
  int rc = uv_write(&w->req, (uv_stream_t *)&t->handle, &b, 1, on_write);
  if (rc != 0) {
    free(w);
    return 1 + push_error(L, rc);
  }
  if (park(L, t, &w->waiter, "tcp.write", timeout) < 0)
    return 1 + push_error(L, UV_ECANCELED); /* the close cancels w */
  t->writing = w;
  return lua_yield(L, 0);
}

/* --------------------------------------------------------------- close */

/* sock:close(): idempotent; whoever waits on the socket wakes "closed".
 * A TLS socket in good order first offers the peer a close_notify (sent
 * if the kernel takes it at once: closing never waits). */
static int tcp_close_method(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  if (t && t->tls && fb_tls_ready(t->tls) && !t->error && !t->writing) {
    fb_tls_shutdown(t->tls);
    tls_send(t, NULL);
  }
  if (t)
    tcp_close(t, L, 1);
  return 0;
}

/* -------------------------------------------------------------- TLS */

/* sock:_tls_start(context [, host]) -> true: from now on every byte
 * passes through a TLS session of context (a client's checks that the
 * server is host, see fb_tls_new); data read before is its first input. */
static int tcp_tls_start(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  fb_tls_context *ctx = fbl_check_tls_context(L, 2);
  const char *host = luaL_optstring(L, 3, NULL);
  if (!t)
    return push_error(L, UV_EOF);
  if (t->tls)
    return luaL_error(L, "tcp tls_start: TLS has started already");
  t->tls = fb_tls_new(ctx, host);
  if (!t->tls)
    return luaL_error(L, "tcp tls_start: out of memory");
  if (t->npending) {
    int r = fb_tls_feed(t->tls, t->pending, t->npending);
    free(t->pending);
    t->pending = NULL;
    t->npending = 0;
    if (r != FB_TLS_OK)
      t->error = TLS_ERROR;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* sock:_handshake([timeout]) -> true, true | true, nil, err | false
 * (timed out: the caller closes the socket). */
static int tcp_handshake(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  double timeout = opt_timeout(L, 2);
  lua_pushboolean(L, 1);
  if (!t)
    return 1 + push_error(L, UV_EOF);
  if (!t->tls)
    return luaL_error(L, "tcp handshake: TLS has not started");
  if (t->reader != LUA_NOREF || t->watcher != LUA_NOREF)
    return luaL_error(L, "tcp handshake: another coroutine is reading this "
                         "socket");
  if (!t->error && tls_step(t) == FB_TLS_AGAIN) {
    check_coroutine(L, t, "tcp.handshake");
    int rc = start_reading(t);
    if (rc == 0) {
      if (park(L, t, &t->reader, "tls.handshake", timeout) < 0)
        return 1 + push_error(L, UV_EOF);
      t->handshaking = 1;
      return lua_yield(L, 0);
    }
    t->error = rc;
  }
  if (t->error && !fb_tls_ready(t->tls)) {
    lua_pushnil(L);
    push_handshake_error(L, t);
    return 3;
  }
  lua_pushboolean(L, 1);
  return 2;
}

/* sock:_tls_info() -> {version=, cipher=, peer=subject of the peer's
 * certificate | nil} once the handshake is done, else nil */
static int tcp_tls_info(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  if (!t || !t->tls || !fb_tls_ready(t->tls))
    return 0;
  char subject[1024];
  lua_createtable(L, 0, 3);
  lua_pushstring(L, fb_tls_version(t->tls));
  lua_setfield(L, -2, "version");
  lua_pushstring(L, fb_tls_cipher(t->tls));
  lua_setfield(L, -2, "cipher");
  const char *peer = fb_tls_peer_subject(t->tls, subject, sizeof subject);
  if (peer) {
    lua_pushstring(L, peer);
    lua_setfield(L, -2, "peer");
  }
  return 1;
}

/* sock:closed() -> true once closed */
static int tcp_is_closed(lua_State *L) {
  lua_pushboolean(L, check_tcp(L, 1) == NULL);
  return 1;
}

/* -------------------------------------------------------------- server */

static void on_connection(uv_stream_t *server, int status) {
  tcp *srv = server->data;
  if (status < 0 || !srv->rt)
    return;
  fb_runtime *rt = srv->rt;
  lua_State *L = rt->L;
  tcp *c = tcp_push_new(L, rt);
  if (uv_accept(server, (uv_stream_t *)&c->handle) != 0) {
    tcp_close(c, L, 0);
    lua_pop(L, 1);
    return;
  }
  uv_tcp_nodelay(&c->handle, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, srv->handler);
  lua_insert(L, -2);
  fb_runtime_spawn(L, rt, 1);
  lua_pop(L, 1);
}

/* core.tcp_listen(host, port, backlog, handler) -> server | nil, err;
 * handler(sock) runs as a new coroutine for each connection. */
static int tcp_listen(lua_State *L) {
  fb_runtime *rt = fbl_runtime(L);
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  int backlog = (int)luaL_checkinteger(L, 3);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  struct sockaddr_storage sa;
  if (parse_addr(host, port, &sa) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "bad address '%s' (want an IP address)", host);
    return 2;
  }
  tcp *t = tcp_push_new(L, rt);
  int rc = uv_tcp_bind(&t->handle, (struct sockaddr *)&sa, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&t->handle, backlog, on_connection);
  if (rc != 0) {
    tcp_close(t, L, 0);
    return push_error(L, rc);
  }
  lua_pushvalue(L, 4);
  t->handler = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  t->self = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* sock:_port() -> the local port (a server bound to port 0 learns it) */
static int tcp_port(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  struct sockaddr_storage sa;
  int len = sizeof sa;
  if (!t || uv_tcp_getsockname(&t->handle, (struct sockaddr *)&sa, &len) != 0)
    return 0;
  int port = sa.ss_family == AF_INET6
                 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                 : ((struct sockaddr_in *)&sa)->sin_port;
  lua_pushinteger(L, ntohs((uint16_t)port));
  return 1;
}

/* sock:_unref(): the socket no longer keeps a run going (a metrics
 * endpoint must not outlive the script it reports on) */
static int tcp_unref(lua_State *L) {
  tcp *t = check_tcp(L, 1);
  if (t)
    uv_unref((uv_handle_t *)&t->handle);
  return 0;
}

/* core.tcp_new() -> an unconnected socket */
static int tcp_new(lua_State *L) {
  tcp_push_new(L, fbl_runtime(L));
  return 1;
}

/* core.virtual_time() -> true when the clock is virtual (no real I/O) */
static int virtual_time(lua_State *L) {
  lua_pushboolean(L, fbl_runtime(L)->virtual_time);
  return 1;
}

static const luaL_Reg tcp_methods[] = {
    {"_connect", tcp_connect}, {"_read", tcp_read},
    {"_cancel_read", tcp_cancel_read}, {"_watch", tcp_watch},
    {"_unwatch", tcp_unwatch}, {"_park", tcp_park},
    {"_unpark", tcp_unpark}, {"_write", tcp_write},
    {"_port", tcp_port}, {"_unref", tcp_unref}, {"close", tcp_close_method},
    {"closed", tcp_is_closed}, {"_tls_start", tcp_tls_start},
    {"_handshake", tcp_handshake}, {"_tls_info", tcp_tls_info},
    {NULL, NULL},
};

static const luaL_Reg tcp_functions[] = {
    {"tcp_new", tcp_new}, {"tcp_listen", tcp_listen},
    {"virtual_time", virtual_time}, {NULL, NULL},
};

void fbl_open_tcp(lua_State *L, int rt_idx) {
  fbl_new_class(L, FBL_TCP, tcp_gc, tcp_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, tcp_functions, 1);
  luaL_getmetatable(L, FBL_TCP);
  lua_setfield(L, -2, "tcp_mt");
  fbl_open_tls(L, rt_idx);
}
