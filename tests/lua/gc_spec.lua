-- Garbage collection in any order is safe: a balancer keeps its registry
-- alive, and collecting either first never crashes.
local fb = require "fusebox"

describe("garbage collection", function()
  it("keeps a registry alive while a balancer uses it", function()
    T.vrun(function()
      local lb
      do
        local reg = fb.registry()
        reg:register("s", "h", 1)
        lb = fb.balancer(reg, "round_robin")
      end
      collectgarbage(); collectgarbage()
      assert.are.equal("h", lb:pick("s").host)
      lb:registry():register("s", "h2", 1)
      assert.are.equal(2, #lb:registry():discover("s"))
    end)
  end)

  it("survives collecting everything at once, many times, in any order", function()
    for round = 1, 50 do
      local objs = {}
      local reg = fb.registry()
      reg:register("s", "h", round)
      for i = 1, 5 do objs[#objs + 1] = fb.balancer(reg, i % 2 == 0 and "random" or "round_robin") end
      objs[#objs + 1] = fb.breaker()
      if round % 2 == 0 then objs[#objs + 1] = reg end
      reg = nil
      objs = nil
      collectgarbage()
    end
    collectgarbage(); collectgarbage()
  end)

  it("lets instance views outlive their instance and registry", function()
    local view
    T.vrun(function()
      local reg = fb.registry()
      reg:register("s", "h", 1)
      view = reg:discover("s")[1]
      reg:deregister("s", "h", 1)
    end)
    collectgarbage(); collectgarbage()
    assert.are.equal("h", view.host)
    assert.are.equal(1, view.port)
  end)
end)
