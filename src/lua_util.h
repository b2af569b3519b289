/*
 * lua_util.h -- argument checking shared by the bindings (fbl_ prefix).
 *
 * Every error names the function and argument the way luaL_argerror
 * does: "bad argument #3 to 'register' (port must be 1..65535, got 0)".
 */
#ifndef FB_LUA_UTIL_H
#define FB_LUA_UTIL_H

#include "runtime.h"

#include <lauxlib.h>
#include <lua.h>

/* Metatable names, one per type. */
#define FBL_REGISTRY "fusebox.registry"
#define FBL_BALANCER "fusebox.balancer"
#define FBL_BREAKER "fusebox.breaker"
#define FBL_OUTLIER "fusebox.outlier"
#define FBL_ZONE "fusebox.zone"
#define FBL_LIMITER "fusebox.limiter"

/* The registry table fb.export() publishes objects in. */
#define FBL_EXPORTS "fusebox.exports"

/* The runtime, from upvalue 1 of every binding function. */
#define fbl_runtime(L) ((fb_runtime *)lua_touserdata((L), lua_upvalueindex(1)))

/* Raises unless the table at idx has only string keys listed in allowed
 * (NULL-terminated). A nil or absent argument passes. */
void fbl_check_options(lua_State *L, int idx, const char *const *allowed);

/* Reads option key of the table at idx: a number > 0, or def if absent. */
double fbl_opt_positive(lua_State *L, int idx, const char *key, double def);

/* Reads option key of the table at idx: an integer >= 1, or def. */
int fbl_opt_count(lua_State *L, int idx, const char *key, int def);

/* Reads option key of the table at idx: a number in (0, 1], or def. */
double fbl_opt_fraction(lua_State *L, int idx, const char *key, double def);

/* Reads option key of the table at idx: a finite number >= min, or def. */
double fbl_opt_at_least(lua_State *L, int idx, const char *key, double def,
                        double min);

/* Reads option key of the table at idx: one of the strings in names
 * (NULL-terminated); returns its index, or def if absent. */
int fbl_opt_choice(lua_State *L, int idx, const char *key,
                   const char *const *names, int def);

/* Returns whether option key is present (not nil) in the table at idx. */
int fbl_opt_given(lua_State *L, int idx, const char *key);

/* Checks a non-empty string argument. */
const char *fbl_check_name(lua_State *L, int idx, const char *what);

/* fbl_check_name() of the value at stack slot idx, its errors naming
 * argument arg: for a value taken out of an options table at arg. */
const char *fbl_check_name_at(lua_State *L, int idx, int arg,
                              const char *what);

/* Reads option key of the table at idx: a non-empty string without NUL
 * (kept alive by the table), or NULL if absent. Errors name argument idx,
 * like every other option's. */
const char *fbl_opt_name(lua_State *L, int idx, const char *key);

/* Raises "bad argument #idx (key must be want, got v)" for the option
 * value on the top of the stack: a number is shown, anything else named
 * by its type. */
void fbl_bad_option(lua_State *L, int idx, const char *key, const char *want);

/* Checks a port argument: an integer in 1..65535. */
int fbl_check_port(lua_State *L, int idx);

/* Returns the payload of userdata idx of type tname, raising if it is of
 * another type or already closed (its first pointer NULL).
 *
 * What the payload points to, and whatever the core hands out through it
 * (a registry, a detector, an instance, a service, a host or zone string,
 * a queued record), is valid only until the binding next allocates or
 * runs Lua. Every allocating call of the Lua API (lua_newuserdata,
 * lua_createtable, lua_newtable, lua_pushstring and the other string
 * pushes, lua_pushcclosure, lua_concat, lua_tolstring of a number) may
 * run a GC step before it does anything else, even before lua_pushstring
 * copies its argument; a step may run finalizers, and a finalizer is any
 * Lua code, as is a metamethod that lua_getfield runs on an options
 * table. That code may close this very object by calling its __gc by
 * hand (fbl_check_gc: the payload becomes NULL and the core object is
 * released, maybe freed), deregister an instance (its strings are
 * freed) or register one (the registry's arrays move). So every binding
 * follows one rule:
 *  - it checks its objects on entry (so a bad argument is named first),
 *    and reads the payload again with this function after its last
 *    allocation, just before the core call that uses it: an object
 *    closed meanwhile is then the same clean "bad argument #1 to
 *    'balancer' (fusebox.registry is closed)";
 *  - what it pushes from the core it first copies into C memory (a
 *    local, fbl_instance_copy) and pushes from the copy: no core pointer
 *    is held across an allocation;
 *  - a loop over core state re-reads the object, and its position by
 *    index or id, after each round's allocations, stops cleanly when the
 *    object is closed or the position is gone, and does at most as many
 *    rounds as there were items when it began (finalizers that keep
 *    adding would make it endless).
 * Memory a binding owns itself is freed, as luv frees a handle in its
 * close callback, where no push is reading it: a socket's struct when
 * libuv closes it (lua_tcp.c, which reads t->rt and t->closed again
 * after a push), the HTTP parser's buffers when the method pushing from
 * them is done (lua_http.c, idle()).
 * The FFI entry points (lua_api.c) allocate nothing and run no Lua: the
 * rule costs them nothing. */
void *fbl_check_object(lua_State *L, int idx, const char *tname);

/* An instance's fields that bindings push, copied out of the core (see
 * fbl_check_object: the instance and its strings may be gone after the
 * next allocation). Names are at most FB_NAME_MAX bytes: the registry
 * refuses longer ones. */
typedef struct fbl_instance_copy {
  uint64_t id;
  int port;
  int live;
  int healthy;
  uint32_t weight;
  uint32_t inflight;
  uint64_t picks, successes, failures;
  int has_zone;
  char service[FB_NAME_MAX + 1];
  char host[FB_NAME_MAX + 1];
  char zone[FB_NAME_MAX + 1];
} fbl_instance_copy;

/* Copies the NUL-terminated name into out, of size bytes: a name the core
 * stored, which fits by construction (the registry refuses names over
 * FB_NAME_MAX bytes, a zone over FB_ZONE_NAME_MAX), asserted here. How a
 * binding keeps a name across an allocation (see fbl_check_object). */
void fbl_copy_name(char *out, size_t size, const char *name);

/* Copies instance i into *c. */
void fbl_instance_copy_of(const fb_instance *i, fbl_instance_copy *c);

/* Sets service, host and port of the table on the top from copy c: how
 * every row that names an instance names it. */
void fbl_set_instance_address(lua_State *L, const fbl_instance_copy *c);

/* The argument of tname's __gc, which Lua code can call by hand
 * (getmetatable(x).__gc(y)): the payload of userdata 1 if it is of type
 * tname, else raises "bad argument #1 to '__gc' (fusebox.breaker
 * expected, got number)". Every __gc starts here, and is idempotent: it
 * marks its object closed (the payload's NULL pointer that
 * fbl_check_object and lua/fusebox/base.lua test), and does nothing on a
 * closed one, so an object used after __gc is a clean "closed" error.
 * Returns NULL, leaving the object open, when a C host holds its pointer
 * (fbl_host_hold): a hand-made __gc must not free what the host uses;
 * such objects live until the runtime closes (fbl_host_closing). */
void *fbl_check_gc(lua_State *L, const char *tname);

/* The userdata at idx's pointer was given to a C host (fb_runtime_breaker
 * and the others): from now on only closing the runtime frees it. */
void fbl_host_hold(lua_State *L, int idx);

/* The runtime is closing (fb_runtime_free): every __gc frees again. */
void fbl_host_closing(lua_State *L);

/* The type of value idx for an error message: a userdata's metatable
 * __name (fusebox.breaker) when it has one, else luaL_typename. */
const char *fbl_typename(lua_State *L, int idx);

/* Creates metatable tname (its __name: tname) with __gc and methods (upvalue: the runtime at
 * stack index rt_idx), leaving it popped. */
void fbl_new_class(lua_State *L, const char *tname, lua_CFunction gc,
                   const luaL_Reg *methods, int rt_idx);

/* fbl_new_class() for a type whose methods are all C: they are its
 * __index (types with Lua methods get theirs from lua/fusebox/). */
void fbl_new_plain_class(lua_State *L, const char *tname, lua_CFunction gc,
                         const luaL_Reg *methods, int rt_idx);

/* Drops the meta of the registry at idx's reaped instances, when enough
 * were reaped since the last time (lua_registry.c explains). */
void fbl_registry_drop_reaped(lua_State *L, int idx);

/* Opening functions of each binding: add constructors to the module
 * table at -1; the runtime userdata is at rt_idx. */
void fbl_open_registry(lua_State *L, int rt_idx);
void fbl_open_balancer(lua_State *L, int rt_idx);
void fbl_open_breaker(lua_State *L, int rt_idx);
void fbl_open_limiter(lua_State *L, int rt_idx);
void fbl_open_events(lua_State *L, int rt_idx);
void fbl_open_json(lua_State *L, int rt_idx);
void fbl_open_tcp(lua_State *L, int rt_idx);
void fbl_open_http(lua_State *L, int rt_idx);
void fbl_open_catalog(lua_State *L, int rt_idx);
void fbl_open_backend(lua_State *L, int rt_idx);
/* TLS contexts (src/lua_tls.c), opened by fbl_open_tcp with the sockets
 * that use them. */
void fbl_open_tls(lua_State *L, int rt_idx);

/* The OpenSSL context of the fusebox.tls_context at idx (raises
 * otherwise). */
struct ssl_ctx_st *fbl_check_tls_context(lua_State *L, int idx);

void fbl_open_zone(lua_State *L, int rt_idx);
void fbl_open_signal(lua_State *L, int rt_idx);
void fbl_open_dns(lua_State *L, int rt_idx);

#endif
