-- Shared by the etcd scenarios (run by tests/etcd.t as
-- `fusebox run scenario.lua ENDPOINT CTL [args...]`): TAP lines without
-- numbers (the shell numbers them), bounded waits, and etcdctl.
local fb = require "fusebox"

local L = { endpoint = arg[1], ctl = arg[2] }

function L.check(cond, desc, detail)
  print((cond and "ok" or "not ok") .. " - " .. desc)
  if not cond and detail ~= nil then print("# " .. tostring(detail):gsub("\n", "\n# ")) end
  io.stdout:flush()
  return cond
end

-- Polls fn every 50 ms on the runtime clock until it is true or timeout
-- seconds passed; returns fn's last result and the seconds waited.
function L.wait_until(fn, timeout)
  local t0 = fb.now()
  while fb.now() - t0 < timeout do
    local v = fn()
    if v then return v, fb.now() - t0 end
    fb.sleep(0.05)
  end
  return fn(), fb.now() - t0
end

function L.sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

-- Runs the tests' etcd control script: start | stop | side | wipe |
-- etcdctl ARGS (etcdctl against the side port, which every start opens).
function L.ctl_run(args) return L.sh(L.ctl .. " " .. args) end
function L.etcdctl(args) return L.ctl_run("etcdctl " .. args) end

-- etcdctl: grants a lease of ttl seconds and puts key -> value with it.
function L.put_leased(key, value, ttl)
  local lease = L.etcdctl("lease grant " .. ttl):match("lease (%x+) granted")
  L.etcdctl(string.format("put --lease=%s %s '%s'", lease, key, value))
  return lease
end

-- The keys under prefix in etcd and the leases they are on: key count,
-- lease (decimal, as etcd's JSON has it) -> how many keys.
function L.leases(prefix)
  local out = L.etcdctl("get --prefix -w json " .. prefix)
  local n, leases = 0, {}
  for kv in out:gmatch('{"key":[^}]*}') do
    n = n + 1
    local lease = kv:match('"lease":(%d+)') or "none"
    leases[lease] = (leases[lease] or 0) + 1
  end
  return n, leases
end

-- the one lease of a table as L.leases returns it, or nil
function L.only(leases)
  local one = next(leases)
  return one ~= nil and next(leases, one) == nil and one ~= "none" and one or nil
end

-- A decimal lease id (beyond 2^53) in hex, as etcdctl lease takes it.
function L.hex(dec)
  local digits, out = {}, {}
  for d in dec:gmatch("%d") do digits[#digits + 1] = tonumber(d) end
  while #digits > 0 do
    local rem, q = 0, {}
    for _, d in ipairs(digits) do
      local cur = rem * 10 + d
      rem = cur % 16
      if #q > 0 or cur >= 16 then q[#q + 1] = math.floor(cur / 16) end
    end
    out[#out + 1] = string.format("%x", rem)
    digits = q
  end
  return table.concat(out):reverse()
end

-- "host:port,..." of reg:discover(service), sorted.
function L.members(reg, service)
  local out = {}
  for _, v in ipairs(reg:discover(service)) do out[#out + 1] = v.host .. ":" .. v.port end
  table.sort(out)
  return table.concat(out, ",")
end

function L.registry(prefix, ttl)
  return fb.registry { backend = "etcd", endpoints = { L.endpoint }, prefix = prefix, heartbeat_timeout = ttl }
end

-- Heartbeats host:port of service every period until stop() is called.
function L.heartbeats(reg, service, host, port, period)
  local running = true
  fb.spawn(function()
    while running do
      reg:heartbeat(service, host, port)
      fb.sleep(period)
    end
  end)
  return function() running = false end
end

return L
