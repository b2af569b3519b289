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
local format, type, error, tostring = string.format, type, error, tostring

-- The runtime's clock: virtual or real, in seconds. Not a tail call: a
-- LuaJIT trace records at most 15 (fusebox.policy's header says why
-- that matters), and every guarded call reads the clock.
function M.now()
  local t = api.now(rt)
  return t
end

-- The loop-cached clock (runtime.h): the time the running coroutine was
-- resumed at, read as a field (a clock_gettime costs ~25 ns here), or the
-- clock itself outside a coroutine of the runtime. On the real clock it
-- lags by the coroutine's time since its resume: for decisions measured
-- in seconds (expiry, picks), never for a duration. Virtual: exact.
local clock = api.clock_cache(rt)
M.clock = clock -- for entries that read the cache themselves (breaker_admit)
function M.loop_now()
  if clock.fresh ~= 0 then return clock.now end
  local t = api.now(rt)
  return t
end

-- Raises "bad argument #n to 'fname' (msg)" at the caller's caller, the
-- way luaL_argerror does for a method (self is not counted). depth: the
-- frames between that method and this call (0 when it calls argerror
-- itself), so that a shared check still blames the user's line, not ours.
function M.argerror(n, fname, msg, depth)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3 + (depth or 0))
end

-- check_self(v, mt, tname, fname [, depth]): a Lua method's check of
-- self (every method written in Lua has one), with the message
-- luaL_checkudata gives for a C method: "bad argument #1 to 'call'
-- (fusebox.retry expected, got function)" for r.call(fn) (a `.` for a
-- `:`: self is argument 1), "calling 'call' on bad self (fusebox.retry
-- expected, got table)" for x:call(fn) on a wrong x. v passes when its
-- metatable is mt: one comparison, as debug.getmetatable (unlike
-- getmetatable) looks up no __metatable field; in a trace it is the
-- metatable the method lookup loaded already, one guard (hoisted when
-- self is loop-invariant). The error path alone reads the debug info.
-- depth as for argerror.
local getinfo, getmetatable = debug.getinfo, debug.getmetatable

local function bad_self(v, tname, fname, depth)
  local info = getinfo(3 + depth, "n") -- bad_self, check_self, (depth), the method
  local want = format("%s expected, got %s", tname, type(v))
  if info and info.namewhat == "method" then
    error(format("calling '%s' on bad self (%s)", fname, want), 4 + depth)
  end
  error(format("bad argument #1 to '%s' (%s)", fname, want), 4 + depth)
end

function M.check_self(v, mt, tname, fname, depth)
  if getmetatable(v) ~= mt then bad_self(v, tname, fname, depth or 0) end
end

-- read_only(tname [, hint]) -> a __newindex for a C-backed object's
-- metatable: cb.state = "OPEN" says what it is instead of "attempt to
-- index a userdata value".
function M.read_only(tname, hint)
  local tail = hint and "; " .. hint or ""
  return function(_, key)
    error(format("cannot set '%s': %s fields are read-only%s", tostring(key), tname, tail), 2)
  end
end

-- timed_out(err) -> whether the error value err says the caller gave up
-- waiting: fb.timeout's "timeout: ..." or a bare "timeout" (fb.sim's hung
-- calls, fb.tcp). The one test of it: the breaker, fb.sim and the events
-- all tell a timeout from a failure by it.
function M.timed_out(err)
  return type(err) == "string" and (err == "timeout" or err:find("timeout:", 1, true) == 1)
end

-- seconds(s) -> s for a message: "0.250s" below a million, "1.5e+12s"
-- above (never hundreds of digits), "an unbounded time" for math.huge.
function M.seconds(s)
  if s < 1e6 then return format("%.3fs", s) end
  if s < math.huge then return format("%.4gs", s) end
  return "an unbounded time"
end

function M.check_name(v, n, fname, depth)
  depth = (depth or 0) + 1
  if type(v) ~= "string" then
    M.argerror(n, fname, "service name must be a string, got " .. type(v), depth)
  elseif v == "" then
    M.argerror(n, fname, "service name must not be empty", depth)
  end
end

-- Raises "calling 'fname' on a closed what" at level (as error() counts
-- from the caller: 2 is the caller's caller), or with no position when
-- level is nil: from deep inside a method, where the object was closed
-- under us (a listener or a finalizer calling its __gc).
local function closed(fname, what, level)
  error(format("calling '%s' on a closed %s", fname, what), level and level + 1 or 0)
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
    M.check_self(ud, mt, "fusebox." .. what, fname, 1)
    local slot = ffi.cast(slot_type, ud)
    if slot[0] == nil then closed(fname, what, 3) end
    st = build(ud, slot, fname)
    st.ud, st.slot = ud, slot
    debug.getfenv(ud).state = st
    states[ud] = st
    return st
  end
end

local pairs, tostring, getmetatable, floor = pairs, tostring, getmetatable, math.floor

-- Raises "bad argument #n to 'fname' (what expected, got <type>)" at the
-- caller's caller unless v has type `want` (a type name) or metatable
-- `want` (a table), the way luaL_checkudata words it: an argument's check
-- (check_arg(fn, 1, "call", "function")); self's is check_self. A
-- "function" may be any callable: a table or userdata with __call (an
-- fb.sim service is one).
function M.check_arg(v, n, fname, want, what)
  if type(want) == "string" then
    if type(v) == want then return v end
    if want == "function" then
      local mt = debug.getmetatable(v)
      if type(mt) == "table" and rawget(mt, "__call") ~= nil then return v end
    end
  elseif getmetatable(v) == want and want ~= nil then
    return v
  end
  error(format("bad argument #%d to '%s' (%s expected, got %s)", n, fname,
    what or want, type(v)), 3)
end

-- Returns nil when v is a list of tables (keys exactly 1..n, each value a
-- table), else the message naming the field and what was wrong with it:
-- "outages must be a list of tables, got a table with key 'at'".
function M.list_error(v, field)
  if type(v) ~= "table" then
    return format("%s must be a list of tables, got %s", field, type(v))
  end
  local n, bad = 0, nil
  for _ in pairs(v) do n = n + 1 end
  for k in pairs(v) do -- the least bad key by name: pairs() order varies
    if (type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0)
        and (bad == nil or tostring(k) < tostring(bad)) then
      bad = k
    end
  end
  if bad ~= nil then
    return format(type(bad) == "string" and "%s must be a list of tables, got a table with key '%s'"
      or "%s must be a list of tables, got a table with key %s", field, tostring(bad))
  end
  for i = 1, n do
    if type(v[i]) ~= "table" then
      return format("%s[%d] must be a table, got %s", field, i, type(v[i]))
    end
  end
  return nil
end

-- Returns random([m [, n]]) over a generator: math.random's contract,
-- errors included. The one implementation behind fb.random, a strategy's
-- ctx.random and fb.sim streams. r is an fb_rng * that lives as long as
-- the function (the runtime's, a stream's), or a function returning the
-- one to draw from, NULL once its owner (a what) is closed: read at every
-- draw, so a ctx.random kept past its balancer is an error, never a read
-- of freed memory.
function M.random(r, what)
  local rng_double, rng_below = api.rng_double, api.rng_below
  local get = type(r) == "function" and r or function() return r end
  return function(m, n, ...)
    local p = get()
    if p == nil then closed("random", what, 2) end
    if m == nil then return rng_double(p) end
    if ... ~= nil then error("wrong number of arguments to 'random'", 2) end
    if type(m) ~= "number" then
      M.argerror(1, "random", "number expected, got " .. type(m))
    end
    local lo, hi
    if n == nil then
      lo, hi = 1, floor(m)
      if not (lo <= hi) then M.argerror(1, "random", "interval is empty") end
    else
      if type(n) ~= "number" then
        M.argerror(2, "random", "number expected, got " .. type(n))
      end
      lo, hi = floor(m), floor(n)
      if not (lo <= hi) then M.argerror(2, "random", "interval is empty") end
    end
    if not (hi - lo < 9007199254740992) then M.argerror(2, "random", "interval is too large") end
    return lo + rng_below(p, hi - lo + 1)
  end
end

-- Marks: what lets a slot come back from a coroutine that can no longer
-- return it. A call holding a slot (a bulkhead's, a limiter's) keeps a
-- mark, a small table, in a local; idle marks wait in h.spare and
-- h.idle, and h.weak (weak on its values) knows every mark by its number.
-- A coroutine dropped while suspended inside the call (a plain coroutine
-- that yielded there and was never resumed) is collected with its stack,
-- and the mark with it: h.weak[i] goes nil. When the slots run out,
-- reclaim_marks frees those slots. Only a collection can drop a mark, so
-- it looks once per collection cycle: a weak-keyed probe that comes back
-- empty says one has run. Marks are reused (no allocation per call), and
-- coroutine.running, which LuaJIT does not compile, is not needed. h
-- holds weak, nmarks, spare (false), idle, nidle, probe (gc_probe()) and
-- reclaimed (0).
function M.gc_probe() return setmetatable({ [{}] = true }, { __mode = "k" }) end

local function new_mark(h)
  local i = h.nmarks + 1
  local mark = { i }
  h.nmarks, h.weak[i] = i, mark
  return mark
end

-- take_mark(h) -> a mark to hold while holding a slot. One idle mark
-- waits in the field spare, the others on the stack idle: calls that do
-- not overlap only move one mark in and out of one field (storing a
-- table into an array slot after the guarded call costs LuaJIT ~6 ns).
function M.take_mark(h)
  local mark = h.spare
  if mark then
    h.spare = false -- no strong reference while in use
    return mark
  end
  local n = h.nidle
  if n == 0 then return new_mark(h) end
  local idle = h.idle
  mark = idle[n]
  idle[n], h.nidle = false, n - 1
  return mark
end

local function give_mark(h, mark)
  if not h.spare then
    h.spare = mark
  else
    local n = h.nidle + 1
    h.idle[n], h.nidle = mark, n
  end
end
M.give_mark = give_mark

-- reclaim_marks(h, lost, owner) -> how many: for every mark the
-- collector took since the last look, a new mark takes its number and
-- lost(owner, i) frees what mark i held.
function M.reclaim_marks(h, lost, owner)
  if next(h.probe) ~= nil then return 0 end -- no collection since the last look
  h.probe = M.gc_probe()
  local weak, n = h.weak, 0
  for i = 1, h.nmarks do
    if weak[i] == nil then
      local mark = { i }
      weak[i] = mark
      give_mark(h, mark)
      h.reclaimed = h.reclaimed + 1
      n = n + 1
      lost(owner, i)
    end
  end
  return n
end

-- fb.random (core.random for the modules that draw from it): the run's
-- seeded stream, reached through the FFI like every other draw.
core.random = M.random(api.runtime_rng(ffi.cast("fb_runtime *", core.rt)))

-- Listeners, one home for every object that has them (breakers,
-- limiters, outlier detectors): on(event, fn)'s checks and list, and the
-- calls, each in its own xpcall so a failing listener is reported and the
-- others still run. known: the set of event names; known_text: how the
-- error lists them.
function M.add_listener(st, known, known_text, event, fn)
  if not known[event] then
    M.argerror(1, "on", format("unknown event '%s' (known: %s)", tostring(event), known_text), 1)
  end
  if type(fn) ~= "function" then
    M.argerror(2, "on", "listener must be a function, got " .. type(fn), 1)
  end
  local list = st.listeners[event] or {}
  list[#list + 1] = fn
  st.listeners[event] = list
end

function M.emit_listeners(list, event, a, b, c, d)
  for i = 1, #list do
    local ok, err = xpcall(list[i], debug.traceback, a, b, c, d)
    if not ok then core.report(event .. " listener failed", tostring(err)) end
  end
end

return M
