-- fusebox/serve.lua -- a registry over HTTP + JSON, for services in other
-- processes (`fusebox serve`, fb.serve_registry{...}):
--
--   PUT    /v1/services/{name}/instances                    {"host","port","weight","meta"}
--   PUT    /v1/services/{name}/instances/{host}:{port}/heartbeat
--   DELETE /v1/services/{name}/instances/{host}:{port}
--   GET    /v1/services/{name}[?index=N&wait=30s]           live instances
--   GET    /v1/services[?index=N&wait=30s]
--
-- Every answer is JSON and carries X-Fusebox-Index, the registry's
-- modification index. A GET with index=N blocks until the index passes N
-- or the wait (default 5m, at most 10m) runs out, as Consul's blocking
-- queries do: a change made through the API wakes the waiters at once,
-- expiry is noticed by a sweep every sweep_interval seconds.

local core = select(2, ...)
local http = core.import "fusebox.http"
local now = core.now
local encode, decode, ARRAY = core.json_encode, core.json_decode, core.json_array
local format, find, sub, tonumber, tostring, type, pairs = string.format, string.find, string.sub, tonumber, tostring, type, pairs
local setmetatable, getmetatable, ipairs = setmetatable, getmetatable, ipairs

local M = {}

local MAX_WAIT, DEFAULT_WAIT = 600, 300
local JSON = { ["Content-Type"] = "application/json" }

local function answer(api, status, body, service)
  local index = core.registry_index(api.registry, service)
  return status, { ["Content-Type"] = "application/json", ["X-Fusebox-Index"] = format("%d", index) },
    encode(body)
end

local function fail(status, fmt, ...)
  return status, JSON, encode { error = format(fmt, ...) }
end

-- "/v1/services/a/b" -> { "v1", "services", "a", "b" }
local function segments(path)
  local out, i = {}, 2
  while i <= #path + 1 do
    local j = find(path, "/", i, true) or #path + 1
    out[#out + 1] = sub(path, i, j - 1)
    i = j + 1
  end
  return out
end

local function query_of(q)
  local out, i = {}, 1
  while i <= #q do
    local j = find(q, "&", i, true) or #q + 1
    local part = sub(q, i, j - 1)
    local eq = find(part, "=", 1, true)
    if eq then out[sub(part, 1, eq - 1)] = sub(part, eq + 1) else out[part] = "" end
    i = j + 1
  end
  return out
end

local function valid_name(s)
  return #s >= 1 and #s <= 128 and find(s, "^[%w%._%-]+$") ~= nil
end

local function valid_host(s)
  return type(s) == "string" and #s >= 1 and #s <= 253 and find(s, "^[%w%._%-:]+$") ~= nil
end

local function valid_port(p)
  return type(p) == "number" and p >= 1 and p <= 65535 and p % 1 == 0
end

-- "10.0.0.1:8080", "[::1]:8080" -> host, port | nil
local function host_port(s)
  local colon = nil
  for i = #s, 1, -1 do
    if sub(s, i, i) == ":" then colon = i; break end
  end
  if not colon then return nil end
  local host, port = sub(s, 1, colon - 1), tonumber(sub(s, colon + 1))
  if sub(host, 1, 1) == "[" and sub(host, -1) == "]" then host = sub(host, 2, -2) end
  if not valid_host(host) or not valid_port(port) then return nil end
  return host, port
end

-- "30s", "500ms", "2m", "10" -> seconds | nil
local function duration(s)
  local n, unit = s:match("^(%d+%.?%d*)(%a*)$")
  n = tonumber(n)
  if not n then return nil end
  local scale = ({ [""] = 1, s = 1, ms = 0.001, m = 60 })[unit]
  return scale and n * scale
end

local REGISTER_FIELDS = { host = true, port = true, weight = true, meta = true }

-- Checks a register body; returns the decoded object | nil, why.
local function check_instance(body)
  local v, err = decode(body)
  if v == nil then return nil, err end
  if type(v) ~= "table" or getmetatable(v) == ARRAY then return nil, "body must be a JSON object" end
  for k in pairs(v) do
    if not REGISTER_FIELDS[k] then return nil, format("unknown field '%s'", k) end
  end
  if not valid_host(v.host) then return nil, "host must be a host name or IP address" end
  if type(v.port) ~= "number" then -- "80" is a string, not a port: say so, as reg:register does
    return nil, format("port must be a number, got %s", v.port == core.json_null and "null" or type(v.port))
  end
  if not valid_port(v.port) then return nil, format("port must be an integer 1..65535, got %s", tostring(v.port)) end
  if v.weight ~= nil and (type(v.weight) ~= "number" or not (v.weight > 0)) then
    return nil, "weight must be a positive number"
  end
  if v.meta ~= nil then
    if type(v.meta) ~= "table" or getmetatable(v.meta) == ARRAY then return nil, "meta must be an object" end
    for _, mv in pairs(v.meta) do
      if type(mv) ~= "string" then return nil, "meta values must be strings" end
    end
  end
  return v
end

-- ------------------------------------------------------------ blocking

local function notify(api)
  for co in pairs(api.waiters) do core.wake(co) end
end

-- Waits while the index of service (or the registry) is <= index.
local function block(api, service, q)
  if q.index == nil then return nil end
  local index, wait = tonumber(q.index), DEFAULT_WAIT
  if not index or index < 0 then return "index must be a non-negative integer" end
  if q.wait then
    wait = duration(q.wait)
    if not wait then return format("bad wait '%s' (want e.g. 30s, 500ms, 2m)", q.wait) end
    if wait > MAX_WAIT then wait = MAX_WAIT end
  end
  local deadline = now() + wait
  local co = coroutine.running()
  while core.registry_index(api.registry, service) <= index and not api.closed do
    local left = deadline - now()
    if left <= 0 then break end
    api.waiters[co] = true
    core.wait("blocking query", left)
    api.waiters[co] = nil
  end
end

-- ------------------------------------------------------------- routes

local function instance_json(api, service, view)
  local key = view.host .. ":" .. view.port
  local extra = api.extra[service] and api.extra[service][key]
  return {
    host = view.host, port = view.port,
    weight = extra and extra.weight or 1,
    meta = extra and extra.meta or {},
  }
end

local function list_service(api, name, q)
  local why = block(api, name, q)
  if why then return fail(400, "%s", why) end
  local out = setmetatable({}, ARRAY)
  for i, v in ipairs(api.registry:discover(name)) do out[i] = instance_json(api, name, v) end
  return answer(api, 200, { service = name, index = core.registry_index(api.registry, name), instances = out }, name)
end

local function list_services(api, q)
  local why = block(api, nil, q)
  if why then return fail(400, "%s", why) end
  local out = setmetatable({}, ARRAY)
  for _, name in ipairs(core.registry_services(api.registry)) do
    out[#out + 1] = { name = name, live = #api.registry:discover(name) }
  end
  return answer(api, 200, { index = core.registry_index(api.registry), services = out })
end

-- Runs a registry change and wakes blocking queries if it changed anything.
local function change(api, fn, ...)
  local before = core.registry_index(api.registry)
  local result = fn(api.registry, ...)
  if core.registry_index(api.registry) ~= before then notify(api) end
  return result
end

local function register(api, name, req)
  local v, why = check_instance(req.body)
  if not v then return fail(400, "%s", why) end
  local added = change(api, api.registry.register, name, v.host, v.port)
  local extra = api.extra[name] or {}
  api.extra[name] = extra
  extra[v.host .. ":" .. v.port] = { weight = v.weight, meta = v.meta }
  return answer(api, added and 201 or 200, { added = added }, name)
end

local function heartbeat(api, name, host, port)
  local added = change(api, api.registry.heartbeat, name, host, port)
  return answer(api, 200, { added = added }, name)
end

local function deregister(api, name, host, port)
  if not change(api, api.registry.deregister, name, host, port) then
    return fail(404, "no instance %s:%d in service '%s'", host, port, name)
  end
  if api.extra[name] then api.extra[name][host .. ":" .. port] = nil end
  return answer(api, 200, { removed = true }, name)
end

local function not_allowed(allow)
  local status, _, body = fail(405, "method not allowed (allowed: %s)", allow)
  return status, { ["Content-Type"] = "application/json", Allow = allow }, body
end

local function route(api, req)
  local s = segments(req.path)
  if s[1] ~= "v1" or s[2] ~= "services" then return fail(404, "no such endpoint '%s'", req.path) end
  local m, n, name = req.method, #s, s[3]
  if n == 2 then
    if m ~= "GET" then return not_allowed("GET") end
    return list_services(api, query_of(req.query))
  end
  if not valid_name(name) then return fail(400, "bad service name (want 1-128 of A-Z a-z 0-9 . _ -)") end
  if n == 3 then
    if m ~= "GET" then return not_allowed("GET") end
    return list_service(api, name, query_of(req.query))
  end
  if s[4] ~= "instances" or n > 6 then return fail(404, "no such endpoint '%s'", req.path) end
  if n == 4 then
    if m ~= "PUT" then return not_allowed("PUT") end
    return register(api, name, req)
  end
  local host, port = host_port(s[5])
  if not host then return fail(400, "bad instance '%s' (want host:port, port 1..65535)", s[5]) end
  if n == 5 then
    if m ~= "DELETE" then return not_allowed("DELETE") end
    return deregister(api, name, host, port)
  end
  if s[6] ~= "heartbeat" then return fail(404, "no such endpoint '%s'", req.path) end
  if m ~= "PUT" then return not_allowed("PUT") end
  return heartbeat(api, name, host, port)
end

-- ----------------------------------------------------------- the server

local api_mt = {}
api_mt.__index = api_mt

function api_mt:port() return self.server:port() end

function api_mt:close()
  if self.closed then return end
  self.closed = true
  self.server:close()
  notify(self)
  core.wake(self.sweeper)
end

local OPTIONS = {
  registry = true, host = true, port = true, max_body = true, read_timeout = true,
  sweep_interval = true, max_connections = true,
}

-- fb.serve_registry{registry=fb.registry{}, host="127.0.0.1", port=8500,
-- max_body=64 KiB, read_timeout=10, sweep_interval=1} -> api | nil, err;
-- api.registry, api:port(), api:close().
function M.serve(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then error(format("bad argument #1 to 'serve_registry' (unknown option '%s')", tostring(k)), 2) end
  end
  local api = setmetatable({
    registry = opts.registry or core.registry {},
    waiters = {}, -- coroutines in blocking queries
    extra = {},   -- service -> "host:port" -> { weight=, meta= }
    closed = false,
  }, api_mt)
  local server, err = http.serve {
    host = opts.host or "127.0.0.1", port = opts.port or 8500,
    max_body = opts.max_body or 64 * 1024, read_timeout = opts.read_timeout,
    max_connections = opts.max_connections,
    handler = function(req) return route(api, req) end,
  }
  if not server then return nil, err end
  api.server = server
  local interval = opts.sweep_interval or 1
  api.sweeper = core.spawn(function()
    while not api.closed do
      core.wait("registry sweep", interval)
      local before = core.registry_index(api.registry)
      core.registry_sweep(api.registry)
      if core.registry_index(api.registry) ~= before then notify(api) end
    end
  end)
  return api
end

return M
