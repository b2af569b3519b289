-- A cold instance joining: what slow start spares it. Four warm
-- instances answer in 20 ms; at t = 30 s a fifth joins cold, answering in
-- 200 ms at first and warming linearly to 20 ms over 30 s (caches, JIT,
-- connection pools). 20 clients call in a loop, 20 calls a second each,
-- for 90 s of virtual time. Without slow start the newcomer takes its
-- full share at once; with Envoy's slow start (window 30 s) it ramps from
-- 10% of its weight. Columns: calls to the newcomer in its first 30 s,
-- those slower than 100 ms, and the p99 and p99.9 latency of all calls in
-- that half minute.
--
--   fusebox run --virtual-time --seed 1 examples/slow_start.lua
local fb = require "fusebox"

local CLIENTS, JOIN, WARM, DURATION, PACE = 20, 30, 30, 90, 0.05

local function latency(host, age)
  if host ~= "new" then return 0.02 end
  local cold = 1 - age / WARM
  return 0.02 * (1 + 9 * (cold > 0 and cold or 0))
end

local function quantile(v, q)
  table.sort(v)
  return v[math.max(1, math.ceil(q * #v))]
end

local function simulate(algorithm, opts)
  local reg = fb.registry { static = true }
  for _, h in ipairs { "a", "b", "c", "d" } do reg:register("api", h, 80) end
  local lb = fb.balancer(reg, algorithm, opts)
  local start = fb.now()
  local join = start + JOIN
  fb.at(join, function() reg:register("api", "new", 80) end)
  local to_new, slow, window, done = 0, 0, {}, 0
  local finish = start + DURATION
  for _ = 1, CLIENTS do
    fb.spawn(function()
      while fb.now() < finish do
        local t = fb.now()
        local inst = lb:pick("api")
        local took = latency(inst.host, t - join)
        fb.sleep(took)
        lb:done(inst, true, took)
        if t >= join and t < join + WARM then
          window[#window + 1] = took
          if inst.host == "new" then
            to_new = to_new + 1
            if took > 0.1 then slow = slow + 1 end
          end
        end
        fb.sleep(PACE)
      end
      done = done + 1
    end)
  end
  while done < CLIENTS do fb.sleep(1) end
  return to_new, slow, quantile(window, 0.99), quantile(window, 0.999)
end

local rows = {
  { "weighted_round_robin", "weighted_round_robin", nil },
  { "  + slow start 30 s", "weighted_round_robin", { slow_start = { slow_start_window = 30 } } },
  { "  + aggression 0.5", "weighted_round_robin", { slow_start = { slow_start_window = 30, aggression = 0.5 } } },
  { "random", "random", nil },
  { "  + slow start 30 s", "random", { slow_start = { slow_start_window = 30 } } },
  { "least_request", "least_request", nil },
  { "  + slow start 30 s", "least_request", { slow_start = { slow_start_window = 30 } } },
}
print(string.format("%-24s %8s %9s %9s %9s", "", "to new", "> 100 ms", "p99 ms", "p99.9 ms"))
for _, row in ipairs(rows) do
  local n, slow, p99, p999 = simulate(row[2], row[3])
  print(string.format("%-24s %8d %9d %9.0f %9.0f", row[1], n, slow, p99 * 1000, p999 * 1000))
end
