-- fusebox/lifecycle.lua -- how a run that serves ends: fb.on_signal,
-- fb.shutdown, and the graceful shutdown SIGTERM and SIGINT start.
--
-- A graceful shutdown stops every fb.http.serve server from accepting,
-- calls each server's on_shutdown (fb.serve_registry answers its parked
-- blocking queries there, with the current state), closes the
-- connections waiting between requests, lets the requests in flight
-- finish (their answers carry Connection: close), and ends the run once
-- no connection is left: fb.run returns and the CLI exits 0, whatever
-- other coroutines were still going (they are dropped). If the deadline
-- passes first, the connections still open are closed and the run fails
-- with one line saying how many were cut off (the CLI exits 1).
--
-- In a run made with shutdown_on_signals (fusebox run and serve make
-- theirs so) that has a server keeping it going (not background=true),
-- SIGTERM and SIGINT start one, unless the script watches them itself
-- (fb.on_signal); another SIGTERM or SIGINT while one is under way ends
-- the process at once, killed by that signal. A run that serves nothing
-- leaves both signals alone: they kill it, as they would any process.
-- (Not by default for fb.run in a plain luajit: a test harness's
-- SIGTERM must end the harness, not one run of it.)
--
-- Virtual time: fb.on_signal raises there, as real I/O does. A signal
-- arrives at a wall-clock moment no virtual clock can place, so a run
-- that waited for one would not replay. fb.shutdown works in both: with
-- no server (none can exist on a virtual clock) it ends the run at once.

local core = select(2, ...)
local base = core.import "fusebox.base"
local argerror, now = base.argerror, base.now
local format, type, tostring, pairs = string.format, type, tostring, pairs
local stderr = io.stderr

local M = {}

local KNOWN = {}
for _, name in ipairs(core.signal_names) do KNOWN[name] = true end
local KNOWN_LIST = table.concat(core.signal_names, ", ")
local GRACEFUL = { SIGTERM = true, SIGINT = true }

local handlers = {} -- name -> fn, from fb.on_signal
local watching = {} -- name -> { watch =, fn = } while the signal is watched
local servers = setmetatable({}, { __mode = "k" }) -- what a shutdown drains
local nserving = 0  -- of them, those that keep a run going and still accept
local current = nil -- the shutdown under way: { run =, deadline =, waiter = }

-- The shutdown under way in this run, or nil (done, or from an earlier
-- run of the same Lua state).
local function under_way()
  if current and not current.done and current.run == core.run_info() then return current end
  return nil
end

local on_graceful_signal

-- Makes what watches signal `name` match what should: the script's
-- handler, else the graceful shutdown while something serves (or one is
-- under way, for the second signal), else nothing, so the signal does
-- what it does to any process.
local function refresh(name)
  local _, _, wanted = core.run_info()
  local fn = handlers[name]
  if not fn and GRACEFUL[name] and wanted and (nserving > 0 or under_way()) then
    fn = on_graceful_signal
  end
  local w = watching[name]
  if w and w.fn == fn then return end
  if w then w.watch:close(); watching[name] = nil end
  if fn then watching[name] = { watch = core.signal_watch(name, fn), fn = fn } end
end

local function refresh_graceful()
  for name in pairs(GRACEFUL) do refresh(name) end
end

local function in_flight()
  local n = 0
  for srv in pairs(servers) do n = n + srv.nconns end
  return n
end

-- The shutdown's own coroutine: waits for the connections to end (each
-- end wakes it), or for the deadline.
local function drain(st, timeout)
  while in_flight() > 0 do
    local left = st.deadline - now()
    if left <= 0 then break end
    st.waiter = coroutine.running()
    core.wait("shutdown: requests in flight", left < core.max_sleep and left or core.max_sleep)
    st.waiter = nil
  end
  local open = in_flight()
  for srv in pairs(servers) do srv:close() end
  st.done = true
  refresh_graceful()
  if open == 0 then return core.stop_run() end
  core.stop_run(format("fusebox: shutdown: deadline of %gs passed with %d connection(s) "
    .. "still open; closed them", timeout, open))
end

local SHUTDOWN_OPTIONS = { timeout = true }

-- fb.shutdown([{timeout = the run's shutdown_timeout (10 s)}]) -> true, or
-- false when one is under way already: starts a graceful shutdown (the
-- header says what it does) and returns at once; the run ends when it
-- is done. signal: the name of the signal that started it, for its line.
function M.shutdown(opts, signal)
  if opts ~= nil and type(opts) ~= "table" then
    argerror(1, "shutdown", "options must be a table, got " .. type(opts))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not SHUTDOWN_OPTIONS[k] then argerror(1, "shutdown", format("unknown option '%s'", tostring(k))) end
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or not (t >= 0) or t > core.max_sleep) then
    argerror(1, "shutdown", format("timeout must be a number of seconds in 0..%s, got %s",
      core.format_seconds(core.max_sleep), tostring(t)))
  end
  if under_way() then return false end
  local run, default_timeout = core.run_info()
  local timeout = t or default_timeout
  local st = { run = run, deadline = now() + timeout }
  current = st
  for srv in pairs(servers) do srv:shutdown() end
  if signal then
    stderr:write(format("fusebox: %s: shutting down: no new connections, %d open, deadline %gs "
      .. "(another signal exits at once)\n", signal, in_flight(), timeout))
    stderr:flush()
  end
  core.spawn(drain, st, timeout)
  return true
end

on_graceful_signal = function(name)
  local _, _, wanted = core.run_info()
  if not wanted then core.signal_exit(name) end -- a watch left by an earlier run
  if under_way() then
    stderr:write(format("fusebox: second %s during shutdown: exiting at once\n", name))
    core.signal_exit(name)
  end
  M.shutdown(nil, name)
end

-- fb.on_signal(name, fn | nil) -> the previous handler: fn(name) runs as
-- a new coroutine each time the process gets signal name ("SIGTERM",
-- ...), in place of what fusebox would do (the graceful shutdown for
-- SIGTERM and SIGINT while serving, else the signal's default); nil
-- puts that back.
function M.on_signal(name, fn)
  if core.virtual_time() then
    error("on_signal is not available under --virtual-time (a signal's moment cannot replay)", 2)
  end
  if type(name) ~= "string" or not KNOWN[name] then
    argerror(1, "on_signal", format("signal must be one of %s, got %s", KNOWN_LIST,
      type(name) == "string" and format("'%s'", name) or type(name)))
  end
  if fn ~= nil and type(fn) ~= "function" then
    argerror(2, "on_signal", "handler must be a function or nil, got " .. type(fn))
  end
  local previous = handlers[name]
  handlers[name] = fn
  refresh(name)
  return previous
end

-- The HTTP server's side (fusebox.http): a server joins when it starts
-- listening (serving: it keeps the run going), stops serving when it
-- shuts down, leaves when it closes, and reports each connection's end.
function M.add(srv, serving)
  servers[srv] = true
  srv.serving = serving
  if serving then
    nserving = nserving + 1
    refresh_graceful()
  end
  if under_way() then srv:shutdown() end
end

function M.stop_serving(srv)
  if srv.serving then
    srv.serving = false
    nserving = nserving - 1
    refresh_graceful()
  end
end

function M.remove(srv)
  M.stop_serving(srv)
  servers[srv] = nil
end

function M.connection_ended()
  local st = under_way()
  if st and st.waiter then core.wake(st.waiter) end
end

return M
