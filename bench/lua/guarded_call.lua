-- bench/lua/guarded_call.lua -- row 1, fusebox from Lua: cb:call(fn).
--   fusebox run --virtual-time --seed 1 bench/lua/guarded_call.lua
-- Same schedule as bench/guarded_call.c: "success" is 10 million calls on
-- a frozen clock; "70% failure" is the document's scenario with the clock
-- moved 0.5 s (fb.sleep, virtual) after every 100 calls. Only the calls
-- are timed, batch by batch, not the sleeps (the scheduler is not the
-- breaker). The failing service draws from math.random, seeded, which
-- LuaJIT compiles inline (fb.random is a classic C call). A rejection
-- raises an error, so that case runs 1 million calls, not 10.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local bench = require "benchlib"
local fb = require "fusebox"

local CALLS, FAILING_CALLS = 10000000, 1000000
local CALLS_PER_TICK, TICK, FAILURE_RATE = 100, 0.5, 0.7
local random, pcall, error = math.random, pcall, error

local function breaker()
  return fb.breaker { failure_threshold = 3, timeout = 5 }
end

local function trivial(x) return x end

local invoked = 0

local function unreliable()
  invoked = invoked + 1
  if random() < FAILURE_RATE then error("Service call failed", 0) end
  return "Service call succeeded"
end

-- The same service with failures as values: cb:try hands back nil, err
-- and a rejection as nil, "circuit open", never raising (a caught error
-- costs about a microsecond in LuaJIT; a return, nanoseconds).
local function unreliable_value()
  invoked = invoked + 1
  if random() < FAILURE_RATE then return nil, "Service call failed" end
  return "Service call succeeded"
end

local function run_success()
  local cb = breaker()
  local t0 = bench.ns()
  for i = 1, CALLS do cb:call(trivial, i) end
  return (bench.ns() - t0) / CALLS
end

local rejected = 0

-- Returns a run function for the failing case that makes each batch of
-- calls with batch(cb): the two styles differ only there, and a batch is
-- a loop of its own so each style's loop is compiled separately.
local function failing(batch)
  return function(run)
    local cb = breaker()
    math.randomseed(run or 0)
    local busy = 0
    invoked = 0
    for _ = 1, FAILING_CALLS / CALLS_PER_TICK do
      local t0 = bench.ns()
      batch(cb)
      busy = busy + (bench.ns() - t0)
      fb.sleep(TICK)
    end
    rejected = 1 - invoked / FAILING_CALLS
    return busy / FAILING_CALLS
  end
end

local run_failing = failing(function(cb)
  for _ = 1, CALLS_PER_TICK do pcall(cb.call, cb, unreliable) end
end)

local run_failing_values = failing(function(cb)
  for _ = 1, CALLS_PER_TICK do cb:try(unreliable_value) end
end)

-- The baseline: a naive classic C-API binding's u:call(fn, i), which
-- pcalls fn and counts it (bench/lua/naive.c), interleaved with fusebox's
-- runs so both see the same machine.
local function run_naive()
  local u = bench.naive()
  local t0 = bench.ns()
  for i = 1, CALLS do u:call(trivial, i) end
  return (bench.ns() - t0) / CALLS
end

local function run_try()
  local cb = breaker()
  local t0 = bench.ns()
  for i = 1, CALLS do cb:try(trivial, i) end
  return (bench.ns() - t0) / CALLS
end

local NAME = "guarded call"
local fusebox_runs, try_runs, naive_runs = {}, {}, {}
run_success(); run_try(); run_naive()
for i = 1, bench.RUNS do
  fusebox_runs[i], try_runs[i], naive_runs[i] = run_success(), run_try(), run_naive()
end
bench.emit { bench = NAME, case = "success", impl = "fusebox Lua", n = CALLS, runs = fusebox_runs,
  note = "cb:call(fn)" }
bench.emit { bench = NAME, case = "success", impl = "fusebox Lua, cb:try", n = CALLS, runs = try_runs,
  note = "cb:try(fn)" }
bench.emit { bench = NAME, case = "success", impl = "naive C-API binding", n = CALLS, runs = naive_runs,
  note = "u:call(fn): lua_CFunction that pcalls fn" }
-- The failing cases move the clock with fb.sleep: virtual time only.
if bench.CLOCK ~= "virtual" then return end
local runs = bench.repeat_runs(run_failing)
bench.emit { bench = NAME, case = "70% failure", impl = "fusebox Lua (raising, as the document)",
  n = FAILING_CALLS, runs = runs, note = string.format("%.1f%% rejected while open", rejected * 100) }
runs = bench.repeat_runs(run_failing_values)
bench.emit { bench = NAME, case = "70% failure", impl = "fusebox Lua",
  n = FAILING_CALLS, runs = runs, note = string.format("cb:try, failures as values; %.1f%% rejected", rejected * 100) }
