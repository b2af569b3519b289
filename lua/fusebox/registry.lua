-- fusebox/registry.lua -- registry methods written in Lua: discover(),
-- and the instance views balancers hand out.
--
-- A view is one table per instance, {host=, port=, id=} plus read-only
-- fields read live from the core on access: weight, zone, meta, healthy,
-- inflight, successes, failures, latency. Views are cached by the slot of
-- their instance id (ids are generation << 32 | slot) in plain arrays:
-- picks allocate nothing and never wait for a weak table to be swept, and
-- the cache is bounded by the most instances ever registered at once. A
-- view outliving its instance (deregistered) keeps host and port, and its
-- live fields read nil.

local core = select(2, ...)
local base = core.import "fusebox.base"
local ffi = require "ffi"
local api, now, check_name = base.api, base.now, base.check_name
local format, error, rawset, rawget = string.format, error, rawset, rawget
local getmetatable = getmetatable

local registry_mt = base.core.meta.registry
local registry = registry_mt.methods

local M = {}

local function nonzero(x) return x ~= 0 end

-- field -> function(instance pointer, id, state) reading it live.
local fields = {
  weight = function(p) return api.instance_weight(p) end,
  zone = function(p)
    local z = api.instance_zone(p)
    if z ~= nil then return ffi.string(z) end
  end,
  meta = function(_, id, st) return st.env.meta[id] end,
  healthy = function(p) return nonzero(api.instance_healthy(p)) end,
  inflight = function(p) return api.instance_inflight(p) end,
  successes = function(p) return api.instance_successes(p) end,
  failures = function(p) return api.instance_failures(p) end,
  latency = function(p) return api.instance_latency(p) end,
}

local function read_only()
  error("instance views are read-only", 2)
end

-- M.state(reg, fname) -> { ptr, services, views, view_ids, env, view_mt }
M.state = base.object_state(registry_mt, "registry", function(ud, ptr)
  local st = {
    ptr = ptr,
    services = {}, -- name -> fb_service*, filled on first sight
    views = {},    -- slot -> view of the instance last seen in it
    view_ids = {}, -- slot -> that instance's id
    env = debug.getfenv(ud), -- env.meta: id -> meta (lua_registry.c; replaced
                             -- when reaped instances' meta is dropped)
  }
  st.view_mt = {
    __index = function(v, key)
      local field = fields[key]
      if field == nil then return nil end
      local id = rawget(v, "id")
      local p = api.registry_instance(st.ptr, id)
      if p == nil then return nil end
      return field(p, id, st)
    end,
    __newindex = read_only,
    __tostring = function(v) return format("fusebox.instance %s:%d", v.host, v.port) end,
  }
  return st
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
  local slot = id % 4294967296
  if st.view_ids[slot] == id then return st.views[slot] end
  local v = setmetatable({}, st.view_mt)
  rawset(v, "host", ffi.string(api.instance_host(inst)))
  rawset(v, "port", api.instance_port(inst))
  rawset(v, "id", id) -- a plain field, not a weak table the GC must sweep
  st.views[slot], st.view_ids[slot] = v, id
  return v
end

-- Returns the id of view v if it is one of this registry's views.
function M.id_of(st, v)
  if getmetatable(v) ~= st.view_mt then return nil end
  return rawget(v, "id")
end

-- Stores other than memory, by name -> constructor(opts); each backend
-- module adds itself (lua/fusebox/etcd.lua).
M.backends = {}

-- fb.registry{heartbeat_timeout=30, reap_after=3*heartbeat_timeout,
-- max_services=10000, max_instances=100000 [, backend="memory" | a name in
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

-- reg:discover(service) -> array of instance views: the live instances,
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
registry_mt.__newindex = base.read_only("fusebox.registry")
registry_mt.__tostring = function(self)
  return format("fusebox.registry (%p)", self)
end

return M
