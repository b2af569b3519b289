-- bench_policy.lua -- ns per policy:call with every layer, against a bare
-- call and each layer alone.
--
--   build/fusebox run --virtual-time tests/bench/bench_policy.lua
--
-- Method: each case runs in its own process (so one case's traces cannot
-- spoil the next one's), N calls of a function returning one value,
-- timed with clock_gettime(CLOCK_MONOTONIC) through the FFI; 5 runs per
-- case after a warm-up run (so traces are compiled), median reported.
-- Virtual time, so the timeout layer's wait costs a trip through the
-- scheduler but no real waiting. FB_BIN names the fusebox binary
-- (default build/fusebox); an argument runs that one case here.
local fb = require "fusebox"

package.path = "bench/lua/?.lua;" .. package.path -- run from the top
local bench = require "benchlib" -- the monotonic clock every benchmark uses
local function clock() return bench.ns() * 1e-9 end

local RUNS = 5
local function fn(x) return x end

local function median(t)
  table.sort(t)
  return t[(#t + 1) / 2]
end

-- ns per call of call(i), the median of RUNS runs of n calls
local function measure(n, call)
  for i = 1, n do call(i) end -- warm-up
  local runs = {}
  for r = 1, RUNS do
    local t0 = clock()
    for i = 1, n do call(i) end
    runs[r] = (clock() - t0) / n * 1e9
  end
  return median(runs)
end

local function layered(opts)
  local p = fb.policy(opts)
  return function(i) return p:call(fn, i) end
end

local huge_rate = { rate = 1e9, burst = 1e9 }
local all_but_timeout = { retry = { attempts = 3 }, breaker = { failure_threshold = 5 },
  rate_limit = huge_rate, bulkhead = { max_concurrent = 10 }, fallback = function() return 0 end }
local all = { timeout = 1 }
for k, v in pairs(all_but_timeout) do all[k] = v end

local cases = {
  { "bare call", 2e6, function(i) return fn(i) end },
  { "policy{} (no layer)", 2e6, layered {} },
  { "retry", 2e6, layered { retry = { attempts = 3 } } },
  { "breaker", 2e6, layered { breaker = { failure_threshold = 5 } } },
  { "rate_limit", 2e6, layered { rate_limit = huge_rate } },
  { "bulkhead", 2e6, layered { bulkhead = { max_concurrent = 10 } } },
  { "fallback", 2e6, layered { fallback = function() return 0 end } },
  { "retry+bulkhead", 1e6, layered { retry = { attempts = 3 }, bulkhead = { max_concurrent = 10 } } },
  { "timeout (spawns a coroutine)", 2e5, layered { timeout = 1 } },
  { "all layers but timeout", 5e5, layered(all_but_timeout) },
  { "all layers", 2e5, layered(all) },
}

local only = ...
if only then
  local c = cases[tonumber(only)]
  print(string.format("  %-32s %9.1f ns", c[1], measure(c[2], c[3])))
  return
end
print(string.format("policy:call, ns per call (median of %d runs, each case in its own process)", RUNS))
local bin = os.getenv("FB_BIN") or "build/fusebox"
for i = 1, #cases do
  local p = assert(io.popen(string.format("%s run --virtual-time %s %d", bin, arg[0], i)))
  io.write(p:read("*a"))
  p:close()
end
