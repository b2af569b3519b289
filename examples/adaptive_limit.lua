-- Latency of a backend doubling mid-run: a fixed bulkhead against an
-- adaptive concurrency limit (fb.limiter, Gradient2).
--
-- The backend has 10 workers and a FIFO queue; each request takes 50 ms
-- until t=30, then 100 ms (a slow dependency, a GC-heavy release): its
-- capacity falls from 200 to 100 requests a second. Clients send 150 a
-- second (Poisson arrivals), each with a 1 s timeout. A timed-out request
-- is not cancelled at the backend: it is still worked on, as in most
-- RPC stacks, so queued work outlives the callers who wanted it.
--
--   bulkhead  max_concurrent = 40 in flight, no queue: ample at 50 ms
--             (150/s x 50 ms = 7.5 in flight), and never revisited; and
--             one of 120, sized for bursts
--   limiter   gradient2, initial 20, min 1, max 200: the limit follows
--             latency
--
--   fusebox run --virtual-time --seed 1 examples/adaptive_limit.lua [algorithm]
--
-- (algorithm: gradient2, the default, aimd or vegas)
local fb = require "fusebox"
local ALGORITHM = ... or "gradient2"

local RATE, WORKERS, TIMEOUT, DOUBLES_AT, RUN = 150, 10, 1, 30, 60
local SEED = fb.seed() -- every configuration sees the same arrivals

-- One run of the scenario with guard (a policy layer's options) in front
-- of the clients' timeout; returns per-window rows and the limit's trace.
local function scenario(name, guard)
  local start = fb.now()
  local function now() return fb.now() - start end
  local server = fb.bulkhead { max_concurrent = WORKERS, max_queue = 1e9 }
  local function backend()
    return server:call(function()
      fb.sleep(now() < DOUBLES_AT and 0.05 or 0.1)
      return "ok"
    end)
  end
  local opts = { timeout = TIMEOUT }
  local l
  if guard.limiter then
    l = fb.limiter(guard.limiter)
    opts.limiter = l
  else
    opts.bulkhead = guard.bulkhead
  end
  local p = fb.policy(opts)
  local rows = {}
  local function row(t)
    local w = math.floor(t / 10) + 1
    rows[w] = rows[w] or { offered = 0, ok = 0, rejected = 0, timeouts = 0, lat = {}, queue = 0, limit = {} }
    return rows[w]
  end
  local done = 0
  local running = true
  fb.spawn(function() -- samples the backend's queue and the limit
    while running do
      local r = row(now())
      r.queue = math.max(r.queue, server.waiting)
      if l then r.limit[#r.limit + 1] = l.limit end
      fb.sleep(0.1)
    end
  end)
  fb.seed(SEED)
  local t, sent = 0, 0
  while true do
    t = t - math.log(1 - fb.random()) / RATE
    if t >= RUN then break end
    fb.sleep(t - now())
    sent = sent + 1
    fb.spawn(function()
      local r, t0 = row(now()), fb.now()
      r.offered = r.offered + 1
      local v, err = p:call(backend)
      if v then
        r.ok = r.ok + 1
        r.lat[#r.lat + 1] = fb.now() - t0
      elseif fb.rejection(err) == "timeout" then
        r.timeouts = r.timeouts + 1
      else
        r.rejected = r.rejected + 1
      end
      done = done + 1
    end)
  end
  while done < sent do fb.sleep(0.5) end
  running = false
  return { name = name, rows = rows }
end

local function percentile(xs, q)
  table.sort(xs)
  return xs[math.max(1, math.ceil(#xs * q))] or 0
end

local function report(s)
  print(s.name)
  print("  window   offered  ok/s  rejected  timeouts  p50 ms  p99 ms  queue  limit")
  local ok, timeouts, rejected = 0, 0, 0
  for w = 1, RUN / 10 do
    local r = s.rows[w]
    local lim = r.limit
    local limit = #lim > 0 and string.format("%d-%d", math.min(unpack(lim)), math.max(unpack(lim))) or "-"
    print(string.format("  %2d-%2ds  %7d  %4d  %8d  %8d  %6.0f  %6.0f  %5d  %s", (w - 1) * 10, w * 10,
      r.offered, r.ok / 10, r.rejected, r.timeouts, percentile(r.lat, 0.5) * 1000,
      percentile(r.lat, 0.99) * 1000, r.queue, limit))
    if w > DOUBLES_AT / 10 then
      ok, timeouts, rejected = ok + r.ok, timeouts + r.timeouts, rejected + r.rejected
    end
  end
  local span = RUN - DOUBLES_AT
  print(string.format("  after the doubling: %.0f ok/s, %d timeouts, %d rejected fast", ok / span,
    timeouts, rejected))
end

report(scenario("fixed bulkhead (max_concurrent 40)", { bulkhead = { max_concurrent = 40 } }))
print()
report(scenario("fixed bulkhead (max_concurrent 120)", { bulkhead = { max_concurrent = 120 } }))
print()
report(scenario("adaptive limiter (" .. ALGORITHM .. ")",
  { limiter = { algorithm = ALGORITHM, initial = 20, min = 1, max = 200 } }))
