-- wrk script for tests/soak/serve.sh: registration churn against
-- `fusebox serve`. Each request picks one of 20 services x 100 instances
-- (a bounded key space: the registry's size is bounded, so its memory
-- must be too) and does one of: register with a weight, zone and meta
-- (40%), heartbeat (20%), deregister (10%), discover (25%), list (5%).
-- Instances not heard from expire (the server runs with a short
-- --heartbeat-timeout) and come back with the next register or
-- heartbeat. done() prints the answers by status class; a 404 is only
-- expected from a DELETE of an instance already gone.
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  threads[#threads + 1] = thread
end

function init()
  math.randomseed(id * 7919)
end

local function instance()
  local s, k = math.random(0, 19), math.random(0, 99)
  return "soak" .. s, "10.1." .. s .. "." .. k
end

function request()
  local r = math.random(100)
  local svc, host = instance()
  if r <= 40 then
    return wrk.format("PUT", "/v1/services/" .. svc .. "/instances", nil,
      string.format('{"host":"%s","port":8000,"weight":%d,"zone":"z%d","meta":{"n":"%d"}}',
        host, math.random(1, 10), math.random(1, 3), math.random(1, 1000)))
  elseif r <= 60 then
    return wrk.format("PUT", "/v1/services/" .. svc .. "/instances/" .. host .. ":8000/heartbeat")
  elseif r <= 70 then
    return wrk.format("DELETE", "/v1/services/" .. svc .. "/instances/" .. host .. ":8000")
  elseif r <= 95 then
    return wrk.format("GET", "/v1/services/" .. svc)
  end
  return wrk.format("GET", "/v1/services")
end

-- Counts are globals: wrk reads a thread's with thread:get.
ok, not_found, client, server = 0, 0, 0, 0

function response(status)
  if status < 300 then ok = ok + 1
  elseif status == 404 then not_found = not_found + 1
  elseif status < 500 then client = client + 1
  else server = server + 1 end
end

function done(summary)
  local t = { ok = 0, not_found = 0, client = 0, server = 0 }
  for _, thread in ipairs(threads) do
    for k in pairs(t) do t[k] = t[k] + (thread:get(k) or 0) end
  end
  local e = summary.errors
  io.write(string.format("soak answers: 2xx=%d 404=%d other4xx=%d 5xx=%d socket_errors=%d\n",
    t.ok, t.not_found, t.client, t.server, e.connect + e.read + e.write + e.timeout))
end
