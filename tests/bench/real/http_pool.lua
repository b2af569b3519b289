-- One run of tests/bench/http_pool.sh: a guarded HTTP GET (a round-robin
-- pick, then a breaker's call around fb.http.request) against the
-- backend at arg[1], by arg[3] coroutines at once for arg[4] seconds,
-- over the pool's keep-alive connections (arg[2] = "pooled") or a new
-- connection per request (arg[2] = "new": pool = false, what every call
-- cost before the pool). Prints the calls/s (real clock), after a warm-up.
local fb = require "fusebox"
local url, mode, C, SECONDS = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local host, port = url:match("^http://([^:/]+):(%d+)")
local pool = mode ~= "new" and fb.http.pool {} or false

local reg = fb.registry {}
reg:register("backend", host, tonumber(port))
local lb = fb.balancer(reg, "round_robin")
local cb = fb.breaker { failure_threshold = 5, timeout = 1 }

local function guarded()
  local inst = lb:pick("backend")
  return cb:call(function()
    local status, err = fb.http.request { instance = inst, path = "/", pool = pool }
    if not status or status >= 500 then error(err or status) end
    return status
  end)
end

-- c coroutines calling until `until`; -> calls made
local function load(c, until_t)
  local left, me, n = c, coroutine.running(), 0
  for _ = 1, c do
    fb.spawn(function()
      while fb.now() < until_t do
        assert(guarded() == 200)
        n = n + 1
      end
      left = left - 1
      if left == 0 then fb.wake(me) end
    end)
  end
  fb.wait("callers", SECONDS + 30)
  return n
end

load(C, fb.now() + 0.3) -- warm up: traces, the pooled connections
local t0 = fb.now()
local n = load(C, t0 + SECONDS)
print(string.format("%.0f", n / (fb.now() - t0)))
