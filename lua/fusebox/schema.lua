-- fusebox/schema.lua -- option checking for the policy layers: one schema
-- table per layer, shared by the Lua constructors (fb.retry{...}) and the
-- JSON loader, so both accept the same fields and say the same thing
-- about a bad one: "<field path>: must be <what>, got <value>".
--
-- A schema is { fields = { name = rule, ... }, open = bool }. A rule is
-- a function(value, path) returning nil when the value is fine, else the
-- message. An open schema lets unknown fields through to whoever builds
-- the layer (the breaker: its constructor knows its own options).

local core = select(2, ...)
local format, type, pairs, tostring, getmetatable, rawget =
  string.format, type, pairs, tostring, getmetatable, rawget
local sort, concat = table.sort, table.concat
local huge, floor = math.huge, math.floor

local M = {}

-- How a bad value is shown in a message: strings quoted, as in JSON.
function M.got(v)
  if v == core.json_null then return "null" end
  local t = type(v)
  if t == "string" then return format("%q", v) end
  if t == "number" then return format("%.14g", v) end
  if t == "table" then
    return getmetatable(v) == core.json_array and "an array" or "a table"
  end
  return "a " .. t
end

local function join(path, key)
  if path == nil or path == "" then return key end
  return path .. "." .. key
end
M.join = join

-- rule(want, ok): a rule whose message is "must be <want>".
local function rule(want, ok)
  return function(v, path)
    if ok(v) then return nil end
    return format("%s: must be %s, got %s", path, want, M.got(v))
  end
end
M.rule = rule

local function finite(v) return type(v) == "number" and v > -huge and v < huge end

M.count = rule("an integer >= 1", function(v)
  return finite(v) and v >= 1 and v == floor(v) and v <= 1e9
end)
M.count0 = rule("an integer >= 0", function(v)
  return finite(v) and v >= 0 and v == floor(v) and v <= 1e9
end)
M.positive = rule("a positive number", function(v) return finite(v) and v > 0 end)
M.nonneg = rule("a number >= 0", function(v) return finite(v) and v >= 0 end)
M.fraction = rule("a number in 0..1", function(v) return finite(v) and v >= 0 and v <= 1 end)
M.at_least_1 = rule("a number >= 1", function(v) return finite(v) and v >= 1 end)
M.func = rule("a function", function(v) return type(v) == "function" end)
M.name = rule("a non-empty string", function(v)
  return type(v) == "string" and v ~= "" and not v:find("\0", 1, true)
end)

-- within(r, lo, hi, unit): rule r, then lo <= v <= hi. The limits keep
-- every sleep, deadline and message finite.
local function within(r, lo, hi, unit)
  return function(v, path)
    local err = r(v, path)
    if err then return err end
    if v < lo or v > hi then
      return format("%s: must be in %.14g..%.14g %s, got %s", path, lo, hi, unit, M.got(v))
    end
    return nil
  end
end

-- Durations a policy sleeps or waits: at most core.max_sleep (1e9 s).
M.seconds = within(M.positive, 0, core.max_sleep, "seconds")
M.seconds0 = within(M.nonneg, 0, core.max_sleep, "seconds")

function M.enum(...)
  local names, set = { ... }, {}
  for _, n in ipairs(names) do set[n] = true end
  return rule("one of " .. concat(names, ", "), function(v) return set[v] == true end)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- check(opts, schema, path) -> nil, or the message for the first bad
-- field in name order (so the message does not depend on hash order).
function M.check(opts, schema, path)
  if type(opts) ~= "table" or getmetatable(opts) == core.json_array then
    return format("%s: must be a table of options, got %s", path or "options", M.got(opts))
  end
  for _, k in ipairs(sorted_keys(opts)) do
    if type(k) ~= "string" then
      return format("%s: field names must be strings, got %s", path or "options", M.got(k))
    end
    local r = schema.fields[k]
    if r then
      local err = r(opts[k], join(path, k))
      if err then return err end
    elseif not schema.open then
      return format("%s: unknown field (known: %s)", join(path, k),
        concat(sorted_keys(schema.fields), ", "))
    end
  end
  return nil
end

-- The layers' schemas.
-- attempts: at most 1000, so one p:call ends (a timeout of 1e-300 s
-- times every attempt out at once)
-- A retry budget (fusebox.budget): ttl Finagle's 1..60 s; ratio 0..1000
-- (tower's bound; above 1 a call may be retried more than once on
-- average).
M.retry_budget = { fields = {
  ttl = within(M.positive, 1, 60, "seconds"),
  min_per_second = within(M.nonneg, 0, 1e6, "a second"),
  ratio = within(M.nonneg, 0, 1000, "(retries a call)"),
  name = M.name,
} }

-- budget: options, or a budget made by fb.retry_budget (shared).
local function budget_rule(v, path)
  local mt = getmetatable(v)
  if type(v) == "table" and mt and rawget(mt, "kind") == "retry_budget" then return nil end
  if type(v) ~= "table" then
    return format("%s: must be retry budget options or a retry budget, got %s", path, M.got(v))
  end
  return M.check(v, M.retry_budget, path)
end

M.retry = { fields = {
  budget = budget_rule,
  attempts = within(M.count, 1, 1000, "attempts"),
  backoff = M.enum("exponential", "constant", "linear"),
  base = M.seconds0,
  multiplier = M.at_least_1,
  max = M.seconds,
  jitter = M.enum("none", "full", "equal", "decorrelated"),
  retry_on = M.func,
} }

-- hedge.delay: seconds, or { percentile = p in (0, 1], sample = n }
local hedge_percentile = { fields = {
  percentile = rule("a number in (0, 1]", function(v) return finite(v) and v > 0 and v <= 1 end),
  sample = within(M.count, 10, 100000, "latencies"),
} }
local function hedge_delay(v, path)
  if type(v) == "number" then return M.seconds0(v, path) end
  if type(v) ~= "table" then
    return format("%s: must be seconds or { percentile = p }, got %s", path, M.got(v))
  end
  local err = M.check(v, hedge_percentile, path)
  if err then return err end
  if v.percentile == nil then return format("%s.percentile: must be given", path) end
  return nil
end

M.hedge = { fields = {
  delay = hedge_delay,
  max_attempts = within(M.count, 1, 10, "attempts"),
  non_fatal = M.func,
  budget = budget_rule,
  name = M.name,
} }

M.bulkhead = { fields = {
  max_concurrent = M.count,
  max_queue = M.count0,
  queue_timeout = M.seconds0,
} }

-- rate: 1e-9 (one token in 31.7 years, the longest sleep) .. 1e9 a second
M.rate_limit = { fields = {
  rate = within(M.positive, 1e-9, 1e9, "a second"),
  burst = M.count,
} }

-- The breaker's fields as issue 3 describes them; the constructor is the
-- judge of which it supports, so unknown ones go through to it.
M.breaker = { open = true, fields = {
  mode = M.enum("consecutive", "count", "time"),
  failure_threshold = M.count,
  success_threshold = M.count,
  timeout = M.positive,
  timeout_multiplier = M.at_least_1,
  timeout_max = M.positive,
  window = M.positive,
  minimum_calls = M.count,
  failure_rate = M.fraction,
  slow_call_duration = M.positive,
  slow_call_rate = M.fraction,
  half_open_max_calls = M.count,
  half_open_max_wait = M.positive,
  is_failure = M.func,
  name = M.name,
} }

-- The concurrency limiter (fb.limiter): every option, so JSON's typos
-- are named with their path; which algorithm reads which, and the bounds
-- that depend on another (min <= initial <= max), its constructor judges.
M.limiter = { fields = {
  algorithm = M.enum("gradient2", "aimd", "vegas"),
  initial = M.count,
  min = M.count,
  max = within(M.count, 1, 1e6, "calls"),
  smoothing = rule("a number in (0, 1]", function(v) return finite(v) and v > 0 and v <= 1 end),
  queue_size = M.nonneg,
  rtt_tolerance = M.at_least_1,
  long_window = M.count,
  backoff_ratio = rule("a number in [0.5, 1)", function(v) return finite(v) and v >= 0.5 and v < 1 end),
  timeout = M.seconds,
  alpha = M.positive,
  beta = M.positive,
  probe_multiplier = M.count,
  min_window = M.seconds0,
  max_window = M.seconds0,
  window_size = M.count,
  min_rtt_threshold = M.seconds0,
  classify = M.func,
  name = M.name,
  shared = rule("a boolean", function(v) return type(v) == "boolean" end),
} }

return M
