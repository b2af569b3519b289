-- fusebox/limiter.lua -- the concurrency limiter's methods written in Lua.
-- They run the guarded call, classify and listeners, so they must be Lua
-- (the call may sleep); acquire and release go through the FFI table.
--
-- The limiter's Lua API
-- =====================
--
-- fb.limiter{...} -> l. Options (any other key is an error; the defaults
-- are Netflix concurrency-limits'; src/limiter.c has the update rules):
--   algorithm        "gradient2" (default), "aimd" or "vegas"
--   initial, min, max the limit's start and bounds (20; gradient2 and
--                    aimd: 20..200; vegas: 1..1000; max at most 1e6)
--   smoothing        gradient2 (0.2) and vegas (1): how far one sample
--                    moves the estimate, in (0, 1]
--   queue_size       gradient2: growth allowed while latency holds (4)
--   rtt_tolerance    gradient2: latency growth tolerated (1.5, >= 1)
--   long_window      gradient2: samples of the long-term RTT average (600)
--   backoff_ratio    aimd: the limit's factor on a drop, [0.5, 1) (0.9)
--   timeout          aimd: seconds; a longer RTT is a drop (5)
--   alpha, beta      vegas: the queue bounds, times log10(limit) (3, 6)
--   probe_multiplier vegas: re-probe the no-load RTT every
--                    probe_multiplier * limit samples, jittered (30)
--   min_window, max_window, window_size, min_rtt_threshold
--                    the sample window (WindowedLimit's): samples gather
--                    for 2 x the least RTT seen, within min_window ..
--                    max_window seconds (1 .. 1), and a window of
--                    window_size (10) or more is one sample for the
--                    algorithm (mean RTT, most in flight, any drop); RTTs
--                    under min_rtt_threshold (100 us) are none.
--                    min_window = 0: every sample counts at once
--   classify         function(err) -> "dropped", "ignored" or "success":
--                    how a failure counts. Default: a timeout ("timeout:
--                    ...", "timeout") or a rejection by a bulkhead inside
--                    ("bulkhead full: ...") is dropped (a loss: aimd and
--                    vegas shrink the limit), any other failure ignored
--                    (it says nothing of latency). If it raises, it is
--                    reported and the failure is ignored.
--   name             labels it in events and metrics
--   shared           C host threads may use it (see fusebox.h)
--
-- l:call(fn, ...) -> fn's results, timed: its RTT and outcome are a
--   sample. While as many calls are in flight as the limit, returns nil,
--   "concurrency limit reached: ..." without calling fn (fb.rejection
--   names it "concurrency limit reached"). A raised error is re-raised.
--   A coroutine dropped while suspended inside l:call (never resumed)
--   gives its permit back, as ignored, once the collector took it: at
--   the next rejection after a collection (l:metrics() counts none of
--   it; the state's `reclaimed` does), as the bulkhead does.
-- l:acquire() -> permit (a number), or nil, message; then once
--   l:release(permit, outcome, rtt) with outcome "success", "dropped" or
--   "ignored" and rtt the call's seconds (>= 0). A permit never issued
--   (0, 0.5, "1", more than the calls in flight) is an error.
-- l:on(event, fn) -> l. Events: "limit" fn(from, to, now) after each
--   change of the limit; "rejected" fn(limit, now). A listener that raises
--   is reported and the others still run.
-- l.limit, l.inflight, l.algorithm, l.name; l:metrics() -> {algorithm,
--   limit, estimate, inflight, rtt, rtt_noload, successes, dropped,
--   ignored, rejected, changes}; l:change(n) -> from, to, at (the n-th
--   change, one of the last 16).
--
-- Events in the log: "limit" {limiter (an id, per run), name, from, to}
-- and "reject" {limiter, name, limit}.

local core = select(2, ...)
local base = core.import "fusebox.base"
local events = core.import "fusebox.events"
local api, now, argerror, timed_out = base.api, base.now, base.argerror, base.timed_out
local format, type, error, pcall, xpcall, tostring = string.format, type, error, pcall, xpcall, tostring
local setmetatable = setmetatable
local take_mark, give_mark, reclaim_marks = base.take_mark, base.give_mark, base.reclaim_marks
local find, getfenv, traceback = string.find, debug.getfenv, debug.traceback
local ffi = require "ffi"
local ECLOSED, EINVAL = ffi.C.FBL_ECLOSED, -1
local SUCCESS, DROPPED, IGNORED = 0, 1, 2
local OUTCOMES = { success = SUCCESS, dropped = DROPPED, ignored = IGNORED }
local EVENTS = { limit = true, rejected = true }

local limiter_mt = core.meta.limiter
local limiter = limiter_mt.methods
local change = limiter.change

local M = {}

M.state = base.object_state(limiter_mt, "limiter", function(ud)
  local env = getfenv(ud)
  return {
    seen = 0,       -- changes of the limit already announced
    listeners = {}, -- event -> array of functions
    name = env.name,
    algorithm = env.algorithm,
    classify = env.classify,
    message = false, message_limit = -1, -- the rejection text, per limit
    out = {}, -- l:acquire's permits not released yet: permit -> how many
    -- l:call's marks (fusebox.base): a coroutine dropped inside l:call
    -- gives its permit back once collected; permit_of[i]: mark i's permit
    weak = setmetatable({}, { __mode = "v" }), nmarks = 0,
    spare = false, idle = {}, nidle = 0, probe = base.gc_probe(), reclaimed = 0,
    permit_of = {},
  }
end)
local state_of = M.state

local function closed_under(fname) base.closed(fname, "limiter") end

local emit = base.emit_listeners

-- l:on(event, fn) -> l
function limiter:on(event, fn)
  local st = state_of(self, "on")
  base.add_listener(st, EVENTS, "limit, rejected", event, fn)
  return self
end

-- Announces the changes of the limit since the last announcement (those
-- still in the history: the last 16).
local function announce(self, st)
  local total = api.limiter_changes(st.slot)
  if total < 0 then return end -- closed by a listener
  if total - st.seen > 16 then st.seen = total - 16 end
  local list = st.listeners.limit
  while st.seen < total do
    if st.slot[0] == nil then return end -- a listener closed it
    local from, to, at = change(self, st.seen)
    st.seen = st.seen + 1
    if from then
      if events.on() then
        events.emit("limit", { limiter = events.id(self), name = st.name, from = from, to = to })
      end
      if list then emit(list, "limit", from, to, at) end
    end
  end
end

-- The rejection's message, built once per limit: a rejection allocates
-- nothing while the limit holds.
local function rejection(self, st)
  local limit = api.limiter_limit(st.slot)
  if limit ~= st.message_limit then
    st.message_limit = limit
    st.message = format("concurrency limit reached: limit %d in flight", limit)
  end
  if events.on() then
    events.emit("reject", { limiter = events.id(self), name = st.name, limit = limit })
  end
  local list = st.listeners.rejected
  if list then emit(list, "rejected", limit, now()) end
  return st.message
end
M.rejection = rejection

-- admit(self, st, fname) -> permit, or nil, the rejection's message
local function acquire(self, st, fname)
  local permit = api.limiter_acquire(st.slot)
  if permit == ECLOSED then closed_under(fname) end
  return permit
end

-- A permit whose l:call was dropped with its coroutine: ignored.
local function lost(st, i)
  api.limiter_release(st.slot, st.permit_of[i], IGNORED, 0, now())
end

local function admit(self, st, fname)
  local permit = acquire(self, st, fname)
  if permit > 0 then return permit end
  -- a dropped l:call may hold one: look, once per collection
  if st.nmarks > 0 and reclaim_marks(st, lost, st) > 0 then
    permit = acquire(self, st, fname)
    if permit > 0 then return permit end
  end
  return nil, rejection(self, st)
end
M.admit = admit

-- release(self, st, permit, outcome, rtt, t) -> 0, or EINVAL
local function release(self, st, permit, outcome, rtt, t)
  local rc = api.limiter_release(st.slot, permit, outcome, rtt, t)
  if rc == ECLOSED then closed_under("release") end
  if rc > 0 then announce(self, st) end
  return rc
end
M.release = release

-- The outcome of a failure's error value (see classify in the header).
local function judge(st, err)
  local classify = st.classify
  if classify then
    local ok, verdict = xpcall(classify, traceback, err)
    if not ok then
      core.report("classify failed", tostring(verdict))
      return IGNORED
    end
    local outcome = OUTCOMES[verdict]
    if outcome then return outcome end
    core.report("classify failed", format("it returned %s, not 'dropped', 'ignored' or 'success'",
      tostring(verdict)))
    return IGNORED
  end
  if timed_out(err) or (type(err) == "string" and find(err, "bulkhead full:", 1, true) == 1) then
    return DROPPED
  end
  return IGNORED
end
M.judge = judge

local function finish(self, st, permit, mark, t0, ok, ...)
  give_mark(st, mark)
  local r1, r2 = ...
  local outcome = SUCCESS
  if not ok then
    outcome = judge(st, r1)
  elseif r1 == nil and r2 ~= nil then
    outcome = judge(st, r2)
  end
  local t1 = now()
  release(self, st, permit, outcome, t1 - t0, t1)
  if ok then return ... end
  error(r1, 0)
end

local check_arg = base.check_arg

-- l:call(fn, ...) -> fn's results, or nil, "concurrency limit reached: ..."
function limiter:call(fn, ...)
  local st = state_of(self, "call")
  check_arg(fn, 1, "call", "function")
  local permit, err = admit(self, st, "call")
  if not permit then return nil, err end
  local mark = take_mark(st) -- held on this coroutine's stack while fn runs
  st.permit_of[mark[1]] = permit
  return finish(self, st, permit, mark, now(), pcall(fn, ...))
end
M.layer_call = limiter.call

-- l:acquire() -> permit, or nil, message. A permit is the number of
-- calls in flight with its own (what its sample needs), so two calls may
-- hold equal ones: st.out counts them, and a release of a permit none
-- holds is refused (a second release of one, while no other call holds
-- the same number). Its keys are 1..limit: no allocation once grown.
function limiter:acquire()
  local st = state_of(self, "acquire")
  local permit, err = admit(self, st, "acquire")
  if permit then
    local out = st.out
    out[permit] = (out[permit] or 0) + 1
  end
  return permit, err
end

-- l:release(permit, outcome, rtt) -> true
function limiter:release(permit, outcome, rtt)
  local st = state_of(self, "release")
  local o = OUTCOMES[outcome]
  if not o then
    argerror(2, "release", "outcome must be 'success', 'dropped' or 'ignored', got " .. tostring(outcome))
  end
  if type(rtt) ~= "number" or not (rtt >= 0 and rtt < math.huge) then
    argerror(3, "release", "rtt must be a number of seconds >= 0, got " .. tostring(rtt))
  end
  local out = st.out
  local held = type(permit) == "number" and out[permit]
  if not held or held < 1 or release(self, st, permit, o, rtt, now()) == EINVAL then
    argerror(1, "release", "not a permit of this limiter: " .. tostring(permit))
  end
  out[permit] = held - 1
  return true
end

local properties = {
  limit = function(st)
    local v = api.limiter_limit(st.slot)
    if v == ECLOSED then base.closed("limit", "limiter", 3) end
    return v
  end,
  inflight = function(st)
    local v = api.limiter_inflight(st.slot)
    if v == ECLOSED then base.closed("inflight", "limiter", 3) end
    return v
  end,
  algorithm = function(st) return st.algorithm end,
  name = function(st) return st.name end,
}

limiter_mt.__index = function(self, key)
  local m = limiter[key]
  if m ~= nil then return m end
  local prop = properties[key]
  if prop then return prop(state_of(self, key)) end
  return nil
end
limiter_mt.__newindex = base.read_only("fusebox.limiter", "the limit moves by its algorithm")
limiter_mt.__tostring = function(self)
  if getmetatable(self) ~= limiter_mt then return "fusebox.limiter (bad self)" end
  if ffi.cast("void **", self)[0] == nil then
    return format("fusebox.limiter closed (%p)", self)
  end
  local label = self.name and format(" '%s'", self.name) or ""
  return format("fusebox.limiter%s %s limit %d, %d in flight (%p)", label, self.algorithm,
    self.limit, self.inflight, self)
end

-- The server-side guard for fb.http.serve (its `limiter` option): a
-- request the limiter rejects is answered 503 with Retry-After (whole
-- seconds) and never reaches the handler; the others are timed from the
-- handler's start to its answer. A 503 or 504 the handler gives is a
-- drop (it shed the request, or gave up on what it waited for), another
-- 5xx or a handler that raised is ignored, anything else a success.
local JSON_TYPE = "application/json"
function M.guard(l, retry_after, handle)
  local st = state_of(l, "serve")
  local headers = { ["Content-Type"] = JSON_TYPE, ["Retry-After"] = tostring(retry_after) }
  return function(srv, req, sock)
    local permit, why = admit(l, st, "serve")
    if not permit then
      return 503, headers, core.json_encode { error = why }
    end
    local t0 = now()
    local status, h, body = handle(srv, req, sock)
    local outcome = SUCCESS
    if status == 503 or status == 504 then
      outcome = DROPPED
    elseif status >= 500 then
      outcome = IGNORED
    end
    local t1 = now()
    release(l, st, permit, outcome, t1 - t0, t1)
    return status, h, body
  end
end

function M.is_limiter(v) return getmetatable(v) == limiter_mt end

return M
