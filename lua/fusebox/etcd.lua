-- fusebox/etcd.lua -- fb.registry{backend = "etcd", ...}: a registry whose
-- truth lives in etcd (the v3 JSON gateway, over fb.http), with a local
-- fusebox registry as its cache, so discover() and balancer picks never
-- wait on the network and every balancer works unchanged.
--
-- In etcd: prefix .. service .. "/" .. host .. ":" .. port -> JSON
-- {host, port, weight, meta}, attached to a lease whose TTL is the
-- heartbeat timeout. register = lease grant + put; heartbeat = one lease
-- keepalive; deregister = delete + revoke; expiry = the lease running out.
--
-- The registry's own register/heartbeat/deregister change the cache at
-- once and queue the change (src/lua_backend.c, the core's backend
-- vtable). Two coroutines per registry do the I/O:
--   writer: takes the queue into a FIFO of dirty keys and brings each one
--     to etcd, one request at a time;
--   watcher: lists the prefix, then watches from the listing's revision
--     + 1, feeding every PUT and DELETE into the cache.
-- When etcd is stopped or unreachable the cache keeps serving what it
-- last knew and reg:stale() says so (an event too, where the runtime has
-- an event log); both coroutines retry with capped, jittered exponential
-- backoff on the runtime clock, moving to the next endpoint. After an
-- outage the writer re-syncs every own instance still heartbeating (a
-- keepalive; a lease etcd no longer knows is granted again and the key
-- put again), and the watcher resumes at the last revision it applied
-- + 1 -- nothing lost, nothing twice -- or lists again when that revision
-- was compacted or the cluster is a new one.
--
-- etcd's int64s (lease ids, revisions) exceed 2^53: the gateway sends
-- them as JSON strings and they stay strings here.

local core = select(2, ...)
local base = core.import "fusebox.base"
local tcp = core.import "fusebox.tcp"
local http = core.import "fusebox.http"
local tls = core.import "fusebox.tls"
local registry = core.import "fusebox.registry"
local argerror, now = base.argerror, base.now
local json_encode, json_decode = core.json_encode, core.json_decode
local b64, unb64 = core.base64_encode, core.base64_decode
local format, sub, find, byte, char, rep = string.format, string.sub, string.find, string.byte, string.char, string.rep
local match, type, tostring, pairs, ipairs, ceil = string.match, type, tostring, pairs, ipairs, math.ceil
local min, concat = math.min, table.concat

-- Background work must not keep a run going where the runtime has
-- daemon coroutines; reg:close() ends it either way.
local spawn = core.daemon or core.spawn

local M = {}

local BACKOFF_MIN, BACKOFF_MAX = 0.05, 2
local WATCH_IDLE = 30 -- a watch silent this long is opened again (a dead peer)
local MAX_WATCH_LINE = 16 * 1024 * 1024 -- one watch response, in bytes

-- registry userdata -> its state; a state never refers to the userdata
local states = setmetatable({}, { __mode = "k" })

-- ------------------------------------------------- int64s as strings

-- "41" -> "42" for decimal strings of any length.
local function incr(s)
  local i = #s
  while i > 0 and byte(s, i) == 57 do i = i - 1 end -- '9'
  if i == 0 then return "1" .. rep("0", #s) end
  return sub(s, 1, i - 1) .. char(byte(s, i) + 1) .. rep("0", #s - i)
end
M.incr = incr

-- a > b for decimal strings without leading zeros.
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
M.newer = newer

-- The end of the key range holding every key that starts with prefix.
local function prefix_end(prefix)
  local p = prefix
  while #p > 0 and byte(p, #p) == 255 do p = sub(p, 1, -2) end
  if p == "" then return "\0" end
  return sub(p, 1, -2) .. char(byte(p, #p) + 1)
end
M.prefix_end = prefix_end

-- ------------------------------------------------------------ state

local function set_stale(st)
  local stale = st.watch_down or st.write_down
  if stale == st.stale then return end
  st.stale = stale
  if core.emit then
    core.emit("registry_stale", { stale = stale, reason = st.reason, prefix = st.prefix })
  end
end

local function down(st, part, why)
  st[part] = true
  st.reason = why
  set_stale(st)
end

local function up(st, part)
  st[part] = false
  set_stale(st)
end

-- Next delay after d: doubling from BACKOFF_MIN to BACKOFF_MAX, with
-- jitter from the seeded stream so many processes do not retry in step.
local function backoff(d)
  d = d == 0 and BACKOFF_MIN or min(d * 2, BACKOFF_MAX)
  return d * (0.5 + 0.5 * core.random())
end

-- part (writer or watcher) failed after waiting delay last time: the
-- view is stale; sleeps the next delay and returns it.
local function retry_later(st, part, err, delay)
  down(st, part, err)
  delay = backoff(delay)
  core.sleep(delay)
  return delay
end

-- --------------------------------------------------------- requests

-- POST /v3/<path> with body req -> decoded response | nil, err. A
-- failed connection moves to the next endpoint for the next request.
local function call(st, path, req)
  local url = st.endpoints[st.ep]
  local status, headers, body = http.request {
    method = "POST", url = url .. "/v3/" .. path,
    headers = { ["Content-Type"] = "application/json" },
    body = json_encode(req), timeout = st.timeout, tls = st.secure[url],
  }
  if not status then
    st.ep = st.ep % #st.endpoints + 1
    return nil, format("etcd %s: %s", path, tostring(headers)) -- the error
  end
  local doc = json_decode(body)
  if type(doc) ~= "table" then return nil, format("etcd %s: malformed JSON", path) end
  if status ~= 200 then
    return nil, format("etcd %s: %s", path, tostring(doc.message or doc.error or status))
  end
  return doc
end

-- A store that is not the one we knew -- another cluster id, or a
-- revision behind what we applied (its data lost; a rebuilt cluster may
-- keep its id) -- knows none of our revisions and leases: list again and
-- register every own instance again.
local function check_store(st, header)
  if type(header) ~= "table" then return end
  local id, rev = header.cluster_id, header.revision
  if st.cluster ~= nil and (id ~= st.cluster or (st.rev and rev and newer(st.rev, rev))) then
    st.rev = nil
    for _, o in pairs(st.own) do o.lease = nil end
    st.resync = true
    st.backend:wake()
  end
  st.cluster = id
end

-- ----------------------------------------------------------- writer

local function key_of(st, service, host, port)
  return st.prefix .. service .. "/" .. host .. ":" .. port
end

-- The dirty keys wait in a FIFO, order[head..tail], each at most once.
local function mark(st, key)
  if st.dirty[key] then return end
  st.dirty[key] = true
  st.tail = st.tail + 1
  st.order[st.tail] = key
end

-- Moves the backend's queue into own/gone and the dirty FIFO.
local function drain(st)
  for _, op in ipairs(st.backend:take()) do
    local kind, service, host, port = op[1], op[2], op[3], op[4]
    local key = key_of(st, service, host, port)
    local o = st.own[key]
    if kind == "deregister" then
      st.own[key] = nil
      if o and o.lease then
        st.gone[key] = o.lease
      elseif st.gone[key] == nil then
        st.gone[key] = false -- perhaps another process's: delete the key
      end
    else
      if not o then
        o = { service = service, host = host, port = port }
        st.own[key] = o
      end
      o.beat = now()
    end
    mark(st, key)
  end
end

-- After an outage: every own instance still heartbeating is checked
-- again; those that stopped are left to their leases.
local function resync(st)
  st.resync = false
  local t = now()
  for key, o in pairs(st.own) do
    if t - o.beat < st.ttl then mark(st, key) else st.own[key] = nil end
  end
end

-- The JSON etcd holds for an own instance: what the cache has of it
-- (weight, zone, and meta, which the binding keeps by instance id).
local function instance_value(st, o)
  local weight, zone, id = st.backend:info(o.service, o.host, o.port)
  local meta = id and st.meta[id]
  return { host = o.host, port = o.port, weight = weight or 1, zone = zone or nil,
    meta = type(meta) == "table" and meta or {} }
end

local function put_own(st, key, o)
  local doc, err = call(st, "lease/grant", { TTL = st.ttl })
  if not doc then return nil, err end
  local lease = doc.ID
  local value, verr = json_encode(instance_value(st, o))
  if not value then return nil, "etcd: instance " .. key .. ": " .. tostring(verr) end
  doc, err = call(st, "kv/put", { key = b64(key), value = b64(value), lease = lease })
  if not doc then return nil, err end
  local rev = type(doc.header) == "table" and doc.header.revision
  o.lease, o.rev = lease, type(rev) == "string" and rev or "0"
  return true
end

-- Brings one key to etcd: deleted (and its lease revoked) if it was
-- deregistered, then kept alive or registered again if it is own.
local function sync_key(st, key)
  local lease = st.gone[key]
  if lease ~= nil then
    local ok, err = call(st, "kv/deleterange", { key = b64(key) })
    if not ok then return nil, err end
    if lease then
      ok, err = call(st, "lease/revoke", { ID = lease })
      if not ok and not find(err, "not found", 1, true) then return nil, err end
    end
    st.gone[key] = nil
  end
  local o = st.own[key]
  if not o then return true end
  if o.lease then
    local doc, err = call(st, "lease/keepalive", { ID = o.lease })
    if not doc then return nil, err end
    local ttl = type(doc.result) == "table" and doc.result.TTL or nil
    if ttl ~= nil and ttl ~= "0" then return true end
    o.lease = nil -- expired: a late heartbeat registers it again
  end
  return put_own(st, key, o)
end

local function writer(st)
  local delay = 0
  while not st.closed do
    drain(st)
    if st.resync then resync(st) end
    local key = st.order[st.head]
    if key == nil then
      st.order, st.head, st.tail = {}, 1, 0
      st.backend:wait()
    else
      local ok, err = sync_key(st, key)
      if ok then
        st.order[st.head], st.dirty[key] = nil, nil
        st.head, delay = st.head + 1, 0
        if st.write_down then
          up(st, "write_down")
          st.resync = true
        end
      elseif not st.closed then
        delay = retry_later(st, "write_down", err, delay)
      end
    end
  end
end

-- ---------------------------------------------------------- watcher

-- key -> service, host, port, for keys under the prefix named
-- service/host:port; nil for any other key.
local function parse_key(st, key)
  if sub(key, 1, #st.prefix) ~= st.prefix then return nil end
  local service, host, port = match(sub(key, #st.prefix + 1), "^(.+)/([^/]+):(%d+)$")
  port = tonumber(port)
  if not service or port < 1 or port > 65535 then return nil end
  return service, host, port
end

-- value: the key's value, base64 as etcd sends it; an instance's JSON
-- gives it weight, zone and meta, anything else (etcdctl may put any
-- text) registers the bare host:port.
local function apply_put(st, key, value)
  local service, host, port = parse_key(st, key)
  if not service then return end
  st.known[key] = true
  local doc = value and json_decode(unb64(value))
  if type(doc) ~= "table" then doc = {} end
  local weight = type(doc.weight) == "number" and doc.weight or nil
  local zone = type(doc.zone) == "string" and doc.zone or nil
  local _, id = st.backend:put(service, host, port, weight, zone)
  if type(doc.meta) == "table" and next(doc.meta) ~= nil then st.meta[id] = doc.meta end
end

-- rev: the revision of the deletion; an own key deleted after our put
-- (its lease expired, or someone deleted it) is put again by the next
-- heartbeat.
local function apply_delete(st, key, rev)
  if not st.known[key] then return end
  st.known[key] = nil
  local id = st.backend:delete(parse_key(st, key))
  if id then st.meta[id] = nil end -- what deregister() drops for a local one
  local o = st.own[key]
  if o and o.lease and newer(rev, o.rev) then o.lease = nil end
end

-- v if it is a revision as etcd sends one (a decimal string); raises
-- otherwise, for apply() below to catch.
local function revision(v, what)
  if type(v) ~= "string" or not find(v, "^%d+$") then
    error(format("%s must be a decimal string, got %s", what, tostring(v)), 0)
  end
  return v
end

local function apply_listing(st, doc)
  check_store(st, doc.header)
  local rev, seen = revision(doc.header.revision, "header.revision"), {}
  for _, kv in ipairs(doc.kvs or {}) do
    local key = unb64(kv.key)
    seen[key] = true
    apply_put(st, key, kv.value)
  end
  for key in pairs(st.known) do
    if not seen[key] then apply_delete(st, key, rev) end
  end
  st.rev = rev
  return true
end

-- A response the watcher cannot apply (a field missing or of another
-- type: etcd never sends one, a hostile gateway may) fails the stream
-- like a broken connection, never the watcher: it retries with backoff,
-- and reg:stale() says why.
local function apply(fn, st, doc, what)
  local ok, r, err = pcall(fn, st, doc)
  if not ok then return nil, format("etcd %s: cannot apply the response (%s)", what, tostring(r)) end
  return r, err
end

local function list(st)
  local doc, err = call(st, "kv/range", { key = b64(st.prefix), range_end = b64(prefix_end(st.prefix)) })
  if not doc then return nil, err end
  return apply(apply_listing, st, doc, "kv/range")
end

local function on_result(st, r)
  if r.created then
    check_store(st, r.header)
    if st.rev == nil then return false end
    up(st, "watch_down")
    return true
  end
  if r.canceled then
    if not r.compact_revision then return nil, "etcd watch canceled: " .. tostring(r.cancel_reason) end
    st.rev = nil
    return false
  end
  for _, ev in ipairs(r.events or {}) do
    local key = unb64(ev.kv.key)
    if ev.type == "DELETE" then apply_delete(st, key, ev.kv.mod_revision) else apply_put(st, key, ev.kv.value) end
    st.rev = revision(ev.kv.mod_revision, "mod_revision") -- events come in revision order
  end
  return true
end

-- One message of the watch stream: true, or false when the cache must be
-- listed again (compaction, a new store), or nil, err when it failed.
local function on_message(st, line)
  local doc = json_decode(line)
  local r = type(doc) == "table" and doc.result
  if type(r) ~= "table" then
    return nil, "etcd watch: " .. tostring(type(doc) == "table" and doc.message or "malformed JSON")
  end
  return apply(on_result, st, r, "watch")
end

-- Reads the watch stream (one JSON object per line) until it fails (nil,
-- err) or must start again (true). A line is kept in pieces until it
-- ends, and one longer than MAX_WATCH_LINE fails the stream: a peer that
-- never sends a newline costs neither unbounded memory nor copying.
local function read_stream(st, sock)
  local parser = core.http_parser("response", MAX_WATCH_LINE)
  local line, size = {}, 0 -- the current line's pieces and length
  while not st.closed do
    local data, err = sock:read(WATCH_IDLE)
    if not data then return err == "timeout" or nil, "etcd watch: " .. tostring(err) end
    local used, ended = parser:feed(data)
    if not used then return nil, "etcd watch: " .. tostring(ended) end
    local status = parser:status()
    if status ~= 0 and status ~= 200 then return nil, "etcd watch: HTTP " .. status end
    local body, from = parser:take_body(), 1
    local nl = find(body, "\n", from, true)
    while nl do
      line[#line + 1] = sub(body, from, nl - 1)
      local ok, werr = on_message(st, concat(line))
      if ok == false then return true end -- list again, at once
      if not ok then return nil, werr end
      line, size, from = {}, 0, nl + 1
      nl = find(body, "\n", from, true)
    end
    size = size + #body - from + 1
    if size > MAX_WATCH_LINE then
      return nil, format("etcd watch: a message over %d bytes", MAX_WATCH_LINE)
    end
    if from <= #body then line[#line + 1] = sub(body, from) end
    if ended then return nil, "etcd watch: stream ended" end
  end
  return true
end

-- Watches from st.rev + 1 until the stream fails; true when it only went
-- quiet or the registry closed.
local function watch(st)
  local url = st.endpoints[st.ep]
  local scheme, host, port = core.http_parse_url(url)
  port = port or (scheme == "https" and 443 or 80)
  local sock, err = tcp.connect(host, port, { timeout = st.timeout, tls = st.secure[url] })
  if not sock then
    st.ep = st.ep % #st.endpoints + 1
    return nil, "etcd watch: " .. tostring(err)
  end
  st.watch_sock = sock
  local body = json_encode { create_request = {
    key = b64(st.prefix), range_end = b64(prefix_end(st.prefix)), start_revision = incr(st.rev),
  } }
  local ok
  ok, err = sock:write(format("POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
    .. "Content-Length: %d\r\n\r\n%s", host, port, #body, body), st.timeout)
  if ok then ok, err = read_stream(st, sock) end
  sock:close()
  st.watch_sock = nil
  return ok, err
end

local function watcher(st)
  local delay = 0
  while not st.closed do
    local ok, err = true, nil
    if st.rev == nil then ok, err = list(st) end
    if ok then ok, err = watch(st) end
    if ok then
      delay = 0
    elseif not st.closed then
      delay = retry_later(st, "watch_down", err, delay)
    end
  end
end

-- ------------------------------------------------------ constructor

-- argerror for the check_ helpers below, called by M.new: the error
-- points one level further out, at the user's line.
local function bad(msg)
  error(format("bad argument #1 to 'registry' (%s)", msg), 4)
end

local OPTIONS = {
  backend = true, endpoints = true, prefix = true, heartbeat_timeout = true, timeout = true,
  tls = true,
}

-- -> the endpoints' base URLs, and url -> the tls option of
-- http.request for the https:// ones (opts.tls, checked here, or true).
local function check_endpoints(eps, opts)
  if eps == nil then eps = { "http://127.0.0.1:2379" } end
  if type(eps) ~= "table" or #eps == 0 then
    bad("endpoints must be a non-empty list of http[s]://host:port URLs, got " .. tostring(eps))
  end
  local ok, why = tls.check(opts.tls, false)
  if ok == false then bad(why) end
  local out, secure = {}, {}
  for i, ep in ipairs(eps) do
    local scheme, host = nil, nil
    if type(ep) == "string" then scheme, host = core.http_parse_url(ep) end
    if (scheme ~= "http" and scheme ~= "https") or not host then
      bad(format("endpoints[%d] must be an http[s]://host:port URL, got '%s'", i, tostring(ep)))
    end
    out[i] = (match(ep, "^(https?://[^/]+)")) -- the gateway lives at /v3/
    if scheme == "https" then secure[out[i]] = opts.tls or true end
  end
  if opts.tls and next(secure) == nil then bad("tls is for https:// endpoints, and none is") end
  return out, secure
end

local function check_positive(v, name, def)
  if v == nil then return def end
  if type(v) ~= "number" or not (v > 0) or v == math.huge then
    bad(format("%s must be a positive number, got %s", name, tostring(v)))
  end
  return v
end

-- Called by fb.registry{backend = "etcd", endpoints = {...},
-- prefix = "/fusebox/services/", heartbeat_timeout = 30, timeout = 2,
-- tls = nil} (timeout: per etcd request; tls: as fb.tcp.connect's, for
-- the https:// endpoints, e.g. {ca_file=, cert_file=, key_file=}) -> a
-- registry.
function M.new(opts)
  tcp.check_real("registry{backend = \"etcd\"}")
  for k in pairs(opts) do
    if not OPTIONS[k] then argerror(1, "registry", format("unknown option '%s'", tostring(k))) end
  end
  local prefix = opts.prefix or "/fusebox/services/"
  if type(prefix) ~= "string" or prefix == "" then
    argerror(1, "registry", "prefix must be a non-empty string, got " .. tostring(prefix))
  end
  local endpoints, secure = check_endpoints(opts.endpoints, opts)
  local ttl = ceil(check_positive(opts.heartbeat_timeout, "heartbeat_timeout", 30)) -- etcd: whole seconds
  local reg = core.registry { heartbeat_timeout = ttl }
  local st = {
    backend = core.registry_backend(reg), meta = debug.getfenv(reg).meta,
    endpoints = endpoints, secure = secure, ep = 1, prefix = prefix, ttl = ttl,
    timeout = check_positive(opts.timeout, "timeout", 2),
    own = {},   -- key -> {service, host, port, beat, lease, rev}: ours
    gone = {},  -- key -> lease | false: deregistered, to delete in etcd
    dirty = {}, order = {}, head = 1, tail = 0, -- keys to bring to etcd
    known = {}, -- key -> true: in the cache because etcd has it
    rev = nil,  -- last revision applied to the cache; nil: list first
    stale = true, watch_down = true, write_down = false, reason = "not listed yet",
  }
  states[reg] = st
  spawn(writer, st)
  spawn(watcher, st)
  return reg
end

registry.backends.etcd = M.new

local methods = core.meta.registry.methods

-- reg:stale() -> true while the view may be behind the store (etcd
-- unreachable, or not listed yet), and the reason; always false for an
-- in-memory registry.
function methods:stale()
  local st = states[self]
  if not st then return false end
  return st.stale, st.stale and st.reason or nil
end

-- reg:pending() -> how many own changes are not in the store yet (0
-- for an in-memory registry)
function methods:pending()
  local st = states[self]
  if not st then return 0 end
  return st.backend:queued() + st.tail - st.head + 1
end

-- reg:close(): stops talking to the store (own instances then expire
-- with their leases); the cache keeps its last view.
function methods:close()
  local st = states[self]
  if not st or st.closed then return end
  st.closed = true
  st.backend:close()
  if st.watch_sock then st.watch_sock:close() end
end

return M
