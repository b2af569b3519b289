-- fusebox/pool.lua -- the idle keep-alive connections of fb.http's
-- client, per key (scheme, host, port and, for TLS, what the handshake
-- depended on: see http.lua's pool_key), so a request reuses one instead
-- of paying a connect.
--
-- A pool holds only idle connections: a request takes one out (get) and
-- gives it back (put) only when its response was read to the end and
-- both sides meant to keep it. Bounds, each a default in http.lua:
--   max_idle_per_host  idle connections per key (a newcomer beyond is closed)
--   max_idle           idle connections in all (the oldest one makes room)
--   idle_timeout       seconds a connection may idle (then closed)
--   max_requests       requests one connection carries (the caller counts)
-- Each key's connections are a stack, the most recently used on top: the
-- one taken is the warmest, and those left idle sink and expire. An idle
-- socket is parked (sock:_park, src/lua_tcp.c): whatever its peer sends
-- while it idles -- its end, stray bytes -- is seen when it is taken out,
-- and such a connection is closed, never handed to a request. Expired
-- connections are closed by a sweeper daemon, so a quiet process does
-- not keep them open, and when a request finds one (then the sweeper is
-- gone: its run ended, another starts).

local core = select(2, ...)
local base = core.import "fusebox.base"
local now, check_self = base.now, base.check_self
local run_id, rt = base.api.run_id, require("ffi").cast("const fb_runtime *", core.rt)
local pairs, max, huge, wait, wake, daemon = pairs, math.max, math.huge, core.wait, core.wake, core.daemon

local M = {}

local Pool = {}
Pool.__index = Pool
M.Pool = Pool

-- new{max_idle_per_host=, max_idle=, idle_timeout=, max_requests=} ->
-- pool; every field given (http.lua checks them and fills defaults).
function M.new(o)
  return setmetatable({
    max_idle_per_host = o.max_idle_per_host, max_idle = o.max_idle,
    idle_timeout = o.idle_timeout, max_requests = o.max_requests,
    hosts = {},  -- key -> stack of idle conns, oldest first
    n = 0,       -- idle conns in all
    sweeper = nil, sweep_at = huge, -- when the sweeper looks next
    sweeper_run = -1, -- the run it belongs to (base.api.run_id)
    opened = 0, reused = 0, retried = 0, -- counted by http.lua
  }, Pool)
end

-- Closes stack[1..k] (the k oldest) and shifts the rest down.
local function drop_oldest(p, stack, k)
  local n = #stack
  for i = 1, k do stack[i].sock:close() end
  for i = 1, n - k do stack[i] = stack[i + k] end
  for i = n - k + 1, n do stack[i] = nil end
  p.n = p.n - k
end

-- Closes every connection expired at t; returns the earliest expiry of
-- those left, or nil when none is.
local function sweep(p, t)
  local next_at
  for key, stack in pairs(p.hosts) do
    local k = 0
    while stack[k + 1] and stack[k + 1].expires <= t do k = k + 1 end
    if k > 0 then drop_oldest(p, stack, k) end
    if stack[1] == nil then
      p.hosts[key] = nil
    elseif next_at == nil or stack[1].expires < next_at then
      next_at = stack[1].expires
    end
  end
  return next_at
end

-- The pool's daemon (the run does not wait for it; it ends with the
-- run): closes what expired, then sleeps until the earliest expiry left
-- (p.sweep_at), or until a put wakes it for an earlier one. Finding
-- nothing left it sleeps until woken, so that a run whose coroutines are
-- blocked forever ends (nothing else can wake them) -- but only the
-- second time in a row: the first, just after a wake, it looks again
-- idle_timeout later. A busy pool is often empty for an instant (its one
-- connection out with a request) when the sweeper looks, and if that
-- always sent it to sleep until woken, every put would wake it: a
-- coroutine switch a request. One at a time: a sweeper that is no
-- longer p.sweeper ends when it next runs.
local function sweeper(p)
  local me = coroutine.running()
  local woken = true -- its start counts as a wake
  while p.sweeper == me do
    local t = now()
    local at = sweep(p, t)
    if at == nil and woken then at = t + p.idle_timeout end
    p.sweep_at = at or huge
    woken = wait("http pool idle", at and max(at - now(), 0.001) or nil)
  end
end

-- Wakes the sweeper to look now, or starts one when there is none in
-- this run (a run drops its daemons when it ends) or when force says the
-- one there is not sweeping. Where the runtime has no daemons (a host's
-- scheduler) the expired are closed lazily alone.
local function ensure_sweeper(p, t, force)
  if not daemon then return end
  p.sweep_at = t
  if p.sweeper and not force and wake(p.sweeper) then return end
  p.sweeper, p.sweeper_run = daemon(sweeper, p), run_id(rt)
end

-- pool:get(key) -> an idle connection of key, unparked, or nil. The
-- connections under an expired one are older still: all closed.
function Pool:get(key)
  local stack = self.hosts[key]
  if not stack then return nil end
  local t = now()
  local n = #stack
  while n > 0 do
    local c = stack[n]
    stack[n] = nil
    self.n = self.n - 1
    if c.expires <= t then
      c.sock:close()
      drop_oldest(self, stack, n - 1)
      ensure_sweeper(self, t, true) -- an expired one was still here: no one sweeps
      break
    end
    if c.sock:_unpark() then
      if n == 1 then self.hosts[key] = nil end
      return c
    end
    c.sock:close() -- its peer closed it, or sent what no request asked for
    n = n - 1
  end
  self.hosts[key] = nil
  return nil
end

-- The key whose oldest idle connection is the oldest of all.
local function oldest_key(p)
  local key, at
  for k, stack in pairs(p.hosts) do
    if at == nil or stack[1].expires < at then key, at = k, stack[1].expires end
  end
  return key
end

-- pool:put(conn): conn ({sock=, key=, ...}) idles until a get takes it,
-- unless its key's stack is full (closed) or it cannot idle.
function Pool:put(c)
  local stack = self.hosts[c.key]
  if stack and #stack >= self.max_idle_per_host then c.sock:close(); return end
  if not c.sock:_park() then c.sock:close(); return end
  if self.n >= self.max_idle then
    local k = oldest_key(self)
    local s = self.hosts[k]
    drop_oldest(self, s, 1)
    if s[1] == nil then self.hosts[k] = nil end
    stack = self.hosts[c.key]
  end
  if not stack then
    stack = {}
    self.hosts[c.key] = stack
  end
  local t = now()
  c.expires = t + self.idle_timeout
  stack[#stack + 1] = c
  self.n = self.n + 1
  -- The sweeper looks at sweep_at: early enough, unless it is gone (its
  -- run ended) or this one expires first.
  local gone = self.sweeper_run ~= run_id(rt)
  if gone or c.expires < self.sweep_at then ensure_sweeper(self, t, gone) end
end

-- pool:close(): closes every idle connection (requests under way give
-- theirs back to a pool that is empty again, not closed for good).
function Pool:close()
  check_self(self, Pool, "fusebox.http_pool", "close")
  for key, stack in pairs(self.hosts) do
    for i = 1, #stack do stack[i].sock:close() end
    self.hosts[key] = nil
  end
  self.n = 0
end

-- pool:stats() -> {idle=, hosts=, opened=, reused=, retried=}
function Pool:stats()
  check_self(self, Pool, "fusebox.http_pool", "stats")
  local hosts = 0
  for _ in pairs(self.hosts) do hosts = hosts + 1 end
  return { idle = self.n, hosts = hosts, opened = self.opened, reused = self.reused, retried = self.retried }
end

return M
