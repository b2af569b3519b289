/*
 * lua_tls.c -- TLS contexts for lua/fusebox/tls.lua: one userdata per
 * OpenSSL context (src/tls.c), made from options tls.lua has checked.
 *
 * A context is the costly part (reading the CA store, the certificate
 * and key), so tls.lua makes each one once and every connection's
 * session takes a reference of its own: a context collected by Lua
 * lives on in the sessions still open (OpenSSL counts them). tls.lua
 * makes a context again when tls_stamp says its files changed.
 */
#include "lua_util.h"
#include "tls.h"

#include <stdio.h>
#include <sys/stat.h>

#define FBL_TLS_CONTEXT "fusebox.tls_context"

static int context_gc(lua_State *L) {
  fb_tls_context **slot = fbl_check_gc(L, FBL_TLS_CONTEXT);
  if (!slot) /* a host holds it */
    return 0;
  if (*slot)
    fb_tls_context_free(*slot);
  *slot = NULL;
  return 0;
}

fb_tls_context *fbl_check_tls_context(lua_State *L, int idx) {
  return *(fb_tls_context **)fbl_check_object(L, idx, FBL_TLS_CONTEXT);
}

static const char *opt_string(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) ? NULL : luaL_checkstring(L, idx);
}

/* core.tls_context(server, ca_file, cert_file, key_file, verify)
 * -> context | nil, why (a file that cannot be read or used) */
static int tls_context(lua_State *L) {
  fb_tls_options o = {
      .server = lua_toboolean(L, 1),
      .ca_file = opt_string(L, 2),
      .cert_file = opt_string(L, 3),
      .key_file = opt_string(L, 4),
      .verify = lua_toboolean(L, 5),
  };
  if (!o.cert_file != !o.key_file)
    return luaL_error(L, "tls_context: cert_file and key_file go together");
  fb_tls_context **slot = lua_newuserdata(L, sizeof *slot);
  *slot = NULL;
  luaL_getmetatable(L, FBL_TLS_CONTEXT);
  lua_setmetatable(L, -2);
  char err[512];
  *slot = fb_tls_context_new(&o, err, sizeof err);
  if (!*slot) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* core.tls_stamp(path...) -> a string that changes when any of the
 * files does (inode, size, modification time; "-" for one that is
 * missing); nil arguments are skipped. */
static int tls_stamp(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= lua_gettop(L); i++) {
    struct stat st;
    char one[96];
    if (lua_isnil(L, i))
      continue;
    if (stat(luaL_checkstring(L, i), &st) != 0)
      snprintf(one, sizeof one, "-|");
    else
      snprintf(one, sizeof one, "%llu:%lld:%lld.%09ld|",
               (unsigned long long)st.st_ino, (long long)st.st_size,
               (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    luaL_addstring(&b, one);
  }
  luaL_pushresult(&b);
  return 1;
}

static const luaL_Reg context_methods[] = {{NULL, NULL}};

static const luaL_Reg tls_functions[] = {{"tls_context", tls_context},
                                         {"tls_stamp", tls_stamp},
                                         {NULL, NULL}};

void fbl_open_tls(lua_State *L, int rt_idx) {
  fbl_new_plain_class(L, FBL_TLS_CONTEXT, context_gc, context_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, tls_functions, 1);
}
