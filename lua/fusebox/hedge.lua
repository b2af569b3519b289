-- fusebox/hedge.lua -- two policy layers that run attempts in workers
-- (fusebox.context): fb.hedge{...} (hedged requests) and the deadline
-- (policy.deadline, fb.deadline(seconds)).
--
-- Hedging (gRPC's hedgingPolicy; Finagle's backup requests):
--
--   fb.hedge{ delay = 0.05 | { percentile = 0.95, sample = 1000 },
--             max_attempts = 2, non_fatal = fn(err), budget = ..., name = }
--
-- The first request goes out at once; while no attempt has succeeded,
-- another goes out every `delay` seconds, up to max_attempts in all.
-- The first success wins: the others are cancelled (their ctx.cancelled
-- is set, their late results are dropped, and a policy's breaker records
-- them as ignored, never as failures). A failure that non_fatal(err)
-- accepts (every failure, by default) sends the next hedge at once, as
-- gRPC does for a non-fatal status; a fatal one cancels the others and is
-- the call's failure; when every attempt has failed, the last failure
-- is. Every hedge after the first withdraws from the retry budget (the
-- policy's retry budget unless the hedge has its own): a hedge the
-- budget refuses is not sent (counted, and logged), and the call goes on
-- with the attempts already out.
--
-- With delay = { percentile = p }, the delay is that percentile of the
-- latency of the last `sample` attempts (default 1000, 10..100000), as
-- Finagle takes it from its latency histogram: a ring of `sample`
-- latencies and a sorted copy, 2 x sample numbers in all, fixed from the
-- start; the percentile (nearest rank) is recomputed every sample/10 new
-- latencies, so a call costs no sort. Until 10 latencies are in, no hedge
-- is sent. Every attempt that ends, winner or cancelled, adds its
-- latency: the slow replica's latencies are what the percentile must
-- see. In virtual time the delays and so the hedges replay exactly.
--
-- Where fusebox differs, and why: gRPC's default non-fatal list is empty
-- (any failure ends the call); here every failure is non-fatal unless
-- non_fatal says otherwise, like retry_on, since a failure of one replica
-- says little about the next. gRPC caps maxAttempts at 5; here 10.
-- Finagle sends at most one backup request; max_attempts = 2 is that.
--
-- Deadlines: policy.deadline = seconds bounds a whole call, retries,
-- backoffs and hedges included. The attempts see it as ctx.deadline (the
-- seconds left) and ctx:remaining(); a retry whose backoff would end
-- past it is not made; when it passes, the call returns nil, "deadline
-- exceeded: ..." and the attempt still running is cancelled. A deadline
-- inside another (a policy called from an fb.http.serve handler whose
-- caller sent one, or from another policy's attempt) ends at the earlier
-- of the two. fb.http.request sends the seconds left in the
-- fusebox-deadline header and waits no longer than that.

local core = select(2, ...)
local base = core.import "fusebox.base"
local schema = core.import "fusebox.schema"
local events = core.import "fusebox.events"
local budget_m = core.import "fusebox.budget"
local context = core.import "fusebox.context"
local breaker_m = core.import "fusebox.breaker"
local now, check_self, check_arg, seconds_text = base.now, base.check_self, base.check_arg, base.seconds
local worker, start, release, ctx_of = context.worker, context.start, context.release, context.ctx_of
local deposit, withdraw = budget_m.deposit, budget_m.withdraw
local events_on, emit = events.on, events.emit
local host = core.import "fusebox.host"
local wait, wake, running = host.wait, host.wake, coroutine.running
local format, type, error, pcall, unpack, setmetatable, huge, min, ceil, sort =
  string.format, type, error, pcall, unpack, setmetatable, math.huge, math.min,
  math.ceil, table.sort

local M = {}

-- A failed call's error, or nil: the rule of fusebox.policy (a raised
-- error, or nil, err).
local function failed_of(w)
  if not w.ok then return true, w.r1 end
  if w.r1 == nil and w.r2 ~= nil then return true, w.r2 end
  return false, nil
end

-- deliver(w) -> w's results (a raised error raised again); w back to
-- the pool first.
local function deliver(w)
  local n, ok, a, b, c, more = w.n, w.ok, w.r1, w.r2, w.r3, w.more
  release(w)
  if not ok then error(a, 0) end
  if n > 3 then return unpack(more, 1, n) end
  if n == 1 then return a end
  if n == 2 then return a, b end
  if n == 3 then return a, b, c end
end

------------------------------------------------------------ latency sample

local MIN_SAMPLES = 10

local function record_latency(self, d)
  local size = self.sample
  local i = self.ring_next
  self.ring[i] = d
  self.ring_next = i % size + 1
  if self.ring_n < size then self.ring_n = self.ring_n + 1 end
  self.fresh = self.fresh + 1
end

-- The hedge delay now: fixed, or the percentile of the sample
-- (recomputed every sample/10 latencies; math.huge until 10 are in).
local function current_delay(self)
  local p = self.percentile
  if not p then return self.delay end
  local n = self.ring_n
  if n < MIN_SAMPLES then return huge end
  if self.fresh >= self.refresh or self.delay == huge then
    local sorted, ring = self.sorted, self.ring
    for i = 1, n do sorted[i] = ring[i] end
    for i = n + 1, #sorted do sorted[i] = nil end
    sort(sorted)
    self.delay = sorted[ceil(p * n)]
    self.fresh = 0
  end
  return self.delay
end

------------------------------------------------------------------- hedge

local Hedge = { kind = "hedge" }
Hedge.__index = Hedge
M.Hedge = Hedge

local function say(self, action, k)
  if events_on() then emit("hedge", { hedge = self.name, action = action, attempt = k }) end
end

-- A call's state while its attempts run: workers, which ended and in
-- what order, its caller. One per call in flight, reused.
local function take_race(self)
  local n = self.nspare
  if n > 0 then
    local r = self.spare[n]
    self.spare[n], self.nspare = nil, n - 1
    return r
  end
  return { workers = {}, ended = {}, started = 0, nended = 0, taken = 0, live = 0, caller = false }
end

local function give_race(self, r)
  local ws, ended = r.workers, r.ended
  for i = 1, r.started do ws[i] = nil end
  for i = 1, r.nended do ended[i] = nil end
  r.started, r.nended, r.taken, r.live, r.caller = 0, 0, 0, 0, false
  local n = self.nspare + 1
  self.spare[n], self.nspare = r, n
end

-- Runs in the worker when its attempt ends: the latency goes into the
-- sample; a cancelled attempt's results are dropped; else the attempt
-- joins the ended list and the caller is woken.
local function hedge_notify(w)
  local self, r = w.owner, w.race
  if self.percentile then record_latency(self, now() - w.started) end
  w.race = nil
  if w.abandoned then return release(w) end
  local n = r.nended + 1
  r.ended[n], r.nended = w, n
  r.live = r.live - 1
  wake(r.caller)
end

-- Cancels every attempt of r still running but w.
local function cancel_others(self, r, keep)
  local ws = r.workers
  for i = 1, r.started do
    local w = ws[i]
    if w ~= keep and w.race == r then -- still running
      w.abandoned, w.ctx.cancelled = true, true
      self.cancelled = self.cancelled + 1
      say(self, "cancelled", i)
    end
  end
  local ended = r.ended
  for i = r.taken + 1, r.nended do -- ended, not looked at yet
    if ended[i] ~= keep then release(ended[i]) end
  end
  r.taken = r.nended
end

local function launch(self, r, parent, fn, ...)
  local k = r.started + 1
  local w = worker()
  local c = w.ctx
  if parent then
    c.expires, c.attempt = parent.expires, parent.attempt
    if parent.expires < huge then c.deadline = parent.expires - now() end
  end
  c.hedge = k - 1
  w.owner, w.race = self, r
  r.workers[k], r.started, r.live = w, k, r.live + 1
  start(w, hedge_notify, fn, ...)
end

-- h:call(fn, ...) -> the first successful attempt's results (see above)
function Hedge:call(fn, ...)
  check_self(self, Hedge, "fusebox.hedge", "call")
  check_arg(fn, 1, "call", "function")
  local b = self.budget
  if b and self.deposits then deposit(b) end
  local me = running()
  local parent = ctx_of[me]
  local expires = parent and parent.expires or huge
  local r = take_race(self)
  r.caller = me
  launch(self, r, parent, fn, ...)
  local max_attempts = self.max_attempts
  local next_at = max_attempts > 1 and now() + current_delay(self) or huge
  local last -- the worker of the last failure
  while true do
    while r.taken < r.nended do
      local i = r.taken + 1
      local w = r.ended[i]
      r.taken = i
      local failed, err = failed_of(w)
      if not failed then
        if w.ctx.hedge > 0 then self.won = self.won + 1; say(self, "won", w.ctx.hedge + 1) end
        cancel_others(self, r, w)
        if last then release(last) end
        give_race(self, r)
        return deliver(w)
      end
      if last then release(last) end
      last = w
      local nf = self.non_fatal
      if nf then
        local ok, verdict = pcall(nf, err)
        if not ok or not verdict then -- fatal; a non_fatal that raised ends the call with its error
          cancel_others(self, r, w)
          give_race(self, r)
          if not ok then
            release(w)
            error(verdict, 0)
          end
          return deliver(w)
        end
      end
      if r.started < max_attempts then next_at = now() end -- non-fatal: the next one now
    end
    local t = now()
    if r.live == 0 and (r.started >= max_attempts or next_at == huge) then
      give_race(self, r)
      return deliver(last)
    end
    if t >= expires then
      local started = r.started
      cancel_others(self, r, last)
      give_race(self, r)
      if last then release(last) end
      return nil, format("deadline exceeded: no success within the call's deadline (%d attempts)", started)
    end
    if next_at <= t then
      if not b or withdraw(b, "hedge") then
        self.sent = self.sent + 1
        say(self, "sent", r.started + 1)
        launch(self, r, parent, fn, ...)
        next_at = r.started < max_attempts and t + current_delay(self) or huge
      else
        self.refused = self.refused + 1
        next_at = huge
      end
    else
      local until_ = min(next_at, expires)
      if until_ == huge then wait(self.what) else wait(self.what, until_ - t) end
    end
  end
end

-- h:stats() -> {sent (hedges sent after the first request), won (calls a
-- hedge answered first), refused (hedges the budget refused), cancelled
-- (attempts cancelled), delay (the current hedge delay)}
function Hedge:stats()
  check_self(self, Hedge, "fusebox.hedge", "stats")
  return { sent = self.sent, won = self.won, refused = self.refused, cancelled = self.cancelled,
    delay = current_delay(self), name = self.name }
end

local function budget_of(v)
  if v == nil or budget_m.is_budget(v) then return v end
  return budget_m.new(v)
end

function M.new_hedge(o)
  local d = o.delay or 0.05
  local pct = type(d) == "table" and d.percentile or nil
  local sample = type(d) == "table" and d.sample or 1000
  local self = setmetatable({
    delay = pct and huge or d, percentile = pct, sample = sample,
    refresh = ceil(sample / 10), ring = {}, sorted = {}, ring_n = 0, ring_next = 1, fresh = 0,
    max_attempts = o.max_attempts or 2, non_fatal = o.non_fatal, name = o.name,
    budget = budget_of(o.budget), deposits = true,
    spare = {}, nspare = 0,
    sent = 0, won = 0, refused = 0, cancelled = 0,
    what = "a hedged call's attempts",
  }, Hedge)
  if o.name then budget_m.published[o.name] = self end
  return self
end

-- fb.hedge{delay=0.05 | {percentile=, sample=1000}, max_attempts=2,
--   non_fatal=(every failure), budget=, name=}
function M.hedge(opts)
  local err = schema.check(opts or {}, schema.hedge, nil)
  if err then error(format("bad argument #1 to 'hedge' (%s)", err), 2) end
  return M.new_hedge(opts or {})
end

function M.is_hedge(v) return getmetatable(v) == Hedge end

---------------------------------------------------------------- deadline

local Deadline = { kind = "deadline" }
Deadline.__index = Deadline
M.Deadline = Deadline

local function deadline_notify(w)
  if w.abandoned then return release(w) end
  wake(w.caller)
end

-- d:call(fn, ...) -> fn's results, or nil, "deadline exceeded: ..." once
-- the deadline (this one, or an enclosing one if earlier) passes.
function Deadline:call(fn, ...)
  check_self(self, Deadline, "fusebox.deadline", "call")
  check_arg(fn, 1, "call", "function")
  local parent = ctx_of[running()]
  local t = now()
  local expires = t + self.seconds
  if parent and parent.expires < expires then expires = parent.expires end
  if expires <= t then
    self.exceeded = self.exceeded + 1
    return nil, "deadline exceeded: none left when the call began"
  end
  local w = worker()
  local c = w.ctx
  c.expires, c.deadline = expires, expires - t
  start(w, deadline_notify, fn, ...)
  while not w.finished do
    local left = expires - now()
    if left <= 0 or not wait(self.what, left) then
      if w.finished then break end
      w.abandoned, c.cancelled = true, true
      self.exceeded = self.exceeded + 1
      if events_on() then emit("deadline", { action = "exceeded", seconds = self.seconds }) end
      return nil, format("deadline exceeded: no result within %gs", expires - t)
    end
  end
  return deliver(w)
end

function M.new_deadline(seconds)
  return setmetatable({ seconds = seconds, exceeded = 0,
    what = format("a call under a %gs deadline", seconds) }, Deadline)
end

-- fb.deadline(seconds) -> the layer alone
function M.deadline(seconds)
  local err = schema.seconds(seconds, "seconds")
  if err then error(format("bad argument #1 to 'deadline' (%s)", err), 2) end
  return M.new_deadline(seconds)
end

-------------------------------------------------- breakers under a hedge

local judge = breaker_m.judge
local RECORDED = { [0] = true, false, "ignore", "timeout" }

local function record(cb, token, t0, ok, ...)
  local c = ctx_of[running()]
  local outcome
  if c and c.cancelled then
    outcome = "ignore" -- a hedge lost, or the deadline passed: no verdict on the service
  elseif not ok then
    outcome = RECORDED[judge(breaker_m.state(cb, "call"), (...))]
  else
    local r1, r2 = ...
    outcome = (r1 == nil and r2 ~= nil) and RECORDED[judge(breaker_m.state(cb, "call"), r2)] or true
  end
  cb:record(token, outcome, now() - t0)
  if not ok then error((...), 0) end
  return ...
end

-- hedged_call(cb, fn, ...) -> as a policy's breaker layer calls, for
-- attempts a hedge or a deadline may cancel: a cancelled attempt's
-- outcome is recorded as ignored.
function M.breaker_call(cb, fn, ...)
  local token, after = cb:permit()
  if not token then
    error("circuit open: call rejected (retry after " .. seconds_text(after) .. ")", 0)
  end
  return record(cb, token, now(), pcall(fn, ...))
end

-- call_with_ctx(fn, ...) -> fn(ctx, ...): the last step of a policy
-- with a deadline or a hedge.
function M.call_with_ctx(fn, ...)
  return fn(ctx_of[running()], ...)
end

return M
