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
-- way luaL_argerror does for a method (self is not counted).
function M.argerror(n, fname, msg)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

-- seconds(s) -> s for a message: "0.250s" below a million, "1.5e+12s"
-- above (never hundreds of digits), "an unbounded time" for math.huge.
function M.seconds(s)
  if s < 1e6 then return format("%.3fs", s) end
  if s < math.huge then return format("%.4gs", s) end
  return "an unbounded time"
end

function M.check_name(v, n, fname)
  if type(v) ~= "string" then
    M.argerror(n, fname, "service name must be a string, got " .. type(v))
  elseif v == "" then
    M.argerror(n, fname, "service name must not be empty")
  end
end

-- Returns state(ud, fname): per-object Lua state, built on first use and
-- kept in a table weak on the userdata. A state never refers back to its
-- userdata: 5.1 weak tables are not ephemerons, so that would pin it.
function M.object_state(mt, what, build)
  local states = setmetatable({}, { __mode = "k" })
  return function(ud, fname)
    local st = states[ud]
    if st then return st end
    if getmetatable(ud) ~= mt then
      error(format("calling '%s' on bad self (%s expected)", fname, what), 3)
    end
    local p = ffi.cast("void **", ud)[0]
    if p == nil then
      error(format("calling '%s' on a closed %s", fname, what), 3)
    end
    st = build(ud, ffi.cast("fb_" .. what .. " *", p), fname)
    states[ud] = st
    return st
  end
end

return M
