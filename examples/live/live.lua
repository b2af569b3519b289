-- examples/live/live.lua -- real traffic you can watch (about 10 s):
--
--   build/fusebox run examples/live/live.lua
--
-- Three local HTTP backends on 127.0.0.1, steady traffic through a
-- round-robin balancer and one breaker per backend. At 3 s backend B is
-- killed (its breaker opens, its share goes to the others); at 5 s
-- backend C turns slow (its calls time out, its breaker opens too); at
-- 8 s B comes back (its breaker probes and closes). Once a second the
-- script prints who got how many requests and each breaker's state.
local fb = require "fusebox"

local DURATION, RATE, TIMEOUT = 10, 200, 0.1 -- seconds, requests/s, per-request timeout
local names = { "A", "B", "C" }
local slow = {}
local servers, ports = {}, {}

local function start(name, port)
  return assert(fb.http.serve { port = port or 0, handler = function()
    if slow[name] then fb.sleep(0.5) end
    return 200, nil, name
  end })
end

local reg = fb.registry {}
local breakers, counts = {}, {}
for _, name in ipairs(names) do
  servers[name] = start(name)
  ports[name] = servers[name]:port()
  reg:register("backend", "127.0.0.1", ports[name])
  breakers[ports[name]] = fb.breaker { failure_threshold = 3, timeout = 1, success_threshold = 2 }
  fb.export("breaker_" .. name, breakers[ports[name]])
end
fb.export("registry", reg)
local lb = fb.balancer(reg, "round_robin")

-- One guarded call: pick, guard with that instance's breaker, time out.
local function call()
  local inst = lb:pick("backend")
  local cb = breakers[inst.port]
  local ok, err = pcall(cb.call, cb, function()
    local status, e = fb.http.request { instance = inst, path = "/", timeout = TIMEOUT }
    if status ~= 200 then error(e or ("status " .. tostring(status))) end
  end)
  local tally = counts[inst.port] or { ok = 0, failed = 0, rejected = 0 }
  counts[inst.port] = tally
  if ok then tally.ok = tally.ok + 1
  elseif tostring(err):find("circuit open", 1, true) then tally.rejected = tally.rejected + 1
  else tally.failed = tally.failed + 1 end
end

local t0, running = fb.now(), true
fb.spawn(function() -- traffic: RATE calls a second, each its own coroutine
  while running do
    fb.spawn(call)
    fb.sleep(1 / RATE)
  end
end)

local events = {
  [3] = function() print("   !! killing B"); servers.B:close() end,
  [5] = function() print("   !! C turns slow (0.5 s per answer, timeout " .. TIMEOUT .. " s)"); slow.C = true end,
  [8] = function() print("   !! B is back"); servers.B = start("B", ports.B) end,
}

for second = 1, DURATION do
  fb.sleep(t0 + second - fb.now())
  local line = {}
  for _, name in ipairs(names) do
    local p = ports[name]
    local c = counts[p] or { ok = 0, failed = 0, rejected = 0 }
    line[#line + 1] = string.format("%s ok %3d fail %2d rej %3d %-9s", name, c.ok, c.failed, c.rejected,
      breakers[p].state)
    counts[p] = nil
  end
  print(string.format("t=%2ds  %s", second, table.concat(line, " | ")))
  if events[second] then events[second]() end
end
running = false
fb.sleep(1) -- let calls in flight finish
for _, name in ipairs(names) do servers[name]:close() end
print(string.format("(%d requests/s, one breaker per backend, round robin)", RATE))
