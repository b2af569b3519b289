-- The etcd backend's writer against a fake gateway on 127.0.0.1 (the
-- real etcd runs in tests/etcd.t): registrations as lease grants and
-- txns, heartbeats as batched keepalives, and a gateway that ends its
-- keepalive answers early or sends none.
local fb = require "fusebox"

local EMPTY = '{"header":{"cluster_id":"1","revision":"5"},"kvs":[]}'

-- A gateway whose keepalive answers carry at most `limit` results. g.asked
-- counts the keepalives asked per lease, g.requests the keepalive
-- requests, g.puts the puts of its txns.
local function gateway(limit)
  local g = { asked = {}, requests = 0, puts = 0, next_id = 100 }
  g.srv = assert(fb.http.serve { port = 0, handler = function(req)
    if req.path == "/v3/lease/grant" then
      g.next_id = g.next_id + 1
      return 200, nil, '{"header":{"cluster_id":"1","revision":"5"},"ID":"' .. g.next_id .. '","TTL":"30"}'
    elseif req.path == "/v3/kv/txn" then
      local doc = fb.json_decode(req.body)
      g.puts = g.puts + #doc.success
      return 200, nil, '{"header":{"cluster_id":"1","revision":"6"},"succeeded":true}'
    elseif req.path == "/v3/lease/keepalive" then
      g.requests = g.requests + 1
      local out = {}
      for id in req.body:gmatch('"ID":"(%d+)"') do
        g.asked[id] = (g.asked[id] or 0) + 1
        if #out < limit then
          out[#out + 1] = '{"result":{"header":{"cluster_id":"1","revision":"6"},"ID":"' .. id .. '","TTL":"30"}}'
        end
      end
      return 200, nil, table.concat(out, "\n") .. (#out > 0 and "\n" or "")
    elseif req.path == "/v3/kv/range" then
      return 200, nil, EMPTY
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

describe("the etcd backend's writer", function()
  it("asks again for the leases a keepalive answer left out", function()
    local g, registered, beat, why
    fb.run(function()
      g = gateway(3)
      local reg = fb.registry { backend = "etcd", endpoints = { g.url }, timeout = 1 }
      for i = 1, 10 do reg:register("svc", "127.0.0.1", 9000 + i) end
      registered = wait_until(function() return reg:pending() == 0 end, 5)
      for i = 1, 10 do reg:heartbeat("svc", "127.0.0.1", 9000 + i) end
      beat = wait_until(function() return reg:pending() == 0 end, 5)
      _, why = reg:stale()
      reg:close()
      g.srv:close()
    end)
    assert.is_true(registered)
    assert.are.equal(10, g.puts)
    assert.is_true(beat)
    local leases = 0
    for _, n in pairs(g.asked) do
      leases = leases + 1
      assert.is_true(n >= 1)
    end
    assert.are.equal(10, leases)
    assert.are.equal(4, g.requests) -- 3 + 3 + 3 + 1 answered, in one batch of 10
    assert.is_falsy(why and why:find("keepalive", 1, true))
  end)

  it("calls an answer without results a failure, and says so", function()
    local g, why
    fb.run(function()
      g = gateway(0)
      local reg = fb.registry { backend = "etcd", endpoints = { g.url }, timeout = 1 }
      reg:register("svc", "127.0.0.1", 9001)
      wait_until(function() return reg:pending() == 0 end, 5)
      reg:heartbeat("svc", "127.0.0.1", 9001)
      wait_until(function()
        local _, w = reg:stale()
        why = w
        return w and w:find("keepalive", 1, true)
      end, 5)
      assert.are.equal(1, reg:pending())
      reg:close()
      g.srv:close()
    end)
    assert.are.equal("etcd lease/keepalive: an answer without results", why)
  end)
end)
