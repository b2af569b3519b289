/*
 * lua_backend.c -- registry backends written in Lua (lua/fusebox/etcd.lua).
 *
 * core.registry_backend(reg) gives a registry a backend whose ops only
 * queue: the core calls them from wherever the registry is changed (Lua,
 * or a host through the C API), so they must not block or call Lua. A
 * coroutine takes the queue with backend:take(), mirrors it into the
 * store, and parks in backend:wait() when there is nothing to do; an op
 * wakes it. backend:put/delete feed the store's view into the cache.
 *
 * Also base64, in which etcd's JSON gateway carries keys and values.
 */
#include "base64.h"
#include "lua_util.h"

#include <stdlib.h>
#include <string.h>

#define FBL_BACKEND "fusebox.registry_backend"

typedef struct op_rec {
  struct op_rec *next;
  const char *op;        /* "register" | "heartbeat" | "deregister" */
  int port;
  char *host;            /* into service[] */
  char service[];        /* "service\0host\0" */
} op_rec;

typedef struct backend {
  fb_registry *reg;      /* first, for fbl_check_object: NULL once collected;
                          * retained, so freed after this backend lets go */
  fb_runtime *rt;
  op_rec *head, *tail;
  size_t queued;         /* records between head and tail */
  int waiter;            /* ref of the coroutine parked in wait() */
  int closed;            /* ops are dropped: the store is left alone */
} backend;

/* Wakes the coroutine parked in wait(), if any. Uses the runtime's own
 * thread: an op may come from a host's C call, outside any coroutine. */
static void wake(backend *b) {
  if (b->waiter == LUA_NOREF)
    return;
  lua_State *L = b->rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->waiter);
  fb_runtime_wake(L, b->rt, lua_gettop(L), 0);
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, b->waiter);
  b->waiter = LUA_NOREF;
}

static int queue(void *data, const char *op, const char *service,
                 const char *host, int port) {
  backend *b = data;
  if (b->closed)
    return 0;
  size_t ns = strlen(service) + 1, nh = strlen(host) + 1;
  op_rec *r = malloc(sizeof *r + ns + nh);
  if (!r)
    return FB_ENOMEM;
  r->next = NULL;
  r->op = op;
  r->port = port;
  memcpy(r->service, service, ns);
  r->host = r->service + ns;
  memcpy(r->host, host, nh);
  if (b->tail)
    b->tail->next = r;
  else
    b->head = r;
  b->tail = r;
  b->queued++;
  wake(b);
  return 0;
}

static int op_register(void *d, const char *s, const char *h, int p) {
  return queue(d, "register", s, h, p);
}

static int op_heartbeat(void *d, const char *s, const char *h, int p) {
  return queue(d, "heartbeat", s, h, p);
}

static int op_deregister(void *d, const char *s, const char *h, int p) {
  return queue(d, "deregister", s, h, p);
}

static const fb_registry_backend queue_ops = {op_register, op_heartbeat,
                                              op_deregister};

static backend *check_backend(lua_State *L) {
  return fbl_check_object(L, 1, FBL_BACKEND);
}

/* core.registry_backend(reg) -> backend: reg becomes the cache of a store
 * that the caller keeps; one backend per registry. */
static int backend_new(lua_State *L) {
  fbl_check_object(L, 1, FBL_REGISTRY);
  backend *b = lua_newuserdata(L, sizeof *b);
  memset(b, 0, sizeof *b);
  b->waiter = LUA_NOREF;
  luaL_getmetatable(L, FBL_BACKEND);
  lua_setmetatable(L, -2);
  /* after the allocation (lua_util.h): the registry may be closed now;
   * a backend left without one is a closed one */
  fb_registry *reg = *(fb_registry **)fbl_check_object(L, 1, FBL_REGISTRY);
  b->reg = fb_registry_retain(reg);
  b->rt = fbl_runtime(L);
  fb_registry_set_backend(b->reg, &queue_ops, b);
  return 1;
}

static int backend_gc(lua_State *L) {
  backend *b = fbl_check_gc(L, FBL_BACKEND);
  if (!b) /* a host holds it */
    return 0;
  if (!b->reg) /* closed */
    return 0;
  fb_registry_set_backend(b->reg, NULL, NULL);
  fb_registry_release(b->reg);
  b->reg = NULL;
  while (b->head) {
    op_rec *next = b->head->next;
    free(b->head);
    b->head = next;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, b->waiter);
  return 0;
}

/* A queued op copied out of its record (lua_util.h: the record may be
 * gone after the next allocation). Names are the registry's, at most
 * FB_NAME_MAX bytes. */
typedef struct op_copy {
  const char *op;
  int port;
  char service[FB_NAME_MAX + 1];
  char host[FB_NAME_MAX + 1];
} op_copy;

/* Takes the oldest op off b's queue into *c; 0 when the queue is empty
 * (or b closed: its queue is freed). */
static int take_one(backend *b, op_copy *c) {
  op_rec *r = b->head;
  if (!r)
    return 0;
  c->op = r->op;
  c->port = r->port;
  fbl_copy_name(c->service, sizeof c->service, r->service);
  fbl_copy_name(c->host, sizeof c->host, r->host);
  b->head = r->next;
  if (!b->head)
    b->tail = NULL;
  b->queued--;
  free(r);
  return 1;
}

/* backend:take() -> {{op, service, host, port}, ...}: what was queued
 * when called, oldest first, leaving the queue empty. Each op leaves it
 * before its row is built, so a finalizer run meanwhile may take or
 * close (the list is then each op once) or queue more: those wait for
 * the next take, or one that finalizers keep feeding would never end. */
static int backend_take(lua_State *L) {
  backend *b = check_backend(L);
  lua_newtable(L);
  int n = 0;
  size_t left = b->queued;
  op_copy c;
  while (left-- > 0 && take_one(b, &c)) {
    lua_createtable(L, 4, 0);
    lua_pushstring(L, c.op);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, c.service);
    lua_rawseti(L, -2, 2);
    lua_pushstring(L, c.host);
    lua_rawseti(L, -2, 3);
    lua_pushinteger(L, c.port);
    lua_rawseti(L, -2, 4);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* backend:queued() -> how many ops wait to be taken */
static int backend_queued(lua_State *L) {
  lua_pushnumber(L, (lua_Number)check_backend(L)->queued);
  return 1;
}

/* backend:wait([timeout]) -> true when an op is queued (at once if one
 * is), false when timeout seconds passed first. */
static int backend_wait(lua_State *L) {
  backend *b = check_backend(L);
  double timeout = luaL_optnumber(L, 2, -1);
  if (b->head || b->closed) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushliteral(L, "registry backend");
  fb_runtime_wait(L, b->rt, lua_gettop(L), timeout, "wait");
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, b->waiter);
  lua_pushthread(L);
  b->waiter = luaL_ref(L, LUA_REGISTRYINDEX);
  return lua_yield(L, 0);
}

/* backend:wake(): wakes the coroutine in wait() (there is work that did
 * not come through an op) */
static int backend_wake(lua_State *L) {
  wake(check_backend(L));
  return 0;
}

/* backend:close(): drops later ops and wakes the waiting coroutine */
static int backend_close(lua_State *L) {
  backend *b = check_backend(L);
  b->closed = 1;
  wake(b);
  return 0;
}

/* backend:put(service, host, port [, weight [, zone]]) -> added, id: the
 * store has it, with that weight and zone */
static int backend_put(lua_State *L) {
  backend *b = check_backend(L);
  const char *service = fbl_check_name(L, 2, "service name");
  const char *host = fbl_check_name(L, 3, "host");
  int port = fbl_check_port(L, 4);
  fb_instance_opts o;
  fb_instance_opts_init(&o);
  double w = luaL_optnumber(L, 5, 0);
  if (w >= 1 && w <= FB_WEIGHT_MAX && w == (uint32_t)w)
    o.weight = (uint32_t)w; /* a bad weight from the store: keep ours */
  o.zone = lua_isstring(L, 6) && lua_objlen(L, 6) ? lua_tostring(L, 6) : NULL;
  int rc = fb_registry_cache_put_with(b->reg, service, host, port, &o,
                                      fb_runtime_now(b->rt));
  if (rc < 0)
    return luaL_error(L, "%s", fb_strerror(rc));
  lua_pushboolean(L, rc == FB_ADDED);
  fb_instance *i = fb_registry_find(b->reg, service, host, port);
  lua_pushnumber(L, (lua_Number)fb_instance_id(i));
  return 2;
}

/* backend:info(service, host, port) -> weight, zone (or false), id; or
 * nothing when the cache has no such instance */
static int backend_info(lua_State *L) {
  backend *b = check_backend(L);
  fb_instance *i = fb_registry_find(b->reg, fbl_check_name(L, 2, "service name"),
                                    fbl_check_name(L, 3, "host"),
                                    fbl_check_port(L, 4));
  if (!i)
    return 0;
  fbl_instance_copy c; /* pushed from the copy: lua_util.h */
  fbl_instance_copy_of(i, &c);
  lua_pushnumber(L, c.weight);
  if (c.has_zone)
    lua_pushstring(L, c.zone);
  else
    lua_pushboolean(L, 0);
  lua_pushnumber(L, (lua_Number)c.id);
  return 3;
}

/* backend:delete(service, host, port) -> the removed instance's id, or
 * nil: the store no longer has it */
static int backend_delete(lua_State *L) {
  backend *b = check_backend(L);
  const char *service = fbl_check_name(L, 2, "service name");
  const char *host = fbl_check_name(L, 3, "host");
  int port = fbl_check_port(L, 4);
  fb_instance *i = fb_registry_find(b->reg, service, host, port);
  if (!i)
    return 0;
  lua_pushnumber(L, (lua_Number)fb_instance_id(i));
  fb_registry_cache_delete(b->reg, service, host, port);
  return 1;
}

/* core.base64_encode(bytes) -> text */
static int base64_encode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  size_t len = fb_base64_encoded_len(n);
  char *out = lua_newuserdata(L, len + 1);
  fb_base64_encode((const unsigned char *)s, n, out);
  lua_pushlstring(L, out, len);
  return 1;
}

/* core.base64_decode(text) -> bytes | nil, err */
static int base64_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char *out = lua_newuserdata(L, n / 4 * 3 + 1);
  long len = fb_base64_decode(s, n, out);
  if (len < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "malformed base64");
    return 2;
  }
  lua_pushlstring(L, (const char *)out, (size_t)len);
  return 1;
}

static const luaL_Reg backend_methods[] = {
    {"take", backend_take},   {"queued", backend_queued},
    {"wait", backend_wait},
    {"wake", backend_wake},   {"close", backend_close},
    {"put", backend_put},
    {"info", backend_info},
    {"delete", backend_delete}, {NULL, NULL},
};

static const luaL_Reg backend_functions[] = {
    {"registry_backend", backend_new},
    {"base64_encode", base64_encode},
    {"base64_decode", base64_decode},
    {NULL, NULL},
};

void fbl_open_backend(lua_State *L, int rt_idx) {
  fbl_new_plain_class(L, FBL_BACKEND, backend_gc, backend_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, backend_functions, 1);
}
