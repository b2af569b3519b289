-- fusebox/client.lua -- fb.client{...}: a policy that calls instances.
--
--   local c = fb.client { registry = reg, balancer = "round_robin",
--     policy = { retry = { attempts = 3 }, timeout = 1 },
--     per_instance_breaker = { failure_threshold = 3, timeout = 30 } }
--   local body, err = c:call("users", function(inst) return get(inst) end)
--
-- Each attempt picks an instance and calls fn(instance) under that
-- instance's own breaker (one per host:port, made from
-- per_instance_breaker, named "host:port"; false for none): outlier
-- ejection as Envoy does it. An instance whose breaker rejects is
-- skipped and another picked, without using up an attempt; a retry
-- prefers an instance this call has not tried yet. The order, outermost
-- first:
--
--   fallback -> deadline -> retry -> hedge -> breaker -> rate_limit
--     -> bulkhead -> pick -> instance breaker -> timeout -> fn(instance)
--
-- (with a deadline or a hedge, fn(instance, ctx): fusebox.context; each
-- hedge picks on its own, preferring an instance not tried yet, and an
-- instance breaker records a cancelled hedge as ignored)
-- so a timeout counts against the instance, while rejections by the
-- service-wide layers do not. When the balancer has done(inst, ok,
-- latency), each finished call is reported to it. Picks are bounded by
-- max_picks (default 8) per attempt; when only tried instances turn up,
-- the last pick is used anyway, and when every pick is ejected the
-- attempt fails with "no instance: ...".

local core = select(2, ...)
local base = core.import "fusebox.base"
local policy = core.import "fusebox.policy"
local schema = core.import "fusebox.schema"
local now, check_name = base.now, base.check_name
local check_self, check_arg = base.check_self, base.check_arg
local format, type, error, pcall, setmetatable, pairs = string.format, type, error, pcall, setmetatable, pairs
local failure, breaker_call, through = policy.failure, policy.breaker_call, policy.through
local hedge = core.import "fusebox.hedge"
local ctx_of = core.import("fusebox.context").ctx_of
local running = coroutine.running

local M = {}

local Client = {}
Client.__index = Client

-- The breaker of instance inst, made on first sight. Views are reused
-- for as long as anyone holds them, so the host:port key is built only
-- when a view is new.
function Client:breaker_for(inst, service)
  local cb = self.by_view[inst]
  if cb then return cb end
  local key = inst.host .. ":" .. inst.port
  self.views[key] = inst -- the latest view of host:port (re-registered: a new one)
  cb = self.breakers[key]
  if cb == nil then
    cb = core.breaker(self:instance_breaker_options(key))
    self:eject_when_open(cb, key)
    self.breakers[key] = cb
  end
  self.by_view[inst] = cb
  return cb
end

-- The options of the breaker of instance key ("host:port"): the
-- per_instance_breaker options, named after the instance (after a name
-- given there: "name host:port"), so events, the report and metrics tell
-- the instances' breakers apart.
function Client:instance_breaker_options(key)
  local o = {}
  for k, v in pairs(self.instance_options) do o[k] = v end
  o.name = o.name and o.name .. " " .. key or key
  return o
end

-- Outlier ejection: when an instance's breaker opens the registry ejects
-- it for the open time (reg:eject), so every balancer over it skips it
-- (down to the panic threshold); the ejection ends by the clock alone,
-- with no timer (so also outside fb.run), and the next pick of it is the
-- breaker's half-open probe.
function Client:eject_when_open(cb, key)
  local reg = self.lb:registry()
  cb:on("state_change", function(_, to, at)
    if to ~= "OPEN" then return end
    local v = self.views[key]
    if v then reg:eject(v, at + cb:metrics().open_timeout) end
  end)
end

-- c:breaker(host, port) -> that instance's breaker, or nil before its
-- first call
function Client:breaker(host, port)
  check_self(self, Client, "fusebox.client", "breaker")
  return self.breakers[host .. ":" .. tostring(port)]
end

-- With a deadline or a hedge, fn(instance, ctx).
local function with_ctx(fn, inst) return fn(inst, ctx_of[running()]) end

local function on_instance(st, inst)
  st.admitted = true
  local c = st.client
  local t = c.timeout
  if c.with_ctx then
    if t then return t:call(with_ctx, st.fn, inst) end
    return with_ctx(st.fn, inst)
  end
  if t then return t:call(st.fn, inst) end
  return st.fn(inst)
end

local hold, held, take, drop, give = policy.hold, policy.held, policy.take, policy.drop, policy.give

-- One attempt: pick an instance (preferring untried ones), call it under
-- its breaker; a rejection by that breaker means pick again. Results go
-- through `held` (see policy.lua): lb:done runs while they are held, and
-- is balancer code that runs no policy.
local function attempt(st, picks)
  local c = st.client
  local inst = c.lb:pick(st.service)
  if inst == nil then
    return nil, format("no instance: no live instance of '%s'", st.service)
  end
  if st.tried[inst] and picks < c.max_picks then return attempt(st, picks + 1) end
  st.admitted = false
  local t0 = now()
  local cb = c.instance_options and c:breaker_for(inst, st.service)
  local ok
  if cb then ok = hold(pcall(c.with_ctx and hedge.breaker_call or breaker_call, cb, on_instance, st, inst))
  else ok = hold(pcall(on_instance, st, inst)) end
  st.tried[inst] = true
  if not st.admitted then
    drop()
    if picks < c.max_picks then return attempt(st, picks + 1) end
    return nil, format("no instance: every instance of '%s' picked is ejected", st.service)
  end
  if c.done then c.done(c.lb, inst, not failure(ok, held[1], held[2]), now() - t0) end
  local n, r1, r2, r3 = take()
  if not ok then error(r1, 0) end
  return give(n, r1, r2, r3)
end

-- A hedge's attempts run at once: each has its own state (admitted),
-- the instances tried shared, so a hedge prefers another instance.
local function pick_and_call(st)
  if st.client.hedged then
    st = { client = st.client, service = st.service, fn = st.fn, tried = st.tried, admitted = false }
  end
  return attempt(st, 1)
end

-- c:call(service, fn) -> fn(instance)'s results, through the policy
function Client:call(service, fn)
  check_self(self, Client, "fusebox.client", "call")
  check_name(service, 1, "call")
  check_arg(fn, 2, "call", "function")
  local st = { client = self, service = service, fn = fn, tried = {}, admitted = false }
  return policy.with_fallback(self, pick_and_call, st)
end

local function is(v, what) return getmetatable(v) == core.meta[what] end

M.schema = { fields = {
  registry = schema.rule("a registry", function(v) return is(v, "registry") end),
  balancer = schema.rule("a balancer or an algorithm name", function(v)
    return is(v, "balancer") or type(v) == "string"
  end),
  policy = function(v, path)
    if policy.is_policy(v) then return nil end
    return schema.check(v, policy.schema, path)
  end,
  per_instance_breaker = function(v, path)
    if v == false then return nil end
    return schema.check(v, schema.breaker, path)
  end,
  max_picks = schema.count,
} }

local function balancer_of(o)
  if is(o.balancer, "balancer") then
    if o.registry and o.balancer:registry() ~= o.registry then
      error("balancer: balances over another registry than 'registry'", 0)
    end
    return o.balancer
  end
  if not o.registry then error("registry: needed to make a balancer", 0) end
  local ok, lb = pcall(core.balancer, o.registry, o.balancer or "round_robin")
  if not ok then error("balancer: " .. (lb:match("%((.*)%)$") or lb), 0) end
  return lb
end

-- Splits the policy: the client runs the timeout inside each instance
-- call, under the instance's breaker, and the other layers around it.
local function new_client(o)
  local p = o.policy or {}
  if not policy.is_policy(p) then p = policy.new_policy(p, "policy") end
  local self = setmetatable({ layers = {}, fallback = p.fallback, by_view = setmetatable({}, { __mode = "k" }),
    breakers = {}, views = {}, max_picks = o.max_picks or 8 }, Client)
  for i, name in ipairs(p.order) do
    if name == "timeout" then self.timeout = p.layers[i]
    else self.layers[#self.layers + 1] = p.layers[i] end
  end
  self.with_ctx = p.with_ctx
  for _, name in ipairs(p.order) do
    if name == "hedge" then self.hedged = true end
  end
  self.lb = balancer_of(o)
  self.done = self.lb.done
  if o.per_instance_breaker ~= false then
    self.instance_options = o.per_instance_breaker or {}
    policy.new_breaker(self.instance_options, "per_instance_breaker") -- fail now, not mid-call
  end
  return self
end

-- fb.client{registry=, balancer=, policy=, per_instance_breaker=, max_picks=}
function M.client(opts)
  local err = schema.check(opts or {}, M.schema, nil)
  if err then error(format("bad argument #1 to 'client' (%s)", err), 2) end
  local ok, c = pcall(new_client, opts or {})
  if not ok then error(format("bad argument #1 to 'client' (%s)", c), 2) end
  return c
end

return M
