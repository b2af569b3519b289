-- One run of tests/bench/http_pool.sh: a guarded HTTP GET (a round-robin
-- pick, then a breaker's call around fb.http.request) against the
-- backend at arg[1], by arg[3] coroutines at once for arg[4] seconds,
-- over the pool's keep-alive connections (arg[2] = "pooled") or a new
-- connection per request (arg[2] = "new": pool = false, what every call
-- cost before the pool). Prints the calls/s (real clock) and the
-- process's CPU time per call in microseconds (os.clock: user and
-- system), after a warm-up. The guarded function is made once and gets
-- the instance as cb:call's argument, as a hot path would be written: a
-- closure per call would cost an allocation and stop LuaJIT's traces.
local fb = require "fusebox"
local url, mode, C, SECONDS = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local host, port = url:match("^http://([^:/]+):(%d+)")
local pool = mode ~= "new" and fb.http.pool {} or false

local reg = fb.registry {}
reg:register("backend", host, tonumber(port))
local lb = fb.balancer(reg, "round_robin")
local cb = fb.breaker { failure_threshold = 5, timeout = 1 }

local function get(inst)
  local status, err = fb.http.request { instance = inst, path = "/", pool = pool }
  if not status or status >= 500 then error(err or status) end
  return status
end

local function guarded()
  return cb:call(get, lb:pick("backend"))
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
local t0, cpu0 = fb.now(), os.clock()
local n = load(C, t0 + SECONDS)
print(string.format("%.0f %.2f", n / (fb.now() - t0), (os.clock() - cpu0) / n * 1e6))
