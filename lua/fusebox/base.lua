-- fusebox/base.lua -- what every Lua part of fusebox shares: the FFI
-- table of hot-path entry points, the clock, and argument checking.
--
-- A classic C function call costs tens of nanoseconds and stops a trace;
-- an FFI call through `api` compiles to a few. Functions reached through
-- `api` never call back into Lua.

local core = select(2, ...)
local ffi = require "ffi"

pcall(ffi.cdef, core.cdef) -- already declared if the module is reloaded

local M = {}
M.core = core
M.api = ffi.cast("const struct fb_lua_api *", core.api)
local api, rt = M.api, ffi.cast("const fb_runtime *", core.rt)
local format, type, error = string.format, type, error

-- The runtime's clock: virtual or real, in seconds. Not a tail call: a
-- LuaJIT trace records at most 15 (fusebox.policy's header says why
-- that matters), and every guarded call reads the clock.
function M.now()
  local t = api.now(rt)
  return t
end

-- Raises "bad argument #n to 'fname' (msg)" at the caller's caller, the
-- way luaL_argerror does for a method (self is not counted); level
-- (default 2) counts as error() does, from argerror's caller.
function M.argerror(n, fname, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), (level or 2) + 1)
end

-- Checks argument n of method fname (called by the method itself).
function M.check_name(v, n, fname)
  if type(v) ~= "string" then
    M.argerror(n, fname, "service name must be a string, got " .. type(v), 3)
  elseif v == "" then
    M.argerror(n, fname, "service name must not be empty", 3)
  end
end

-- Raises "calling 'fname' on a closed what" at level (as error() counts
-- from the caller: 2 is the caller's caller).
local function closed(fname, what, level)
  error(format("calling '%s' on a closed %s", fname, what), level + 1)
end
M.closed = closed

-- Returns state(ud, fname) -> st: the per-object Lua state, built on
-- first use, raising on a bad self (or a closed object, on first use).
--
-- Lifetime: the state lives in the userdata's environment (env.state) and
-- holds the userdata (st.ud), so whatever holds a state (an instance
-- view, a permit) keeps its object alive; ud -> env -> st -> ud is an
-- ordinary cycle the collector frees. The lookup table is weak on both
-- sides, so it pins neither (5.1 weak tables are not ephemerons).
--
-- Liveness: st.slot is the userdata's payload (fb_<what> **), which __gc
-- sets to NULL; a listener, a strategy or any finalizer may close the
-- object in the middle of a method. So no pointer to the object is kept:
-- methods hand st.slot to the FFI entries, which read it on every call
-- and answer FBL_ECLOSED once it is NULL (lua_api.h). The lookup here does
-- not test it: that costs a pick+done ~2 ns, and the FFI call that
-- follows tests it anyway; a method that calls none tests st.slot[0].
function M.object_state(mt, what, build)
  local states = setmetatable({}, { __mode = "kv" })
  local slot_type = ffi.typeof("fb_" .. what .. " **")
  return function(ud, fname)
    local st = states[ud]
    if st then return st end
    if getmetatable(ud) ~= mt then
      error(format("calling '%s' on bad self (%s expected)", fname, what), 3)
    end
    local slot = ffi.cast(slot_type, ud)
    if slot[0] == nil then closed(fname, what, 3) end
    st = build(ud, slot, fname)
    st.ud, st.slot = ud, slot
    debug.getfenv(ud).state = st
    states[ud] = st
    return st
  end
end

return M
