-- fusebox/budget.lua -- fb.retry_budget{...}: how many retries (and
-- hedges) a client may send, as a share of the calls it makes, so that
-- retries cannot multiply the load on a downstream that is down (a retry
-- storm). The semantics are Finagle's RetryBudget:
--
--   every call deposits one; every retry (or hedge) withdraws one, and is
--   let through while  reserve + ratio * deposits - withdrawals >= 1,
--   counting the deposits and withdrawals of the last ttl seconds;
--   reserve = min_per_second * ttl, which never expires (a client that
--   has just started, or calls rarely, may still retry a little).
--
-- So over any ttl, retries <= ratio * calls + min_per_second * ttl.
-- Defaults as Finagle's: ttl 10 s, min_per_second 10, ratio 0.2.
--
-- The window is ttl cut into 10 slices of ttl/10 seconds, on the
-- runtime's clock (virtual time: exact and deterministic): a deposit or
-- withdrawal at t falls in slice floor(t / (ttl/10)), and the window at t
-- is that slice and the 9 before it. Finagle's leaky bucket is cut the
-- same way (a windowed adder of 10 slices); the counts here are integers
-- and ratio multiplies them, so the arithmetic is exact where Finagle's
-- scaled integers round (its withdrawal costs 1000 / percentCanRetry
-- deposit units, truncated). Fixed memory: 2 x 10 counts a budget.
--
-- Differences from the other anchors, and why:
--   Envoy's retry_budget (budget_percent of the requests in flight, at
--   least min_retry_concurrency retries in flight) bounds concurrency,
--   not a rate over time: it needs to see every request in flight, which
--   a proxy does and a library client shared by coroutines also could,
--   but it forgives a retry storm of short calls. A rate over a window is
--   what keeps an outage's offered load within ratio of the normal load.
--   gRPC's retry throttling (max_tokens, token_ratio: a failure takes a
--   token, a success gives token_ratio, retries only above half) counts
--   failures, not attempts: it stops retries a while after an outage
--   begins and has no reserve; the budget bounds them from the first
--   second, with or without failures, and forgets by time, not by
--   successes (none come during an outage).
--   A refused retry is a value, "retry budget exhausted: ...", never an
--   exception (fb.rejection names its kind); Finagle fails the request
--   with its last failure and counts "budget_exhausted".
--
-- A budget is shared by every policy and client given it: one budget per
-- downstream service, as Finagle has one per client.

local core = select(2, ...)
local base = core.import "fusebox.base"
local schema = core.import "fusebox.schema"
local events = core.import "fusebox.events"
-- The loop-cached clock: a window slice is ttl/10 >= 0.1 s, and a
-- clock_gettime would cost more than the rest of a deposit.
local now, check_self = base.loop_now, base.check_self
local format, floor, setmetatable = string.format, math.floor, setmetatable
local events_on, emit = events.on, events.emit

local M = {}

local SLICES = 10
M.SLICES = SLICES

local Budget = { kind = "retry_budget" }
Budget.__index = Budget
M.Budget = Budget

-- Moves the window to the slice of t: the slices that fell out of it are
-- emptied (at most SLICES steps). A clock that went back (a new run)
-- empties the whole window.
local function advance(self, t)
  local s = floor(t / self.width)
  local last = self.slice
  if s == last then return end
  local dep, wd = self.dep, self.wd
  if s < last or s - last >= SLICES then
    for i = 0, SLICES - 1 do dep[i], wd[i] = 0, 0 end
    self.deposits, self.withdrawals = 0, 0
  else
    for k = last + 1, s do
      local i = k % SLICES
      self.deposits = self.deposits - dep[i]
      self.withdrawals = self.withdrawals - wd[i]
      dep[i], wd[i] = 0, 0
    end
  end
  self.slice = s
end

-- The retries the window allows now, unrounded.
local function room(self)
  return self.reserve + self.ratio * self.deposits - self.withdrawals
end

-- deposit(self): one call made (no checks: the layers' hot path).
local function deposit(self)
  advance(self, now())
  local i = self.slice % SLICES
  self.dep[i] = self.dep[i] + 1
  self.deposits = self.deposits + 1
  self.deposited = self.deposited + 1
end
M.deposit = deposit

-- withdraw(self, what) -> true, or false (counted, and logged as a
-- "retry_budget" event naming what asked: "retry" or "hedge").
local function withdraw(self, what)
  advance(self, now())
  if room(self) >= 1 - 1e-9 then -- ratio * deposits rounds
    local i = self.slice % SLICES
    self.wd[i] = self.wd[i] + 1
    self.withdrawals = self.withdrawals + 1
    self.withdrawn = self.withdrawn + 1
    return true
  end
  self.exhausted = self.exhausted + 1
  if events_on() then
    emit("retry_budget", { budget = self.name, action = "exhausted", by = what,
      balance = room(self) })
  end
  return false
end
M.withdraw = withdraw

-- The message of a retry the budget refused, after the failure err.
function M.refusal(self, err)
  return format("retry budget exhausted: %d retries in the last %gs (ratio %g, min_per_second %g); last failure: %s",
    self.withdrawals, self.ttl, self.ratio, self.min_per_second, tostring(err))
end

-- b:deposit(): count a call (the layers given the budget do it)
function Budget:deposit()
  check_self(self, Budget, "fusebox.retry_budget", "deposit")
  deposit(self)
end

-- b:withdraw() -> true if a retry may be sent now (and counts it)
function Budget:withdraw()
  check_self(self, Budget, "fusebox.retry_budget", "withdraw")
  return withdraw(self, "withdraw")
end

-- b:balance() -> the retries the budget would let through now
function Budget:balance()
  check_self(self, Budget, "fusebox.retry_budget", "balance")
  advance(self, now())
  local r = room(self)
  return r < 0 and 0 or floor(r + 1e-9)
end

-- b:stats() -> {balance, deposits, withdrawals (in the window),
-- deposited, withdrawn, exhausted (since it was made), ttl,
-- min_per_second, ratio, name}
function Budget:stats()
  check_self(self, Budget, "fusebox.retry_budget", "stats")
  return { balance = self:balance(), deposits = self.deposits, withdrawals = self.withdrawals,
    deposited = self.deposited, withdrawn = self.withdrawn, exhausted = self.exhausted,
    ttl = self.ttl, min_per_second = self.min_per_second, ratio = self.ratio, name = self.name }
end

-- Named objects of this module and the policy layers (budgets, hedges)
-- by name, for fb.metrics: a later one of a name replaces an earlier.
-- Weak: an object nothing else holds leaves the metrics.
M.published = setmetatable({}, { __mode = "v" })

function M.new(o)
  local ttl = o.ttl or 10
  local mps = o.min_per_second or 10
  local self = setmetatable({
    ttl = ttl, min_per_second = mps, ratio = o.ratio or 0.2, name = o.name,
    reserve = mps * ttl, width = ttl / SLICES,
    dep = {}, wd = {}, slice = -math.huge, deposits = 0, withdrawals = 0,
    deposited = 0, withdrawn = 0, exhausted = 0,
  }, Budget)
  for i = 0, SLICES - 1 do self.dep[i], self.wd[i] = 0, 0 end
  if o.name then M.published[o.name] = self end
  return self
end

function M.is_budget(v) return getmetatable(v) == Budget end

-- fb.retry_budget{ttl=10, min_per_second=10, ratio=0.2, name=}
function M.retry_budget(opts)
  local err = schema.check(opts or {}, schema.retry_budget, nil)
  if err then error(format("bad argument #1 to 'retry_budget' (%s)", err), 2) end
  return M.new(opts or {})
end

return M
