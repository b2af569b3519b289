-- fusebox/strategies.lua -- balancing strategies written in Lua, on the
-- same information the built-in algorithms see.
--
--   local strategies = fb.strategies
--   fb.balancer(reg, strategies.zone_aware { zone = "eu-west-1a" })
--   fb.strategy("local_first", strategies.zone_aware { zone = "eu-west-1a" })
--
-- Each function here returns a strategy: fn(instances, ctx) -> instance.
-- `instances` are the candidates (healthy live instances; all live ones
-- in panic mode), in registration order, and the same table until the
-- service changes, so a strategy may cache what it derives from it in a
-- table weak on it, as these do.

local format, type, error, setmetatable = string.format, type, error, setmetatable

local M = {}

local function check_options(opts, allowed, what)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(format("bad argument #1 to '%s' (table expected, got %s)", what, type(opts)), 3)
  end
  for k in pairs(opts) do
    if not allowed[k] then
      error(format("bad argument #1 to '%s' (unknown option '%s')", what, tostring(k)), 3)
    end
  end
  return opts
end

-- Power of two choices by cost(inst) among instances[idx[1..n]].
local function p2c(instances, idx, n, ctx, cost)
  local best = instances[idx[ctx.random(n)]]
  local other = instances[idx[ctx.random(n)]]
  if cost(other) < cost(best) then best = other end
  return best
end

local function inflight(inst) return inst.inflight end

-- zone_aware { zone = "a" [, min_instances = 1] }: locality first.
-- Picks (power of two choices on in-flight calls) among the candidates in
-- `zone` while it has at least min_instances of them; otherwise falls
-- back to all candidates, every zone alike. Health comes first: an
-- instance marked down is not a candidate, so a zone that loses its
-- instances spills over to the others on its own.
function M.zone_aware(opts)
  opts = check_options(opts, { zone = true, min_instances = true }, "zone_aware")
  local zone, min = opts.zone, opts.min_instances or 1
  if type(zone) ~= "string" or zone == "" then
    error("bad argument #1 to 'zone_aware' (zone must be a non-empty string)", 2)
  end
  if type(min) ~= "number" or min < 1 or min % 1 ~= 0 then
    error("bad argument #1 to 'zone_aware' (min_instances must be a positive integer)", 2)
  end
  local subsets = setmetatable({}, { __mode = "k" }) -- instances -> indices
  local function subset(instances)
    local s = subsets[instances]
    if s then return s end
    local in_zone, all = {}, {}
    for i = 1, #instances do
      all[i] = i
      if instances[i].zone == zone then in_zone[#in_zone + 1] = i end
    end
    s = #in_zone >= min and in_zone or all
    subsets[instances] = s
    return s
  end
  return function(instances, ctx)
    local idx = subset(instances)
    return p2c(instances, idx, #idx, ctx, inflight)
  end
end

-- latency_aware { [failure_penalty = 4] }: the fastest of two, on the
-- statistics every balancer over the registry reports. Cost is
--   latency EWMA * (in flight + 1) * (1 + failure_penalty * failure rate)
-- so a slow or busy instance loses, and so does one that fails fast (a
-- plain latency balancer would favour an instance that errors at once).
-- Instances without reports yet cost 0: they are tried first.
function M.latency_aware(opts)
  opts = check_options(opts, { failure_penalty = true }, "latency_aware")
  local penalty = opts.failure_penalty or 4
  if type(penalty) ~= "number" or penalty < 0 then
    error("bad argument #1 to 'latency_aware' (failure_penalty must be a non-negative number)", 2)
  end
  local function cost(inst)
    local ok, failed = inst.successes, inst.failures
    local rate = failed / (ok + failed + 1)
    return inst.latency * (inst.inflight + 1) * (1 + penalty * rate)
  end
  local identity = setmetatable({}, { __mode = "k" })
  local function all(instances)
    local idx = identity[instances]
    if idx then return idx end
    idx = {}
    for i = 1, #instances do idx[i] = i end
    identity[instances] = idx
    return idx
  end
  return function(instances, ctx)
    return p2c(instances, all(instances), #instances, ctx, cost)
  end
end

return M
