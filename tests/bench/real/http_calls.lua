-- Guarded HTTP calls through a breaker and a round-robin pick versus
-- direct calls, against a local backend (real time: `fusebox run`).
-- Both reuse the default pool's keep-alive connection (a new connection
-- per call: tests/bench/http_pool.sh), so the difference is the policy's
-- cost per call. Median of 5 runs.
local fb = require "fusebox"
local N, RUNS = 2000, 5

local srv = assert(fb.http.serve { port = 0, handler = function() return 200, nil, "ok" end })
local reg = fb.registry {}
reg:register("backend", "127.0.0.1", srv:port())
local lb = fb.balancer(reg, "round_robin")
local cb = fb.breaker { failure_threshold = 5, timeout = 1 }
local target = { host = "127.0.0.1", port = srv:port() }

local function direct()
  return fb.http.request { instance = target, path = "/" }
end

local function guarded()
  local inst = lb:pick("backend")
  return cb:call(function()
    local status, err = fb.http.request { instance = inst, path = "/" }
    if not status or status >= 500 then error(err or status) end
    return status
  end)
end

local function measure(fn)
  local t = {}
  for r = 1, RUNS do
    local t0 = fb.now()
    for _ = 1, N do assert(fn() == 200) end
    t[r] = (fb.now() - t0) / N
  end
  table.sort(t)
  return t[(RUNS + 1) / 2]
end

measure(direct) -- warm up
local d, g = measure(direct), measure(guarded)
print(string.format("http direct   %8.1f us/call  %7.0f calls/s", d * 1e6, 1 / d))
print(string.format("http guarded  %8.1f us/call  %7.0f calls/s  (overhead %+.1f us/call)",
  g * 1e6, 1 / g, (g - d) * 1e6))
srv:close()
