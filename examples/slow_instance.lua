-- One slow instance among four: how much traffic does each balancer send
-- it? 16 clients call in a loop for 60 s of virtual time; instance d
-- answers in 500 ms, the others in 50 ms. Round robin gives d a quarter
-- of the calls (and clients spend most of their time waiting on it);
-- least_request sees d's calls pile up in flight, peak_ewma sees its
-- latency, and the latency_aware strategy (written in Lua) sees both.
--
--   fusebox run --virtual-time --seed 1 examples/slow_instance.lua
local fb = require "fusebox"
local strategies = fb.strategies

local LATENCY = { a = 0.05, b = 0.05, c = 0.05, d = 0.5 }
local CLIENTS, DURATION = 16, 60

local function simulate(algorithm)
  local reg = fb.registry { heartbeat_timeout = 3600 }
  for _, host in ipairs { "a", "b", "c", "d" } do reg:register("api", host, 80) end
  local lb = fb.balancer(reg, algorithm)
  local calls, done = {}, 0
  local finish = fb.now() + DURATION
  for _ = 1, CLIENTS do
    fb.spawn(function()
      while fb.now() < finish do
        local host = lb:call("api", function(inst)
          fb.sleep(LATENCY[inst.host])
          return inst.host
        end)
        calls[host] = (calls[host] or 0) + 1
      end
      done = done + 1
    end)
  end
  while done < CLIENTS do fb.sleep(1) end
  return calls
end

local rows = {
  { "round_robin", "round_robin" },
  { "least_request", "least_request" },
  { "peak_ewma", "peak_ewma" },
  { "latency_aware (Lua)", strategies.latency_aware() },
}
print(string.format("%-20s %6s %6s %6s %9s %7s %8s", "balancer", "a", "b", "c",
  "d (slow)", "total", "d share"))
for _, row in ipairs(rows) do
  local c = simulate(row[2])
  local total = (c.a or 0) + (c.b or 0) + (c.c or 0) + (c.d or 0)
  print(string.format("%-20s %6d %6d %6d %9d %7d %7.1f%%", row[1], c.a or 0,
    c.b or 0, c.c or 0, c.d or 0, total, 100 * (c.d or 0) / total))
end
