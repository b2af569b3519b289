/*
 * lua_fusebox.h -- the Lua module's entry point.
 */
#ifndef FB_LUA_FUSEBOX_H
#define FB_LUA_FUSEBOX_H

#include <lua.h>

/* Opens the fusebox module: require "fusebox" calls this. */
int luaopen_fusebox(lua_State *L);

/* Opens fusebox.ngx, the nginx integration embedded in the module:
 * require "fusebox.ngx" finds this in fusebox.so through package.cpath
 * (Lua's all-in-one loader) even before require "fusebox" ran. */
int luaopen_fusebox_ngx(lua_State *L);

#endif
