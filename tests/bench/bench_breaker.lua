-- bench_breaker.lua -- the breaker from Lua, per mode, in ns per call:
--   call     cb:call(fn) with a trivial fn
--   try      cb:try(fn)
--   token    cb:permit() + cb:record(token, ok, duration)
--   permit   cb:acquire() + permit:success()/failure() (LuaJIT sinks
--            the permit's allocation: it never leaves the loop)
--   kept     the same with the permit stored in a table first, as code
--            that holds it across a yield must: the allocation is paid
--   listened cb:call(fn) with an outcome listener (consecutive only),
--            run last for its mode: a listener must leave the other rows'
--            code compiled (jit.off on the listener dispatch, once tried
--            against a LuaJIT bug, made every breaker's call interpreted)
-- One call in ten fails (under every threshold: the breaker stays CLOSED).
-- Run: build/fusebox run --virtual-time tests/bench/bench_breaker.lua
-- (the virtual clock stands still, so the clock read is the cheapest; the
-- wall time is read with clock_gettime). Median of RUNS runs of N calls.
local fb = require "fusebox"

package.path = "bench/lua/?.lua;" .. package.path -- run from the top
local bench = require "benchlib" -- the monotonic clock every benchmark uses
local now_ns = bench.ns

local N, RUNS = 2000000, 5

local function make(mode)
  if mode == "consecutive" then return fb.breaker { timeout = 1 } end
  return fb.breaker { mode = mode, window = mode == "time" and 60 or 100,
    slow_call_duration = 0.5 }
end

local function ok_fn() return true end
local function failing_fn() return nil, "failed" end

local loops = {}
function loops.call(cb)
  for i = 1, N do
    cb:call(i % 10 == 0 and failing_fn or ok_fn)
  end
end
function loops.try(cb)
  for i = 1, N do
    cb:try(i % 10 == 0 and failing_fn or ok_fn)
  end
end
function loops.token(cb)
  for i = 1, N do
    local t = cb:permit()
    cb:record(t, i % 10 ~= 0, 0.001)
  end
end
function loops.permit(cb)
  for i = 1, N do
    local p = cb:acquire()
    if i % 10 == 0 then p:failure(0.001) else p:success(0.001) end
  end
end

local held = {}
function loops.kept(cb)
  for i = 1, N do
    held[1] = cb:acquire()
    local p = held[1]
    if i % 10 == 0 then p:failure(0.001) else p:success(0.001) end
  end
end

function loops.listened(cb)
  local n = 0
  cb:on("outcome", function() n = n + 1 end)
  loops.call(cb)
  assert(n == N, "the listener missed calls")
end

local function median(t)
  table.sort(t)
  return t[(#t + 1) / 2]
end

for _, mode in ipairs { "consecutive", "count", "time" } do
  local kinds = { "call", "try", "token", "permit", "kept", mode == "consecutive" and "listened" or nil }
  for _, kind in ipairs(kinds) do
    local runs = {}
    for r = 1, RUNS do
      local cb = make(mode)
      local t0 = now_ns()
      loops[kind](cb)
      runs[r] = (now_ns() - t0) / N
      assert(cb.state == "CLOSED", "the breaker left CLOSED")
    end
    print(string.format("breaker Lua %-8s %-11s %6.2f ns/op (median of %d x %d)",
      kind, mode, median(runs), RUNS, N))
  end
end
