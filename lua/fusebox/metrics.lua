-- fusebox/metrics.lua -- Prometheus text format (0.0.4) for the objects
-- published with fb.export(name, obj), served by fb.serve_metrics{...}
-- and `--metrics HOST:PORT`. Names follow Prometheus conventions:
-- fusebox_ prefix, _total counters, one gauge per breaker state.

local core = select(2, ...)
local http = core.import "fusebox.http"
local published = core.import("fusebox.budget").published
local format, gsub, concat, sort, pairs, ipairs, tostring = string.format, string.gsub, table.concat, table.sort, pairs, ipairs, tostring

local M = {}

local STATES = { "CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED" }

local function label(v)
  return (gsub(tostring(v), '[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

-- Families in output order: name, type, help.
local FAMILIES = {
  { "fusebox_breaker_state", "gauge", "Breaker state: 1 for the current state, else 0." },
  { "fusebox_breaker_calls_total", "counter", "Calls through the breaker by outcome (success, failure, timeout)." },
  { "fusebox_breaker_rejected_calls_total", "counter", "Calls rejected while the breaker was open." },
  { "fusebox_breaker_transitions_total", "counter", "Breaker state changes." },
  { "fusebox_limiter_limit", "gauge", "The concurrency limit in force." },
  { "fusebox_limiter_inflight", "gauge", "Calls in flight through the limiter." },
  { "fusebox_limiter_rejected_total", "counter", "Calls rejected at the concurrency limit." },
  { "fusebox_balancer_picks_total", "counter", "Balancer picks per instance." },
  { "fusebox_balancer_in_flight", "gauge", "Picks of the instance not yet reported done." },
  { "fusebox_balancer_reported_calls_total", "counter", "Calls reported to the balancers (done) by outcome." },
  { "fusebox_instance_healthy", "gauge", "1 unless the instance is marked down or failing its health checks or ejected." },
  { "fusebox_registry_instances", "gauge", "Live instances per service." },
  { "fusebox_registry_expirations_total", "counter", "Instances expired for missing heartbeats." },
  { "fusebox_registry_stale", "gauge", "1 while the registry's view may be behind its store (etcd unreachable)." },
  { "fusebox_retry_budget_balance", "gauge", "Retries the budget would let through now." },
  { "fusebox_retry_budget_deposits_total", "counter", "Calls counted by the retry budget." },
  { "fusebox_retry_budget_withdrawals_total", "counter", "Retries and hedges the retry budget let through." },
  { "fusebox_retry_budget_exhausted_total", "counter", "Retries and hedges the retry budget refused." },
  { "fusebox_hedges_total", "counter", "Hedged requests by outcome (sent, won, refused by the budget, cancelled attempts)." },
}

-- Named retry budgets and hedges (fusebox.budget's published table):
-- labelled budget="<name>", hedge="<name>".
local function published_samples(out)
  local names = {}
  for name in pairs(published) do names[#names + 1] = name end
  sort(names)
  for _, name in ipairs(names) do
    local obj, l = published[name], label(name)
    if obj.kind == "retry_budget" then
      local st = obj:stats()
      local function add(family, v)
        local t = out[family]
        t[#t + 1] = format('%s{budget="%s"} %.0f', family, l, v)
      end
      add("fusebox_retry_budget_balance", st.balance)
      add("fusebox_retry_budget_deposits_total", st.deposited)
      add("fusebox_retry_budget_withdrawals_total", st.withdrawn)
      add("fusebox_retry_budget_exhausted_total", st.exhausted)
    elseif obj.kind == "hedge" then
      local t = out.fusebox_hedges_total
      for _, k in ipairs { "sent", "won", "refused", "cancelled" } do
        t[#t + 1] = format('fusebox_hedges_total{hedge="%s",outcome="%s"} %.0f', l, k, obj[k])
      end
    end
  end
end

-- A breaker's samples are labelled breaker="<the name it is exported
-- under>", and name="<its name option>" when it has one (the name its
-- events and the report use).
local function breaker_samples(out, name, cb)
  local state, ok, failed, rejected, transitions, timeouts = core.breaker_stats(cb)
  local l = format('breaker="%s"', label(name))
  if cb.name then l = format('%s,name="%s"', l, label(cb.name)) end
  for _, s in ipairs(STATES) do
    out.fusebox_breaker_state[#out.fusebox_breaker_state + 1] =
      format('fusebox_breaker_state{%s,state="%s"} %d', l, s:lower(), s == state and 1 or 0)
  end
  local calls = out.fusebox_breaker_calls_total
  calls[#calls + 1] = format('fusebox_breaker_calls_total{%s,outcome="success"} %.0f', l, ok)
  calls[#calls + 1] = format('fusebox_breaker_calls_total{%s,outcome="failure"} %.0f', l, failed)
  calls[#calls + 1] = format('fusebox_breaker_calls_total{%s,outcome="timeout"} %.0f', l, timeouts)
  local r = out.fusebox_breaker_rejected_calls_total
  r[#r + 1] = format('fusebox_breaker_rejected_calls_total{%s} %.0f', l, rejected)
  local t = out.fusebox_breaker_transitions_total
  t[#t + 1] = format('fusebox_breaker_transitions_total{%s} %.0f', l, transitions)
end

-- A limiter's samples: limiter="<the name it is exported under>",
-- algorithm, and name="<its name option>" when it has one.
local function limiter_samples(out, name, l)
  local m = l:metrics()
  local lb = format('limiter="%s",algorithm="%s"', label(name), m.algorithm)
  if l.name then lb = format('%s,name="%s"', lb, label(l.name)) end
  local g = out.fusebox_limiter_limit
  g[#g + 1] = format("fusebox_limiter_limit{%s} %d", lb, m.limit)
  g = out.fusebox_limiter_inflight
  g[#g + 1] = format("fusebox_limiter_inflight{%s} %d", lb, m.inflight)
  g = out.fusebox_limiter_rejected_total
  g[#g + 1] = format("fusebox_limiter_rejected_total{%s} %.0f", lb, m.rejected)
end

local function registry_samples(out, name, reg)
  core.registry_sweep(reg) -- expiry is lazy: count what is due by now
  local expirations, members = core.registry_stats(reg)
  local l = label(name)
  local live = {}
  local picks, inflight = out.fusebox_balancer_picks_total, out.fusebox_balancer_in_flight
  local reported, healthy = out.fusebox_balancer_reported_calls_total, out.fusebox_instance_healthy
  for _, m in ipairs(members) do
    if m.live then live[m.service] = (live[m.service] or 0) + 1 end
    local who = format('registry="%s",service="%s",instance="%s:%d"', l, label(m.service), label(m.host), m.port)
    picks[#picks + 1] = format("fusebox_balancer_picks_total{%s} %.0f", who, m.picks)
    inflight[#inflight + 1] = format("fusebox_balancer_in_flight{%s} %.0f", who, m.inflight)
    reported[#reported + 1] = format('fusebox_balancer_reported_calls_total{%s,outcome="success"} %.0f', who, m.successes)
    reported[#reported + 1] = format('fusebox_balancer_reported_calls_total{%s,outcome="failure"} %.0f', who, m.failures)
    healthy[#healthy + 1] = format("fusebox_instance_healthy{%s} %d", who, m.healthy and 1 or 0)
  end
  local inst = out.fusebox_registry_instances
  for _, svc in ipairs(core.registry_services(reg)) do
    inst[#inst + 1] = format('fusebox_registry_instances{registry="%s",service="%s"} %d', l, label(svc), live[svc] or 0)
  end
  local e = out.fusebox_registry_expirations_total
  e[#e + 1] = format('fusebox_registry_expirations_total{registry="%s"} %.0f', l, expirations)
  local s = out.fusebox_registry_stale
  s[#s + 1] = format('fusebox_registry_stale{registry="%s"} %d', l, reg:stale() and 1 or 0)
end

-- Returns the exposition text for every exported breaker, limiter and registry
-- (a balancer's registry counts under the balancer's name unless the
-- registry is exported itself).
function M.render()
  local out = {}
  for _, f in ipairs(FAMILIES) do out[f[1]] = {} end
  local names, seen = {}, {}
  for name in pairs(core.exports()) do names[#names + 1] = name end
  sort(names)
  local exports = core.exports()
  for _, name in ipairs(names) do
    local obj = exports[name]
    local mt = getmetatable(obj)
    if mt == core.meta.registry then seen[obj] = true end
  end
  for _, name in ipairs(names) do
    local obj = exports[name]
    local mt = getmetatable(obj)
    if mt == core.meta.breaker then
      breaker_samples(out, name, obj)
    elseif mt == core.meta.limiter then
      limiter_samples(out, name, obj)
    elseif mt == core.meta.registry then
      registry_samples(out, name, obj)
    elseif mt == core.meta.balancer then
      local reg = obj:registry()
      if not seen[reg] then
        seen[reg] = true
        registry_samples(out, name, reg)
      end
    end
  end
  published_samples(out)
  local text = {}
  for _, f in ipairs(FAMILIES) do
    text[#text + 1] = format("# HELP %s %s\n# TYPE %s %s\n", f[1], f[3], f[1], f[2])
    local lines = out[f[1]]
    if #lines > 0 then text[#text + 1] = concat(lines, "\n") .. "\n" end
  end
  return concat(text)
end

local TYPE = { ["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8" }

-- fb.serve_metrics{host="127.0.0.1", port=9464} -> server | nil, err:
-- GET /metrics. It does not keep a run going by itself.
function M.serve(opts)
  opts = opts or {}
  return http.serve {
    host = opts.host or "127.0.0.1", port = opts.port or 9464, background = true,
    handler = function(req)
      if req.path ~= "/metrics" then return 404, TYPE, "see /metrics\n" end
      return 200, TYPE, M.render()
    end,
  }
end

return M
