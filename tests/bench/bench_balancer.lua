-- bench_balancer.lua -- ns per pick from Lua, the counterpart of
-- bench_balancer.c: same registries (weights 1..4 in turn), same pick +
-- done pair, median of RUNS timed runs after a warm-up (which also lets
-- LuaJIT compile the loop). CPU time via os.clock(): the loop never
-- sleeps, so it equals wall time, and it works under --virtual-time.
--
--   build/fusebox run --virtual-time tests/bench/bench_balancer.lua
local fb = require "fusebox"

local RUNS, PICKS = 3, 300000
local keys = {}
for k = 1, 1024 do keys[k] = string.format("user-%011d", (k - 1) * 7919) end

local function make(n)
  local reg = fb.registry { heartbeat_timeout = 1e9 }
  for i = 0, n - 1 do
    reg:register("svc", string.format("10.%d.%d.%d", math.floor(i / 65536),
      math.floor(i / 256) % 256, i % 256), 8080, { weight = i % 4 + 1 })
  end
  return reg
end

local function run(lb, keyed, picks)
  local t0 = os.clock()
  for k = 1, picks do
    local inst = lb:pick("svc", keyed and keys[k % 1024 + 1] or nil)
    lb:done(inst, true, 0.001)
  end
  return (os.clock() - t0) / picks * 1e9
end

local function median(v)
  table.sort(v)
  return v[math.floor(#v / 2) + 1]
end

local function bench(name, algo, n, reg, opts)
  local lb = fb.balancer(reg, algo, opts)
  local keyed = algo == "consistent_hash" or algo == "maglev"
  run(lb, keyed, PICKS / 10)
  local ns = {}
  for r = 1, RUNS do ns[r] = run(lb, keyed, PICKS) end
  print(string.format("%-22s %8d %10.1f", name, n, median(ns)))
end

local algorithms = { "round_robin", "random", "weighted_round_robin",
  "least_request", "peak_ewma", "consistent_hash", "maglev" }
local strategies = fb.strategies

print(string.format("%-22s %8s %10s", "algorithm (from Lua)", "n", "ns/pick"))
for _, algo in ipairs(algorithms) do
  for _, n in ipairs { 10, 1000, 100000 } do
    bench(algo, algo, n, make(n))
  end
end
local reg = make(1000)
bench("strategy: first", function() return 1 end, 1000, reg)
bench("strategy: latency_aware", strategies.latency_aware(), 1000, reg)
-- done() recording into an outlier detector (Envoy's defaults, every call
-- a success: its bookkeeping alone)
bench("round_robin + outlier", "round_robin", 1000, reg, { outlier = {} })
bench("least_request + outlier", "least_request", 1000, reg, { outlier = {} })
