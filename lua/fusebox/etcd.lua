-- fusebox/etcd.lua -- fb.registry{backend = "etcd", ...}: a registry whose
-- truth lives in etcd (the v3 JSON gateway, over fb.http), with a local
-- fusebox registry as its cache, so discover() and balancer picks never
-- wait on the network and every balancer works unchanged.
--
-- In etcd: prefix .. service .. "/" .. host .. ":" .. port -> JSON
-- {host, port, weight, zone, meta}, attached to the registry's one lease,
-- whose TTL is the heartbeat timeout (as etcd's clientv3 Session,
-- Kubernetes or Patroni do: one lease per process, not per key).
-- register = a put (128 to a txn); heartbeat = nothing sent, the lease's
-- keepalive every TTL/3 holds every own key; deregister = a delete;
-- expiry = the writer deleting the key of an instance whose heartbeats
-- stopped a TTL ago, or, when the process dies, the lease running out
-- with every key on it. reg:close() revokes the lease. Requests go over
-- fb.http's pooled keep-alive connections.
--
-- The registry's own register/heartbeat/deregister change the cache at
-- once and queue the change (src/lua_backend.c, the core's backend
-- vtable). Three coroutines per registry do the I/O:
--   writer: takes the queue into a FIFO of dirty keys and brings them to
--     etcd in rounds: deletions, then puts, in txns (sync_round); it
--     grants the lease when there is none, and expires own instances;
--   keeper: keeps the lease alive, and says when etcd lost it (then the
--     writer grants a new one and puts every own key again);
--   watcher: lists the prefix, then watches from the listing's revision
--     + 1, feeding every PUT and DELETE into the cache.
-- When etcd is stopped or unreachable the cache keeps serving what it
-- last knew and reg:stale() says so (an event too, where the runtime has
-- an event log); the coroutines retry with capped, jittered exponential
-- backoff on the runtime clock, moving to the next endpoint. After an
-- outage the writer puts again every own key that is not in etcd on the
-- current lease, and the watcher resumes at the last revision it applied
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
local min, max, concat, next = math.min, math.max, table.concat, next

-- Background work must not keep a run going where the runtime has
-- daemon coroutines; reg:close() ends it either way.
local spawn = core.daemon or core.spawn

local M = {}

local BACKOFF_MIN, BACKOFF_MAX = 0.05, 2
local JSON_TYPE = { ["Content-Type"] = "application/json" }
-- The writer's batches: keys taken from the dirty FIFO per round,
-- operations per txn (etcd's --max-txn-ops default), and txns in flight
-- at once, each on a connection of the registry's own pool, sized to
-- keep them all (and the keeper's).
local ROUND, TXN_OPS, PARALLEL = 4096, 128, 32
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
  local stale = st.watch_down or st.write_down or st.keep_down
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

-- POST /v3/<path> with the body bytes -> status, response body | nil,
-- err, on the keep-alive connections of the registry's pool (over TLS
-- for an https:// endpoint: st.secure), within timeout (default: the
-- registry's). A failed connection moves to the next endpoint for the
-- next request. Once the registry is closed only the revoke of its lease
-- goes out.
local function post(st, path, body, timeout)
  if st.closed and path ~= "lease/revoke" then return nil, "etcd: the registry is closed" end
  local url = st.endpoints[st.ep]
  local status, headers, rbody = http.request {
    method = "POST", url = url .. "/v3/" .. path,
    headers = JSON_TYPE, body = body, timeout = timeout or st.timeout, pool = st.pool,
    tls = st.secure[url],
  }
  if not status then
    st.ep = st.ep % #st.endpoints + 1
    return nil, format("etcd %s: %s", path, tostring(headers)) -- the error
  end
  return status, rbody
end

-- POST /v3/<path> with body req -> decoded response | nil, err.
local function call(st, path, req)
  local status, body = post(st, path, json_encode(req))
  if not status then return nil, body end
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
    st.rev, st.lease = nil, nil
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

-- The own instances form a list in heartbeat order, oldest first
-- (st.oldest .. st.newest, linked by o.older and o.newer), so the writer
-- finds those whose heartbeats stopped without looking at the others.
local function unlink(st, o)
  if o.older then o.older.newer = o.newer else st.oldest = o.newer end
  if o.newer then o.newer.older = o.older else st.newest = o.older end
  o.older, o.newer = nil, nil
end

-- o heartbeats now: to the list's end.
local function touch(st, o)
  o.beat = now()
  if st.newest == o then return end
  if o.older or o.newer or st.oldest == o then unlink(st, o) end
  o.older = st.newest
  if st.newest then st.newest.newer = o else st.oldest = o end
  st.newest = o
end

-- The JSON etcd holds for an own instance: what the cache has of it
-- (weight, zone, and meta, which the binding keeps by instance id) ->
-- text | nil, err.
local function instance_value(st, o)
  local weight, zone, id = st.backend:info(o.service, o.host, o.port)
  local meta = id and st.meta[id]
  return json_encode { host = o.host, port = o.port, weight = weight or 1, zone = zone or nil,
    meta = type(meta) == "table" and meta or {} }
end

-- Moves the backend's queue into own/gone and the dirty FIFO. A
-- heartbeat of an instance etcd holds on the registry's lease costs no
-- request: the lease's keepalive (keeper) holds it there; a register
-- whose weight, zone or meta changed puts the key again. (No round is
-- under way meanwhile: the writer drains between rounds.)
local function drain(st)
  for _, op in ipairs(st.backend:take()) do
    local kind, service, host, port = op[1], op[2], op[3], op[4]
    local key = key_of(st, service, host, port)
    local o = st.own[key]
    if kind == "deregister" then
      if o then
        unlink(st, o)
        st.own[key] = nil
      end
      st.gone[key] = true
      mark(st, key)
    else
      if not o then
        o = { key = key, service = service, host = host, port = port }
        st.own[key] = o
      end
      touch(st, o)
      if kind == "register" then
        if o.lease == nil or o.lease ~= st.lease or o.value ~= instance_value(st, o) then mark(st, key) end
      elseif o.lease == nil or o.lease ~= st.lease then
        mark(st, key)
      end
    end
  end
end

-- Own instances whose last heartbeat is heartbeat_timeout old leave, as
-- they leave an in-memory registry's discover(): the cache drops them at
-- once and their keys are deleted in etcd, where the registry's lease,
-- kept alive for all of them, would keep them. (A heartbeat's time is
-- when the writer took it: late by the round under way, if any.)
local function expire(st)
  local t = now()
  local o = st.oldest
  while o and t - o.beat >= st.ttl do
    unlink(st, o)
    local key = o.key
    st.own[key] = nil
    st.gone[key] = true
    mark(st, key)
    st.known[key] = nil
    local id = st.backend:delete(o.service, o.host, o.port)
    if id then st.meta[id] = nil end
    o = st.oldest
  end
end

-- After an outage, a new store or a lost lease: every own instance not
-- in etcd on the registry's current lease is put again.
local function resync(st)
  st.resync = false
  for key, o in pairs(st.own) do
    if o.lease == nil or o.lease ~= st.lease then mark(st, key) end
  end
end

-- etcd no longer has lease (it expired, was revoked, or the store is a
-- new one): the writer grants another and puts every own key again.
local function lost_lease(st, lease)
  if st.lease ~= lease then return end
  st.lease = nil
  st.resync = true
  st.backend:wake()
end

-- The registry's lease, granted when it has none (at first, or once
-- etcd lost it) -> lease | nil, err.
local function ensure_lease(st)
  if st.lease then return st.lease end
  local doc, err = call(st, "lease/grant", { TTL = st.ttl })
  if not doc then return nil, err end
  if type(doc.ID) ~= "string" or not find(doc.ID, "^%d+$") then
    return nil, "etcd lease/grant: no lease ID"
  end
  if st.closed then return nil, "etcd: the registry is closed" end
  st.lease = doc.ID
  return doc.ID
end

-- Runs fn(item) for every item, PARALLEL at a time, each in a coroutine
-- of its own (daemons where the runtime has them, like the writer);
-- returns when all are done.
local function each_parallel(items, fn)
  local n = #items
  if n == 0 then return end
  local next_i, running, me = 1, 0, coroutine.running()
  local function worker()
    while next_i <= n do
      local i = next_i
      next_i = i + 1
      fn(items[i])
    end
    running = running - 1
    if running == 0 then core.wake(me) end
  end
  for _ = 1, min(PARALLEL, n) do
    running = running + 1
    spawn(worker)
  end
  core.wait("etcd writer batch")
end

-- Runs the requests of a round over a txn: ops[i] for keys[i], TXN_OPS
-- per request -> the revision of each key's txn (keys of a txn that
-- failed: nil) and the first error.
local function txn_all(st, keys, ops)
  local revs, first_err = {}, nil
  local chunks = {}
  for i = 1, #keys, TXN_OPS do chunks[#chunks + 1] = i end
  each_parallel(chunks, function(from)
    local part = {}
    for i = from, min(from + TXN_OPS - 1, #keys) do part[#part + 1] = ops[i] end
    local doc, err = call(st, "kv/txn", { success = part })
    local rev = doc and type(doc.header) == "table" and doc.header.revision
    if not doc then first_err = first_err or err end
    for i = from, min(from + TXN_OPS - 1, #keys) do
      revs[keys[i]] = doc and (type(rev) == "string" and rev or "0") or nil
    end
  end)
  return revs, first_err
end

-- Deletes the keys (txns) -> key -> true when done, and the first error.
local function delete_all(st, keys)
  local ops = {}
  for i, key in ipairs(keys) do ops[i] = { request_delete_range = { key = b64(key) } } end
  local revs, first_err = txn_all(st, keys, ops)
  local done = {}
  for _, key in ipairs(keys) do
    if revs[key] then
      done[key] = true
      st.gone[key] = nil
    end
  end
  return done, first_err
end

-- Puts the own keys on the registry's lease (granted first if need be),
-- in txns -> key -> true when done, and the first error.
local function put_all(st, keys)
  if #keys == 0 then return {}, nil end
  local lease, err = ensure_lease(st)
  if not lease then return {}, err end
  local put, ops, values, first_err = {}, {}, {}, nil
  for _, key in ipairs(keys) do
    local value, verr = instance_value(st, st.own[key])
    if value then
      put[#put + 1] = key
      values[key] = value
      ops[#ops + 1] = { request_put = { key = b64(key), value = b64(value), lease = lease } }
    else
      first_err = first_err or "etcd: instance " .. key .. ": " .. tostring(verr)
    end
  end
  local revs
  revs, err = txn_all(st, put, ops)
  if err and find(err, "lease not found", 1, true) then lost_lease(st, lease) end
  local done = {}
  for _, key in ipairs(put) do
    if revs[key] then
      local o = st.own[key] -- the same: only the writer changes own, between rounds
      o.lease, o.rev, o.value = lease, revs[key], values[key]
    end
    done[key] = revs[key] ~= nil
  end
  return done, first_err or err
end

-- One round: brings up to ROUND dirty keys to etcd. Deregistered and
-- expired keys are deleted first, then the own keys are put. -> true, or
-- nil and the first error; the keys that failed stay dirty, at the
-- FIFO's end.
local function sync_round(st)
  local batch, gone, fresh = {}, {}, {}
  while #batch < ROUND and st.head <= st.tail do
    local key = st.order[st.head]
    st.order[st.head], st.dirty[key] = nil, nil
    st.head = st.head + 1
    batch[#batch + 1] = key
    if st.gone[key] then gone[#gone + 1] = key end
  end
  st.inflight = #batch
  local failed, first_err = {}, nil
  local function note(keys, done, err)
    first_err = first_err or err
    for _, key in ipairs(keys) do if not done[key] then failed[key] = true end end
  end
  local done, err = delete_all(st, gone)
  note(gone, done, err)
  for _, key in ipairs(batch) do
    if st.own[key] and not failed[key] then fresh[#fresh + 1] = key end
  end
  done, err = put_all(st, fresh)
  note(fresh, done, err)
  for _, key in ipairs(batch) do
    if failed[key] then mark(st, key) end
  end
  st.inflight = 0
  if next(failed) ~= nil then return nil, first_err end
  return true
end

local function writer(st)
  local delay = 0
  while not st.closed do
    drain(st)
    expire(st)
    if st.resync then resync(st) end
    if st.head > st.tail then
      st.order, st.head, st.tail = {}, 1, 0
      -- until an op comes, or the oldest own instance is due to expire
      st.backend:wait(st.oldest and max(st.oldest.beat + st.ttl - now(), 0.001))
    else
      local ok, err = sync_round(st)
      if ok then
        delay = 0
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

-- ----------------------------------------------------------- keeper

-- One keepalive of lease -> true (kept), false (etcd no longer has it:
-- an answer without a TTL, or "lease not found"), or nil, err. It waits
-- a third of the TTL at most, so a keepalive lost on the way leaves time
-- for two more before the lease runs out.
local function keepalive(st, lease)
  local status, body = post(st, "lease/keepalive", '{"ID":"' .. lease .. '"}', min(st.timeout, st.ttl / 3))
  if not status then return nil, body end
  local nl = find(body, "\n", 1, true)
  local doc = json_decode(nl and sub(body, 1, nl - 1) or body)
  local r = type(doc) == "table" and doc.result
  if status == 200 and type(r) == "table" and r.ID == lease then
    return r.TTL ~= nil and r.TTL ~= "0"
  end
  local why = type(doc) == "table" and (doc.message or type(doc.error) == "table" and doc.error.message or doc.error)
  if why and find(tostring(why), "lease not found", 1, true) then return false end
  if why then return nil, "etcd lease/keepalive: " .. tostring(why) end
  if status ~= 200 then return nil, format("etcd lease/keepalive: HTTP %d", status) end
  return nil, "etcd lease/keepalive: an answer without results"
end

-- Keeps the registry's lease alive: a keepalive every heartbeat_timeout
-- / 3, as etcd's own clients do, sooner again (backoff) after a failure.
-- etcd holds a lease for its TTL after the last keepalive it took, so
-- once this stops (the process died, or cannot reach etcd) every own key
-- goes between 2/3 TTL and one TTL later (plus up to 0.5 s: etcd looks
-- for expired leases twice a second) -- no earlier than 2/3 TTL after an
-- instance's last heartbeat, no later than one TTL after the last
-- keepalive.
local function keeper(st)
  local delay = 0
  while not st.closed do
    local lease, pause = st.lease, st.ttl / 3
    if lease then
      local kept, err = keepalive(st, lease)
      if kept == nil then
        if not st.closed then down(st, "keep_down", err) end
        delay = backoff(delay)
        pause = min(delay, pause)
      else
        delay = 0
        if st.keep_down then up(st, "keep_down") end
        if not kept then lost_lease(st, lease) end
      end
    end
    core.sleep(pause)
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
    pool = http.pool { max_idle_per_host = PARALLEL + 1 },
    timeout = check_positive(opts.timeout, "timeout", 2),
    own = {},   -- key -> {key, service, host, port, beat, lease, rev, value}: ours
    oldest = nil, newest = nil, -- own, in heartbeat order (touch)
    lease = nil, -- the registry's lease; nil: none granted (yet, or again)
    gone = {},  -- key -> true: deregistered or expired, to delete in etcd
    dirty = {}, order = {}, head = 1, tail = 0, -- keys to bring to etcd
    inflight = 0, -- keys taken from the FIFO by the round under way
    known = {}, -- key -> true: in the cache because etcd has it
    rev = nil,  -- last revision applied to the cache; nil: list first
    stale = true, watch_down = true, write_down = false, keep_down = false, reason = "not listed yet",
  }
  states[reg] = st
  spawn(writer, st)
  spawn(keeper, st)
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
  return st.backend:queued() + st.tail - st.head + 1 + st.inflight
end

-- reg:close(): stops talking to the store and revokes the registry's
-- lease, so every own instance leaves etcd at once (in a coroutine of
-- its own, which the run waits for: one try per endpoint, timeout each);
-- the cache keeps its last view.
function methods:close()
  local st = states[self]
  if not st or st.closed then return end
  st.closed = true
  st.backend:close()
  if st.watch_sock then st.watch_sock:close() end
  local lease = st.lease
  st.lease = nil
  local function revoke()
    for _ = 1, #st.endpoints do
      local doc, err = call(st, "lease/revoke", { ID = lease })
      if doc or find(err, "not found", 1, true) then break end
    end
    st.pool:close()
  end
  if not (lease and pcall(core.spawn, revoke)) then st.pool:close() end
end

return M
