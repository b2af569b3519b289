-- fusebox/policy.lua -- resilience policies: retry, timeout, bulkhead,
-- rate limiter, and their composition fb.policy{...}.
--
-- Failures are values. A guarded function fails when it raises or when
-- it returns nil, err (err not nil); a layer hands a nil, err failure
-- back as nil, err without raising (a return costs nanoseconds, a caught
-- error() about a microsecond in LuaJIT) and re-raises a raised error.
-- Layers reject with nil, err too, err a string with a stable prefix:
--
--   "timeout: ..."        fb.timeout: the time passed first
--   "bulkhead full: ..."  fb.bulkhead: no slot and the queue is full, or
--                         no slot came within queue_timeout
--   "rate limited: ..."   fb.rate_limiter: no token; says when the next
--                         one comes
--   "circuit open ..."    the breaker, raised: through a policy the text
--                         of cb:call's error without a position in front
--   "concurrency limit reached: ..."  fb.limiter: as many calls in
--                         flight as its adaptive limit
--   "retry budget exhausted: ..."  retry.budget refused a retry (the text
--                         ends with the last failure)
--   "deadline exceeded: ..."  the policy's deadline passed
--
-- fb.rejection(err) names the kind ("timeout", "bulkhead full", "rate
-- limited", "circuit open", "no instance", "concurrency limit reached",
-- "retry budget exhausted", "deadline exceeded") or returns nil, for
-- retry_on.
--
-- Every method checks self and fn before it runs anything (base.check_self:
-- "bad argument #1 to 'call' (fusebox.retry expected, got function)" for
-- r.call(fn)), so a fallback sees fn's failures and the layers'
-- rejections, never a misuse of p:call.
--
-- fb.policy{...} composes in one order, outermost first:
--
--   fallback -> deadline -> retry -> hedge -> breaker -> rate_limit
--     -> limiter -> bulkhead -> timeout -> fn
--
-- (deadline and hedge: fusebox.hedge; retry.budget: fusebox.budget; with
-- either of the first two, fn's first argument is the call's context,
-- fusebox.context), so the deadline bounds every retry and hedge, every
-- retry and every hedge is a fresh trip through the breaker (which sees
-- each attempt), an open breaker costs no rate-limit token, a rate-limited
-- call never occupies a bulkhead slot, and the timeout bounds one
-- attempt, not the whole retry sequence. On fusebox's runtime a
-- coroutine cannot be killed, so a timed-out attempt's child keeps
-- running to its end; its result is dropped, its error caught, and its
-- bulkhead slot (the bulkhead is outside the timeout) is already free
-- again. A host that can stop it does (nginx kills the light thread,
-- which would otherwise hold the request open: fusebox/host.lua,
-- abandon). A breaker
-- records the attempt as a timeout (not a plain failure), and
-- M.abandoned() lets the child's code know its caller gave up (fb.sim
-- logs such a late answer as the timeout its caller saw).

--
-- Examples (fusebox run --virtual-time x.lua: the sleeps take no time)
--
--   local fb = require "fusebox"
--   local p = fb.policy {
--     retry = { attempts = 4, backoff = "exponential", base = 0.2,
--               jitter = "full",
--               retry_on = function(err) return fb.rejection(err) ~= "circuit open" end },
--     breaker = { failure_threshold = 5, timeout = 30 }, -- or fb.breaker{...}
--     rate_limit = { rate = 100, burst = 20 },           -- or fb.rate_limiter{...}
--     bulkhead = { max_concurrent = 8, max_queue = 32, queue_timeout = 1 },
--     timeout = 2,                                       -- or fb.timeout(2)
--     fallback = function(err) return "cached answer" end,
--   }
--   local body, err = p:call(function(id)
--     fb.sleep(0.05)                    -- the remote call
--     if fb.random() < 0.3 then return nil, "503" end
--     return "user " .. id
--   end, 42)
--
--   local r = fb.retry { attempts = 5, base = 1, jitter = "equal" }
--   print(table.concat(r:delays(4), " "))    -- the same with the same --seed
--
--   local p2 = fb.load_policy("policy.json", { fallback = function() return "" end })
--
-- Each layer works alone too: fb.retry{...}:call(fn, ...),
-- fb.timeout(s):call(fn, ...), fb.bulkhead{...}:call(fn, ...),
-- fb.rate_limiter{...}:call(fn, ...) (or :acquire() -> true | false,
-- seconds until the next token). Defaults: retry 3 attempts, exponential
-- from 0.1 s doubling, capped at 1e9 s (fb's longest sleep), no jitter,
-- retrying every failure;
-- bulkhead 10 slots, no queue, no queue timeout; rate limiter 10/s,
-- burst floor(rate). Backoff before retry n: constant base, linear
-- base*n, exponential base*multiplier^(n-1), capped by max; jitter full
-- draws in [0, d), equal in [d/2, d), decorrelated (AWS) draws in
-- [base, 3*previous) capped by max and ignores backoff. All draws come
-- from fb.random, so a run replays with its seed.
--
-- Cost (tests/bench/bench_policy.lua, LuaJIT, ns per call beyond a bare
-- call): retry ~5, rate limit ~4, bulkhead ~6, fallback ~0, breaker ~18,
-- all of them together ~25. The timeout layer runs each call in a child
-- coroutine, on fusebox's runtime on a thread a finished child left (no
-- thread made per call: ~0.8 us). On the real clock
-- (tests/bench/bench_resilience.lua): a retry budget adds ~4 ns; a
-- hedge that does not fire ~1.6 us and a deadline ~1.2 us (a pooled
-- worker each, no allocation).

local core = select(2, ...)
local base = core.import "fusebox.base"
local schema = core.import "fusebox.schema"
local now, seconds_text = base.now, base.seconds
local check_self, check_arg, argerror = base.check_self, base.check_arg, base.argerror
local layer_call = core.import("fusebox.breaker").layer_call
local limiter = core.import "fusebox.limiter"
local budget_m = core.import "fusebox.budget"
local hedge_m = core.import "fusebox.hedge"
local ctx_of = core.import("fusebox.context").ctx_of
local deposit, withdraw, refusal = budget_m.deposit, budget_m.withdraw, budget_m.refusal
local run_id, rt = base.api.run_id, require("ffi").cast("const fb_runtime *", core.rt)
local max_sleep = core.max_sleep
local host = core.import "fusebox.host"
local sleep, spawn, wait, wake, abandon = host.sleep, host.spawn, host.wait, host.wake, host.abandon
local random = core.random
local running = coroutine.running
local format, find, type, error, pcall, select, unpack =
  string.format, string.find, type, error, pcall, select, unpack
local setmetatable, getmetatable, min = setmetatable, getmetatable, math.min

local M = {}

-- Raises "bad argument #1 to 'fname' (msg)" at the user's line: the
-- caller of the constructor that called this.
local function check_options(fname, opts, sch)
  local err = schema.check(opts or {}, sch, nil)
  if err then error(format("bad argument #1 to '%s' (%s)", fname, err), 3) end
  return opts or {}
end

---------------------------------------------------------------- outcomes

-- A call's results, held between pcall and the return that hands them
-- on. Shared, and safe to share: it is filled and emptied with no user
-- code (so no yield) in between.
--
-- Why not hand results on straight, as `return finish(pcall(fn, ...))`
-- with finish returning `...`? Two LuaJIT limits, both met as soon as
-- layers nest: a variable-count return (RETM) out of a pcall inside
-- another pcall is not compiled ("NYI: return to lower frame"), and a
-- trace records at most 15 tail calls ("loop unroll limit reached"),
-- counted over the whole trace: the caller's loop body and every
-- `return f(...)` in it, theirs and ours. Either sends policy:call to the
-- interpreter, ~40x slower (~1 us). So a layer holds the results and
-- ends with `return give(take())`, and the tail calls are few: with
-- every layer but timeout, p:call makes 10 (the clock is read without
-- one, the last layer calls fn itself, p:call is with_fallback), so a
-- caller's `return p:call(...)` and up to four more wrappers' tail calls
-- still fit. Each further layer or tail call here takes from that.
local held = { n = 0 }

-- Up to three results, the common case, without a loop: a loop here
-- would be a trace of its own that the caller's trace leaves.
local function hold(ok, ...)
  local n = select("#", ...)
  held.n = n
  if n <= 3 then
    held[1], held[2], held[3] = ...
  else
    for i = 1, n do held[i] = (select(i, ...)) end
  end
  return ok
end

-- keep(...) holds the results of a plain call, not of a pcall.
local function keep(...)
  local n = select("#", ...)
  held.n = n
  if n <= 3 then
    held[1], held[2], held[3] = ...
  else
    for i = 1, n do held[i] = (select(i, ...)) end
  end
end

-- take() -> n, a, b, c: how many results are held and the first three;
-- the three are let go of (spill lets go of the rest).
local function take()
  local a, b, c = held[1], held[2], held[3]
  held[1], held[2], held[3] = nil, nil, nil
  return held.n, a, b, c
end

local function emptied(n, ...)
  for i = 4, n do held[i] = nil end
  return ...
end

-- drop(): lets go of the held results unreturned.
local function drop()
  take()
  for i = 4, held.n do held[i] = nil end
end

local function spill(a, b, c)
  local n = held.n
  return emptied(n, a, b, c, unpack(held, 4, n))
end

-- give(take()) -> the held results, each count a fixed-count return.
-- Layers end with it: a vararg function returning straight into a pcall
-- nested in another is not compiled either, a fixed-arity one is.
local function give(n, a, b, c)
  if n == 1 then return a end
  if n > 3 then return spill(a, b, c) end
  if n == 2 then return a, b end
  if n == 3 then return a, b, c end
end

-- The error of a failed call (ok, results...), or nil when it succeeded.
-- A raised nil is still a failure: failed is true.
local function failure(ok, r1, r2)
  if not ok then return true, r1 end
  if r1 == nil and r2 ~= nil then return true, r2 end
  return false, nil
end
M.failure = failure

local KINDS = {
  { "timeout:", "timeout" }, { "bulkhead full:", "bulkhead full" },
  { "rate limited:", "rate limited" }, { "no instance:", "no instance" },
  { "concurrency limit reached:", "concurrency limit reached" },
  { "retry budget exhausted:", "retry budget exhausted" },
  { "deadline exceeded:", "deadline exceeded" },
}

-- fb.rejection(err) -> the kind of rejection err is, or nil.
function M.rejection(err)
  if type(err) ~= "string" then return nil end
  for i = 1, #KINDS do
    if find(err, KINDS[i][1], 1, true) == 1 then return KINDS[i][2] end
  end
  -- cb:call raises with a position in front: "file:12: circuit open"
  if find(err, "circuit open", 1, true) then return "circuit open" end
  return nil
end

------------------------------------------------------------------- retry

local Retry = { kind = "retry" }
Retry.__index = Retry

local BACKOFF = {
  constant = function(r) return r.base end,
  linear = function(r, n) return r.base * n end,
  exponential = function(r, n)
    if r.base == 0 then return 0 end -- not 0 * inf, NaN, once the power overflows
    return r.base * r.multiplier ^ (n - 1)
  end,
}

-- Delay before retry n (1 = after the first attempt); prev is the delay
-- before retry n-1 (base for n = 1), which decorrelated jitter grows
-- from: AWS's min(max, random between base and 3 * prev).
function Retry:delay(n, prev)
  local jitter = self.jitter
  if jitter == "decorrelated" then
    local lo = self.base
    return min(self.max, lo + random() * (3 * prev - lo))
  end
  local d = min(self.max, self.backoff_of(self, n))
  if jitter == "full" then return random() * d end
  if jitter == "equal" then return d / 2 + random() * (d / 2) end
  return d
end

local MAX_DELAYS = 1e6

-- r:delays(n) -> the next n delays (n 0..1e6), drawn from fb.random as
-- calls would.
function Retry:delays(n)
  check_self(self, Retry, "fusebox.retry", "delays")
  if type(n) ~= "number" or not (n >= 0 and n <= MAX_DELAYS) or n % 1 ~= 0 then
    argerror(1, "delays", format("n must be an integer 0..%d, got %s", MAX_DELAYS, schema.got(n)))
  end
  local out, prev = {}, self.base
  for i = 1, n do
    prev = self:delay(i, prev)
    out[i] = prev
  end
  return out
end

-- r:call(fn, ...) -> fn's results once an attempt succeeds; after the
-- last attempt, or a failure retry_on refuses, that attempt's failure:
-- nil, err handed back, a raised error raised again.
function Retry:call(fn, ...)
  check_self(self, Retry, "fusebox.retry", "call")
  check_arg(fn, 1, "call", "function")
  local attempts, prev, budget = self.attempts, self.base, self.budget
  if budget then deposit(budget) end
  for n = 1, attempts do
    local ok = hold(pcall(fn, ...))
    local failed, err = failure(ok, held[1], held[2])
    if not failed then return give(take()) end
    drop()
    local retry_on = self.retry_on
    if n == attempts or (retry_on and not retry_on(err)) then
      if ok then return nil, err end
      error(err, 0)
    end
    prev = self:delay(n, prev)
    -- under a deadline: no retry the deadline would cut short
    local c = ctx_of[running()]
    if c and (c.cancelled or now() + prev >= c.expires) then
      if ok then return nil, err end
      error(err, 0)
    end
    if budget and not withdraw(budget, "retry") then return nil, refusal(budget, err) end
    if c then c.attempt = n + 1 end
    if prev > 0 then sleep(prev) end
  end
end

local function new_retry(o)
  return setmetatable({
    attempts = o.attempts or 3,
    backoff = o.backoff or "exponential",
    backoff_of = BACKOFF[o.backoff or "exponential"],
    base = o.base or 0.1,
    multiplier = o.multiplier or 2,
    max = o.max or max_sleep, -- the backoff never outgrows the longest sleep
    jitter = o.jitter or "none",
    retry_on = o.retry_on,
    budget = o.budget and (budget_m.is_budget(o.budget) and o.budget or budget_m.new(o.budget)),
  }, Retry)
end

-- fb.retry{attempts=3, backoff="exponential", base=0.1, multiplier=2,
--   max=1e9 (the longest sleep), jitter="none", retry_on=(every failure),
--   budget=(none: options or an fb.retry_budget; a call deposits, a
--   retry withdraws)}
function M.retry(opts)
  return new_retry(check_options("retry", opts, schema.retry))
end

----------------------------------------------------------------- timeout

local Timeout = { kind = "timeout" }
Timeout.__index = Timeout

-- child coroutine -> the box of the call it runs, while the child lives
local boxes = setmetatable({}, { __mode = "k" })
-- children of this run still running after their caller gave up: while
-- there are none, nothing needs to ask abandoned() (coroutine.running,
-- which it calls, is not compiled). A run that ends with some (it
-- failed) leaves them to no later run.
local orphans = { n = 0, run = -1 }
M.orphans = orphans

-- abandoned([co]) -> the timeout message of the call co (default: the
-- running coroutine) works for, if that call's caller, or any caller
-- above it through nested timeouts, gave up waiting; else nil. A late
-- result asks (fb.sim logs it as the timeout its caller saw).
function M.abandoned(co)
  if orphans.run ~= run_id(rt) then
    orphans.n = 0
    return nil
  end
  local box = boxes[co or running()]
  while box do -- up one timeout per step: as many as are nested
    if box.abandoned then return box.owner.message end
    box = boxes[box.caller]
  end
  return nil
end

-- The child: runs fn and hands its outcome to the waiting caller, unless
-- the caller gave up; then the outcome, error included, is dropped here
-- so it can neither crash the run nor wake a caller now waiting on
-- something else.
local function guarded(box, fn, ...)
  local co = running()
  if box.ctx then ctx_of[co] = box.ctx end -- the caller's deadline
  local ok = hold(pcall(fn, ...))
  -- On fusebox's runtime the thread runs another child next (see
  -- spawn_child): nothing keyed by it may outlive this one.
  boxes[co], ctx_of[co] = nil, nil
  if box.abandoned then
    drop()
    box.owner.late = box.owner.late + 1
    orphans.n = orphans.n - 1
    return
  end
  -- the outcome in the box's fields, not a table of its own: up to three
  -- results, the common case; more (rare) in box.more
  local n, a, b, c = take()
  if n > 3 then
    box.more = { a, b, c, unpack(held, 4, n) }
    for i = 4, n do held[i] = nil end
  end
  box.ok, box.n, box.r1, box.r2, box.r3, box.done = ok, n, a, b, c, true
  wake(box.caller)
end

-- The child's coroutine: on fusebox's runtime a thread a finished child
-- left (core.spawn_pooled: no thread, stack or ref to make per call),
-- which is safe since the child's handle is kept only while it runs
-- (boxes, above; abandon); on a host's scheduler, its spawn.
local spawn_pooled, scheduler, own_runtime = core.spawn_pooled, host.host, host.runtime

-- The boxes of calls that ended in time, to be used again (the box is
-- the one table a call makes, and a replay makes millions): once the
-- caller took the results, nothing holds the box (the child cleared
-- boxes[] and returned before its caller ran again). At most SPARE kept.
local spare, nspare, SPARE = {}, 0, 64

local function new_box()
  if nspare > 0 then
    local box = spare[nspare]
    spare[nspare], nspare = false, nspare - 1
    return box
  end
  -- Every field a constant here, set after: compiled to bytecode (how
  -- lua/ is embedded), a table constructor keeps only its constant
  -- fields, so each field given a variable (or nil) would grow the
  -- table as it is set: two rehashes a call, ~1,500 instructions.
  return { caller = false, owner = false, done = false, abandoned = false, ctx = false,
    ok = false, n = 0, r1 = false, r2 = false, r3 = false, more = false }
end

local function recycle(box)
  box.caller, box.owner, box.done, box.ctx = false, false, false, false
  box.ok, box.n, box.r1, box.r2, box.r3, box.more = false, 0, false, false, false, false
  if nspare < SPARE then
    nspare = nspare + 1
    spare[nspare] = box
  end
end

-- t:call(fn, ...) -> fn's results, run in a child coroutine; or nil,
-- "timeout: ..." when the time passes first (the child is abandoned).
function Timeout:call(fn, ...)
  check_self(self, Timeout, "fusebox.timeout", "call")
  check_arg(fn, 1, "call", "function")
  local box = new_box()
  box.owner = self
  local deadline = now() + self.seconds
  local caller, child
  if scheduler() == own_runtime then
    -- The child first: it runs once its caller waits, so the caller may
    -- name itself after. coroutine.running is a C function, which ends a
    -- compiled trace, and the trace after it cannot pass ... on (NYI).
    child = spawn_pooled(guarded, box, fn, ...)
    caller = running()
    box.caller, box.ctx = caller, ctx_of[caller] or false
  else -- a host may run the child at once (nginx): its caller first
    caller = running()
    box.caller, box.ctx = caller, ctx_of[caller] or false
    child = spawn(guarded, box, fn, ...)
  end
  boxes[child] = box -- before the child first runs (on nginx: after its first step)
  while not box.done do
    local left = deadline - now()
    if left <= 0 or not wait(self.what, left) then
      if box.done then break end
      box.abandoned = true
      self.timeouts = self.timeouts + 1
      if abandon(child) then return nil, self.message end -- stopped: it never comes back
      local run = run_id(rt)
      if orphans.run ~= run then orphans.n, orphans.run = 0, run end
      orphans.n = orphans.n + 1
      return nil, self.message
    end
  end
  local ok, n, a, b, c, more = box.ok, box.n, box.r1, box.r2, box.r3, box.more
  recycle(box)
  if not ok then error(a, 0) end
  if n > 3 then return unpack(more, 1, n) end
  return give(n, a, b, c)
end

local function new_timeout(seconds)
  return setmetatable({
    seconds = seconds,
    what = format("a call under a %gs timeout", seconds),
    message = format("timeout: no result within %gs", seconds),
    timeouts = 0, -- calls that timed out
    late = 0,     -- results that came after their call timed out
  }, Timeout)
end

local check_seconds = schema.seconds

-- fb.timeout(seconds)
function M.timeout(seconds)
  local err = check_seconds(seconds, "seconds")
  if err then error(format("bad argument #1 to 'timeout' (%s)", err), 2) end
  return new_timeout(seconds)
end

---------------------------------------------------------------- bulkhead

local Bulkhead = { kind = "bulkhead" }
Bulkhead.__index = Bulkhead

-- A call holding a slot keeps a mark (fusebox.base's marks), so a
-- coroutine dropped while suspended inside b:call gives its slot back
-- once the collector took it (reclaim, below).
local gc_probe, take_mark, give_mark = base.gc_probe, base.take_mark, base.give_mark

-- Frees a slot: hands it straight to the longest waiter (so a newcomer
-- cannot overtake the queue), or returns it to the pool.
local function release(self)
  local queue = self.queue
  while self.waiting > 0 do
    local h = self.head
    local co = queue[h]
    queue[h], self.head = nil, h + 1
    if co then
      self.where[co] = nil
      self.waiting = self.waiting - 1
      if wake(co) then return end
    end
  end
  self.active = self.active - 1
end

-- Frees the slots whose marks the collector took (see base.take_mark).
local function reclaim(self)
  base.reclaim_marks(self, release, self)
end

-- Queues the running coroutine for a slot; true once one was handed
-- over, or nil, err when the queue is full or the wait timed out.
local function enqueue(self)
  if self.waiting >= self.max_queue then
    return nil, format("bulkhead full: %d running, %d queued (max_queue %d)",
      self.active, self.waiting, self.max_queue)
  end
  local co = running()
  local t = self.tail + 1
  self.queue[t], self.where[co], self.tail = co, t, t
  self.waiting = self.waiting + 1
  local timeout = self.queue_timeout
  local deadline = timeout and now() + timeout
  repeat
    local left = deadline and deadline - now()
    if (left and left < 0) or not wait("a bulkhead slot", left) then
      self.queue[self.where[co]], self.where[co] = false, nil
      self.waiting = self.waiting - 1
      return nil, format("bulkhead full: no slot within %gs (queue_timeout)", timeout)
    end
  until self.where[co] == nil -- else a stray wake: still queued
  return true
end

-- b:call(fn, ...) -> fn's results while holding one of max_concurrent
-- slots, waiting in FIFO order when none is free; the slot is freed
-- however fn ends.
function Bulkhead:call(fn, ...)
  check_self(self, Bulkhead, "fusebox.bulkhead", "call")
  check_arg(fn, 1, "call", "function")
  if self.active >= self.max_concurrent then reclaim(self) end
  if self.active < self.max_concurrent then
    self.active = self.active + 1
  else
    local ok, err = enqueue(self) -- release handed us the slot
    if not ok then return nil, err end
  end
  local mark = take_mark(self)
  local ok = hold(pcall(fn, ...))
  give_mark(self, mark)
  release(self)
  local n, a, b, c = take()
  if not ok then error(a, 0) end
  return give(n, a, b, c)
end

local function new_bulkhead(o)
  return setmetatable({
    max_concurrent = o.max_concurrent or 10,
    max_queue = o.max_queue or 0,
    queue_timeout = o.queue_timeout, -- nil: wait as long as it takes
    active = 0, waiting = 0,
    queue = {}, head = 1, tail = 0, -- waiting coroutines; false: gave up
    where = {},                     -- coroutine -> its place in queue
    weak = setmetatable({}, { __mode = "v" }), nmarks = 0, -- i -> mark i, while it lives
    spare = false, idle = {}, nidle = 0, -- the marks no call holds
    probe = gc_probe(),             -- empty once a collection has run
    reclaimed = 0,                  -- slots freed after their holder was collected
  }, Bulkhead)
end

-- fb.bulkhead{max_concurrent=10, max_queue=0, queue_timeout=(forever)}
function M.bulkhead(opts)
  return new_bulkhead(check_options("bulkhead", opts, schema.bulkhead))
end

------------------------------------------------------------ rate limiter

local RateLimiter = { kind = "rate_limit" }
RateLimiter.__index = RateLimiter

-- rl:acquire() -> true, or false and the seconds until the next token.
-- The bucket refills at rate tokens a second up to burst, on the
-- runtime's clock; a clock that went back (a new run) refills nothing.
local function take_token(self)
  local t, tokens = now(), self.tokens
  local last = self.stamp
  if last and t > last then
    tokens = min(self.burst, tokens + (t - last) * self.rate)
  end
  self.stamp = t
  if tokens >= 1 - 1e-9 then -- tolerate rounding in the refill
    self.tokens = tokens - 1
    return true
  end
  self.tokens = tokens
  return false, (1 - tokens) / self.rate
end

function RateLimiter:acquire()
  check_self(self, RateLimiter, "fusebox.rate_limiter", "acquire")
  local ok, after = take_token(self)
  return ok, after
end

-- rl:call(fn, ...) -> fn(...) if a token is free, else nil,
-- "rate limited: ..." saying when the next one comes.
function RateLimiter:call(fn, ...)
  check_self(self, RateLimiter, "fusebox.rate_limiter", "call")
  check_arg(fn, 1, "call", "function")
  local ok, after = take_token(self)
  if ok then return fn(...) end
  return nil, "rate limited: next token in " .. seconds_text(after)
end

local function new_rate_limiter(o)
  local rate = o.rate or 10
  local burst = o.burst or math.max(1, math.floor(rate))
  return setmetatable({ rate = rate, burst = burst, tokens = burst }, RateLimiter)
end

-- fb.rate_limiter{rate=10 (a second), burst=floor(rate)}
function M.rate_limiter(opts)
  return new_rate_limiter(check_options("rate_limiter", opts, schema.rate_limit))
end

-------------------------------------------------------------- breaker

-- The breaker counts a nil, err return as a failure and hands it back
-- as is; it returns with `return ...`, so its results are caught here, in
-- a plain frame, and leave with a fixed count (see `held`). A rejection
-- is raised as cb:call's message alone: the line in front would be ours.
local function breaker_call(cb, fn, ...)
  keep(layer_call(cb, fn, ...))
  return give(take())
end
M.breaker_call = breaker_call
M.hold, M.held, M.take, M.drop, M.give = hold, held, take, drop, give

local BreakerLayer = { kind = "breaker" }
BreakerLayer.__index = BreakerLayer

function BreakerLayer:call(fn, ...)
  keep(layer_call(self.breaker, fn, ...))
  return give(take())
end

-- Under a hedge or a deadline: a cancelled attempt is recorded as ignored.
local CancellableBreakerLayer = { kind = "breaker" }
CancellableBreakerLayer.__index = CancellableBreakerLayer
local cancellable_call = hedge_m.breaker_call

function CancellableBreakerLayer:call(fn, ...)
  keep(cancellable_call(self.breaker, fn, ...))
  return give(take())
end

-- built(make, opts, path) -> make(opts) (fb.breaker, fb.limiter), its
-- complaint raised naming path instead of the constructor's argument.
local function built(make, opts, path)
  local ok, v = pcall(make, opts)
  if not ok then error(format("%s: %s", path, v:match("%((.*)%)$") or v), 0) end
  return v
end

-- new_breaker(opts, path) -> fb.breaker(opts); its complaints name path.
function M.new_breaker(opts, path) return built(core.breaker, opts, path) end

-------------------------------------------------------------- limiter

-- The adaptive concurrency limit (fusebox.limiter, src/limiter.c), inside
-- the rate limit and outside the bulkhead: a call the limiter refuses
-- never queues for a slot, and a bulkhead's queueing shows in the RTT it
-- measures (what an adaptive limit is for). Its results are caught here
-- and leave with a fixed count, as the breaker's (see `held`).
local LimiterLayer = { kind = "limiter" }
LimiterLayer.__index = LimiterLayer
local limiter_call = limiter.layer_call

function LimiterLayer:call(fn, ...)
  keep(limiter_call(self.limiter, fn, ...))
  return give(take())
end

-- new_limiter(opts, path) -> fb.limiter(opts); its complaints name path.
local function new_limiter(o, path)
  if limiter.is_limiter(o) then return setmetatable({ limiter = o }, LimiterLayer) end
  return setmetatable({ limiter = built(core.limiter, o, path) }, LimiterLayer)
end

local function limiter_rule(v, path)
  if limiter.is_limiter(v) then return nil end
  if type(v) ~= "table" then
    return format("%s: must be limiter options or a limiter, got %s", path, schema.got(v))
  end
  return schema.check(v, schema.limiter, path)
end

-------------------------------------------------------------- policy

local Policy = { kind = "policy" }
Policy.__index = Policy

-- Runs fn(...) through layers[i], layers[i+1], ...: each layer's call
-- gets this function and its arguments as what to guard, so the chain
-- needs no closure per call.
-- The last layer is handed fn itself: one tail call less (see `held`).
local function through(layers, i, fn, ...)
  local layer = layers[i]
  if layer == nil then return fn(...) end
  if layers[i + 1] == nil then return layer:call(fn, ...) end
  return layer:call(through, layers, i + 1, fn, ...)
end
M.through = through

-- runner(checked) -> with_fallback(owner, fn, ...): runs owner.layers
-- under owner.fallback (nil: none), whose results replace any failure,
-- raised or returned: fn's failures and the layers' rejections. Checked,
-- it is p:call itself (not called by it: one tail call less), and checks
-- self and fn before any layer runs: a misuse of p:call is the caller's
-- error, raised to the caller, never a failure for the fallback to
-- answer. The client checks its own arguments and runs it unchecked.
-- A policy with a deadline or a hedge: fn(ctx, ...), under the fallback.
local call_with_ctx = hedge_m.call_with_ctx
local function with_ctx(owner, fn, ...)
  local fallback, layers = owner.fallback, owner.layers
  if fallback == nil then return through(layers, 1, call_with_ctx, fn, ...) end
  local failed, err = failure(hold(pcall(through, layers, 1, call_with_ctx, fn, ...)), held[1], held[2])
  if failed then
    drop()
    return fallback(err)
  end
  return give(take())
end

local function runner(checked)
  return function(owner, fn, ...)
    if checked then
      check_self(owner, Policy, "fusebox.policy", "call")
      check_arg(fn, 1, "call", "function")
    end
    if checked and owner.with_ctx then return with_ctx(owner, fn, ...) end
    local fallback, layers = owner.fallback, owner.layers
    if fallback == nil then return through(layers, 1, fn, ...) end
    local failed, err = failure(hold(pcall(through, layers, 1, fn, ...)), held[1], held[2])
    if failed then
      drop()
      return fallback(err)
    end
    return give(take())
  end
end
M.with_fallback = runner(false)

-- p:call(fn, ...) -> fn's results through every layer
Policy.call = runner(true)

-- p:names() -> the layer names, outermost first
function Policy:names()
  check_self(self, Policy, "fusebox.policy", "names")
  local out = {}
  if self.fallback then out[1] = "fallback" end
  for _, name in ipairs(self.order) do out[#out + 1] = name end
  return out
end

local breaker_mt = core.meta.breaker
local function is_breaker(v) return getmetatable(v) == breaker_mt end

-- Is v a built layer (a breaker, or a table with a call method) rather
-- than options? Other userdata are neither: JSON's null
-- (core.json_null, a light userdata) is a bad value like any other, so
-- {"breaker": null} is an error naming breaker, not a layer.
local function is_layer(v)
  return is_breaker(v) or (type(v) == "table" and type(v.call) == "function")
end
M.is_layer = is_layer

local function layer_rule(name, sch)
  return function(v, path)
    if is_layer(v) then return nil end
    if type(v) ~= "table" then
      return format("%s: must be %s options or a %s, got %s", path, name, name, schema.got(v))
    end
    return schema.check(v, sch, path)
  end
end

local function timeout_rule(v, path)
  if is_layer(v) then return nil end
  return check_seconds(v, path)
end

M.schema = { fields = {
  deadline = timeout_rule,
  hedge = layer_rule("hedge", schema.hedge),
  retry = layer_rule("retry", schema.retry),
  breaker = layer_rule("breaker", schema.breaker),
  rate_limit = layer_rule("rate_limit", schema.rate_limit),
  limiter = limiter_rule,
  bulkhead = layer_rule("bulkhead", schema.bulkhead),
  timeout = timeout_rule,
  fallback = schema.func,
} }

-- The layers in their order, each built from options unless given built.
local BUILD = {
  { "deadline", hedge_m.new_deadline },
  { "retry", new_retry },
  { "hedge", hedge_m.new_hedge },
  { "breaker", function(o, path)
      local cb = is_breaker(o) and o or M.new_breaker(o, path)
      return setmetatable({ breaker = cb }, BreakerLayer)
    end },
  { "rate_limit", new_rate_limiter },
  { "limiter", new_limiter },
  { "bulkhead", new_bulkhead },
  { "timeout", new_timeout },
}
M.ORDER = BUILD

-- build(opts, path, skip) -> layers, names: opts already checked; the
-- layers named in skip are left out (the client runs those itself).
function M.build_layers(opts, path, skip)
  local layers, names = {}, {}
  for _, entry in ipairs(BUILD) do
    local name, build = entry[1], entry[2]
    local v = opts[name]
    if v ~= nil and not (skip and skip[name]) then
      if is_layer(v) and not (name == "breaker" and is_breaker(v)) then
        layers[#layers + 1] = v
      else layers[#layers + 1] = build(v, schema.join(path, name)) end
      names[#names + 1] = name
    end
  end
  return layers, names, M.adapt(layers, names, opts)
end

-- adapt(layers, names, opts) -> whether fn takes a context: with a
-- hedge, the hedge draws from the retry's budget unless it has its own
-- (the retry deposits, once a call), and with a hedge or a deadline the
-- breaker records a cancelled attempt as ignored.
function M.adapt(layers, names, opts)
  local by = {}
  for i, name in ipairs(names) do by[name] = layers[i] end
  local h, r, cb = by.hedge, by.retry, by.breaker
  if h and r and r.budget and not is_layer(opts.hedge) then
    if h.budget == nil then h.budget = r.budget end
    if h.budget == r.budget then h.deposits = false end
  end
  local with_ctx = h ~= nil or by.deadline ~= nil
  if with_ctx and getmetatable(cb) == BreakerLayer then setmetatable(cb, CancellableBreakerLayer) end
  return with_ctx
end

-- new_policy(opts, path): opts already checked against M.schema.
function M.new_policy(opts, path)
  local layers, names, wants_ctx = M.build_layers(opts, path)
  return setmetatable({ layers = layers, order = names, fallback = opts.fallback,
    options = opts, with_ctx = wants_ctx }, Policy)
end

-- fb.policy{deadline=, retry=, hedge=, breaker=, rate_limit=, limiter=,
-- bulkhead=, timeout=, fallback=}
function M.policy(opts)
  local o = check_options("policy", opts, M.schema)
  local ok, p = pcall(M.new_policy, o, nil)
  if not ok then error(format("bad argument #1 to 'policy' (%s)", p), 2) end
  return p
end

function M.is_policy(v) return getmetatable(v) == Policy end

M.Retry, M.Timeout, M.Bulkhead, M.RateLimiter = Retry, Timeout, Bulkhead, RateLimiter

-- Is v an object given where options could be (a layer, a retry
-- budget)? Such values are used as they are, never merged into.
function M.is_object(v) return is_layer(v) or budget_m.is_budget(v) end

return M
