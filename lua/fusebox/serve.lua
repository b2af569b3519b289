-- fusebox/serve.lua -- a registry over HTTP + JSON, for services in other
-- processes (`fusebox serve`, fb.serve_registry{...}):
--
--   PUT    /v1/services/{name}/instances      {"host","port","weight","zone","meta"}
--   PUT    /v1/services/{name}/instances/{host}:{port}/heartbeat
--   DELETE /v1/services/{name}/instances/{host}:{port}
--   GET    /v1/services/{name}[?index=N&wait=30s]           live instances
--   GET    /v1/services[?index=N&wait=30s]
--
-- Every answer is JSON and carries X-Fusebox-Index, the registry's
-- modification index. A GET with index=N blocks until the index passes N
-- or the wait (default 5m, at most 10m) runs out, as Consul's blocking
-- queries do: a change made through the API wakes the waiters at once,
-- expiry is noticed by a sweep every sweep_interval seconds. An index
-- above the current one (a client that saw a server since restarted)
-- answers at once; a client that closes its connection, or sends more,
-- ends its wait at once, so a parked query never holds a connection
-- slot for a client that has gone.
--
-- Writes go through reg:register / heartbeat / deregister, so the API
-- checks exactly what the Lua API checks and stores weight, zone and
-- meta in the registry, where balancers see them: one validation, one
-- copy. A bad value is a 400 with the registry's reason; a registry that
-- refuses for any other reason (full) is a 429 with its message.
--
-- With a token, writes need "Authorization: Bearer TOKEN" (401 without
-- one, 403 with a wrong one), and reads too with auth_reads. Without a
-- token the server listens on loopback only, unless told insecure.

local core = select(2, ...)
local http = core.import "fusebox.http"
local base = core.import "fusebox.base"
local tls = core.import "fusebox.tls"
local bit = require "bit"
local now, argerror = core.now, base.argerror
local encode, decode, ARRAY = core.json_encode, core.json_decode, core.json_array
local format, find, sub, byte, match = string.format, string.find, string.sub, string.byte, string.match
local tonumber, tostring, type, pairs, pcall = tonumber, tostring, type, pairs, pcall
local setmetatable, getmetatable, ipairs = setmetatable, getmetatable, ipairs
local bor, bxor = bit.bor, bit.bxor

local M = {}

local MAX_WAIT, DEFAULT_WAIT = 600, 300
local MAX_INDEX = 2 ^ 53 -- indexes are exact integers up to here
local MAX_TOKEN = 4096
local JSON = { ["Content-Type"] = "application/json" }

local function fail(status, fmt, ...)
  return status, JSON, encode { error = format(fmt, ...) }
end

-- A body that cannot be encoded (a value a script stored in meta, say)
-- is a 500 with a JSON reason, never a 200 with an empty body.
local function answer(api, status, body, service)
  local text, err = encode(body)
  if text == nil then
    core.report("registry API", "cannot encode an answer: " .. tostring(err))
    return fail(500, "cannot encode the answer: %s", tostring(err))
  end
  local index = core.registry_index(api.registry, service)
  return status, { ["Content-Type"] = "application/json", ["X-Fusebox-Index"] = format("%d", index) }, text
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

-- The one parser of numbers in paths and query strings: decimal digits
-- only (no sign, point, exponent, hex, space or "inf"), at most max ->
-- the integer | nil.
local function decimal(s, max)
  if #s == 0 or #s > 16 or find(s, "^%d+$") == nil then return nil end
  local n = tonumber(s)
  if n > max then return nil end
  return n
end

local function valid_name(s)
  return #s >= 1 and #s <= 128 and find(s, "^[%w%._%-]+$") ~= nil
end

-- Hosts an instance path can name (the registry itself takes any
-- non-empty string; one registered over HTTP must be addressable by its
-- heartbeat and DELETE paths).
local function valid_host(s)
  return type(s) == "string" and #s >= 1 and #s <= 253 and find(s, "^[%w%._%-:]+$") ~= nil
end

local HOST_RULE = "host must be 1-253 of A-Z a-z 0-9 . _ - : (it names the instance in paths)"

-- Why the string s is no valid_host: its length, or its first byte
-- outside the set, named (a NUL or control byte as such, not printed).
local function bad_host(s)
  if #s < 1 or #s > 253 then return format("%s, got %d bytes", HOST_RULE, #s) end
  local at = find(s, "[^%w%._%-:]")
  local b = byte(s, at)
  local what = b == 0 and "NUL" or (b < 32 or b > 126) and format("byte 0x%02x", b) or format("'%s'", sub(s, at, at))
  return format("%s, got %s at byte %d", HOST_RULE, what, at)
end

-- "10.0.0.1:8080", "[::1]:8080" -> host, port | nil
local function host_port(s)
  local colon = nil
  for i = #s, 1, -1 do
    if sub(s, i, i) == ":" then colon = i; break end
  end
  if not colon then return nil end
  local host, port = sub(s, 1, colon - 1), decimal(sub(s, colon + 1), 65535)
  if sub(host, 1, 1) == "[" and sub(host, -1) == "]" then host = sub(host, 2, -2) end
  if not valid_host(host) or not port or port < 1 then return nil end
  return host, port
end

local UNITS = { [""] = 1, s = 1, ms = 0.001, m = 60 }

-- "30s", "500ms", "2m", "10" -> seconds, at most MAX_WAIT | nil
local function duration(s)
  local digits, unit = match(s, "^(%d+)(%a*)$")
  local n = digits and decimal(digits, MAX_INDEX)
  local scale = UNITS[unit]
  if not n or not scale then return nil end
  n = n * scale
  return n < MAX_WAIT and n or MAX_WAIT
end

local REGISTER_FIELDS = { host = true, port = true, weight = true, zone = true, meta = true }

-- Checks the shape of a register body (the registry checks the values);
-- returns the decoded object | nil, why.
local function check_instance(body)
  local v, err = decode(body)
  if v == nil then return nil, err end
  if type(v) ~= "table" or getmetatable(v) == ARRAY then return nil, "body must be a JSON object" end
  for k in pairs(v) do
    if not REGISTER_FIELDS[k] then return nil, format("unknown field '%s'", k) end
  end
  if type(v.host) == "string" and not valid_host(v.host) then return nil, bad_host(v.host) end
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

-- Waits while the index of service (or the registry) is index, the
-- client is still there and has sent nothing more; returns why the
-- query is malformed, or nil.
local function block(api, service, q, conn)
  if q.index == nil then return nil end
  local index = decimal(q.index, MAX_INDEX)
  if not index then
    return format("index must be a decimal integer 0..%d, got '%s'", MAX_INDEX, q.index)
  end
  local wait = DEFAULT_WAIT
  if q.wait then
    wait = duration(q.wait)
    if not wait then return format("bad wait '%s' (want e.g. 30s, 500ms, 2m; at most 10m)", q.wait) end
  end
  local deadline = now() + wait
  local co = coroutine.running()
  while core.registry_index(api.registry, service) == index and not api.closed do
    local left = deadline - now()
    if left <= 0 or conn:watch() then break end
    api.waiters[co] = true
    local _, why = core.wait("blocking query", left)
    api.waiters[co] = nil
    if why == "closed" then conn:close() end -- nobody to answer: free the slot now
    if why then break end
  end
  conn:unwatch()
end

-- ------------------------------------------------------------- routes

local function instance_json(view)
  return {
    host = view.host, port = view.port, weight = view.weight, zone = view.zone,
    meta = view.meta or {},
  }
end

local function list_service(api, name, q, conn)
  local why = block(api, name, q, conn)
  if why then return fail(400, "%s", why) end
  local out = setmetatable({}, ARRAY)
  for i, v in ipairs(api.registry:discover(name)) do out[i] = instance_json(v) end
  return answer(api, 200, { service = name, index = core.registry_index(api.registry, name), instances = out }, name)
end

local function list_services(api, q, conn)
  local why = block(api, nil, q, conn)
  if why then return fail(400, "%s", why) end
  local out = setmetatable({}, ARRAY)
  for _, name in ipairs(core.registry_services(api.registry)) do
    out[#out + 1] = { name = name, live = #api.registry:discover(name) }
  end
  return answer(api, 200, { index = core.registry_index(api.registry), services = out })
end

-- Runs the registry method called method and wakes blocking queries if
-- it changed anything -> true, its result | false, status, why: the
-- registry's "bad argument" is a 400 with its reason, any other refusal
-- (a full registry) a 429 with its message, without the Lua method's
-- name in front.
local function change(api, method, ...)
  local before = core.registry_index(api.registry)
  local ok, result = pcall(api.registry[method], api.registry, ...)
  if core.registry_index(api.registry) ~= before then notify(api) end
  if ok then return true, result end
  local msg = tostring(result)
  local why = match(msg, "bad argument #%d+ to '[^']*' %((.*)%)$")
  if why then return false, 400, why end
  msg = match(msg, "^[^:]*:%d+: (.*)$") or msg
  if sub(msg, 1, #method + 2) == method .. ": " then msg = sub(msg, #method + 3) end -- a Lua name, not the API's
  return false, msg == "out of memory" and 503 or 429, msg
end

local function register(api, name, req)
  local v, why = check_instance(req.body)
  if not v then return fail(400, "%s", why) end
  local ok, added, why = change(api, "register", name, v.host, v.port,
    { weight = v.weight, zone = v.zone, meta = v.meta })
  if not ok then return fail(added, "%s", why) end -- added is the status here
  return answer(api, added and 201 or 200, { added = added }, name)
end

local function heartbeat(api, name, host, port)
  local ok, added, why = change(api, "heartbeat", name, host, port)
  if not ok then return fail(added, "%s", why) end
  return answer(api, 200, { added = added }, name)
end

local function deregister(api, name, host, port)
  local ok, removed, why = change(api, "deregister", name, host, port)
  if not ok then return fail(removed, "%s", why) end
  if not removed then return fail(404, "no instance %s:%d in service '%s'", host, port, name) end
  return answer(api, 200, { removed = true }, name)
end

local function not_allowed(allow)
  local status, _, body = fail(405, "method not allowed (allowed: %s)", allow)
  return status, { ["Content-Type"] = "application/json", Allow = allow }, body
end

-- True when a and b are the same string, in a time that depends on the
-- length of b (the token) only, not on where they differ.
local function same(a, b)
  local diff = bxor(#a, #b)
  for i = 1, #b do diff = bor(diff, bxor(byte(a, i) or 0, byte(b, i))) end
  return diff == 0
end

local CHALLENGE = { ["Content-Type"] = "application/json", ["WWW-Authenticate"] = 'Bearer realm="fusebox"' }

-- -> nil when req may go on, else the 401/403 answer.
local function refused(api, req)
  local write = req.method ~= "GET" and req.method ~= "HEAD"
  if not api.token or not (write or api.auth_reads) then return nil end
  local given = match(req.headers.authorization or "", "^[Bb][Ee][Aa][Rr][Ee][Rr] +(%S+) *$")
  if not given then
    local status, _, body = fail(401, "%s needs a bearer token (Authorization: Bearer TOKEN)",
      write and "a write" or "a read")
    return status, CHALLENGE, body
  end
  if not same(given, api.token) then return fail(403, "wrong token") end
end

local function route(api, req, conn)
  local status, headers, body = refused(api, req)
  if status then return status, headers, body end
  local s = segments(req.path)
  if s[1] ~= "v1" or s[2] ~= "services" then return fail(404, "no such endpoint '%s'", req.path) end
  local m, n, name = req.method, #s, s[3]
  if n == 2 then
    if m ~= "GET" then return not_allowed("GET") end
    return list_services(api, query_of(req.query), conn)
  end
  if not valid_name(name) then return fail(400, "bad service name (want 1-128 of A-Z a-z 0-9 . _ -)") end
  if n == 3 then
    if m ~= "GET" then return not_allowed("GET") end
    return list_service(api, name, query_of(req.query), conn)
  end
  if s[4] ~= "instances" or n > 6 then return fail(404, "no such endpoint '%s'", req.path) end
  if n == 4 then
    if m ~= "PUT" then return not_allowed("PUT") end
    return register(api, name, req)
  end
  local host, port = host_port(s[5])
  if not host then return fail(400, "bad instance '%s' (want host:port, port 1..65535 in decimal)", s[5]) end
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

-- Blocking queries answer with the current state, the sweeper ends.
local function stop(api)
  if api.closed then return end
  api.closed = true
  notify(api)
  core.wake(api.sweeper)
end

function api_mt:close()
  stop(self)
  self.server:close()
end

-- api:shutdown(): the graceful close (fusebox.lifecycle; SIGTERM does it)
function api_mt:shutdown()
  self.server:shutdown()
end

local OPTIONS = {
  registry = true, host = true, port = true, max_body = true, read_timeout = true,
  sweep_interval = true, max_connections = true, token = true, auth_reads = true,
  insecure = true, tls = true,
}

local function loopback(host)
  return host == "localhost" or host == "::1" or find(host, "^127%.%d+%.%d+%.%d+$") ~= nil
end

local function check_token(token)
  if token == nil then return nil end
  if type(token) ~= "string" or #token < 1 or #token > MAX_TOKEN or find(token, "[^\33-\126]") then
    argerror(1, "serve_registry", format("token must be 1..%d printable characters without spaces, got %s",
      MAX_TOKEN, type(token) == "string" and format("%d bytes", #token) or type(token)))
  end
  return token
end

-- fb.serve_registry{registry=fb.registry{}, host="127.0.0.1", port=8500,
-- max_body=64 KiB, read_timeout=10, sweep_interval=1, max_connections=1024,
-- token=nil, auth_reads=false, insecure=false, tls=nil} -> api | nil,
-- err; api.registry, api:port(), api:close(), api:shutdown() (graceful:
-- blocking queries answer at once). A host other than loopback needs a
-- token, or insecure=true. tls = {cert_file=, key_file= [, ca_file=]}
-- serves HTTPS (ca_file: clients need a certificate it signed), as
-- fb.http.serve does.
function M.serve(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then argerror(1, "serve_registry", format("unknown option '%s'", tostring(k))) end
  end
  local host = opts.host or "127.0.0.1"
  local token = check_token(opts.token)
  if type(host) == "string" and not loopback(host) and not token and not opts.insecure then
    argerror(1, "serve_registry", format("host '%s' is not loopback: give a token, or insecure=true", host))
  end
  if opts.auth_reads and not token then
    argerror(1, "serve_registry", "auth_reads needs a token")
  end
  tls.server(opts.tls, 1, "serve_registry")
  local api = setmetatable({
    registry = opts.registry or core.registry {},
    waiters = {}, -- coroutines in blocking queries
    token = token,
    auth_reads = opts.auth_reads and true or false,
    closed = false,
  }, api_mt)
  local server, err = http.serve {
    host = host, port = opts.port or 8500,
    max_body = opts.max_body or 64 * 1024, read_timeout = opts.read_timeout,
    max_connections = opts.max_connections, tls = opts.tls,
    handler = function(req, conn) return route(api, req, conn) end,
    on_shutdown = function() stop(api) end,
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
