-- fusebox/host.lua -- the scheduler fusebox's waits run on: fusebox's own
-- runtime (libuv, fb.run), or a host's (nginx: fusebox.ngx installs it).
--
-- Every module that sleeps, spawns or waits (fb.sleep and friends, retry
-- backoff, fb.timeout, bulkheads, fb.health_check, fb.sim, fb.at) calls
-- these functions, never the runtime's directly, so one choice, made once
-- with fb.host(scheduler), moves all of them. The modules built on
-- fusebox's own sockets (fb.tcp, fb.http, fusebox serve, the etcd
-- backend) run on fusebox's runtime alone, and refuse elsewhere (io).
-- A scheduler is a table:
--
--   name                  what errors call it ("fusebox", "nginx")
--   sleep(s)              suspends the running coroutine s seconds
--   spawn(fn, ...)        runs fn(...) beside the caller; -> a handle (the
--                         coroutine, as coroutine.running() names it in fn)
--   daemon(fn, ...)       runs fn(...) in the background, outliving the
--                         caller (nginx: a timer); -> a handle
--   wait(what, timeout)   parks the running coroutine until wake (-> true,
--                         the waker's values) or timeout seconds (-> false;
--                         nil: none); what names it in errors
--   wake(handle, ...)     -> true if handle was parked in wait (it resumes
--                         with true, ...), else false, doing nothing
--   abandon(handle)       its caller no longer wants spawn's result (a
--                         timeout): -> true if the host stopped it (nginx
--                         kills the light thread), false if it runs on
--   exiting()             -> true when background loops must end (nginx:
--                         the worker is shutting down)
--   primary()             -> true in the one process that runs work that
--                         must not be multiplied by the processes (nginx:
--                         worker 0 runs the health checks)
--   run(fn, opts, ...)    fb.run: fusebox's runtime runs it; a host whose
--                         scheduler is its own event loop refuses
--   io(fname)             -> nil where fusebox's own sockets (fb.tcp,
--                         fb.http) work, else the message why fname cannot
--   probe(kind, inst, path, timeout, tls) -> whether inst answered a
--                         health check ("tcp": a connect; "http": GET path,
--                         2xx/3xx), over TLS when tls (fb.tcp's options)
--
-- The clock is not here: it is the runtime's (fb.now, in C), shared by
-- every scheduler.

local core = select(2, ...)
local format, type, error, pairs, tostring = string.format, type, error, pairs, tostring

local M = {}

-- fusebox's own runtime: the C functions of src/lua_fusebox.c.
local runtime = {
  name = "fusebox",
  sleep = core.sleep,
  spawn = core.spawn,
  daemon = core.daemon,
  wait = core.wait,
  wake = core.wake,
  abandon = function() return false end, -- a coroutine cannot be killed
  exiting = function() return false end,
  primary = function() return true end,
  io = function() end,
}

-- fb.run: core.run hands a failed run's error back for Lua to raise (its
-- comment in src/lua_fusebox.c says why). Its argument errors, raised in
-- C, name this file's line: they are raised again at the caller's (level
-- 2: fb.run tail-calls this).
local here = "^" .. debug.getinfo(1, "S").short_src:gsub("%p", "%%%0") .. ":%d+: "

local function call_run(...)
  local ok, err = core.run(...) -- not a tail call: C names it 'run'
  return ok, err
end

function runtime.run(fn, ...)
  local called, ok, err = pcall(call_run, fn, ...)
  if not called then error((tostring(ok):gsub(here, "")), 2) end
  if not ok then error(err, 0) end
end

function runtime.probe(kind, inst, path, timeout, tls)
  if kind == "tcp" then
    local s = core.import("fusebox.tcp").connect(inst.host, inst.port, { timeout = timeout, tls = tls })
    if not s then return false end
    s:close()
    return true
  end
  local status = core.import("fusebox.http").request { instance = inst, path = path,
    timeout = timeout, tls = tls }
  return status ~= nil and status >= 200 and status < 400
end
M.runtime = runtime

local FIELDS = { "sleep", "spawn", "daemon", "wait", "wake", "abandon", "exiting", "primary",
  "run", "io", "probe" }
local KNOWN = { name = true }
for i = 1, #FIELDS do KNOWN[FIELDS[i]] = true end

local current = runtime

-- The dispatchers every module and fb.* hold: each looks the current
-- scheduler up at the call, so a scheduler installed after a module
-- captured them still takes effect. A Lua frame, not a C one, between
-- the caller and the scheduler: a host's sleep (ngx.sleep) yields, and
-- no coroutine may yield across a C call.
function M.sleep(s) return current.sleep(s) end
function M.spawn(fn, ...) return current.spawn(fn, ...) end
function M.daemon(fn, ...) return current.daemon(fn, ...) end
function M.wait(what, timeout) return current.wait(what, timeout) end
function M.wake(co, ...) return current.wake(co, ...) end
function M.abandon(co) return current.abandon(co) end
function M.exiting() return current.exiting() end
function M.primary() return current.primary() end
function M.run(fn, ...) return current.run(fn, ...) end
function M.io(fname) return current.io(fname) end
function M.probe(kind, inst, path, timeout, tls) return current.probe(kind, inst, path, timeout, tls) end

-- fb.host([scheduler]) -> the scheduler in use (before the change): with
-- a table, installs it (every function of the interface above, and a
-- name); with "fusebox", goes back to fusebox's runtime. Refused while
-- fusebox's runtime runs: coroutines it parked would be woken by another.
function M.host(s)
  if s == nil then return current end
  if s == "fusebox" then s = runtime end
  if type(s) ~= "table" then
    error("bad argument #1 to 'host' (scheduler table or \"fusebox\" expected, got "
      .. type(s) .. ")", 2)
  end
  if type(s.name) ~= "string" then
    error("bad argument #1 to 'host' (name must be a string, got " .. type(s.name) .. ")", 2)
  end
  for i = 1, #FIELDS do
    if type(s[FIELDS[i]]) ~= "function" then
      error(format("bad argument #1 to 'host' (%s must be a function, got %s)", FIELDS[i],
        type(s[FIELDS[i]])), 2)
    end
  end
  for k in pairs(s) do
    if not KNOWN[k] then
      error(format("bad argument #1 to 'host' (unknown field '%s')", tostring(k)), 2)
    end
  end
  if core.running() and s ~= current then
    error("host: cannot change the scheduler inside a run", 2)
  end
  local previous = current
  current = s
  return previous
end

return M
