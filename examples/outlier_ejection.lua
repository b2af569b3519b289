-- Five of ten instances failing: what Envoy's outlier detection does with
-- and without room to eject them. 20 clients call a service of ten
-- instances for 300 s of virtual time, ten calls a second each; from
-- t = 0 instances 6..10 fail every call (fast: 5 ms), the others answer
-- in 20 ms. Rows: no detection; Envoy's defaults (max_ejection_percent
-- 10: one instance out at a time); max_ejection_percent 50 and 100.
-- "out at once" is the most instances ejected together; the ejections
-- grow as base_ejection_time x times ejected (30, 60, 90 s, ...), so the
-- failing ones are tried less and less. Envoy's success-rate detection
-- ejects none here: with half the instances at 0% the standard deviation
-- is so wide that the cut (mean - 1.9 stdev) is below zero.
--
--   fusebox run --virtual-time --seed 1 examples/outlier_ejection.lua
local fb = require "fusebox"

local CLIENTS, DURATION, PACE = 20, 300, 0.1

local function failing(host) return tonumber(host:match("%d+$")) > 5 end

local function simulate(algorithm, opts)
  local reg = fb.registry { static = true }
  for i = 1, 10 do reg:register("api", "10.0.0." .. i, 80) end
  local lb = fb.balancer(reg, algorithm, opts)
  local ok, failed, most, done = 0, 0, 0, 0
  local finish = fb.now() + DURATION
  for _ = 1, CLIENTS do
    fb.spawn(function()
      while fb.now() < finish do
        local inst = lb:pick("api")
        local bad = failing(inst.host)
        fb.sleep(bad and 0.005 or 0.02)
        lb:done(inst, not bad, bad and 0.005 or 0.02)
        if bad then failed = failed + 1 else ok = ok + 1 end
        local d = lb:outlier()
        if d and d:stats().ejected > most then most = d:stats().ejected end
        fb.sleep(PACE)
      end
      done = done + 1
    end)
  end
  while done < CLIENTS do fb.sleep(1) end
  local d = lb:outlier()
  return ok, failed, most, d and d:stats()
end

local rows = {
  { "no outlier detection", "round_robin", nil },
  { "Envoy defaults (max 10%)", "round_robin", { outlier = {} } },
  { "max_ejection_percent 50", "round_robin", { outlier = { max_ejection_percent = 50 } } },
  { "max_ejection_percent 100", "round_robin", { outlier = { max_ejection_percent = 100 } } },
}
print(string.format("%-26s %7s %7s %7s %10s %9s %8s", "", "ok", "failed", "ok %",
  "ejections", "overflow", "out at once"))
for _, row in ipairs(rows) do
  local ok, failed, most, st = simulate(row[2], row[3])
  local ejections = st and st.ejections.consecutive_5xx + st.ejections.success_rate
    + st.ejections.consecutive_gateway_failure + st.ejections.failure_percentage or 0
  print(string.format("%-26s %7d %7d %6.1f%% %10d %9d %8d", row[1], ok, failed,
    100 * ok / (ok + failed), ejections, st and st.overflow or 0, most))
end
