/*
 * lua_fusebox.h -- the Lua module's entry point.
 */
#ifndef FB_LUA_FUSEBOX_H
#define FB_LUA_FUSEBOX_H

#include <lua.h>

/* Opens the fusebox module: require "fusebox" calls this. */
int luaopen_fusebox(lua_State *L);

#endif
