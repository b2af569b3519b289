-- bench/lua/balanced_pick.lua -- row 2, fusebox from Lua: lb:pick(name)
-- over one service of 10, 1,000 and 100,000 live instances.
--   fusebox run --virtual-time --seed 1 bench/lua/balanced_pick.lua
-- An algorithm fb.balancer() rejects is reported as skipped; a new one is
-- one line in ALGORITHMS.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local bench = require "benchlib"
local fb = require "fusebox"

local PICKS = 2000000
local ALGORITHMS = {
  { "round_robin", "round robin" },
  { "least_request", "least request" },
}

local function filled_registry(n)
  local reg = fb.registry {}
  for i = 0, n - 1 do
    reg:register("svc", string.format("10.%d.%d.%d", i / 65536 % 256,
      i / 256 % 256, i % 256), 8080)
  end
  return reg
end

local function measure(n, algo, label)
  local name = string.format("%s, %d instances", label, n)
  local reg = filled_registry(n)
  local ok, lb = pcall(fb.balancer, reg, algo)
  if not ok then
    bench.skip("balanced pick", name, "fusebox Lua", "fb.balancer: " .. tostring(lb))
    return
  end
  -- least_request judges by calls in flight: each pick is followed by
  -- the done() real use makes; round robin needs none
  local report = algo == "least_request"
  bench.emit { bench = "balanced pick", case = name, impl = "fusebox Lua", n = PICKS,
    note = report and "pick + done" or nil,
    runs = bench.repeat_runs(function()
      local t0 = bench.ns()
      if report then
        for _ = 1, PICKS do lb:done(lb:pick("svc"), true, 0.001) end
      else
        for _ = 1, PICKS do lb:pick("svc") end
      end
      return (bench.ns() - t0) / PICKS
    end) }
end

-- The baseline: a no-op method of a naive classic C-API binding
-- (bench/lua/naive.c), u:noop("svc"), in the same process.
local function naive_noop()
  local u = bench.naive()
  local t0 = bench.ns()
  for _ = 1, PICKS do u:noop("svc") end
  return (bench.ns() - t0) / PICKS
end
bench.emit { bench = "balanced pick", case = "no-op method", impl = "naive C-API binding",
  n = PICKS, runs = bench.repeat_runs(naive_noop), note = "u:noop(name)" }

for _, n in ipairs { 10, 1000, 100000 } do
  for _, a in ipairs(ALGORITHMS) do measure(n, a[1], a[2]) end
end
