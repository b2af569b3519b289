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

-- An error for nginx's error log (fusebox's reporter outside nginx).
local function log_error(...)
  if type(ngx) == "table" and ngx.log then return ngx.log(ngx.ERR, "fusebox.ngx: ", ...) end
  core.report("fusebox.ngx", table.concat({ ... }))
end

local MAX_PEERS = 256 -- FB_EXCLUDE_MAX: the most one pick may exclude
local start_discovery -- below: it needs the upstream's helpers

local OPTIONS = {
  name = true, algorithm = true, peers = true, breaker = true, tries = true,
  balancer = true, is_failure = true, zone = true, zone_size = true, discover = true,
  outlier = true,
}

-- The default verdict on one try: a 5xx (nginx reports a connect failure
-- or a timeout as 502 or 504) is a failure.
local function is_5xx(status) return status >= 500 end

-- What the balancer (and its outlier detector) is told of one try: a
-- failure with 502, 503 or 504 is a gateway failure, as Envoy counts it.
local function verdict(ok, code)
  if ok then return true end
  if code and code >= 502 and code <= 504 then return "gateway" end
  return false
end

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

-- Makes u's per-peer state for the registered instance v: its view, its
-- load record in the zone, its breaker (in the zone, keyed
-- "<upstream>/<host:port>", so every worker and every reload finds it).
local function attach(u, v)
  local fb = require "fusebox"
  local peer = format("%s:%d", v.host, v.port)
  u.views[v.id] = v
  u.by_peer[peer] = v
  if u.zone then
    u.records[v.id] = u.zone:share_load(u.registry, v.id, format("%s/%s", u.name, peer))
  end
  if u.breaker_opts then
    local o = {}
    for k, x in pairs(u.breaker_opts) do o[k] = x end
    -- in a zone the name is the breaker's key there: the upstream's too
    o.name, o.zone = u.zone and u.name .. "/" .. peer or peer, u.zone
    local cb = fb.breaker(o)
    u.breakers[v.id] = cb
    fb.export(u.name .. "/" .. peer, cb)
  end
end

-- Drops the peer v that discovery no longer lists. A request that picked
-- it still logs (log() skips what is gone); its breaker stays in the
-- zone, where a return finds it.
local function detach(u, v)
  local fb = require "fusebox"
  local peer = format("%s:%d", v.host, v.port)
  u.registry:deregister(u.name, v.host, v.port)
  u.views[v.id], u.by_peer[peer], u.records[v.id], u.breakers[v.id] = nil, nil, nil, nil
  if u.breaker_opts then fb.export(u.name .. "/" .. peer, nil) end
end

-- ------------------------------------------------------------ discovery

local DISCOVER = { serve = true, etcd = true, service = true, prefix = true, interval = true,
  timeout = true }

-- "http://host:port" -> host, port (no path, no TLS: a registry on the
-- local network; nginx's own lua_ssl_* would be needed for https).
local function parse_endpoint(url, what)
  local host, port = tostring(url):match("^http://%[?([%w%.:%-]-)%]?:(%d+)/?$")
  port = tonumber(port)
  if not host or host == "" or not port or port < 1 or port > 65535 then
    argerror(1, "upstream", format("discover.%s must be \"http://host:port\", got %s", what,
      type(url) == "string" and format("%q", url) or type(url)), 2)
  end
  return host, port
end

local function check_discover(d, name)
  if type(d) ~= "table" then
    argerror(1, "upstream", "discover must be a table {serve = url} or {etcd = url}, got "
      .. type(d), 1)
  end
  for k in pairs(d) do
    if not DISCOVER[k] then
      argerror(1, "upstream", format("unknown discover option '%s' (known: etcd, interval, "
        .. "prefix, serve, service, timeout)", tostring(k)), 1)
    end
  end
  if (d.serve == nil) == (d.etcd == nil) then
    argerror(1, "upstream", "discover needs one of serve = url or etcd = url", 1)
  end
  local c = { kind = d.serve and "serve" or "etcd", service = d.service or name,
    prefix = d.prefix or "/fusebox/services/", interval = d.interval or 1, timeout = d.timeout or 1 }
  c.host, c.port = parse_endpoint(d.serve or d.etcd, c.kind)
  base.check_name(c.service, 1, "upstream", 1)
  for _, k in ipairs { "interval", "timeout" } do
    if type(c[k]) ~= "number" or not (c[k] >= 0.01 and c[k] <= 3600) then
      argerror(1, "upstream", format("discover.%s must be seconds in 0.01..3600, got %s", k,
        tostring(c[k])), 1)
    end
  end
  if type(c.prefix) ~= "string" or c.prefix == "" then
    argerror(1, "upstream", "discover.prefix must be a non-empty string", 1)
  end
  return c
end

-- The peers a source lists now: an array of {host=, port=, weight=}, or
-- nil, err. fusebox serve: GET /v1/services/<service>; etcd (its JSON
-- gateway): the keys under prefix .. service .. "/", named host:port, as
-- fusebox's etcd backend writes them (lua/fusebox/etcd.lua).
local function fetch_serve(c, host)
  local status, body = host.fetch("GET", c.host, c.port, "/v1/services/" .. c.service, nil, c.timeout)
  if not status then return nil, body end
  if status ~= 200 then return nil, format("fusebox serve answered %d", status) end
  local doc = core.json_decode(body)
  if type(doc) ~= "table" or type(doc.instances) ~= "table" then return nil, "not a service listing" end
  return doc.instances
end

local function fetch_etcd(c, host)
  local etcd = core.import "fusebox.etcd"
  local b64, unb64 = core.base64_encode, core.base64_decode
  local prefix = c.prefix .. c.service .. "/"
  local status, body = host.fetch("POST", c.host, c.port, "/v3/kv/range", core.json_encode {
    key = b64(prefix), range_end = b64(etcd.prefix_end(prefix)) }, c.timeout)
  if not status then return nil, body end
  if status ~= 200 then return nil, format("etcd answered %d", status) end
  local doc = core.json_decode(body)
  if type(doc) ~= "table" then return nil, "not an etcd range answer" end
  local out = {}
  for _, kv in ipairs(type(doc.kvs) == "table" and doc.kvs or {}) do
    local key = type(kv) == "table" and type(kv.key) == "string" and unb64(kv.key) or ""
    local h, p = key:sub(#prefix + 1):match("^([^/]+):(%d+)$")
    local value = type(kv.value) == "string" and core.json_decode(unb64(kv.value) or "")
    if h then
      out[#out + 1] = { host = h, port = tonumber(p),
        weight = type(value) == "table" and value.weight or nil }
    end
  end
  return out
end

-- Makes u's peers those of list (registering, deregistering), at most
-- MAX_PEERS; returns how many it has.
-- An address nginx's balancer can set: it resolves no names.
local function ip_literal(h)
  if #h > 45 then return false end
  local a, b, c, d = h:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then return tonumber(a) < 256 and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256 end
  return h:find("^[%x:%.]+$") ~= nil and select(2, h:gsub(":", "")) >= 2
end

local function sync(u, list)
  local want, n = {}, 0
  for _, x in ipairs(list) do
    local h, p = type(x) == "table" and x.host, type(x) == "table" and tonumber(x.port)
    local ok = type(h) == "string" and p and p >= 1 and p <= 65535 and p == p - p % 1
    if ok and not ip_literal(h) then
      log_error("discovery of '", u.name, "': skipping ", format("%q", h:sub(1, 64)),
        ": an IP address is needed (nginx's balancer resolves no names)")
    elseif ok and n < MAX_PEERS then
      local peer = format("%s:%d", h, p)
      if not want[peer] then
        want[peer], n = x, n + 1
      end
    end
  end
  for peer, v in pairs(u.by_peer) do
    if not want[peer] then detach(u, v) end
  end
  for peer, x in pairs(want) do
    if not u.by_peer[peer] then
      local w = tonumber(x.weight)
      -- what the source says is hostile input: a host the registry
      -- refuses, or a weight out of range, skips that peer and says so
      local ok, err = pcall(u.registry.register, u.registry, u.name, x.host, tonumber(x.port),
        w and { weight = w } or nil)
      if ok then
        for _, v in ipairs(u.registry:discover(u.name)) do
          if v.host == x.host and v.port == tonumber(x.port) then attach(u, v) end
        end
      else
        log_error("discovery of '", u.name, "': skipping ", peer, ": ", tostring(err))
      end
    end
  end
  return n
end

-- Polls the source every interval seconds, in every worker (each has its
-- own registry; with a zone their breakers and loads are shared anyway):
-- a timer (fusebox.host's daemon, ngx.timer.at in init_worker) that ends
-- when the worker exits. A failed poll keeps the peers it had.
start_discovery = function(u, c)
  local host = core.import "fusebox.host"
  local fetch = c.kind == "serve" and fetch_serve or fetch_etcd
  u.discovery = { polls = 0, errors = 0, last_error = nil }
  host.daemon(function()
    while not host.exiting() do
      local list, err = fetch(c, host)
      u.discovery.polls = u.discovery.polls + 1
      if list then
        sync(u, list)
      else
        u.discovery.errors = u.discovery.errors + 1
        if err ~= u.discovery.last_error then
          log_error("discovery of '", c.service, "' from ", c.kind, ": ", tostring(err))
        end
        u.discovery.last_error = err
      end
      host.sleep(c.interval)
    end
  end)
end

-- upstream{name=, peers=, algorithm="round_robin", balancer={...},
-- breaker={...} or false, tries=#peers, is_failure=function(status),
-- zone=name, zone_size=bytes, discover={serve = "http://host:port" |
-- etcd = "http://host:port", service=name, prefix="/fusebox/services/",
-- interval=1, timeout=1}, outlier={...} (Envoy's outlier detection;
-- 502/503/504 count as gateway failures)} -> an upstream for this worker
-- (call it in init_worker_by_lua). With discover the peers (peers= then
-- optional, the first ones) follow what fusebox serve or etcd lists,
-- polled every interval seconds; tries is then 3 unless given.
function M.upstream(opts)
  if type(opts) ~= "table" then
    argerror(1, "upstream", "table expected, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      argerror(1, "upstream", format("unknown option '%s' (known: algorithm, balancer, "
        .. "breaker, discover, is_failure, name, outlier, peers, tries, zone, zone_size)",
        tostring(k)))
    end
  end
  local name = opts.name
  if type(name) ~= "string" or name == "" then
    argerror(1, "upstream", "name must be a non-empty string, got " .. tostring(name))
  end
  local discover = opts.discover ~= nil and check_discover(opts.discover, name) or nil
  local peers = opts.peers or (discover and {})
  if type(peers) ~= "table" or (#peers == 0 and not discover) then
    argerror(1, "upstream", "peers must be a non-empty array of \"host:port\" strings "
      .. "(or give discover)")
  end
  if #peers > MAX_PEERS then -- a request may exclude every one of them
    argerror(1, "upstream", format("peers has %d entries, at most %d", #peers, MAX_PEERS))
  end
  -- discovered peers come and go: tries is then up to the most there may be
  local most = discover and MAX_PEERS or #peers
  local tries = opts.tries or (discover and 3 or #peers)
  if type(tries) ~= "number" or tries ~= tries - tries % 1 or tries < 1 or tries > most then
    argerror(1, "upstream", format("tries must be an integer 1..%d (the peers), got %s",
      most, tostring(tries)))
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
  local lb_opts = opts.balancer
  if opts.outlier ~= nil then -- Envoy's outlier detection on the tries' statuses
    if type(opts.outlier) ~= "table" then
      argerror(1, "upstream", "outlier must be a table of outlier options, got " .. type(opts.outlier))
    end
    lb_opts = {}
    for k, v in pairs(opts.balancer or {}) do lb_opts[k] = v end
    lb_opts.outlier = opts.outlier
  end
  local lb = fb.balancer(reg, opts.algorithm or "round_robin", lb_opts)
  local u = setmetatable({
    name = name, registry = reg, lb = lb, tries = tries, is_failure = is_failure, zone = zone,
    key = "fusebox.ngx " .. name, -- its tries in ngx.ctx
    views = {}, breakers = {},    -- by instance id
    by_peer = {},                 -- "host:port" -> view
    -- with a zone: its payload slot, and each peer's record in it by id
    zslot = zone and ffi.cast("fb_zone *const *", zone), records = {},
  }, upstream)
  if opts.outlier and u.zslot then -- its ejections for every worker
    lb:outlier():on("eject", function(e)
      local left = e.host and e["until"] - base.now()
      if left and left > 0 then u:eject(format("%s:%d", e.host, e.port), left) end
    end)
  end
  for k, peer in ipairs(peers) do
    local host, port = parse_peer(peer, k)
    if not reg:register(name, host, port) then
      argerror(1, "upstream", format("peers[%d] (%s) is listed twice", k, peer))
    end
  end
  u.breaker_opts = opts.breaker
  fb.export(name, reg)
  if opts.outlier then fb.export(name .. "/outlier", lb) end -- its metrics
  for _, v in ipairs(reg:discover(name)) do attach(u, v) end
  if discover then start_discovery(u, discover) end
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
    local v = self.views[id] -- nil: discovery removed the peer meanwhile
    if v then self.lb:done(v, verdict(ok, code), rt) end
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
    local v = self.views[id]
    if v then self.lb:done(v, verdict(ok, code), took) end
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
