-- Prometheus metrics of exported objects, checked by promtool.
local fb = require "fusebox"

local function promtool(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w")); f:write(text); f:close()
  local p = io.popen("promtool check metrics < " .. path .. " 2>&1; echo rc=$?")
  local out = p:read("*a"); p:close()
  os.remove(path)
  return out
end

describe("metrics", function()
  it("exports breakers and registries in a format promtool accepts", function()
    local text, status
    fb.run(function()
      local reg = fb.registry {}
      reg:register("users", "127.0.0.1", 7001)
      reg:register("users", "127.0.0.1", 7002)
      local lb = fb.balancer(reg, "round_robin")
      for _ = 1, 3 do lb:pick("users") end
      lb:done(reg:discover("users")[1], false, 0.01) -- 7001: one of its two picks reported
      reg:set_healthy("users", "127.0.0.1", 7002, false)
      local cb = fb.breaker { failure_threshold = 1, timeout = 60 }
      cb:call(function() end)
      pcall(cb.call, cb, function() error("down") end)
      pcall(cb.call, cb, function() end)
      fb.export("users-registry", reg)
      fb.export("db\"breaker", cb)
      local m = assert(fb.serve_metrics { port = 0 })
      status, _, text = fb.http.request { url = "http://127.0.0.1:" .. m:port() .. "/metrics" }
      m:close()
      fb.export("users-registry", nil)
      fb.export("db\"breaker", nil)
    end)
    assert.are.equal(200, status)
    assert.matches("rc=0", promtool(text), 1, true)
    local function has(s) return text:find(s, 1, true) ~= nil end
    assert.is_true(has('fusebox_breaker_state{breaker="db\\"breaker",state="open"} 1'))
    assert.is_true(has('fusebox_breaker_state{breaker="db\\"breaker",state="closed"} 0'))
    assert.is_true(has('fusebox_breaker_calls_total{breaker="db\\"breaker",outcome="success"} 1'))
    assert.is_true(has('fusebox_breaker_calls_total{breaker="db\\"breaker",outcome="failure"} 1'))
    assert.is_true(has('fusebox_breaker_rejected_calls_total{breaker="db\\"breaker"} 1'))
    assert.is_true(has('fusebox_balancer_picks_total{registry="users-registry",service="users",instance="127.0.0.1:7001"} 2'))
    assert.is_true(has('fusebox_registry_instances{registry="users-registry",service="users"} 2'))
    local i1 = 'registry="users-registry",service="users",instance="127.0.0.1:7001"'
    local i2 = 'registry="users-registry",service="users",instance="127.0.0.1:7002"'
    assert.is_true(has("fusebox_balancer_in_flight{" .. i1 .. "} 1"))
    assert.is_true(has("fusebox_balancer_in_flight{" .. i2 .. "} 1"))
    assert.is_true(has("fusebox_balancer_reported_calls_total{" .. i1 .. ',outcome="failure"} 1'))
    assert.is_true(has("fusebox_balancer_reported_calls_total{" .. i1 .. ',outcome="success"} 0'))
    assert.is_true(has("fusebox_instance_healthy{" .. i1 .. "} 1"))
    assert.is_true(has("fusebox_instance_healthy{" .. i2 .. "} 0"))
    assert.is_true(has('fusebox_breaker_state{breaker="db\\"breaker",state="forced_open"} 0'))
    assert.is_true(has('fusebox_registry_expirations_total{registry="users-registry"} 0'))
  end)

  it("counts expirations", function()
    local text
    T.vrun(function()
      local reg = fb.registry { heartbeat_timeout = 10 }
      reg:register("s", "h", 1)
      fb.sleep(11)
      fb.export("r", reg)
      text = fb.metrics()
      fb.export("r", nil)
    end)
    assert.is_truthy(text:find('fusebox_registry_expirations_total{registry="r"} 1', 1, true))
    assert.is_truthy(text:find('fusebox_registry_instances{registry="r",service="s"} 0', 1, true))
  end)
end)
