-- Active health checks flipping real instances on 127.0.0.1.
local fb = require "fusebox"

local function backend(port, status)
  return assert(fb.http.serve { port = port or 0, handler = function() return status or 200, nil, "ok" end })
end

-- Sleeps until pred() or about 2 s; a bounded loop, not a timing test.
local function eventually(pred)
  for _ = 1, 200 do
    if pred() then return true end
    fb.sleep(0.01)
  end
  return pred()
end

describe("health checks", function()
  for _, kind in ipairs { "tcp", "http" } do
    it(kind .. ": marks a failing instance down, skips it, and brings it back", function()
      local changes = {}
      fb.run(function()
        local a, b = backend(), backend()
        local pa, pb = a:port(), b:port()
        local reg = fb.registry {}
        reg:register("svc", "127.0.0.1", pa)
        reg:register("svc", "127.0.0.1", pb)
        local lb = fb.balancer(reg, "round_robin")
        local hc = fb.health_check { registry = reg, service = "svc", type = kind, path = "/health",
          interval = 0.02, timeout = 0.5, healthy_threshold = 2, unhealthy_threshold = 2,
          on_change = function(inst, healthy) changes[#changes + 1] = inst.port .. (healthy and " up" or " down") end }
        b:close()
        assert.is_true(eventually(function() return not hc:is_healthy("127.0.0.1", pb) end))
        assert.is_true(hc:is_healthy("127.0.0.1", pa))
        for _ = 1, 6 do -- every balancer skips it: the registry knows
          local inst = lb:pick("svc")
          assert.are.equal(pa, inst.port)
          lb:done(inst, true, 0)
        end
        b = backend(pb)
        assert.is_true(eventually(function() return hc:is_healthy("127.0.0.1", pb) end))
        hc:stop()
        a:close(); b:close()
        assert.are.same({ pb .. " down", pb .. " up" }, changes)
      end)
    end)
  end

  it("http: counts 5xx answers as failures", function()
    fb.run(function()
      local bad = backend(nil, 503)
      local reg = fb.registry {}
      reg:register("svc", "127.0.0.1", bad:port())
      local hc = fb.health_check { registry = reg, service = "svc", type = "http", interval = 0.02,
        unhealthy_threshold = 1 }
      assert.is_true(eventually(function() return not hc:is_healthy("127.0.0.1", bad:port()) end))
      -- the only instance is down: panic mode still picks it; without
      -- panic mode there is nothing to pick
      assert.are.equal(bad:port(), hc:pick(fb.balancer(reg, "round_robin")).port)
      assert.is_nil(hc:pick(fb.balancer(reg, "round_robin", { panic_threshold = 0 })))
      hc:stop()
      bad:close()
    end)
  end)

  it("rejects bad options", function()
    fb.run(function()
      local reg = fb.registry {}
      assert.has_error(function() fb.health_check { registry = reg, service = "s", type = "udp" } end,
        "bad argument #1 to 'health_check' (type must be 'tcp' or 'http', got udp)")
      assert.has_error(function() fb.health_check { registry = reg, service = "s", interval = 0 } end,
        "bad argument #1 to 'health_check' (interval must be a positive number, got 0)")
    end)
  end)
end)
