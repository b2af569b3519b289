-- fusebox/context.lua -- the context of a guarded call, and the worker
-- coroutines that the hedge and deadline layers run attempts in.
--
-- A context (ctx) is what fn(ctx, ...) receives under a policy with a
-- deadline or a hedge: ctx.deadline (the seconds left when the attempt
-- started; nil without a deadline), ctx:remaining() (the seconds left
-- now, math.huge without one), ctx.expires (the time it ends on the
-- runtime's clock), ctx.cancelled (true once the caller gave up on this
-- attempt: the deadline passed, or another hedge won), ctx.attempt (the
-- retry attempt, from 1) and ctx.hedge (0 for the first request, k for
-- the k-th hedge). A context lives as long as its call: the hedge and
-- deadline layers reuse them, so keep none past fn's return.
--
-- Contexts belong to coroutines (M.current()): the coroutine an attempt
-- runs in, a timeout's child (it inherits its caller's), an
-- fb.http.serve handler (its caller's deadline, from the
-- fusebox-deadline header). Nested deadlines take the earliest: a
-- policy's deadline inside a handler never outlives the handler's caller.
--
-- Workers: the deadline and hedge layers must return while the attempt
-- they wait for still runs (a coroutine cannot be killed), so attempts
-- run in other coroutines. Spawning one per call costs a coroutine and
-- its closure (~1.3 us, as fb.timeout); a worker is a daemon coroutine
-- that runs one job after another and parks between them, kept in a pool
-- per run, so an attempt allocates nothing once the pool is warm. A
-- cancelled attempt's worker runs its job to the end, drops the results,
-- and goes back to the pool; being a daemon, it does not keep a run
-- going once every caller is done.

local core = select(2, ...)
local base = core.import "fusebox.base"
local ffi = require "ffi"
local now = base.now
local run_id, rt = base.api.run_id, ffi.cast("const fb_runtime *", core.rt)
local host = core.import "fusebox.host" -- the scheduler every wait runs on
local daemon, wait, wake = host.daemon, host.wait, host.wake
local running = coroutine.running
local pcall, select, unpack, setmetatable, huge, type = pcall, select, unpack, setmetatable, math.huge, type

local M = {}

---------------------------------------------------------------- contexts

local Ctx = {}
Ctx.__index = Ctx
M.Ctx = Ctx

-- ctx:remaining() -> seconds left before the deadline (0 once passed;
-- math.huge with no deadline)
function Ctx:remaining()
  local left = self.expires - now()
  return left > 0 and left or 0
end

function M.new_ctx()
  return setmetatable({ expires = huge, deadline = nil, cancelled = false, attempt = 1, hedge = 0 }, Ctx)
end

-- coroutine -> its context; weak, so a coroutine that ends is let go
local ctx_of = setmetatable({}, { __mode = "k" })
M.ctx_of = ctx_of

-- current() -> the running coroutine's context, or nil
function M.current()
  return ctx_of[running()]
end

-- expires() -> the running coroutine's deadline (math.huge: none)
function M.expires()
  local c = ctx_of[running()]
  return c and c.expires or huge
end

------------------------------------------------------------ over HTTP

-- The header: the seconds left, as a decimal number (microseconds), the
-- way grpc-timeout sends a relative time (no clocks to agree on); the
-- time in transit is not taken off, as gRPC does not. Seconds, not
-- grpc-timeout's "100m" units, since every fusebox duration is seconds.
local HEADER = "fusebox-deadline"
M.HEADER = HEADER
local format, find, lower, pairs, tonumber = string.format, string.find, string.lower, pairs, tonumber
local max_sleep = core.max_sleep

-- outgoing(headers, timeout) -> the headers to send and the timeout to
-- wait (both as given outside a deadline); false, "deadline exceeded:
-- ..." when none is left. A fusebox-deadline header given is kept.
function M.outgoing(headers, timeout)
  local c = ctx_of[running()]
  if not c or c.expires == huge then return headers, timeout end
  local left = c.expires - now()
  if left <= 0 then return false, "deadline exceeded: none left for the request" end
  local out = {}
  if headers then
    for k, v in pairs(headers) do
      if lower(k) == HEADER then return headers, left < timeout and left or timeout end
      out[k] = v
    end
  end
  out[HEADER] = format("%.6f", left)
  return out, left < timeout and left or timeout
end

-- incoming(req) -> the context to restore after the handler: the
-- running coroutine takes the caller's deadline for the handler's time,
-- and req.deadline is its seconds. A value that is not plain decimal
-- seconds (0..1e9) is not a deadline: ignored, as any unknown header.
function M.incoming(req)
  local co = running()
  if co == nil then return nil end -- the main thread (a harness): no deadline
  local before = ctx_of[co]
  local v = req.headers and req.headers[HEADER]
  if type(v) ~= "string" or #v > 32 or not find(v, "^%d+%.?%d*$") then return before end
  local seconds = tonumber(v)
  if not seconds or seconds > max_sleep then return before end
  local t = now()
  local c = M.new_ctx()
  c.expires, c.deadline = t + seconds, seconds
  if before and before.expires < c.expires then c.expires, c.deadline = before.expires, before.expires - t end
  req.deadline = c.deadline
  ctx_of[co] = c
  return before
end

-- restore(before): the handler is done; the coroutine's context is the
-- one before it.
function M.restore(before)
  local co = running()
  if co then ctx_of[co] = before end
end

---------------------------------------------------------------- workers

-- A worker: { co, ctx, fn, args, nargs, caller, notify, owner,
-- finished, abandoned, ok, n, r1, r2, r3, more, started }. notify(w) runs
-- in the worker when its job ends: it hands the results on (wakes the
-- caller) or, when w.abandoned, lets them go and calls M.release(w).
local pool = { run = -1, n = 0 }

local function store(w, ok, ...)
  local n = select("#", ...)
  w.ok, w.n = ok, n
  w.r1, w.r2, w.r3 = ...
  if n > 3 then w.more = { ... } end -- rare: more than three results
end

local function clear_args(w)
  local args = w.args
  for i = 1, w.nargs do args[i] = nil end
  w.nargs = 0
end

local function worker_main(w)
  w.co = running() -- a host may run it before daemon() returns
  while true do
    ctx_of[w.co] = w.ctx
    w.started = now()
    store(w, pcall(w.fn, unpack(w.args, 1, w.nargs)))
    clear_args(w)
    w.finished = true
    w.notify(w)
    wait("an idle fusebox worker") -- until the next job (M.start)
  end
end

-- release(w): w's results are let go and w goes back to the pool.
function M.release(w)
  w.r1, w.r2, w.r3, w.more, w.fn, w.caller, w.owner = nil, nil, nil, nil, nil, nil, nil
  if pool.run ~= run_id(rt) then return end -- a worker of an earlier run
  local n = pool.n + 1
  pool[n], pool.n = w, n
end

-- worker() -> an idle worker (its ctx reset), from the pool when one
-- is there.
function M.worker()
  local run = run_id(rt)
  if pool.run ~= run then -- the pool's coroutines ended with their run
    for i = 1, pool.n do pool[i] = nil end
    pool.run, pool.n = run, 0
  end
  local n, w = pool.n, nil
  if n > 0 then
    w = pool[n]
    pool[n], pool.n = nil, n - 1
  else
    w = { ctx = M.new_ctx(), args = {}, nargs = 0, co = false }
  end
  local c = w.ctx
  c.expires, c.deadline, c.cancelled, c.attempt, c.hedge = huge, nil, false, 1, 0
  w.finished, w.abandoned = false, false
  return w
end

-- start(w, notify, fn, ...): runs fn(...) in w; notify(w) when it ends.
function M.start(w, notify, fn, ...)
  local n = select("#", ...)
  local args = w.args
  for i = 1, n do args[i] = (select(i, ...)) end
  w.nargs, w.fn, w.notify, w.caller = n, fn, notify, running()
  if w.co then
    wake(w.co)
  else
    daemon(worker_main, w)
  end
end

-- results(w) -> ok, the results (as pcall gave them)
function M.results(w)
  local n = w.n
  if n <= 3 then
    if n == 0 then return w.ok end
    if n == 1 then return w.ok, w.r1 end
    if n == 2 then return w.ok, w.r1, w.r2 end
    return w.ok, w.r1, w.r2, w.r3
  end
  return w.ok, unpack(w.more, 1, n)
end

return M
