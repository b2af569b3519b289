-- The document's service-discovery demo: a registry with a 30 s heartbeat
-- timeout and a round-robin balancer over it.
--
--   fusebox run examples/service_discovery.lua
local fb = require "fusebox"

local registry = fb.registry { heartbeat_timeout = 30 }
local lb = fb.balancer(registry, "round_robin")

local function register(service, host, port)
  if registry:register(service, host, port) then
    print(string.format("Registered service: %s at %s:%d", service, host, port))
  end
end

register("user-service", "192.168.1.10", 8080)
register("user-service", "192.168.1.11", 8080)
register("order-service", "192.168.1.20", 8081)

local function show(inst)
  if inst then return string.format("('%s', %d)", inst.host, inst.port) end
  return "None"
end

print("Discover user-service:")
for _ = 1, 4 do
  print("  -> " .. show(lb:pick("user-service")))
end

print("\nDiscover order-service:")
print("  -> " .. show(lb:pick("order-service")))
