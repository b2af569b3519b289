/*
 * lua_dns.c -- host name lookups off the loop: the primitives
 * lua/fusebox/dns.lua wraps into fb.dns (its cache, its table for
 * virtual time, and the rules for special names live there).
 *
 * A lookup is a uv_getaddrinfo request: the resolver (getaddrinfo, with
 * /etc/hosts and DNS as nsswitch says) runs on libuv's thread pool, and
 * the callback wakes the coroutine parked in it, as lua_tcp.c's
 * primitives do. A lookup whose wait timed out is cancelled: its waiter
 * ref is dropped at once, so a late answer can never wake a coroutine
 * that has moved on, and uv_cancel takes it off the pool's queue if no
 * thread has started it. The request's memory is freed by its callback,
 * which libuv always calls (with UV_EAI_CANCELED for a cancelled one);
 * the userdata only points to it, until then.
 */
#include "lua_util.h"

#include <stdlib.h>
#include <string.h>

#define FBL_LOOKUP "fusebox.dns_lookup"

typedef struct lookup {
  fb_io io; /* first: the runtime's list of open I/O */
  uv_getaddrinfo_t req;
  fb_runtime *rt;       /* NULL once detached from a closing Lua state */
  struct lookup **slot; /* the userdata's payload */
  int waiter;           /* ref of the coroutine parked in it */
} lookup;

/* Detaches q from Lua: no one waits for it any more; the callback,
 * still due, only frees it. */
static void detach(lookup *q, lua_State *L) {
  luaL_unref(L, LUA_REGISTRYINDEX, q->waiter);
  q->waiter = LUA_NOREF;
  if (q->slot)
    *q->slot = NULL;
  q->slot = NULL;
  if (q->rt)
    fb_runtime_io_remove(q->rt, &q->io);
  q->rt = NULL;
  uv_cancel((uv_req_t *)&q->req);
}

static void io_close(fb_io *io, lua_State *L) { detach((lookup *)io, L); }

/* The most addresses of one name kept: connect tries each in turn, and
 * a hostile answer must not make that, or the check for repeats below,
 * unbounded. */
#define MAX_ADDRESSES 64

/* Pushes the addresses of res as a list of strings, in the resolver's
 * order (RFC 6724's, from glibc), each once, at most MAX_ADDRESSES. */
static void push_addresses(lua_State *L, const struct addrinfo *res) {
  lua_newtable(L);
  int n = 0;
  for (const struct addrinfo *a = res; a && n < MAX_ADDRESSES; a = a->ai_next) {
    char buf[64];
    if (a->ai_family == AF_INET)
      uv_ip4_name((const struct sockaddr_in *)a->ai_addr, buf, sizeof buf);
    else if (a->ai_family == AF_INET6)
      uv_ip6_name((const struct sockaddr_in6 *)a->ai_addr, buf, sizeof buf);
    else
      continue;
    int seen = 0;
    for (int i = 1; i <= n && !seen; i++) {
      lua_rawgeti(L, -1, i);
      seen = strcmp(lua_tostring(L, -1), buf) == 0;
      lua_pop(L, 1);
    }
    if (!seen) {
      lua_pushstring(L, buf);
      lua_rawseti(L, -2, ++n);
    }
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  lookup *q = req->data;
  fb_runtime *rt = q->rt;
  if (rt && q->waiter != LUA_NOREF) {
    lua_State *L = rt->L;
    int ref = q->waiter;
    q->waiter = LUA_NOREF;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    if (status == 0 && res) {
      push_addresses(L, res);
      fb_runtime_wake(L, rt, lua_gettop(L) - 1, 1);
    } else {
      lua_pushnil(L);
      lua_pushstring(L, status == 0 ? "no addresses" : uv_strerror(status));
      fb_runtime_wake(L, rt, lua_gettop(L) - 2, 2);
    }
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
  }
  if (q->slot)
    *q->slot = NULL;
  if (rt)
    fb_runtime_io_remove(rt, &q->io);
  uv_freeaddrinfo(res);
  free(q);
}

static int lookup_gc(lua_State *L) {
  lookup **slot = fbl_check_gc(L, FBL_LOOKUP);
  if (!slot) /* a host holds it */
    return 0;
  if (*slot)
    detach(*slot, L);
  return 0;
}

/* core.dns_lookup() -> a lookup, to start with q:_start */
static int dns_lookup(lua_State *L) {
  lookup **slot = lua_newuserdata(L, sizeof *slot);
  *slot = NULL;
  luaL_getmetatable(L, FBL_LOOKUP);
  lua_setmetatable(L, -2);
  return 1;
}

/* q:_start(name [, timeout]) -> true, addresses | true, nil, err |
 * false (timed out: call q:_cancel()). name is checked by dns.lua. */
static int lookup_start(lua_State *L) {
  lookup **slot = luaL_checkudata(L, 1, FBL_LOOKUP);
  const char *name = luaL_checkstring(L, 2);
  double timeout = lua_isnoneornil(L, 3) ? -1 : luaL_checknumber(L, 3);
  fb_runtime *rt = fbl_runtime(L);
  if (*slot)
    return luaL_error(L, "dns lookup: already started");
  if (!rt->running || L != rt->current)
    return luaL_error(L, "resolve: not in a coroutine run by fusebox (use "
                         "'fusebox run' or fb.run)");
  if (fb_runtime_need_loop(rt) < 0)
    return luaL_error(L, "resolve: cannot create the libuv loop");
  lookup *q = calloc(1, sizeof *q);
  if (!q)
    return luaL_error(L, "resolve: out of memory");
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM; /* no AI_ADDRCONFIG: it drops ::1 on a
                                      host whose only IPv6 is loopback */
  q->req.data = q;
  q->waiter = LUA_NOREF;
  int rc = uv_getaddrinfo(rt->loop, &q->req, on_resolved, name, NULL, &hints);
  if (rc != 0) {
    free(q);
    lua_pushboolean(L, 1);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 3;
  }
  q->rt = rt;
  q->io.close = io_close;
  fb_runtime_io_add(rt, &q->io);
  q->slot = slot;
  *slot = q;
  lua_pushstring(L, "dns lookup");
  fb_runtime_wait(L, rt, lua_gettop(L), timeout, "resolve");
  lua_pop(L, 1);
  lua_pushthread(L);
  q->waiter = luaL_ref(L, LUA_REGISTRYINDEX);
  return lua_yield(L, 0);
}

/* q:_cancel(): a timed-out lookup gives up (idempotent) */
static int lookup_cancel(lua_State *L) {
  lookup **slot = luaL_checkudata(L, 1, FBL_LOOKUP);
  if (*slot)
    detach(*slot, L);
  return 0;
}

/* core.dns_literal(s) -> s as an IP address ("::1" for "[::1]"), family
 * 4 or 6 | nil when s is no IP literal */
static int dns_literal(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char buf[64];
  unsigned char bin[16];
  if (len >= 2 && s[0] == '[' && s[len - 1] == ']' && len - 2 < sizeof buf) {
    memcpy(buf, s + 1, len - 2);
    buf[len - 2] = 0;
    if (uv_inet_pton(AF_INET6, buf, bin) != 0)
      return 0;
  } else if (len < sizeof buf && strlen(s) == len) {
    memcpy(buf, s, len + 1);
  } else {
    return 0;
  }
  int family = uv_inet_pton(AF_INET, buf, bin) == 0    ? 4
               : uv_inet_pton(AF_INET6, buf, bin) == 0 ? 6
                                                       : 0;
  if (!family || (family == 4 && s[0] == '['))
    return 0;
  lua_pushstring(L, buf);
  lua_pushinteger(L, family);
  return 2;
}

static const luaL_Reg lookup_methods[] = {
    {"_start", lookup_start},
    {"_cancel", lookup_cancel},
    {NULL, NULL},
};

static const luaL_Reg dns_functions[] = {
    {"dns_lookup", dns_lookup},
    {"dns_literal", dns_literal},
    {NULL, NULL},
};

void fbl_open_dns(lua_State *L, int rt_idx) {
  fbl_new_plain_class(L, FBL_LOOKUP, lookup_gc, lookup_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, dns_functions, 1);
}
