-- bench_core.lua -- the foundation's hot paths from Lua: cb:call and
-- lb:pick. ns per operation, median of 5 runs of 10M operations, timed
-- with os.clock (CPU time of this single-threaded process).
--   fusebox run --virtual-time tests/bench/bench_core.lua
local fb = require "fusebox"

local RUNS, OPS = 5, 10000000

local function median_ns(fn)
  local t = {}
  for r = 1, RUNS do
    local t0 = os.clock()
    fn(OPS)
    t[r] = (os.clock() - t0) / OPS * 1e9
  end
  table.sort(t)
  return t[math.ceil(RUNS / 2)]
end

local function report(name, fn)
  print(string.format("%-44s %8.2f ns/op  (Lua, median of %d x %d)", name, median_ns(fn), RUNS, OPS))
end

local function trivial() return true end

local cb = fb.breaker()
report("cb:call(trivial) (consecutive)", function(n)
  for _ = 1, n do cb:call(trivial) end
end)

for _, algo in ipairs { "round_robin", "random" } do
  for _, size in ipairs { 10, 1000, 100000 } do
    local reg = fb.registry()
    for i = 0, size - 1 do
      reg:register("svc", string.format("10.%d.%d.%d", math.floor(i / 65536), math.floor(i / 256) % 256, i % 256), 8080)
    end
    local lb = fb.balancer(reg, algo)
    report(string.format("lb:pick %s, %d instances", algo, size), function(n)
      for _ = 1, n do lb:pick("svc") end
    end)
  end
end
