-- bench_resilience.lua -- what the retry budget, the hedge and the
-- deadline add to p:call, on the real clock (the way users run), and the
-- bytes each call allocates.
--
--   build/fusebox run tests/bench/bench_resilience.lua
--
-- Method: as bench_policy.lua: each case in its own process, N calls of a
-- function returning one value, timed with clock_gettime(CLOCK_MONOTONIC)
-- through the FFI; a warm-up run, then 5 runs, median reported. Every
-- call succeeds at once: the budget deposits and never withdraws, no
-- hedge fires (its delay is 1 s), no deadline passes. The hedge and the
-- deadline hand each attempt to a pooled worker coroutine and wait for
-- it: a resume and a yield each way through the scheduler. Bytes a call:
-- the heap's growth over the last run, with the collector stopped.
-- FB_BIN names the fusebox binary (default build/fusebox); an argument
-- runs that one case here.
local fb = require "fusebox"

package.path = "bench/lua/?.lua;" .. package.path -- run from the top
local bench = require "benchlib"
local function clock() return bench.ns() * 1e-9 end

local RUNS = 5
local function fn(x) return x end
local function fn_ctx(_, x) return x end

local function median(t)
  table.sort(t)
  return t[(#t + 1) / 2]
end

-- ns per call and bytes per call of call(i)
local function measure(n, call)
  for i = 1, n do call(i) end -- warm-up: traces compiled, workers pooled
  local runs, bytes = {}, 0
  for r = 1, RUNS do
    collectgarbage("collect")
    collectgarbage("stop")
    local k0 = collectgarbage("count")
    local t0 = clock()
    for i = 1, n do call(i) end
    runs[r] = (clock() - t0) / n * 1e9
    bytes = (collectgarbage("count") - k0) * 1024 / n
    collectgarbage("restart")
  end
  return median(runs), bytes
end

local function layered(opts, f)
  local p = fb.policy(opts)
  f = f or fn
  return function(i) return p:call(f, i) end
end

local cases = {
  { "bare call", 2e6, function(i) return fn(i) end },
  { "retry", 2e6, layered { retry = { attempts = 3 } } },
  { "retry + budget", 2e6, layered { retry = { attempts = 3, budget = {} } } },
  { "breaker", 2e6, layered { breaker = { failure_threshold = 5 } } },
  { "hedge (none fires)", 2e5, layered({ hedge = { delay = 1 } }, fn_ctx) },
  { "hedge + breaker (ignorable)", 2e5, layered({ hedge = { delay = 1 }, breaker = {} }, fn_ctx) },
  { "deadline", 2e5, layered({ deadline = 10 }, fn_ctx) },
  { "timeout (for comparison)", 2e5, layered { timeout = 10 } },
  { "deadline + retry/budget + hedge + breaker", 1e5,
    layered({ deadline = 10, retry = { attempts = 3, budget = {} }, hedge = { delay = 1 }, breaker = {} }, fn_ctx) },
}

local only = ...
if only then
  local c = cases[tonumber(only)]
  local ns, bytes = measure(c[2], c[3])
  print(string.format("  %-42s %9.1f ns %7.2f B/call", c[1], ns, bytes))
  return
end
print(string.format("p:call on the real clock, ns and bytes per call (median of %d runs, each case in its own process)", RUNS))
local bin = os.getenv("FB_BIN") or "build/fusebox"
for i = 1, #cases do
  local p = assert(io.popen(string.format("%s run %s %d", bin, arg[0], i)))
  io.write(p:read("*a"))
  p:close()
end
