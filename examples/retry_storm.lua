-- A retry storm, and the retry budget that prevents it. A downstream
-- serves 1,000 requests a second (50 workers, 50 ms each) behind a queue
-- of at most 1,000; beyond that it answers 503 at once. 20 clients send
-- it 35 requests a second each (700/s, 70% of capacity), each request an
-- attempt timeout of 0.5 s and up to 3 attempts (exponential backoff from
-- 50 ms, full jitter). From t=10 to t=20 the downstream is down: its
-- workers stall, the queue fills, everything times out or is refused.
--
-- Without a budget every request is tried 3 times: 2,100/s offered to a
-- server that does 1,000/s. When the outage ends the queue is full of
-- requests whose callers gave up (the server cannot know), new ones wait
-- behind them past their timeout, fail and are retried: the overload
-- holds itself up (a metastable failure) long after the cause is gone.
-- With a budget per client (ratio 0.2, min_per_second 1) retries are at
-- most 20% of the requests plus 1/s a client: the offered load stays
-- under 860/s, the queue drains, and the system recovers.
--
--   fusebox run --virtual-time --seed 1 examples/retry_storm.lua
local fb = require "fusebox"

local CLIENTS, RATE, WORKERS, SERVICE, QUEUE = 20, 35, 50, 0.05, 1000
local OUTAGE_AT, OUTAGE_END, SEND_UNTIL, SPAN = 10, 20, 50, 50

-- The downstream: a FIFO queue served by WORKERS daemons.
local function downstream(t0)
  local s = { queue = {}, head = 1, tail = 0, arrivals = {}, idle = {}, nidle = 0 }
  local function second(t) return math.floor(t - t0) end
  local function worker()
    while true do
      local now = fb.now() - t0
      if now >= OUTAGE_AT and now < OUTAGE_END then
        fb.sleep(OUTAGE_END - now) -- stalled
      elseif s.head > s.tail then
        s.nidle = s.nidle + 1
        s.idle[s.nidle] = coroutine.running()
        fb.wait("work")
      else
        local job = s.queue[s.head]
        s.queue[s.head], s.head = nil, s.head + 1
        fb.sleep(SERVICE)
        fb.wake(job, "ok")
      end
    end
  end
  for _ = 1, WORKERS do fb.daemon(worker) end
  function s.call()
    local sec = second(fb.now())
    s.arrivals[sec] = (s.arrivals[sec] or 0) + 1
    if s.tail - s.head + 1 >= QUEUE then
      fb.sleep(0.001)
      return nil, "503"
    end
    s.tail = s.tail + 1
    s.queue[s.tail] = coroutine.running()
    if s.nidle > 0 then
      local w = s.idle[s.nidle]
      s.idle[s.nidle], s.nidle = nil, s.nidle - 1
      fb.wake(w)
    end
    local _, v = fb.wait("the downstream's answer")
    return v
  end
  return s
end

local function scenario(with_budget)
  local t0 = fb.now()
  local s = downstream(t0)
  local good, sent = {}, {}
  for c = 1, CLIENTS do
    local p = fb.policy {
      retry = { attempts = 3, base = 0.05, jitter = "full",
        budget = with_budget and fb.retry_budget { ratio = 0.2, min_per_second = 1, ttl = 10 } or nil },
      timeout = 0.5,
    }
    fb.spawn(function()
      fb.sleep(c / (CLIENTS * RATE)) -- spread the clients over one period
      while fb.now() - t0 < SEND_UNTIL do
        local sec = math.floor(fb.now() - t0)
        sent[sec] = (sent[sec] or 0) + 1
        fb.spawn(function()
          if p:call(s.call) then good[sec] = (good[sec] or 0) + 1 end
        end)
        fb.sleep(1 / RATE)
      end
    end)
  end
  fb.sleep(SPAN + 10)
  local function mean(from, to, t)
    local sum = 0
    for i = from, to - 1 do sum = sum + (t[i] or 0) end
    return sum / (to - from)
  end
  -- recovered: the first second after the outage from which on 99% of
  -- the requests sent in a second succeed
  local recovered
  for sec = SEND_UNTIL - 1, OUTAGE_END, -1 do
    if (good[sec] or 0) < 0.99 * (sent[sec] or 1) then break end
    recovered = sec
  end
  local base = mean(0, OUTAGE_AT, s.arrivals)
  print(string.format("%-14s offered/s before %5.0f, during the outage %5.0f (%.2fx), after it %5.0f (%.2fx); %s",
    with_budget and "with a budget" or "no budget", base,
    mean(OUTAGE_AT, OUTAGE_END, s.arrivals), mean(OUTAGE_AT, OUTAGE_END, s.arrivals) / base,
    mean(OUTAGE_END, SEND_UNTIL, s.arrivals), mean(OUTAGE_END, SEND_UNTIL, s.arrivals) / base,
    recovered and string.format("recovered %ds after the outage ended", recovered - OUTAGE_END)
      or string.format("not recovered %ds after the outage ended", SEND_UNTIL - OUTAGE_END)))
  local row = {}
  for sec = 8, 34, 2 do row[#row + 1] = string.format("%5d", s.arrivals[sec] or 0) end
  print(string.format("%-14s offered at t=8,10..34: %s", "", table.concat(row)))
end

print(string.format("%d clients x %d req/s, capacity %d/s, outage t=%d..%d, 3 attempts of 0.5 s",
  CLIENTS, RATE, WORKERS / SERVICE, OUTAGE_AT, OUTAGE_END))
scenario(false)
scenario(true)
