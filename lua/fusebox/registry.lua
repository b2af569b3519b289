-- fusebox/registry.lua -- registry methods written in Lua: discover(),
-- and the instance views balancers hand out.

local core = select(2, ...)
local base = core.import "fusebox.base"
local ffi = require "ffi"
local api, now, check_name = base.api, base.now, base.check_name
local format = string.format

local registry_mt = base.core.meta.registry
local registry = registry_mt.methods

local M = {}

-- M.state(reg, fname) -> { ptr, services, views }
M.state = base.object_state(registry_mt, "registry", function(ud, ptr)
  return {
    ptr = ptr,
    services = {}, -- name -> fb_service*, filled on first sight
    views = ud:views(), -- instance id -> view; deregister() drops entries
  }
end)

-- Returns the fb_service* called name, or nil if never registered.
function M.service_of(st, name)
  local svc = st.services[name]
  if svc == nil then
    svc = api.registry_service(st.ptr, name)
    if svc == nil then return nil end
    st.services[name] = svc -- services live as long as their registry
  end
  return svc
end

-- The Lua face of an instance: one table per instance, made on first
-- sight and kept while the instance is registered, so picks allocate
-- nothing.
function M.view_of(st, inst)
  local id = api.instance_id(inst)
  local v = st.views[id]
  if v == nil then
    v = { host = ffi.string(api.instance_host(inst)), port = api.instance_port(inst) }
    st.views[id] = v
  end
  return v
end

-- Stores other than memory, by name -> constructor(opts); each backend
-- module adds itself (lua/fusebox/etcd.lua).
M.backends = {}

-- fb.registry{heartbeat_timeout=30 [, backend="memory" | a name in
-- M.backends, that backend's options]} -> a registry
function M.new(opts)
  local backend = type(opts) == "table" and opts.backend or nil
  if backend == nil then return core.registry(opts) end
  if backend == "memory" then
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.backend = nil
    return core.registry(copy)
  end
  local new = M.backends[backend]
  if new == nil then
    local names = { "memory" }
    for name in pairs(M.backends) do names[#names + 1] = name end
    table.sort(names)
    base.argerror(1, "registry", format("unknown backend '%s' (known: %s)", tostring(backend),
      table.concat(names, ", ")))
  end
  return new(opts)
end

local live_out = ffi.new("fb_instance *const *[1]")

-- reg:discover(service) -> array of {host=, port=}: the live instances,
-- in registration order
function registry:discover(service)
  local st = M.state(self, "discover")
  check_name(service, 1, "discover")
  local out = {}
  local svc = M.service_of(st, service)
  if svc == nil then return out end
  local n = api.service_live(svc, now(), live_out)
  local live = live_out[0]
  for i = 0, n - 1 do
    out[i + 1] = M.view_of(st, live[i])
  end
  return out
end

registry_mt.__index = registry
registry_mt.__tostring = function(self)
  return format("fusebox.registry (%p)", self)
end

return M
