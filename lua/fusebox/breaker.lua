-- fusebox/breaker.lua -- breaker methods written in Lua: call(), on()
-- and the state property. call() must be Lua so the guarded function may
-- sleep (yield) inside it; acquire and record go through the FFI table.

local core = select(2, ...)
local base = core.import "fusebox.base"
local events = core.import "fusebox.events"
local api, now, argerror = base.api, base.now, base.argerror
local format, type, error, pcall, xpcall = string.format, type, error, pcall, xpcall
local traceback = debug.traceback

local breaker_mt = core.meta.breaker
local breaker = breaker_mt.methods
local transition = breaker.transition
local STATE_NAMES = { [0] = "CLOSED", "OPEN", "HALF_OPEN" }
local SUCCESS, FAILURE = 0, 1
local EVENTS = { state_change = true }

local M = {}

M.state = base.object_state(breaker_mt, "breaker", function(_, ptr)
  return {
    ptr = ptr,
    seen = 0,       -- state changes already announced to listeners
    listeners = {}, -- event -> array of functions
  }
end)

-- cb:on(event, fn): fn(from, to, now) after each state change
function breaker:on(event, fn)
  local st = M.state(self, "on")
  if not EVENTS[event] then
    argerror(1, "on", format("unknown event '%s' (known: state_change)", tostring(event)))
  end
  if type(fn) ~= "function" then
    argerror(2, "on", "listener must be a function, got " .. type(fn))
  end
  local list = st.listeners[event] or {}
  list[#list + 1] = fn
  st.listeners[event] = list
  return self
end

-- Announces the state changes the core made since the last announcement.
-- The breaker is consistent by now, so a listener may call into it; one
-- that raises is reported and the others still run.
local function announce(self, st)
  local total = api.breaker_transitions(st.ptr)
  local list = st.listeners.state_change
  while st.seen < total do
    local from, to, at = transition(self, st.seen)
    st.seen = st.seen + 1
    if events.on() then events.emit("state_change", { breaker = events.id(self), from = from, to = to }) end
    if list and from then
      for i = 1, #list do
        local ok, err = xpcall(list[i], traceback, from, to, at)
        if not ok then core.report("state_change listener failed", tostring(err)) end
      end
    end
  end
end

local function finish(self, st, permit, t0, ok, ...)
  local t1 = now()
  api.breaker_record(st.ptr, permit, ok and SUCCESS or FAILURE, t1 - t0, t1)
  if api.breaker_transitions(st.ptr) ~= st.seen then announce(self, st) end
  if ok then return ... end
  error((...), 0)
end

-- cb:call(fn, ...) -> fn's results; raises fn's error after recording the
-- failure, or "circuit open" without calling fn while the breaker is open.
function breaker:call(fn, ...)
  local st = M.state(self, "call")
  if type(fn) ~= "function" then
    argerror(1, "call", "function expected, got " .. type(fn))
  end
  local ptr = st.ptr
  local t0 = now()
  local permit = api.breaker_acquire(ptr, t0)
  if api.breaker_transitions(ptr) ~= st.seen then announce(self, st) end
  if permit < 0 then
    if events.on() then events.emit("reject", { breaker = events.id(self) }) end
    error(format("circuit open: call rejected (retry after %.3fs)",
      api.breaker_retry_after(ptr, t0)), 2)
  end
  return finish(self, st, permit, t0, pcall(fn, ...))
end

M.announce = announce

local properties = {
  state = function(st) return STATE_NAMES[api.breaker_state(st.ptr)] end,
}

breaker_mt.__index = function(self, key)
  local m = breaker[key]
  if m ~= nil then return m end
  local prop = properties[key]
  if prop then return prop(M.state(self, key)) end
  return nil
end
breaker_mt.__tostring = function(self)
  return format("fusebox.breaker %s (%p)", self.state, self)
end

return M
