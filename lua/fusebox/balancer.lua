-- fusebox/balancer.lua -- balancer methods written in Lua: pick().

local core = select(2, ...)
local base = core.import "fusebox.base"
local registry = core.import "fusebox.registry"
local events = core.import "fusebox.events"
local api, now, check_name = base.api, base.now, base.check_name
local service_of, view_of = registry.service_of, registry.view_of
local format = string.format

local balancer_mt = base.core.meta.balancer
local balancer = balancer_mt.methods

local M = {}

M.state = base.object_state(balancer_mt, "balancer", function(ud, ptr, fname)
  return { ptr = ptr, registry = registry.state(ud:registry(), fname) }
end)

-- lb:pick(service) -> {host=, port=}, or nil when no instance is live
function balancer:pick(service)
  local st = M.state(self, "pick")
  check_name(service, 1, "pick")
  local reg = st.registry
  local svc = service_of(reg, service)
  if svc == nil then return nil end
  local inst = api.balancer_pick(st.ptr, svc, now())
  if inst == nil then return nil end
  local v = view_of(reg, inst)
  if events.on() then events.emit("pick", { service = service, host = v.host, port = v.port }) end
  return v
end

balancer_mt.__index = balancer
balancer_mt.__tostring = function(self)
  return format("fusebox.balancer %s (%p)", self:algorithm(), self)
end

return M
