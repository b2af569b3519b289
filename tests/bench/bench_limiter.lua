-- bench_limiter.lua -- what the limiter layer adds to p:call, in ns per
-- call on the real clock, and whether it allocates.
--
--   build/fusebox run tests/bench/bench_limiter.lua
--
-- Method: as bench_policy.lua: each case in its own process (one case's
-- traces cannot spoil the next one's), N calls of a function returning
-- one value, timed with clock_gettime(CLOCK_MONOTONIC) through the FFI;
-- 5 runs per case after a warm-up run, median reported. The real clock,
-- the way servers run it: the layer reads the clock twice a call (the
-- call's RTT). Bytes allocated per call are measured over one more run
-- with the collector stopped. FB_BIN names the fusebox binary (default
-- build/fusebox); an argument runs that one case here.
local fb = require "fusebox"

package.path = "bench/lua/?.lua;" .. package.path -- run from the top
local bench = require "benchlib"
local function clock() return bench.ns() * 1e-9 end

local RUNS = 5
local function fn(x) return x end

local function median(t)
  table.sort(t)
  return t[(#t + 1) / 2]
end

local function measure(n, call)
  for i = 1, n do call(i) end -- warm-up
  local runs = {}
  for r = 1, RUNS do
    local t0 = clock()
    for i = 1, n do call(i) end
    runs[r] = (clock() - t0) / n * 1e9
  end
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  for i = 1, n do call(i) end
  local bytes = (collectgarbage("count") - before) * 1024 / n
  collectgarbage("restart")
  return median(runs), bytes
end

local function layered(opts)
  local p = fb.policy(opts)
  return function(i) return p:call(fn, i) end
end

local function limiter(algorithm, extra)
  local o = { algorithm = algorithm, initial = 20, min = 1, max = 1000 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local cases = {
  { "bare call", 2e6, function(i) return fn(i) end },
  { "policy{} (no layer)", 2e6, layered {} },
  { "bulkhead (for scale)", 2e6, layered { bulkhead = { max_concurrent = 10 } } },
  { "limiter gradient2", 2e6, layered { limiter = limiter("gradient2") } },
  { "limiter aimd", 2e6, layered { limiter = limiter("aimd") } },
  { "limiter vegas", 2e6, layered { limiter = limiter("vegas") } },
  { "limiter gradient2 per-sample", 2e6, layered { limiter = limiter("gradient2", { min_window = 0 }) } },
  { "l:call gradient2 (no policy)", 2e6, (function()
      local l = fb.limiter(limiter("gradient2"))
      return function(i) return l:call(fn, i) end
    end)() },
}

local only = ...
if only then
  local c = cases[tonumber(only)]
  local ns, bytes = measure(c[2], c[3])
  print(string.format("  %-32s %7.1f ns  %5.2f bytes/call", c[1], ns, bytes))
  return
end
print(string.format("limiter layer, real clock, ns per call (median of %d runs, each case in its own process)", RUNS))
local bin = os.getenv("FB_BIN") or "build/fusebox"
for i = 1, #cases do
  local p = assert(io.popen(string.format("%s run %s %d", bin, arg[0], i)))
  io.write(p:read("*a"))
  p:close()
end
