-- fusebox/ngx_host.lua -- nginx's scheduler for fusebox (the interface in
-- fusebox/host.lua), installed by require "fusebox.ngx" inside nginx:
-- fb.sleep, fb.spawn, fb.wait and fb.wake, and everything built on them
-- (retry backoff, fb.timeout, bulkheads, fb.health_check), run on
-- lua-nginx-module's own primitives, so a request handler or a timer that
-- waits yields to nginx's event loop instead of blocking the worker:
--
--   sleep        ngx.sleep
--   spawn        ngx.thread.spawn where light threads run (rewrite,
--                access, content, timers); in init_worker a timer, as
--                daemon; refused where nothing can wait (log, balancer)
--   daemon       ngx.timer.at(0, ...): outlives the request (a timer's
--                fake request), the only way in init_worker
--   wait, wake   one ngx.semaphore per waiting coroutine, the waker's
--                values beside it; a wait ends (timed out) within a second
--                of the worker starting to exit
--   abandon      ngx.thread.kill: a timed-out call's light thread is
--                killed, or the request would not end before it does
--   exiting      ngx.worker.exiting()
--   primary      worker 0 (ngx.worker.id()): health checks run there only
--   run          refused: fb.run would run fusebox's libuv loop inside
--                the worker, blocking every other request of it
--   io           refused: nginx does the I/O (fb.tcp and fb.http need
--                fusebox's loop)
--   probe        a cosocket connect ("tcp"), or an HTTP/1.0 GET over one
--                ("http": 2xx or 3xx is healthy)
--
-- The clock stays fusebox's (CLOCK_MONOTONIC, the same in every worker):
-- ngx.now() is the wall clock, cached per event loop turn, to the
-- millisecond, and may step back.

local core = select(2, ...)
local base = core.import "fusebox.base"
local format, type, error, select, unpack, tostring = string.format, type, error, select, unpack, tostring
local running, xpcall, traceback = coroutine.running, xpcall, debug.traceback
local now = base.now

local M = {}

local max_sleep = core.max_sleep
-- A wait is made of semaphore waits of at most a second (ngx.semaphore
-- takes an int of milliseconds anyway): between them a wait sees the
-- worker shutting down and ends as timed out, so a background loop (a
-- health check waiting out its interval) lets the worker exit within a
-- second of `nginx -s reload` or `quit`, not at its next round.
local WAIT_CHUNK = 1

local function check_seconds(s, n, fname, what)
  if type(s) ~= "number" or not (s >= 0 and s <= max_sleep) then
    error(format("bad argument #%d to '%s' (%s must be a number in 0..%d, got %s)", n, fname,
      what, max_sleep, tostring(s)), 3)
  end
end

-- The phases where ngx.thread.spawn, ngx.sleep and semaphore waits work.
local THREADS = { rewrite = true, server_rewrite = true, access = true, content = true,
  timer = true, ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true }

-- Raises at the caller's caller unless the running code may be suspended.
local function check_yieldable(fname)
  local phase = ngx.get_phase()
  if not THREADS[phase] then
    error(format("%s: nginx cannot suspend Lua in its %s phase; wait in a request handler "
      .. "(rewrite, access, content) or a timer (fb.daemon)", fname, phase), 3)
  end
end

function M.sleep(s)
  if s == nil then s = 0 end
  check_seconds(s, 1, "sleep", "seconds")
  check_yieldable("sleep")
  ngx.sleep(s)
end

-- A background coroutine's handle: a table, as the timer's coroutine does
-- not exist yet; h.co while it runs.
local function background_main(premature, h, fn, ...)
  if premature then return end -- the worker is exiting
  h.co = running()
  local ok, err = xpcall(fn, traceback, ...)
  h.co = nil
  if not ok then ngx.log(ngx.ERR, "fusebox: background coroutine failed: ", tostring(err)) end
end

function M.daemon(fn, ...)
  base.check_arg(fn, 1, "daemon", "function")
  local h = {}
  local ok, err = ngx.timer.at(0, background_main, h, fn, ...)
  if not ok then
    error(format("daemon: nginx refused a timer (%s; see lua_max_pending_timers)", tostring(err)), 2)
  end
  return h
end

-- In init_worker (a health check's loop) a coroutine can only be a timer;
-- in the other phases that cannot suspend (log, balancer, filters) a
-- child would outlive what spawned it unseen: fb.daemon says so.
function M.spawn(fn, ...)
  base.check_arg(fn, 1, "spawn", "function")
  local phase = ngx.get_phase()
  if phase == "init_worker" then return M.daemon(fn, ...) end
  if not THREADS[phase] then
    error(format("spawn: nginx runs no light thread in its %s phase; use fb.daemon for "
      .. "background work", phase), 2)
  end
  local co, err = ngx.thread.spawn(fn, ...)
  if not co then error("spawn: " .. tostring(err), 2) end
  return co
end

-- coroutine -> its wait: { sema, waiting, woken, values }
local waits = setmetatable({}, { __mode = "k" })
local semaphore

local function pack(...) return { n = select("#", ...), ... } end

function M.wait(what, timeout)
  if what ~= nil and type(what) ~= "string" then
    error("bad argument #1 to 'wait' (string expected, got " .. type(what) .. ")", 2)
  end
  if timeout ~= nil then check_seconds(timeout, 2, "wait", "timeout") end
  check_yieldable("wait")
  semaphore = semaphore or require "ngx.semaphore"
  local co = running()
  local w = waits[co]
  if not w then
    w = { sema = semaphore.new(0) }
    waits[co] = w
  end
  w.waiting, w.woken, w.values = true, false, nil
  local deadline = timeout and now() + timeout
  while true do
    local left = deadline and deadline - now() or WAIT_CHUNK
    if left > WAIT_CHUNK then left = WAIT_CHUNK end
    local ok, err = w.sema:wait(left > 0 and left or 0)
    if ok or w.woken then
      -- woken: a post that came as the wait timed out is still counted
      if not ok then w.sema:wait(0) end
      w.waiting = false
      local v = w.values
      w.values = nil
      if v then return true, unpack(v, 1, v.n) end
      return true
    end
    if err ~= "timeout" then
      w.waiting = false
      error(format("wait: %s (waiting on %s)", tostring(err), what or "(unnamed)"), 2)
    end
    if (deadline and now() >= deadline) or ngx.worker.exiting() then
      w.waiting = false
      return false
    end
  end
end

function M.wake(h, ...)
  local co = type(h) == "table" and h.co or h
  local w = co and waits[co]
  if not w or not w.waiting or w.woken then return false end
  -- Gone without a word (ngx.thread.kill, ngx.exit in another light
  -- thread): nginx took it off its semaphore, whose count is then no
  -- longer negative, and a bulkhead must not hand a slot to it.
  -- coroutine.status cannot tell from another request ("running").
  if w.sema:count() >= 0 then
    waits[co] = nil
    return false
  end
  w.woken = true
  if select("#", ...) > 0 then w.values = pack(...) end
  w.sema:post(1)
  return true
end

function M.abandon(h)
  if type(h) ~= "thread" then return false end
  local ok = ngx.thread.kill(h)
  if ok then waits[h] = nil end
  return ok == true
end

function M.exiting() return ngx.worker.exiting() end

function M.primary()
  local id = ngx.worker.id()
  return id == nil or id == 0
end

function M.run()
  error("run: fusebox.ngx runs fusebox on nginx's scheduler, and fb.run would block the "
    .. "nginx worker: call the policy in the handler itself (fb.sleep, fb.spawn and the "
    .. "policies yield to nginx), or start background work with fb.daemon", 2)
end

function M.io(fname)
  return fname .. " is not available inside nginx: nginx does the I/O (proxy_pass, "
    .. "ngx.socket.tcp or a cosocket library such as lua-resty-http) and fusebox decides "
    .. "and records (fusebox.ngx)"
end

function M.probe(kind, inst, path, timeout, tls)
  local sock = ngx.socket.tcp()
  local ms = timeout * 1000
  sock:settimeouts(ms, ms, ms)
  local ok = sock:connect(inst.host, inst.port)
  if ok and tls then -- verified against lua_ssl_trusted_certificate
    local o = type(tls) == "table" and tls or {}
    ok = sock:sslhandshake(nil, o.server_name or inst.host, o.verify ~= false)
  end
  if not ok then return false end
  if kind == "tcp" then
    sock:close()
    return true
  end
  local host = inst.host:find(":", 1, true) and "[" .. inst.host .. "]" or inst.host
  local sent = sock:send(format("GET %s HTTP/1.0\r\nHost: %s:%d\r\nUser-Agent: fusebox-health\r\n\r\n",
    path, host, inst.port))
  local line = sent and sock:receive("*l")
  sock:close()
  local status = line and tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
  return status ~= nil and status >= 200 and status < 400
end

M.name = "nginx"

return M
