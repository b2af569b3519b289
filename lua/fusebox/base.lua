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

-- Returns state(ud, fname) -> st, p: the per-object Lua state, built on
-- first use, and the open C object, raising on a bad self or a closed
-- object.
--
-- Lifetime: the state lives in the userdata's environment (env.state) and
-- holds the userdata (st.ud), so whatever holds a state (an instance
-- view, a permit) keeps its object alive; ud -> env -> st -> ud is an
-- ordinary cycle the collector frees. The lookup table is weak on both
-- sides, so it pins neither (5.1 weak tables are not ephemerons).
--
-- Liveness: st.slot is the userdata's payload (fb_<what> **), which __gc
-- sets to NULL. Code holding st must read st.slot[0] again after anything
-- that may run Lua (a listener, a strategy, a finalizer may close the
-- object), never keep a pointer: use M.open(st, fname, what).
function M.object_state(mt, what, build)
  local states = setmetatable({}, { __mode = "kv" })
  local slot_type = ffi.typeof("fb_" .. what .. " **")
  return function(ud, fname)
    local st = states[ud]
    if st then
      local p = st.slot[0]
      if p == nil then closed(fname, what, 3) end
      return st, p
    end
    if getmetatable(ud) ~= mt then
      error(format("calling '%s' on bad self (%s expected)", fname, what), 3)
    end
    local slot = ffi.cast(slot_type, ud)
    local p = slot[0]
    if p == nil then closed(fname, what, 3) end
    st = build(ud, slot, fname)
    st.ud, st.slot = ud, slot
    debug.getfenv(ud).state = st
    states[ud] = st
    return st, p
  end
end

-- The open C object of state st (built by object_state), or raises
-- "calling 'fname' on a closed what" at level (default 1: the caller).
function M.open(st, fname, what, level)
  local p = st.slot[0]
  if p == nil then closed(fname, what, (level or 1) + 1) end
  return p
end

return M
