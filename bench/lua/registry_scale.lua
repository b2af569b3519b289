-- bench/lua/registry_scale.lua -- row 3, fusebox from Lua: the schedule
-- of bench/registry_scale.c (1,000,000 instances, 10,000 services,
-- register at t=0, heartbeat all at t=10, all but every 10th at t=20,
-- discover every service at t=41), with reg:register, reg:heartbeat and
-- reg:discover. The clock moves with fb.sleep (virtual), untimed.
--   fusebox run --virtual-time --seed 1 bench/lua/registry_scale.lua
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local bench = require "benchlib"
local fb = require "fusebox"

local INSTANCES, SERVICES, RUNS = 1000000, 10000, 3
local B, IMPL = "registry at scale", "fusebox Lua"

local hosts, names = {}, {}
for i = 0, INSTANCES - 1 do
  hosts[i] = string.format("10.%d.%d.%d", i / 65536 % 256, i / 256 % 256, i % 256)
end
for s = 0, SERVICES - 1 do names[s] = string.format("service-%05d", s) end

local function each(op, reg, skip)
  local t0 = bench.ns()
  for i = 0, INSTANCES - 1 do
    if not skip or i % skip ~= 0 then op(reg, names[i % SERVICES], hosts[i], 8080) end
  end
  return (bench.ns() - t0) / INSTANCES
end

-- One life cycle on a fresh registry; times are relative to its start.
local function run()
  local reg = fb.registry { max_instances = INSTANCES } -- the default limit is 100,000
  local r = {}
  local start = fb.now()
  r.register = each(reg.register, reg)
  fb.sleep(10)
  r.heartbeat = each(reg.heartbeat, reg)
  fb.sleep(10)
  each(reg.heartbeat, reg, 10)
  -- Lua makes one view per instance on first sight and keeps it: build
  -- them untimed, so the timed discover is the steady state
  for s = 0, SERVICES - 1 do reg:discover(names[s]) end
  fb.sleep(start + 41 - fb.now())
  local live = 0
  local t0 = bench.ns()
  for s = 0, SERVICES - 1 do live = live + #reg:discover(names[s]) end
  r.discover = (bench.ns() - t0) / SERVICES
  assert(live == INSTANCES - INSTANCES / 10, "wrong number of live instances")
  return r
end

local res = {}
for k = 1, RUNS do res[k] = run() end
local function column(key)
  local v = {}
  for k = 1, RUNS do v[k] = res[k][key] end
  return v
end
bench.emit { bench = B, case = "register, per instance", impl = IMPL,
  n = INSTANCES, runs = column("register") }
bench.emit { bench = B, case = "heartbeat, per instance", impl = IMPL,
  n = INSTANCES, runs = column("heartbeat") }
bench.skip(B, "expire 10%, per expired instance", IMPL,
  "the Lua API has no expire step: the first discover after time moves expires")
bench.emit { bench = B, case = "discover, per service", impl = IMPL,
  n = SERVICES, runs = column("discover"),
  note = "first call after expiry: includes it; instance views built before, untimed" }
bench.skip(B, "memory, per instance", IMPL,
  "same C core as fusebox C (discover's views are Lua tables the caller owns)")
