-- fusebox/ngx.lua -- fusebox inside nginx (lua-nginx-module): an upstream
-- whose peers fusebox balances, with a breaker per peer.
--
--   init_worker_by_lua_block {
--     api = require("fusebox.ngx").upstream{ name = "api",
--       algorithm = "round_robin", peers = { "127.0.0.1:18081", ... },
--       breaker = { failure_threshold = 3, timeout = 3, success_threshold = 1 },
--       tries = 3 }
--   }
--   upstream api { server 0.0.0.1; balancer_by_lua_block { api:balance() } }
--   location / { proxy_pass http://api; log_by_lua_block { api:log() } }
--   location = /metrics { content_by_lua_block { api:metrics() } }
--
-- nginx does the I/O; fusebox decides and records. balance() picks a
-- peer this request has not tried yet (the tried ids live in ngx.ctx),
-- takes a permit from its breaker, sets it as the current peer and, on a
-- request's first try, the tries left. log() reads the request's tries
-- from $upstream_status and $upstream_response_time (one entry per try,
-- in order) and reports each to the balancer and its peer's breaker.
--
-- Without `zone`, state is per worker: every worker has its own registry,
-- balancer and breakers (make them in init_worker_by_lua), so a dead peer
-- costs failure_threshold failed tries in each worker before all of them
-- stop sending to it, and nothing survives `nginx -s reload`.
--
-- With `zone = "name"` (and zone_size, bytes, 1 MiB by default), each
-- peer's breaker lives in that fusebox zone (fb.zone: shared memory under
-- /dev/shm named after the nginx master's pid), keyed "<upstream>/<host:port>":
-- every worker uses the same breaker, so a dead peer costs about
-- failure_threshold failed tries in all (one more per request in flight
-- when it opens), and the workers of a reload find it as the old ones
-- left it. A restart (a new master) starts clean. Each peer's load (its
-- calls in flight, every worker's) is a counter in the zone too, so
-- least_request and peak_ewma weigh the whole nginx's load, and
-- u:eject(peer, seconds) ejects a peer for every worker. The registry and
-- the balancer stay per worker, as Kong's and ingress-nginx's do, reading
-- the shared state.

local core = select(2, ...)
if type(core) ~= "table" then
  -- Run from lua/fusebox/ngx.lua on package.path, not as the copy
  -- embedded in fusebox.so: load the C module, which provides that copy.
  require "fusebox"
  return package.preload["fusebox.ngx"]("fusebox.ngx")
end

local base = core.import "fusebox.base"
local metrics = core.import "fusebox.metrics"
local ffi = require "ffi"
local api = base.api
local argerror = base.argerror
local PEER_INFLIGHT, PEER_EJECTED_FOR = ffi.C.FBL_PEER_INFLIGHT, ffi.C.FBL_PEER_EJECTED_FOR
local ECLOSED = ffi.C.FBL_ECLOSED
local format, type, tostring, tonumber, pairs, ipairs = string.format, type, tostring, tonumber, pairs, ipairs
local find, sub = string.find, string.sub

local M = {}

-- Inside nginx, fusebox's waits run on nginx's scheduler from now on (see
-- fusebox/ngx_host.lua): retries with backoff, fb.timeout, bulkheads and
-- health checks work in request handlers and timers, and fb.run refuses.
if type(ngx) == "table" and type(ngx.thread) == "table" then
  core.import("fusebox.host").host(core.import "fusebox.ngx_host")
end

local upstream = {}
upstream.__index = upstream

local MAX_PEERS = 256 -- FB_EXCLUDE_MAX: the most one pick may exclude

local OPTIONS = {
  name = true, algorithm = true, peers = true, breaker = true, tries = true,
  balancer = true, is_failure = true, zone = true, zone_size = true,
}

-- The default verdict on one try: a 5xx (nginx reports a connect failure
-- or a timeout as 502 or 504) is a failure.
local function is_5xx(status) return status >= 500 end

local function parse_peer(s, k)
  if type(s) ~= "string" then
    argerror(1, "upstream", format("peers[%d] must be a \"host:port\" string, got %s", k, type(s)), 1)
  end
  local colon = find(s, ":[^:]*$")
  local host, port = colon and sub(s, 1, colon - 1), colon and tonumber(sub(s, colon + 1))
  if not host or host == "" or not port or port ~= port - port % 1 or port < 1 or port > 65535 then
    argerror(1, "upstream", format("peers[%d] must be \"host:port\" with a port 1..65535, got %q", k, s), 1)
  end
  return host, port
end

local zones = {} -- this worker's fb.zone handles, by name

-- The owner a zone's file is named after: the nginx master, which a
-- reload keeps and a restart replaces; outside nginx (or with no master,
-- `master_process off`) this process.
local function zone_owner()
  if ngx == nil then return nil end
  local ok, process = pcall(require, "ngx.process")
  local pid = ok and process.get_master_pid and process.get_master_pid()
  if type(pid) == "number" and pid > 0 then return pid end
  return ngx.worker and ngx.worker.pid and ngx.worker.pid() or nil
end

local function open_zone(fb, name, size)
  if type(name) ~= "string" or name == "" then
    argerror(1, "upstream", "zone must be a non-empty string (a zone name), got " .. tostring(name), 1)
  end
  local z = zones[name]
  if z == nil then
    local ok, zz = pcall(fb.zone, { name = name, size = size, owner = zone_owner() })
    if not ok then -- fb.zone's message, as this function's argument error
      local why = find(zz, "bad argument", 1, true) == 1 and sub(zz, find(zz, "(", 1, true) + 1, -2) or zz
      argerror(1, "upstream", "zone: " .. why, 1)
    end
    z = zz
    zones[name] = z
  end
  return z
end

-- upstream{name=, peers=, algorithm="round_robin", balancer={...},
-- breaker={...} or false, tries=#peers, is_failure=function(status),
-- zone=name, zone_size=bytes} -> an upstream for this worker (call it in
-- init_worker_by_lua).
function M.upstream(opts)
  if type(opts) ~= "table" then
    argerror(1, "upstream", "table expected, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      argerror(1, "upstream", format("unknown option '%s' (known: algorithm, balancer, "
        .. "breaker, is_failure, name, peers, tries, zone, zone_size)", tostring(k)))
    end
  end
  local name = opts.name
  if type(name) ~= "string" or name == "" then
    argerror(1, "upstream", "name must be a non-empty string, got " .. tostring(name))
  end
  local peers = opts.peers
  if type(peers) ~= "table" or #peers == 0 then
    argerror(1, "upstream", "peers must be a non-empty array of \"host:port\" strings")
  end
  if #peers > MAX_PEERS then -- a request may exclude every one of them
    argerror(1, "upstream", format("peers has %d entries, at most %d", #peers, MAX_PEERS))
  end
  local tries = opts.tries or #peers
  if type(tries) ~= "number" or tries ~= tries - tries % 1 or tries < 1 or tries > #peers then
    argerror(1, "upstream", format("tries must be an integer 1..%d (the peers), got %s",
      #peers, tostring(tries)))
  end
  local is_failure = opts.is_failure or is_5xx
  if type(is_failure) ~= "function" then
    argerror(1, "upstream", "is_failure must be a function(status), got " .. type(is_failure))
  end
  if opts.breaker ~= nil and opts.breaker ~= false and type(opts.breaker) ~= "table" then
    argerror(1, "upstream", "breaker must be a table of breaker options or false, got "
      .. type(opts.breaker))
  end
  local fb = require "fusebox"
  if opts.zone_size ~= nil and opts.zone == nil then
    argerror(1, "upstream", "zone_size needs zone")
  end
  local zone = opts.zone ~= nil and open_zone(fb, opts.zone, opts.zone_size) or nil
  local reg = fb.registry { static = true }
  local lb = fb.balancer(reg, opts.algorithm or "round_robin", opts.balancer)
  local u = setmetatable({
    name = name, registry = reg, lb = lb, tries = tries, is_failure = is_failure, zone = zone,
    key = "fusebox.ngx " .. name, -- its tries in ngx.ctx
    views = {}, breakers = {},    -- by instance id
    by_peer = {},                 -- "host:port" -> view
    -- with a zone: its payload slot, and each peer's record in it by id
    zslot = zone and ffi.cast("fb_zone *const *", zone), records = {},
  }, upstream)
  for k, peer in ipairs(peers) do
    local host, port = parse_peer(peer, k)
    if not reg:register(name, host, port) then
      argerror(1, "upstream", format("peers[%d] (%s) is listed twice", k, peer))
    end
  end
  fb.export(name, reg)
  for _, v in ipairs(reg:discover(name)) do
    u.views[v.id] = v
    u.by_peer[format("%s:%d", v.host, v.port)] = v
    if zone then
      u.records[v.id] = zone:share_load(reg, v.id, format("%s/%s:%d", name, v.host, v.port))
    end
    if opts.breaker then
      local o = {}
      for k, x in pairs(opts.breaker) do o[k] = x end
      local peer = format("%s:%d", v.host, v.port)
      -- in a zone the name is the breaker's key there: the upstream's too
      o.name, o.zone = zone and name .. "/" .. peer or peer, zone
      local cb = fb.breaker(o)
      u.breakers[v.id] = cb
      fb.export(name .. "/" .. peer, cb)
    end
  end
  return u
end

local function check_self(u, fname)
  if getmetatable(u) ~= upstream then
    error(format("calling '%s' on bad self (fusebox.ngx upstream expected, got %s)",
      fname, type(u)), 3)
  end
end

local ngx_balancer -- require "ngx.balancer", once inside nginx

-- u:balance(): in balancer_by_lua. Picks a peer this request has not
-- tried, whose breaker lets the call through, and makes it nginx's
-- current peer; with none left, ends the request at once (lua-nginx-module
-- answers a balancer that sets no peer with 500). A peer whose
-- breaker rejects is ejected until the breaker may let a probe through,
-- so the picks after skip it for free (its one pick counts as a failed
-- call to the balancer).
function upstream:balance()
  check_self(self, "balance")
  ngx_balancer = ngx_balancer or require "ngx.balancer"
  local ctx = ngx.ctx
  local t = ctx[self.key]
  local first = t == nil
  if first then
    t = { tried = {}, sent = {}, tokens = {} }
    ctx[self.key] = t
  end
  local lb, name, tried = self.lb, self.name, t.tried
  while true do
    local v
    if tried[1] == nil then v = lb:pick(name) else v = lb:pick(name, { exclude = tried }) end
    if v == nil then
      ngx.log(ngx.ERR, "fusebox.ngx: no peer of upstream '", name, "' left to try")
      return ngx.exit(ngx.ERROR)
    end
    tried[#tried + 1] = v.id
    local cb, token, wait = self.breakers[v.id], true, nil
    local zslot = self.zslot
    if zslot then -- ejected by another worker (u:eject): skip it too
      local left = api.zone_peer_stat(zslot, self.records[v.id], PEER_EJECTED_FOR)
      if left > 0 then token, wait = nil, left end
    end
    if token and cb then token, wait = cb:permit() end
    if token then
      local n = #t.sent + 1
      t.sent[n], t.tokens[n] = v.id, token
      local ok, err = ngx_balancer.set_current_peer(v.host, v.port)
      if not ok then
        ngx.log(ngx.ERR, "fusebox.ngx: set_current_peer failed: ", err)
        return ngx.exit(500)
      end
      if first and self.tries > 1 then ngx_balancer.set_more_tries(self.tries - 1) end
      return
    end
    -- at most 1 s: a breaker forced open (retry_after math.huge) may be
    -- reset, and the peer is then back within a second
    if wait > 0 then self.registry:eject(v, base.now() + (wait < 1 and wait or 1)) end
    lb:done(v, false, 0)
  end
end

-- The entries of an nginx variable listing one value per try ("a, b : c":
-- commas between tries of one upstream, colons between upstreams).
local function entries(s)
  local out = {}
  if s == nil then return out end
  for x in s:gmatch("[^,:%s]+") do out[#out + 1] = x end
  return out
end

-- u:log(): in log_by_lua. Reports every try of the request: its status
-- judged by is_failure, its response time. A try with no status (the
-- client went away first) is ignored by the breaker (its permit freed)
-- and reported done, not failed, to the balancer.
function upstream:log()
  check_self(self, "log")
  local t = ngx.ctx[self.key]
  if t == nil then return end
  ngx.ctx[self.key] = nil
  local var = ngx.var
  local s, rt = var.upstream_status, var.upstream_response_time
  if t.sent[1] == nil then return end -- no peer was left to try
  if t.sent[2] == nil and tonumber(s) then -- one try: no list to split
    local code, id = tonumber(s), t.sent[1]
    local ok = not self.is_failure(code)
    rt = tonumber(rt) or 0
    self.lb:done(self.views[id], ok, rt)
    local cb = self.breakers[id]
    if cb then cb:record(t.tokens[1], ok, rt) end
    return
  end
  local status, times = entries(s), entries(rt)
  local base_i = #status - #t.sent -- earlier entries: other upstreams
  if base_i < 0 then base_i = 0 end
  for k, id in ipairs(t.sent) do
    local code = tonumber(status[base_i + k])
    local ok = code == nil or not self.is_failure(code)
    local took = tonumber(times[base_i + k]) or 0
    self.lb:done(self.views[id], ok, took)
    local cb = self.breakers[id]
    if cb then cb:record(t.tokens[k], code == nil and "ignore" or ok, took) end
  end
end

-- u:metrics(): in content_by_lua. The Prometheus text of this worker's
-- fusebox objects (every upstream's registry and breakers).
function upstream:metrics()
  check_self(self, "metrics")
  ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
  ngx.print(metrics.render())
end

-- Raises for a method of u whose zone was closed (its __gc called by hand:
-- this module keeps every zone it opened).
local function zone_closed(u, fname)
  error(format("calling '%s' on upstream '%s' whose zone is closed", fname, u.name), 3)
end

-- u:peers() -> {["host:port"] = {state = breaker state or nil,
-- successes = n, failures = n, inflight = n, ejected_until = t}}: this
-- worker's counts; with a zone also shared_inflight (every worker's calls
-- in flight) and ejected_for (seconds the peer is ejected for every
-- worker). For tests and status pages.
function upstream:peers()
  check_self(self, "peers")
  local out = {}
  for id, v in pairs(self.views) do
    local cb = self.breakers[id]
    local p = {
      state = cb and cb.state, successes = v.successes, failures = v.failures,
      inflight = v.inflight, ejected_until = v.ejected_until,
    }
    if self.zslot then
      p.shared_inflight = api.zone_peer_stat(self.zslot, self.records[id], PEER_INFLIGHT)
      p.ejected_for = api.zone_peer_stat(self.zslot, self.records[id], PEER_EJECTED_FOR)
      if p.shared_inflight == ECLOSED then zone_closed(self, "peers") end
    end
    out[format("%s:%d", v.host, v.port)] = p
  end
  return out
end

-- u:eject(peer, seconds): no request of this worker picks peer ("host:port")
-- for seconds (0: readmits it); with a zone, no request of any worker.
-- For a health check run in one worker (ngx.timer) that decides for all.
function upstream:eject(peer, seconds)
  check_self(self, "eject")
  local v = self.by_peer[peer]
  if v == nil then
    argerror(1, "eject", format("not a peer of upstream '%s': %s", self.name, tostring(peer)))
  end
  if type(seconds) ~= "number" or not (seconds >= 0 and seconds < math.huge) then
    argerror(2, "eject", "seconds must be a finite number >= 0, got " .. tostring(seconds))
  end
  self.registry:eject(v, seconds > 0 and base.now() + seconds or 0)
  if self.zslot and api.zone_peer_eject(self.zslot, self.records[v.id], seconds) == ECLOSED then
    zone_closed(self, "eject")
  end
end

return M
