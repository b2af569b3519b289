-- The etcd backend's writer and keeper against a fake gateway on
-- 127.0.0.1 (the real etcd runs in tests/etcd.t): one lease per registry,
-- registrations as puts on it in txns, heartbeats that send nothing, the
-- lease's keepalive, a lease etcd lost, expiry by the writer's delete,
-- deregister, close, and a gateway whose keepalive answers carry nothing.
local fb = require "fusebox"

local HEADER = '"header":{"cluster_id":"1","revision":"5"}'

-- base64 text -> bytes (etcd's keys; the fake gateway's own decoder)
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function unb64(s)
  local bits, n, out = 0, 0, {}
  for c in s:gmatch("[^=]") do
    bits, n = bits * 64 + (B64:find(c, 1, true) - 1), n + 6
    if n >= 8 then
      n = n - 8
      out[#out + 1] = string.char(math.floor(bits / 2 ^ n))
      bits = bits % 2 ^ n
    end
  end
  return table.concat(out)
end

-- A gateway that records what the registry asks: g.grants (lease ids in
-- order), g.puts (key -> lease of its last put), g.put_count, g.deletes
-- (key -> seconds since g.t0 of its delete), g.keepalives (lease ids),
-- g.revokes (lease ids), g.txns. g.gone[lease] = true makes keepalives of
-- that lease answer without a TTL, as etcd does for a lease it no longer
-- has; g.empty makes them answer nothing at all.
local function gateway()
  local g = { grants = {}, puts = {}, values = {}, put_count = 0, deletes = {}, keepalives = {}, revokes = {},
    txns = 0, gone = {}, next_id = 100, t0 = fb.now(), txn_delay = 0, keepalive_delay = 0 }
  g.srv = assert(fb.http.serve { port = 0, handler = function(req)
    if req.path == "/v3/lease/grant" then
      g.next_id = g.next_id + 1
      g.grants[#g.grants + 1] = tostring(g.next_id)
      return 200, nil, '{' .. HEADER .. ',"ID":"' .. g.next_id .. '","TTL":"30"}'
    elseif req.path == "/v3/kv/txn" then
      g.txns = g.txns + 1
      if g.txn_delay > 0 then fb.sleep(g.txn_delay) end
      for _, op in ipairs(fb.json_decode(req.body).success) do
        if op.request_put then
          g.puts[unb64(op.request_put.key)] = op.request_put.lease
          g.values[unb64(op.request_put.key)] = fb.json_decode(unb64(op.request_put.value))
          g.put_count = g.put_count + 1
        else
          g.deletes[unb64(op.request_delete_range.key)] = fb.now() - g.t0
        end
      end
      return 200, nil, '{' .. HEADER .. ',"succeeded":true}'
    elseif req.path == "/v3/lease/keepalive" then
      local id = fb.json_decode(req.body).ID
      g.keepalives[#g.keepalives + 1] = id
      if g.keepalive_delay > 0 then fb.sleep(g.keepalive_delay) end
      if g.empty then return 200, nil, "" end
      local ttl = g.gone[id] and "" or ',"TTL":"30"'
      return 200, nil, '{"result":{' .. HEADER .. ',"ID":"' .. id .. '"' .. ttl .. '}}\n'
    elseif req.path == "/v3/lease/revoke" then
      g.revokes[#g.revokes + 1] = fb.json_decode(req.body).ID
      return 200, nil, '{' .. HEADER .. '}'
    elseif req.path == "/v3/kv/range" then
      return 200, nil, '{' .. HEADER .. ',"kvs":[]}'
    end
    fb.sleep(1) -- the watch: nothing happens
    return 200, nil, ""
  end })
  g.url = "http://127.0.0.1:" .. g.srv:port()
  return g
end

local function wait_until(fn, timeout)
  local deadline = fb.now() + timeout
  while not fn() and fb.now() < deadline do fb.sleep(0.01) end
  return fn()
end

local function registry(g, ttl)
  return fb.registry { backend = "etcd", endpoints = { g.url }, timeout = 1, heartbeat_timeout = ttl }
end

local function key(port) return "/fusebox/services/svc/127.0.0.1:" .. port end

-- Heartbeats the ports every 0.1 s until the returned function is called.
local function heartbeats(reg, ports)
  local running = true
  fb.spawn(function()
    while running do
      for _, p in ipairs(ports) do reg:heartbeat("svc", "127.0.0.1", p) end
      fb.sleep(0.1)
    end
  end)
  return function() running = false end
end

describe("the etcd backend's writer", function()
  it("puts every registration on the registry's one lease, and a heartbeat sends nothing", function()
    local g, registered, beat, txns
    fb.run(function()
      g = gateway()
      local reg = registry(g, 30)
      for i = 1, 10 do reg:register("svc", "127.0.0.1", 9000 + i) end
      registered = wait_until(function() return reg:pending() == 0 end, 5)
      txns = g.txns
      for _ = 1, 3 do
        for i = 1, 10 do reg:heartbeat("svc", "127.0.0.1", 9000 + i) end
        fb.sleep(0.05)
      end
      beat = reg:pending() == 0
      fb.sleep(0.2)
      reg:close()
      wait_until(function() return #g.revokes == 1 end, 2)
      g.srv:close()
    end)
    assert.is_true(registered)
    assert.are.same({ "101" }, g.grants)
    assert.are.equal(10, g.put_count)
    for i = 1, 10 do assert.are.equal("101", g.puts[key(9000 + i)]) end
    assert.is_true(txns <= 2) -- 10 puts, one txn (two if the first came alone)
    assert.is_true(beat)
    assert.are.equal(txns, g.txns) -- 30 heartbeats: no txn, no grant
    assert.are.equal(0, #g.keepalives) -- and no keepalive: the lease's is due at 10 s
  end)

  it("puts a registration once, whatever heartbeats come while its put is under way", function()
    local g, done
    fb.run(function()
      g = gateway()
      g.txn_delay = 0.2
      local reg = registry(g, 30)
      for i = 1, 100 do reg:register("svc", "127.0.0.1", 9000 + i) end
      for _ = 1, 3 do
        fb.sleep(0.05)
        for i = 1, 100 do reg:heartbeat("svc", "127.0.0.1", 9000 + i) end
      end
      done = wait_until(function() return reg:pending() == 0 end, 5)
      fb.sleep(0.3)
      reg:close()
      g.srv:close()
    end)
    assert.is_true(done)
    assert.are.equal(100, g.put_count)
  end)

  it("puts an instance again when register changes its weight, zone or meta, and only then", function()
    local g, first, same, changed
    fb.run(function()
      g = gateway()
      local reg = registry(g, 30)
      local k = key(9001)
      reg:register("svc", "127.0.0.1", 9001, { weight = 2 })
      wait_until(function() return reg:pending() == 0 end, 5)
      first = g.put_count
      reg:register("svc", "127.0.0.1", 9001, { weight = 2 })
      wait_until(function() return reg:pending() == 0 end, 5)
      fb.sleep(0.05)
      same = g.put_count
      reg:register("svc", "127.0.0.1", 9001, { weight = 3, zone = "eu-1a" })
      changed = wait_until(function() return g.values[k] and g.values[k].weight == 3 end, 5)
      reg:close()
      g.srv:close()
    end)
    assert.are.equal(1, first)
    assert.are.equal(1, same)
    assert.is_true(changed)
    assert.are.equal("eu-1a", g.values[key(9001)].zone)
    assert.are.equal(2, g.put_count)
  end)

  it("keeps the lease alive every heartbeat_timeout / 3", function()
    local g
    fb.run(function()
      g = gateway()
      local reg = registry(g, 3)
      reg:register("svc", "127.0.0.1", 9001)
      local stop = heartbeats(reg, { 9001 })
      fb.sleep(3.5)
      stop()
      reg:close()
      g.srv:close()
    end)
    -- one every second, from the grant on: 3 in 3.5 s (2 to 4 for a slow start or a late timer)
    assert.is_true(#g.keepalives >= 2 and #g.keepalives <= 4, #g.keepalives .. " keepalives")
    for _, id in ipairs(g.keepalives) do assert.are.equal("101", id) end
    assert.are.same({ "101" }, g.grants)
  end)

  it("gives up on a keepalive after a third of the TTL and asks again", function()
    local g, asked, said
    fb.run(function()
      g = gateway()
      g.keepalive_delay = 2 -- longer than the registry's timeout of 1 s
      local reg = registry(g, 1)
      reg:register("svc", "127.0.0.1", 9001)
      local t0 = fb.now()
      while fb.now() - t0 < 1.5 do -- the watcher's reasons come and go: sample
        said = said or select(2, reg:stale()) == "etcd lease/keepalive: timeout"
        fb.sleep(0.01)
      end
      asked = #g.keepalives
      reg:close()
      g.keepalive_delay = 0
      g.srv:close()
    end)
    -- the first at 1/3 s, then one each 1/3 s timeout + backoff: 3 or 4 in
    -- 1.5 s (waiting the registry's 1 s timeout, 2)
    assert.is_true(asked >= 3, asked .. " keepalives")
    assert.is_true(said) -- stale() said why
  end)

  it("grants a new lease when etcd lost it and puts every own key again", function()
    local g, back
    fb.run(function()
      g = gateway()
      local reg = registry(g, 3)
      local ports = { 9001, 9002, 9003 }
      for _, p in ipairs(ports) do reg:register("svc", "127.0.0.1", p) end
      local stop = heartbeats(reg, ports)
      wait_until(function() return g.put_count == 3 end, 5)
      g.gone["101"] = true
      back = wait_until(function()
        return g.puts[key(9001)] == "102" and g.puts[key(9002)] == "102" and g.puts[key(9003)] == "102"
      end, 5)
      stop()
      reg:close()
      wait_until(function() return #g.revokes == 1 end, 2)
      g.srv:close()
    end)
    assert.is_true(back)
    assert.are.same({ "101", "102" }, g.grants)
    assert.are.equal(6, g.put_count)
    assert.are.same({ "102" }, g.revokes) -- close revokes the lease in use
  end)

  it("deletes the key of an instance whose heartbeats stopped, about heartbeat_timeout after its last", function()
    local g, t_last, in_view, kept_view
    fb.run(function()
      g = gateway()
      local reg = registry(g, 1)
      reg:register("svc", "127.0.0.1", 9001)
      reg:register("svc", "127.0.0.1", 9002)
      t_last = fb.now() - g.t0
      local stop = heartbeats(reg, { 9002 })
      wait_until(function() return g.deletes[key(9001)] end, 3)
      in_view = #reg:discover("svc")
      fb.sleep(1.5) -- 9002 heartbeats on: never deleted
      kept_view = #reg:discover("svc")
      stop()
      reg:close()
      g.srv:close()
    end)
    local after = g.deletes[key(9001)] and g.deletes[key(9001)] - t_last
    assert.is_truthy(after, "never deleted")
    assert.is_true(after >= 1 and after < 1.5, string.format("deleted %.3f s after the last heartbeat", after))
    assert.are.equal(1, in_view) -- the cache dropped it then too
    assert.is_nil(g.deletes[key(9002)])
    assert.are.equal(1, kept_view)
    assert.are.equal("101", g.puts[key(9002)])
  end)

  it("deregisters with a delete, and revokes nothing but the lease at close", function()
    local g, deleted, revokes_before_close
    fb.run(function()
      g = gateway()
      local reg = registry(g, 30)
      reg:register("svc", "127.0.0.1", 9001)
      reg:register("svc", "127.0.0.1", 9002)
      wait_until(function() return reg:pending() == 0 end, 5)
      reg:deregister("svc", "127.0.0.1", 9001)
      deleted = wait_until(function() return g.deletes[key(9001)] ~= nil end, 5)
      revokes_before_close = #g.revokes
      reg:close()
      wait_until(function() return #g.revokes == 1 end, 2)
      g.srv:close()
    end)
    assert.is_true(deleted)
    assert.are.equal(0, revokes_before_close)
    assert.are.same({ "101" }, g.revokes)
  end)

  it("calls a keepalive answer without results a failure, and says so", function()
    local g, why
    fb.run(function()
      g = gateway()
      g.empty = true
      local reg = registry(g, 1)
      reg:register("svc", "127.0.0.1", 9001)
      wait_until(function()
        local _, w = reg:stale()
        why = w
        return w and w:find("keepalive", 1, true)
      end, 5)
      reg:close()
      g.srv:close()
    end)
    assert.are.equal("etcd lease/keepalive: an answer without results", why)
  end)
end)
