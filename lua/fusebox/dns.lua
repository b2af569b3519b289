-- fusebox/dns.lua -- fb.dns: host names to addresses, for fb.tcp.connect
-- and everything on it (fb.http.request, health checks, etcd endpoints).
--
-- resolve(name) answers, in this order:
--   - an IP literal ("10.0.0.1", "::1", "[::1]") is itself;
--   - "localhost" and "*.localhost" are 127.0.0.1 then ::1, and "invalid"
--     and "*.invalid" never resolve, without asking anyone (RFC 6761 6.3,
--     6.4: a resolver must not send those to DNS);
--   - a name that is no host name (over 253 bytes, a label over 63, a
--     byte outside A-Z a-z 0-9 - _) fails, unasked;
--   - a cached answer younger than its TTL;
--   - the table given to fb.dns.hosts{...}, like /etc/hosts;
--   - the system resolver (getaddrinfo: /etc/hosts, then DNS), on libuv's
--     thread pool (src/lua_dns.c), so the loop never waits on it, within
--     its timeout; lookups of one name at once share one query.
-- Under --virtual-time the system resolver is never asked: names resolve
-- through fb.dns.hosts only, so a simulation does not depend on the
-- machine. Every answer (table or resolver) is cached for ttl seconds,
-- at most max_names of them (the oldest go first); a failure is not
-- cached. The cache starts empty at every run (its clock may be another).
-- Failures are values: nil, "resolve failed: 'name': why".

local core = select(2, ...)
local base = core.import "fusebox.base"
local argerror, now = base.argerror, base.now
local format, type, tostring, pairs, ipairs = string.format, type, tostring, pairs, ipairs
local find, sub, lower = string.find, string.sub, string.lower
local running = coroutine.running

local M = {}

local MAX_NAME = 253
local MAX_ADDRESSES = 64 -- as src/lua_dns.c keeps of an answer
local config = { ttl = 30, max_names = 1024, timeout = 5 }
local hosts = {}       -- lower-case name -> { addresses }
local cache = {}       -- lower-case name -> { addrs =, expires = }
local ncached, cache_run = 0, -1
local pending = {}     -- name -> coroutines waiting for the lookup in flight
local npending, pending_run = 0, -1
local stats = { lookups = 0, hits = 0, failures = 0 }

-- A name as an error message shows it: quoted, control bytes escaped,
-- at most 64 bytes of it.
local function shown(s)
  local cut = #s > 64 and format("... (%d bytes)", #s) or ""
  local escaped = sub(s, 1, 64):gsub("[^%w%p ]", function(c) return format("\\%d", c:byte()) end)
  return "'" .. escaped .. "'" .. cut
end

local function failed(name, why)
  return nil, format("resolve failed: %s: %s", shown(name), why)
end

-- Why s is no host name, or nil.
local function bad_name(s)
  if #s == 0 or #s > MAX_NAME then return format("a host name is 1-%d bytes, got %d", MAX_NAME, #s) end
  local at = find(s, "[^%w%-_.]")
  if at then return format("a host name has only A-Z a-z 0-9 - _ and dots, got byte %d", at) end
  local i = 1
  while i <= #s do
    local dot = find(s, ".", i, true) or #s + 1
    local n = dot - i
    if n == 0 and dot <= #s then return "a host name has no empty label" end
    if n > 63 then return format("a label is at most 63 bytes, got %d", n) end
    i = dot + 1
  end
  return nil
end

local function ends_with(s, suffix)
  return s == suffix or sub(s, -(#suffix + 1)) == "." .. suffix
end

-- The one spelling of a name the cache and the table are keyed by: DNS
-- names are case-blind, and "a.b." (rooted) is "a.b".
local function key_of(name)
  local key = lower(name)
  if sub(key, -1) == "." then key = sub(key, 1, -2) end
  return key
end

local LOOPBACK = { "127.0.0.1", "::1" }

local function copy(list)
  local out = {}
  for i = 1, #list do out[i] = list[i] end
  return out
end

local function cache_get(key)
  local run = core.run_info()
  if run ~= cache_run then cache, ncached, cache_run = {}, 0, run end
  local e = cache[key]
  if not e then return nil end
  if now() < e.expires then return e.addrs end
  cache[key] = nil
  ncached = ncached - 1
  return nil
end

-- Makes room for one more entry: the expired ones go, then the one
-- closest to expiring.
local function evict()
  local t, oldest, at = now(), nil, math.huge
  for k, e in pairs(cache) do
    if e.expires <= t then
      cache[k] = nil
      ncached = ncached - 1
    elseif e.expires < at then
      oldest, at = k, e.expires
    end
  end
  if ncached >= config.max_names and oldest then
    cache[oldest] = nil
    ncached = ncached - 1
  end
end

local function cache_put(key, addrs)
  if config.ttl <= 0 then return end
  if not cache[key] then
    if ncached >= config.max_names then evict() end
    ncached = ncached + 1
  end
  cache[key] = { addrs = addrs, expires = now() + config.ttl }
end

-- The system resolver, one query per name at a time: a lookup already
-- in flight is waited for, within the caller's own timeout.
local function system_lookup(name, timeout)
  local run = core.run_info()
  if run ~= pending_run then -- lookups of an ended run: their waiters are gone
    pending, npending, pending_run = {}, 0, run
  end
  local waiting = pending[name]
  if waiting then
    local co = running()
    waiting[#waiting + 1] = co
    local woke, addrs, err = core.wait("resolve " .. name, timeout)
    if woke then return addrs, err end
    for i = #waiting, 1, -1 do
      if waiting[i] == co then table.remove(waiting, i) end
    end
    return nil, "timeout"
  end
  if npending >= config.max_names then
    return nil, format("%d lookups in flight already (max_names)", npending)
  end
  waiting = {}
  pending[name], npending = waiting, npending + 1
  stats.lookups = stats.lookups + 1
  local q = core.dns_lookup()
  local woke, addrs, err = q:_start(name, timeout)
  if not woke then
    q:_cancel()
    addrs, err = nil, "timeout"
  end
  pending[name], npending = nil, npending - 1
  for _, co in ipairs(waiting) do core.wake(co, addrs, err) end
  return addrs, err
end

-- resolve(name [, timeout]) -> a list of addresses to try in order |
-- nil, "resolve failed: ...". timeout: at most this long (the configured
-- timeout bounds it too).
function M.lookup(name, timeout)
  local literal = core.dns_literal(name)
  if literal then return { literal } end
  local why = bad_name(name)
  if why then return failed(name, why) end
  local key = key_of(name)
  if ends_with(key, "localhost") then return copy(LOOPBACK) end
  if ends_with(key, "invalid") then return failed(name, ".invalid names never resolve (RFC 6761)") end
  local addrs = cache_get(key)
  if addrs then
    stats.hits = stats.hits + 1
    return copy(addrs)
  end
  local err
  addrs = hosts[key]
  if not addrs then
    if core.virtual_time() then
      stats.failures = stats.failures + 1
      return failed(name, "not in fb.dns.hosts (under --virtual-time names resolve through it only)")
    end
    local t = config.timeout
    if timeout and timeout < t then t = timeout end
    addrs, err = system_lookup(key, t)
    if addrs and #addrs == 0 then addrs, err = nil, "no addresses" end
    if not addrs then
      stats.failures = stats.failures + 1
      return failed(name, err)
    end
  end
  cache_put(key, addrs)
  return copy(addrs)
end

local RESOLVE_OPTIONS = { timeout = true }

-- fb.dns.resolve(name [, {timeout=}]) -> { addresses } | nil, err
function M.resolve(name, opts)
  if type(name) ~= "string" then argerror(1, "resolve", "name must be a string, got " .. type(name)) end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(2, "resolve", "options must be a table, got " .. type(opts))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not RESOLVE_OPTIONS[k] then argerror(2, "resolve", format("unknown option '%s'", tostring(k))) end
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or not (t > 0) or t > core.max_sleep) then
    argerror(2, "resolve", "timeout must be a positive number of seconds, got " .. tostring(t))
  end
  return M.lookup(name, t)
end

-- fb.dns.hosts{ name = "10.0.0.1" | { "10.0.0.1", "::1", ... } | false }:
-- adds (or, with false, removes) names the resolver answers before the
-- system's, in the order given; the only source under --virtual-time.
-- What was cached stays until its TTL (fb.dns.flush() drops it).
function M.set_hosts(t)
  if type(t) ~= "table" then argerror(1, "hosts", "table of name = address(es) expected, got " .. type(t)) end
  local add = {}
  for name, v in pairs(t) do
    if type(name) ~= "string" or bad_name(name) or core.dns_literal(name) then
      argerror(1, "hosts", format("%s is not a host name", type(name) == "string" and shown(name) or type(name)))
    end
    local list = type(v) == "string" and { v } or v
    if list ~= false then
      if type(list) ~= "table" or #list == 0 or #list > MAX_ADDRESSES then
        argerror(1, "hosts", format("%s must map to an address or a list of 1-%d, got %s", shown(name),
          MAX_ADDRESSES, type(v) == "table" and format("%d", #v) or type(v)))
      end
      local out = {}
      for i, a in ipairs(list) do
        out[i] = type(a) == "string" and core.dns_literal(a)
        if not out[i] then
          argerror(1, "hosts", format("%s: %s is not an IP address", shown(name),
            type(a) == "string" and shown(a) or type(a)))
        end
      end
      list = out
    end
    add[key_of(name)] = list
  end
  for k, list in pairs(add) do hosts[k] = list or nil end
end

local CONFIG_OPTIONS = { ttl = "number", max_names = "count", timeout = "positive" }

-- fb.dns.configure{ttl=30, max_names=1024, timeout=5}: how long an
-- answer is cached (0: never), how many names the cache holds (and how
-- many lookups may be in flight), how long a lookup may take.
function M.configure(opts)
  if type(opts) ~= "table" then argerror(1, "configure", "options table expected, got " .. type(opts)) end
  for k, v in pairs(opts) do
    local kind = CONFIG_OPTIONS[k]
    if not kind then argerror(1, "configure", format("unknown option '%s'", tostring(k))) end
    local ok = type(v) == "number" and v >= 0 and v <= core.max_sleep
    if kind == "count" then ok = ok and v >= 1 and v <= 1e6 and v % 1 == 0 end
    if kind == "positive" then ok = ok and v > 0 end
    if not ok then
      argerror(1, "configure", format("%s must be %s, got %s", k,
        kind == "count" and "an integer 1..1000000" or kind == "positive" and "a positive number of seconds"
          or "a number of seconds >= 0", tostring(v)))
    end
  end
  for k, v in pairs(opts) do config[k] = v end
end

-- fb.dns.stats() -> { lookups = system resolver queries, hits = cached
-- answers given, failures =, cached = names in the cache now }
function M.stats()
  return { lookups = stats.lookups, hits = stats.hits, failures = stats.failures, cached = ncached }
end

-- fb.dns.flush(): forgets every cached answer
function M.flush()
  cache, ncached = {}, 0
end

return M
