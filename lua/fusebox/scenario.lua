-- fusebox/scenario.lua -- assertions over time for scenario tests.
--
-- A scenario is a script run by `fusebox test` (or `fusebox run
-- --virtual-time --seed N`); it builds a world, lets virtual time pass and
-- states what must hold when. A failed expectation raises an error that
-- says when (virtual time) and under which seed, which ends the run: the
-- runner reports it with the command that replays it.

local core = select(2, ...)
local base = core.import "fusebox.base"
local host = core.import "fusebox.host"
local events = core.import "fusebox.events"
local now = base.now
local format, error, type, tostring, select = string.format, error, type, tostring, select

local M = {}

local function failure(level, msg, ...)
  if select("#", ...) > 0 then msg = format(msg, ...) end
  if events.on() then events.emit("expect_failed", { message = msg }) end
  error(format("expectation failed at t=%s (seed %s): %s", core.format_seconds(now()),
    core.seed(), tostring(msg or "(no message)")), level + 1)
end

-- fb.expect(cond, msg, ...) -> cond; raises (msg formatted with ...) when
-- cond is false or nil
function M.expect(cond, msg, ...)
  if not cond then failure(2, msg, ...) end
  return cond
end

-- fb.at(t, fn, ...): runs fn(...) as a new coroutine at virtual time t
-- (at once if t has passed)
function M.at(t, fn, ...)
  if type(t) ~= "number" then base.argerror(1, "at", "time must be a number, got " .. type(t)) end
  if type(fn) ~= "function" then base.argerror(2, "at", "function expected, got " .. type(fn)) end
  return host.spawn(function(...)
    local wait = t - now()
    if wait > 0 then host.sleep(wait) end
    return fn(...)
  end, ...)
end

-- fb.eventually(cond, within, msg [, every]) -> the time cond() first
-- held; checks cond() every `every` seconds (default within/100) and
-- raises msg if it still fails after `within` seconds
function M.eventually(cond, within, msg, every)
  if type(cond) ~= "function" then base.argerror(1, "eventually", "function expected, got " .. type(cond)) end
  if type(within) ~= "number" or not (within >= 0) then
    base.argerror(2, "eventually", "within must be a non-negative number, got " .. tostring(within))
  end
  every = every or within / 100
  if type(every) ~= "number" or not (every > 0) then
    base.argerror(4, "eventually", "every must be a positive number, got " .. tostring(every))
  end
  local deadline = now() + within
  while true do
    if cond() then return now() end
    if now() >= deadline then failure(2, msg) end
    host.sleep(math.min(every, deadline - now()))
  end
end

return M
