-- fusebox/breaker.lua -- the breaker's methods written in Lua. They call
-- user functions (the guarded call, predicates, listeners) or announce
-- state changes, so they must be Lua: the guarded function may sleep
-- (yield) inside them. acquire and record go through the FFI table.
--
-- The breaker's Lua API
-- =====================
--
-- fb.breaker{...} -> cb. Options (any other key is an error):
--   mode               "consecutive" (default, the document's), "count"
--                      (rates over the last `window` calls) or "time"
--                      (rates over the last `window` seconds, in buckets of
--                      window/10 s, or 1 s for windows over 10 s, at most
--                      1000 buckets)
--   failure_threshold  consecutive mode: failures in a row that open it (5)
--   window             count: calls (100); time: seconds (100)
--   minimum_calls      calls in the window before rates are judged (10)
--   failure_rate       opens when failed/calls >= this, in (0, 1] (0.5)
--   slow_call_duration a call longer than this (seconds) is slow (never)
--   slow_call_rate     opens when slow/calls >= this, in (0, 1] (1)
--                      (window .. slow_call_rate: count and time modes only)
--   timeout            seconds OPEN; the first call strictly after it is
--                      let through as a probe (60)
--   timeout_multiplier the OPEN duration is multiplied by this on every
--                      re-open from HALF_OPEN (1: fixed) ...
--   timeout_max        ... up to this (unbounded); back to timeout on close
--   success_threshold  HALF_OPEN successes that close it (3)
--   half_open_max_calls probes in flight at once (unlimited); more are
--                      rejected
--   half_open_max_wait a HALF_OPEN state older than this reopens at the
--                      next acquire (never), so a lost probe cannot hold it
--   name               a label for events, the report and metrics (none:
--                      "breaker <id>"); fb.client names the breaker of
--                      each instance "host:port"
--   is_failure         function(err) judging a raised error or the err of a
--                      `nil, err` return: true -> failure; false or nil ->
--                      success (the service worked, e.g. "not found");
--                      "ignore" -> ignored. If it raises, it is reported
--                      and the call counts as a failure.
--
-- cb:call(fn, ...) -> fn's results. A raised error is recorded (as judged
--   by is_failure, failure by default) and re-raised; a `nil, err` return
--   is recorded the same way and handed back as `nil, err` without
--   raising. A failure whose err says the caller gave up waiting
--   (fb.timeout's "timeout: ...", or "timeout") is recorded as a timeout:
--   a failure to the breaker's judgement, counted apart in its metrics,
--   events and listeners. While the breaker rejects, raises "circuit open: call
--   rejected (...)" without calling fn.
-- cb:try(fn, ...) -> like call, but a rejection returns
--   nil, "circuit open", retry_after instead of raising: raising and
--   catching an error costs about a microsecond in LuaJIT, a return a few
--   nanoseconds. fn's own errors are still re-raised.
-- cb:acquire() -> permit, or nil, retry_after (seconds until a call may
--   be let through; 0 when unknown (HALF_OPEN with every probe slot taken),
--   math.huge when forced open). Then exactly one of
--   permit:success([duration]), permit:failure([duration]),
--   permit:timeout([duration]) (a failure, counted as a timeout),
--   permit:ignore() (neutral, e.g. a cancellation: counted nowhere, frees
--   its probe slot). duration defaults to the time since acquire. They
--   return true, or false when the result was dropped because the breaker
--   changed state since the permit was issued (gobreaker's generations: a
--   result from an earlier state describes a state that no longer holds).
--   A permit is one table; for hot loops use the token form:
-- cb:permit() -> token (a number), or nil, retry_after;
--   cb:record(token, outcome [, duration]) with outcome true (success),
--   false (failure), "timeout" or "ignore"; duration defaults to 0. Returns true, or
--   false when dropped: the token is from an earlier state, or was
--   recorded already (a token counts once; a replay is dropped like a
--   stale one and counted in metrics().stale). A token the breaker never
--   issued (99, 0.5, -0, "1") is an error.
-- cb:force_open() (rejects everything), cb:disable() (allows everything,
--   still measures, never changes state), cb:reset() (a fresh CLOSED:
--   window, counts and timeout growth cleared; earlier permits dropped).
-- cb:on(event, fn) -> cb. Listeners run after the breaker is consistent
--   (they may call into it); one that raises is reported with a traceback
--   and the others still run. Events:
--     "state_change" fn(from, to, now)  names: CLOSED, OPEN, HALF_OPEN,
--                                       FORCED_OPEN, DISABLED
--     "rejected"     fn(retry_after, now)
--     "outcome"      fn(outcome, duration, now, dropped) outcome: "success",
--                    "failure", "timeout" or "ignored"; dropped: true if
--                    stale
--   An outcome's listeners run before those of the state change it caused.
-- cb:metrics() -> {state, failure_rate, slow_rate (-1 until minimum_calls
--   and in consecutive mode), buffered, failed, slow (in the window;
--   consecutive mode: failed = failures in a row), calls, successes,
--   failures, timeouts, ignored, slow_calls, rejected, stale (since
--   creation; failures and timeouts apart, both open it),
--   half_open_calls, time_in_state, open_timeout}; cb:metrics_json() -> the
--   same as a JSON object.
-- cb.state -> the state's name; cb.name -> the name option (nil without
--   one): it labels the breaker in events ("name" next to the numeric
--   "breaker" id), in the report (instead of "breaker <id>") and in
--   metrics; cb:transition(n) -> from, to, at.

local core = select(2, ...)
local base = core.import "fusebox.base"
local events = core.import "fusebox.events"
local api, now, argerror, timed_out = base.api, base.now, base.argerror, base.timed_out
local clock = base.clock
local format, type, error, pcall, xpcall = string.format, type, error, pcall, xpcall
local tostring, setmetatable, getfenv = tostring, setmetatable, debug.getfenv
local traceback = debug.traceback

local breaker_mt = core.meta.breaker
local breaker = breaker_mt.methods
local transition = breaker.transition
local STATE_NAMES = { [0] = "CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED" }
local HALF_OPEN, FORCED_OPEN = 2, 3
local SUCCESS, FAILURE, IGNORED, TIMEOUT = 0, 1, 2, 3
local OUTCOME_NAMES = { [0] = "success", "failure", "ignored", "timeout" }
local EINVAL, ESTALE, ENOW = -1, -5, -8
local NAN = 0 / 0 -- "the clock was not read" (fusebox.h, fb_breaker_acquire)
local ffi = require "ffi"
local ECLOSED, ECHANGED = ffi.C.FBL_ECLOSED, ffi.C.FBL_ECHANGED
local EVENTS = { state_change = true, rejected = true, outcome = true }

local M = {}

-- M.state(cb, fname) -> st (and ud, slot: see fusebox.base). Methods
-- pass st.slot to the core, which answers ECLOSED once __gc ran: a
-- listener, a predicate or a finalizer may close the breaker mid-call.
M.state = base.object_state(breaker_mt, "breaker", function(ud)
  return {
    -- state changes already announced to listeners (a breaker found in a
    -- zone: those other processes made before it was found here)
    seen = getfenv(ud).seen or 0,
    next = 0,       -- the token the core issues next if nothing changed
    listeners = {}, -- event -> array of functions
    is_failure = getfenv(ud).is_failure,
    timed = getfenv(ud).timed, -- a slow-call rule: every duration counts
    name = getfenv(ud).name, -- nil: events and the report say "breaker <id>"
  }
end)
local state_of = M.state

-- Raises "calling 'fname' on a closed breaker" from inside a method: the
-- breaker was closed under us (its __gc called by a listener).
local function closed_under(fname) base.closed(fname, "breaker") end

-- Runs each listener in list; one that raises is reported, not fatal.
local emit = base.emit_listeners

-- cb:on(event, fn) -> cb
function breaker:on(event, fn)
  local st = state_of(self, "on")
  if st.slot[0] == nil then base.closed("on", "breaker", 2) end
  base.add_listener(st, EVENTS, "state_change, rejected, outcome", event, fn)
  return self
end

-- Announces the state changes the core made since the last announcement.
-- The breaker is consistent by now, so a listener may call into it.
local function announce(self, st)
  local total = api.breaker_transitions(st.slot)
  local list = st.listeners.state_change
  while st.seen < total do
    if st.slot[0] == nil then return end -- a listener closed it
    local from, to, at = transition(self, st.seen)
    st.seen = st.seen + 1
    if events.on() then events.emit("state_change", { breaker = events.id(self), name = st.name, from = from, to = to }) end
    if list and from then emit(list, "state_change", from, to, at) end
  end
end

local function rejected(self, st, t, wait)
  if wait < 0 then closed_under("acquire") end
  if events.on() then events.emit("reject", { breaker = events.id(self), name = st.name }) end
  local list = st.listeners.rejected
  if list then emit(list, "rejected", wait, t) end
  return wait
end

-- The clock is read only when a decision needs it (a clock_gettime costs
-- ten times the breaker): the core takes NaN for "not read" and answers
-- ENOW where it needs the time (OPEN tests its timeout, HALF_OPEN its
-- wait, a record that may open it stamps the change). The time is read
-- up front only when a duration will count: a slow-call rule, an outcome
-- listener or an event sink. Under virtual time nothing changes: the
-- clock is read wherever the time is used, and it is the same value.
local function start_time(st)
  if st.timed or st.listeners.outcome or events.on() then return now() end
  return NAN
end

-- Asks the core for a permit at t (NaN: not read): the permit (>= 0) and
-- the time it was given at (still NaN if it needed none), or nil,
-- retry_after. Where the breaker needs the time (OPEN, HALF_OPEN) the
-- entry takes the loop-cached clock itself, and a rejection comes back
-- with its retry_after, in one call. Tokens come in order and every state
-- change skips one: a token other than the one after the last we saw
-- means there may be something to announce (or someone else acquired:
-- announce finds nothing); a rejection says whether there is.
local admit_out = ffi.new("double[2]") -- time used, retry_after
local function admit(self, st, t, fname)
  local permit = api.breaker_admit(st.slot, t, st.seen, clock, admit_out)
  if permit == ENOW then -- outside a coroutine of the runtime: the clock
    permit = api.breaker_admit(st.slot, now(), st.seen, clock, admit_out)
  end
  t = admit_out[0]
  if permit >= 0 then
    if permit ~= st.next then announce(self, st) end
    st.next = permit + 1
    return permit, t
  end
  if permit == ECLOSED then closed_under(fname) end
  local wait = admit_out[1]
  if permit == ECHANGED then announce(self, st) end
  if wait ~= wait then -- rejected with no time read (FORCED_OPEN)
    t = now()
    wait = api.breaker_retry_after(st.slot, t)
  end
  return nil, rejected(self, st, t, wait)
end

-- Records an outcome at t (NaN: not read, and then duration may be NaN
-- too); returns 0, or ESTALE when dropped (or EINVAL). The core says 1
-- (FB_CHANGED) when the outcome changed the state.
local function record(self, st, permit, outcome, duration, t)
  local rc = api.breaker_record(st.slot, permit, outcome, duration, t)
  if rc == ENOW then
    t = now()
    if duration ~= duration then duration = 0 end -- no slow-call rule: unused
    rc = api.breaker_record(st.slot, permit, outcome, duration, t)
  end
  if rc == EINVAL then return rc end
  if rc == ECLOSED then closed_under("record") end
  local list, on = st.listeners.outcome, events.on()
  if list or on then
    -- a listener or a sink that appeared during an untimed call sees the
    -- time of its record and a duration of 0
    if t ~= t then t = now() end
    if duration ~= duration then duration = 0 end
    if on then
      events.emit("outcome", { breaker = events.id(self), name = st.name, outcome = OUTCOME_NAMES[outcome],
        duration = duration })
    end
    if list then emit(list, "outcome", OUTCOME_NAMES[outcome], duration, t, rc == ESTALE) end
  end
  if rc > 0 then announce(self, st) end -- the record changed the state
  return rc < 0 and rc or 0
end

-- The outcome of an error value: is_failure decides, failure by default;
-- a failure that says the caller gave up waiting is a timeout.
local function judge(st, err)
  local pred = st.is_failure
  if pred then
    local ok, verdict = xpcall(pred, traceback, err)
    if not ok then
      core.report("is_failure predicate failed", tostring(verdict))
    elseif verdict == "ignore" then
      return IGNORED
    elseif not verdict then
      return SUCCESS
    end
  end
  return timed_out(err) and TIMEOUT or FAILURE
end

M.judge = judge -- for the breaker layer under a hedge (fusebox.hedge)

local function finish(self, st, permit, t0, ok, ...)
  local r1, r2 = ...
  local outcome = SUCCESS
  if not ok then
    outcome = judge(st, r1)
  elseif r1 == nil and r2 ~= nil then
    outcome = judge(st, r2)
  end
  local t1 = t0 -- NaN: the clock was not read at acquire, nor is it here
  if t0 == t0 then t1 = now() end
  record(self, st, permit, outcome, t1 - t0, t1)
  if ok then return ... end
  error(r1, 0)
end

local function open_message(st, wait)
  local s = api.breaker_state(st.slot)
  if s == FORCED_OPEN then return "circuit open: call rejected (forced open)" end
  if s == HALF_OPEN then
    return "circuit open: call rejected (half-open, all probe slots taken)"
  end
  return "circuit open: call rejected (retry after " .. base.seconds(wait) .. ")"
end

local check_arg = base.check_arg

-- caller(level) -> cb:call, its rejection raised at level: 2 for cb:call
-- (the caller's line in front), 0 for a policy's breaker layer (whose
-- caller is fusebox's own code: the message alone, the same text).
local function caller(level)
  return function(self, fn, ...)
    local st = state_of(self, "call")
    check_arg(fn, 1, "call", "function")
    local permit, t0 = admit(self, st, start_time(st), "call")
    if not permit then error(open_message(st, t0), level) end
    return finish(self, st, permit, t0, pcall(fn, ...))
  end
end

-- cb:call(fn, ...) -> fn's results (see the header)
breaker.call = caller(2)
M.layer_call = caller(0)

-- cb:try(fn, ...) -> fn's results, or nil, "circuit open", retry_after
function breaker:try(fn, ...)
  local st = state_of(self, "try")
  check_arg(fn, 1, "try", "function")
  local permit, t0 = admit(self, st, start_time(st), "try")
  if not permit then return nil, "circuit open", t0 end
  return finish(self, st, permit, t0, pcall(fn, ...))
end

-- cb:permit() -> token, or nil, retry_after
function breaker:permit()
  local st = state_of(self, "permit")
  local token, wait = admit(self, st, NAN, "permit")
  if token then return token end
  return nil, wait
end

local TOKEN_OUTCOMES = { [true] = SUCCESS, [false] = FAILURE, timeout = TIMEOUT, ignore = IGNORED }

-- cb:record(token, outcome [, duration]) -> true, or false if dropped
function breaker:record(token, ok, duration)
  local st = state_of(self, "record")
  -- comparisons first: a trace pays a hash lookup for TOKEN_OUTCOMES[ok]
  local outcome = ok == true and SUCCESS or ok == false and FAILURE or TOKEN_OUTCOMES[ok]
  if not outcome then
    argerror(2, "record", "outcome must be true, false, 'timeout' or 'ignore', got " .. tostring(ok))
  end
  if duration == nil then
    duration = 0
  elseif type(duration) ~= "number" or not (duration >= 0) then
    argerror(3, "record", "duration must be a number >= 0, got " .. tostring(duration))
  end
  if type(token) ~= "number" then
    argerror(1, "record", "token must be a number, got " .. type(token))
  end
  local rc = record(self, st, token, outcome, duration, NAN)
  if rc == EINVAL then argerror(1, "record", "not a token of this breaker: " .. token) end
  return rc == 0
end

-- Permits: one small table each, methods on a shared metatable; an array
-- {cb, st, token, t0} allocates in about 50 ns against 85 for named fields.
local permit_methods = {}
local permit_mt = { __index = permit_methods }

-- cb:acquire() -> permit, or nil, retry_after
function breaker:acquire()
  local st = state_of(self, "acquire")
  local t0 = now() -- a permit's duration defaults to the time since
  local token, wait = admit(self, st, t0, "acquire")
  if not token then return nil, wait end
  return setmetatable({ self, st, token, t0 }, permit_mt)
end

local function settle(p, outcome, duration, fname)
  base.check_self(p, permit_mt, "fusebox.permit", fname, 1)
  local token = p[3]
  if not token then error(format("%s: permit already used", fname), 3) end
  local t = now()
  if duration == nil then
    duration = t - p[4]
  elseif type(duration) ~= "number" or not (duration >= 0) then
    error(format("bad argument #1 to '%s' (duration must be a number >= 0, got %s)",
      fname, tostring(duration)), 3)
  end
  p[3] = false
  return record(p[1], p[2], token, outcome, duration, t) == 0
end

-- Not tail calls, so that settle's errors name the caller's line.
function permit_methods:success(duration)
  local kept = settle(self, SUCCESS, duration, "success")
  return kept
end
function permit_methods:failure(duration)
  local kept = settle(self, FAILURE, duration, "failure")
  return kept
end
function permit_methods:timeout(duration)
  local kept = settle(self, TIMEOUT, duration, "timeout")
  return kept
end
function permit_methods:ignore()
  local kept = settle(self, IGNORED, 0, "ignore")
  return kept
end

local function control(name, fn)
  breaker[name] = function(self)
    local st = state_of(self, name)
    if fn(st.slot, now()) == ECLOSED then closed_under(name) end
    if api.breaker_transitions(st.slot) ~= st.seen then announce(self, st) end
    return self
  end
end
control("force_open", api.breaker_force_open)
control("disable", api.breaker_disable)
control("reset", api.breaker_reset)

local properties = {
  state = function(st)
    local s = api.breaker_state(st.slot)
    if s == ECLOSED then base.closed("state", "breaker", 3) end
    return STATE_NAMES[s]
  end,
  name = function(st) return st.name end,
}

breaker_mt.__index = function(self, key)
  local m = breaker[key]
  if m ~= nil then return m end
  local prop = properties[key]
  if prop then return prop(state_of(self, key)) end
  return nil
end
breaker_mt.__newindex = base.read_only("fusebox.breaker",
  "change the state with cb:force_open(), cb:disable() or cb:reset()")
breaker_mt.__tostring = function(self)
  if getmetatable(self) ~= breaker_mt then return "fusebox.breaker (bad self)" end
  if ffi.cast("void **", self)[0] == nil then
    return format("fusebox.breaker closed (%p)", self)
  end
  local name = self.name
  if name then return format("fusebox.breaker '%s' %s (%p)", name, self.state, self) end
  return format("fusebox.breaker %s (%p)", self.state, self)
end

return M
