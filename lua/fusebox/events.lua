-- fusebox/events.lua -- the Lua side of the event log.
--
-- Emitting costs a C call (and a table, for emit), so callers check on()
-- first: one load of the runtime's flag through the FFI, no call.

local core = select(2, ...)
local base = core.import "fusebox.base"
local ffi = require "ffi"
local api = base.api
local rt = ffi.cast("const fb_runtime *", core.rt)

local M = {}

-- on() -> true while a run writes events or keeps a summary
local flag = api.events_flag(rt)
function M.on()
  return flag[0] ~= 0
end

-- logged() -> true while a run writes its events to a file. Without one,
-- only the summary and a host's tap (fusebox compare's aggregation) read
-- them, and they read call_end, not call_start: a kind only a file needs
-- is emitted under logged(), so a compare run skips a third of its events.
function M.logged()
  return flag[0] == 2
end

-- emit(kind, fields): one event {t, kind, fields...}; a no-op with no sink
M.emit = core.emit

-- put(kind, name, value, ...): emit with its fields as name, value pairs
-- (a nil value leaves its field out), for the hot paths: no table made
M.put = core.put

-- The fixed-field events of fb.sim's calls and requests: what put logs
-- with these fields, through the FFI (src/lua_events.c), with no Lua
-- value to check or sort and no C function to stop a trace. Strings or
-- nil (a nil leaves its field out); call and latency numbers.
local sink = ffi.cast("fb_runtime *", core.rt)
local events_call_start, events_call_end = api.events_call_start, api.events_call_end
local events_request = api.events_request

-- call_start(service, call): {call, service}
function M.call_start(service, call)
  events_call_start(sink, service, call)
end

-- call_end(service, call, outcome, error, late, result, latency):
-- {call, error, late (true, or left out), latency, outcome, result, service}
function M.call_end(service, call, outcome, err, late, result, latency)
  events_call_end(sink, service, call, outcome, err, late and 1 or 0, result, latency)
end

-- request(outcome, latency, rejection): {latency, outcome, rejection}
function M.request(outcome, latency, rejection)
  events_request(sink, outcome, latency, rejection)
end

local ids, last_id, ids_run = setmetatable({}, { __mode = "k" }), 0, -1

-- id(obj) -> a small number naming obj in events, in order of first use
-- in the current run (so two runs in one process log alike)
function M.id(obj)
  local run = api.run_id(rt)
  if run ~= ids_run then
    ids, last_id, ids_run = setmetatable({}, { __mode = "k" }), 0, run
  end
  local id = ids[obj]
  if not id then
    last_id = last_id + 1
    id = last_id
    ids[obj] = id
  end
  return id
end

return M
