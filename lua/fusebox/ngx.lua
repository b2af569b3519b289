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
-- State is per worker in this slice: every worker has its own registry,
-- balancer and breakers (make them in init_worker_by_lua), so a dead peer
-- costs failure_threshold failed tries in each worker before all of them
-- stop sending to it, and nothing survives `nginx -s reload`.

local core = select(2, ...)
if type(core) ~= "table" then
  -- Run from lua/fusebox/ngx.lua on package.path, not as the copy
  -- embedded in fusebox.so: load the C module, which provides that copy.
  require "fusebox"
  return package.preload["fusebox.ngx"]("fusebox.ngx")
end

local base = core.import "fusebox.base"
local metrics = core.import "fusebox.metrics"
local argerror = base.argerror
local format, type, tostring, tonumber, pairs, ipairs = string.format, type, tostring, tonumber, pairs, ipairs
local find, sub = string.find, string.sub

local M = {}

local upstream = {}
upstream.__index = upstream

local MAX_PEERS = 256 -- FB_EXCLUDE_MAX: the most one pick may exclude

local OPTIONS = {
  name = true, algorithm = true, peers = true, breaker = true, tries = true,
  balancer = true, is_failure = true, outlier = true,
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

-- upstream{name=, peers=, algorithm="round_robin", balancer={...},
-- breaker={...} or false, tries=#peers, is_failure=function(status),
-- outlier={...} (Envoy's outlier detection; 502/503/504 count as gateway
-- failures)}
-- -> an upstream for this worker (call it in init_worker_by_lua).
function M.upstream(opts)
  if type(opts) ~= "table" then
    argerror(1, "upstream", "table expected, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      argerror(1, "upstream", format("unknown option '%s' (known: algorithm, balancer, "
        .. "breaker, is_failure, name, outlier, peers, tries)", tostring(k)))
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
    name = name, registry = reg, lb = lb, tries = tries, is_failure = is_failure,
    key = "fusebox.ngx " .. name, -- its tries in ngx.ctx
    views = {}, breakers = {},    -- by instance id
  }, upstream)
  for k, peer in ipairs(peers) do
    local host, port = parse_peer(peer, k)
    if not reg:register(name, host, port) then
      argerror(1, "upstream", format("peers[%d] (%s) is listed twice", k, peer))
    end
  end
  fb.export(name, reg)
  if opts.outlier then fb.export(name .. "/outlier", lb) end -- its metrics
  for _, v in ipairs(reg:discover(name)) do
    u.views[v.id] = v
    if opts.breaker then
      local o = {}
      for k, x in pairs(opts.breaker) do o[k] = x end
      o.name = format("%s:%d", v.host, v.port)
      local cb = fb.breaker(o)
      u.breakers[v.id] = cb
      fb.export(name .. "/" .. o.name, cb)
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
    if cb then token, wait = cb:permit() end
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
    self.lb:done(self.views[id], verdict(ok, code), rt)
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
    self.lb:done(self.views[id], verdict(ok, code), took)
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

-- u:peers() -> {["host:port"] = {state = breaker state or nil, picks = n,
-- failures = n, ejected_until = t}} for this worker: for tests and status
-- pages.
function upstream:peers()
  check_self(self, "peers")
  local out = {}
  for id, v in pairs(self.views) do
    local cb = self.breakers[id]
    out[format("%s:%d", v.host, v.port)] = {
      state = cb and cb.state, successes = v.successes, failures = v.failures,
      inflight = v.inflight, ejected_until = v.ejected_until,
    }
  end
  return out
end

return M
