-- Outlier detection and slow start through the Lua surfaces: fb.outlier,
-- fb.balancer{outlier=, slow_start=}, lb:done(inst, "gateway", t), the
-- eject/readmit events, metrics, fb.client{outlier=} with its schema
-- errors, and fusebox.ngx upstream{outlier=} fed by nginx's statuses.
local fb = require "fusebox"

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

local function has(s, needle)
  assert.truthy(s:find(needle, 1, true), "got: " .. s)
end

local function static(n, service)
  local reg = fb.registry { static = true }
  for i = 1, n do reg:register(service or "api", "10.0.0." .. i, 80) end
  return reg
end

describe("outlier detection", function()
  it("ejects after consecutive_5xx failures, and readmits on time", function()
    T.vrun(function()
      local reg = static(10)
      local lb = fb.balancer(reg, "round_robin", { outlier = { consecutive_5xx = 3 } })
      local picked_bad = 0
      for _ = 1, 100 do
        local v = lb:pick("api")
        if v.host == "10.0.0.1" then picked_bad = picked_bad + 1 end
        assert.is_true(lb:done(v, v.host ~= "10.0.0.1", 0.01))
        fb.sleep(0.1)
      end
      assert.equal(3, picked_bad) -- then ejected for base_ejection_time (30 s)
      local st = lb:outlier():stats()
      assert.same({ consecutive_5xx = 1, consecutive_gateway_failure = 0, success_rate = 0,
        failure_percentage = 0 }, st.ejections)
      assert.equal(1, st.ejected)
      local v = reg:discover("api")[1]
      assert.is_true(math.abs(v.ejected_until - 32) < 1e-9) -- its third failure at t = 2
      fb.sleep(30)
      local back = 0
      for _ = 1, 10 do
        local x = lb:pick("api")
        if x.host == "10.0.0.1" then back = back + 1 end
        lb:done(x, true, 0.01)
      end
      assert.equal(1, back)
      assert.equal(0, lb:outlier():stats().ejected)
    end)
  end)

  it("counts gateway failures apart, and logs eject and readmit events", function()
    local path = os.tmpname()
    fb.run(function()
      local reg = static(4)
      local d = fb.outlier(reg, { consecutive_gateway_failure = 2,
        enforcing_consecutive_gateway_failure = 100, max_ejection_percent = 50 })
      local lb = fb.balancer(reg, "random", { outlier = d })
      assert.equal(d, lb:outlier())
      local n = 0
      while n < 2 do
        local x = lb:pick("api")
        if x.host == "10.0.0.2" then n = n + 1 end
        lb:done(x, x.host ~= "10.0.0.2" or "gateway", 0)
      end
      fb.sleep(31)
      lb:done(lb:pick("api"), true, 0)
    end, { virtual_time = true, seed = 3, events = path })
    local log = T.slurp(path)
    os.remove(path)
    has(log, '"kind":"eject","ejections":1,"host":"10.0.0.2","id":')
    has(log, '"port":80,"reason":"consecutive_gateway_failure","service":"api","until":30}')
    has(log, '{"t":31,"kind":"readmit","at":30,"host":"10.0.0.2"')
  end)

  it("calls its listeners with each eject and readmit, reporting one that raises", function()
    T.vrun(function()
      local reg = static(10)
      local d = fb.outlier(reg, { consecutive_5xx = 1 })
      local lb = fb.balancer(reg, "round_robin", { outlier = d })
      local seen = {}
      d:on("eject", function(e) seen[#seen + 1] = "eject " .. e.host .. " " .. e.reason .. " " .. e["until"] end)
      d:on("readmit", function(e) seen[#seen + 1] = "readmit " .. e.host .. " " .. e.at end)
      d:on("eject", function() error("listener bug") end)
      local v = lb:pick("api")
      lb:done(v, false, 0)
      fb.sleep(31)
      lb:done(lb:pick("api"), true, 0)
      assert.same({ "eject 10.0.0.1 consecutive_5xx 30", "readmit 10.0.0.1 30" }, seen)
      has(errmsg(d.on, d, "ejected", print), "unknown event 'ejected' (known: eject, readmit)")
      has(errmsg(d.on, d, "eject", 3), "function expected")
    end)
  end)

  it("shares one detector between balancers over its registry only", function()
    T.vrun(function()
      local reg = static(2)
      local d = fb.outlier(reg)
      local a = fb.balancer(reg, "round_robin", { outlier = d })
      local b = fb.balancer(reg, "least_request", { outlier = d })
      assert.equal(a:outlier(), b:outlier())
      assert.is_nil(fb.balancer(reg, "round_robin"):outlier())
      has(errmsg(fb.balancer, static(1), "random", { outlier = d }),
        "outlier is a detector over another registry")
      assert.equal(reg, d:registry())
    end)
  end)

  it("keeps detecting for a balancer whose detector was closed by hand", function()
    T.vrun(function()
      local reg = static(10)
      local d = fb.outlier(reg, { consecutive_5xx = 1 })
      local lb = fb.balancer(reg, "round_robin", { outlier = d })
      getmetatable(d).__gc(d)
      has(errmsg(d.stats, d), "closed")
      local v = lb:pick("api")
      assert.is_true(lb:done(v, false, 0))
      assert.is_true(v.ejected_until > fb.now())
    end)
  end)

  it("says what is wrong with its options", function()
    local reg = static(1)
    has(errmsg(fb.balancer, reg, "round_robin", { outlier = { interval = 0 } }),
      "(outlier.interval must be a positive number (at most 1e9), got 0)")
    has(errmsg(fb.balancer, reg, "round_robin", { outlier = { max_ejection_percent = 101 } }),
      "outlier.max_ejection_percent must be a percentage 0..100, got 101")
    has(errmsg(fb.balancer, reg, "round_robin", { outlier = { consecutive_5xx = 1.5 } }),
      "outlier.consecutive_5xx must be an integer >= 0, got 1.5")
    has(errmsg(fb.balancer, reg, "round_robin", { outlier = { bogus = 1 } }),
      "unknown option 'outlier.bogus'")
    has(errmsg(fb.balancer, reg, "round_robin", { outlier = 3 }),
      "outlier must be a table of outlier options or an fb.outlier detector, got 3")
    has(errmsg(fb.outlier, reg, { interval = -1 }),
      "(interval must be a positive number (at most 1e9), got -1)")
    has(errmsg(fb.outlier, {}), "(fusebox.registry expected, got table)")
    has(errmsg(function() fb.balancer(reg, "random"):done(reg:discover("api")[1], "5xx", 0) end),
      "ok must be true, false or \"gateway\", got \"5xx\"")
  end)

  it("publishes ejections by reason and the ejected gauge in metrics", function()
    T.vrun(function()
      local reg = static(10, "metered")
      local lb = fb.balancer(reg, "round_robin", { outlier = { consecutive_5xx = 1 } })
      fb.export("outlier_spec", lb)
      local v = lb:pick("metered")
      lb:done(v, false, 0)
      local text = fb.metrics()
      has(text, 'fusebox_outlier_ejections_total{balancer="outlier_spec",reason="consecutive_5xx"} 1')
      has(text, 'fusebox_outlier_ejections_total{balancer="outlier_spec",reason="success_rate"} 0')
      has(text, 'fusebox_outlier_ejected{balancer="outlier_spec"} 1')
      fb.sleep(31)
      has(fb.metrics(), 'fusebox_outlier_ejected{balancer="outlier_spec"} 0')
      fb.export("outlier_spec", nil)
    end)
  end)

  it("ejects by success rate at the end of an interval", function()
    T.vrun(function()
      local reg = static(6)
      local lb = fb.balancer(reg, "round_robin", { outlier = { consecutive_5xx = 0,
        max_ejection_percent = 50 } })
      for k = 1, 600 do -- 100 calls each; 10.0.0.6 fails every one
        local v = lb:pick("api")
        lb:done(v, not (v.host == "10.0.0.6" and k % 2 == 0), 0.01)
        fb.sleep(0.01)
      end
      fb.sleep(5)
      lb:done(lb:pick("api"), true, 0) -- the interval (0..10 s) ends
      local ejected = {}
      for _, v in ipairs(reg:discover("api")) do
        if v.ejected_until > fb.now() then ejected[#ejected + 1] = v.host end
      end
      assert.same({ "10.0.0.6" }, ejected)
      assert.equal(1, lb:outlier():stats().ejections.success_rate)
    end)
  end)
end)

describe("slow start", function()
  it("ramps a newcomer's share in smooth WRR over the window", function()
    T.vrun(function()
      local reg = fb.registry { static = true }
      reg:register("s", "a", 1)
      local lb = fb.balancer(reg, "weighted_round_robin", { slow_start = { slow_start_window = 10 } })
      lb:done(lb:pick("s"), true, 0)
      fb.sleep(100)
      reg:register("s", "b", 1)
      local function share(n)
        local b = 0
        for _ = 1, n do
          local v = lb:pick("s")
          if v.host == "b" then b = b + 1 end
          lb:done(v, true, 0)
        end
        return b
      end
      assert.equal(10, share(110)) -- 10%
      fb.sleep(5)
      assert.equal(50, share(150)) -- 50%
      fb.sleep(6)
      assert.equal(100, share(200)) -- full
    end)
  end)

  it("follows aggression and min_weight_percent", function()
    T.vrun(function()
      local reg = fb.registry { static = true }
      reg:register("s", "a", 1)
      local lb = fb.balancer(reg, "weighted_round_robin",
        { slow_start = { slow_start_window = 10, aggression = 2, min_weight_percent = 50 } })
      lb:done(lb:pick("s"), true, 0)
      fb.sleep(100)
      reg:register("s", "b", 1)
      local b = 0
      for _ = 1, 150 do
        local v = lb:pick("s")
        if v.host == "b" then b = b + 1 end
        lb:done(v, true, 0)
      end
      assert.equal(50, b) -- sqrt(0.1) = 0.32 < 50%: a weighs 100, b 50
    end)
  end)

  it("is refused where it cannot apply, and checked", function()
    local reg = static(1)
    has(errmsg(fb.balancer, reg, "round_robin", { slow_start = { slow_start_window = 3 } }),
      "slow_start: round_robin has none")
    has(errmsg(fb.balancer, reg, "maglev", { slow_start = { slow_start_window = 3 } }),
      "slow_start: maglev has none")
    has(errmsg(fb.balancer, reg, "peak_ewma", { slow_start = { aggression = 2 } }),
      "slow_start.slow_start_window must be given (seconds)")
    has(errmsg(fb.balancer, reg, "least_request", { slow_start = { slow_start_window = 3, min_weight_percent = 0 } }),
      "slow_start.min_weight_percent must be a percentage in (0, 100], got 0")
    has(errmsg(fb.balancer, reg, "random", { slow_start = { slow_start_window = 3, window = 1 } }),
      "unknown option 'slow_start.window'")
  end)
end)

describe("fb.client with outlier detection", function()
  it("ejects the failing instance and keeps calling the others", function()
    T.vrun(function()
      local reg = static(5)
      local c = fb.client { registry = reg, outlier = { consecutive_5xx = 2, max_ejection_percent = 20 },
        per_instance_breaker = false }
      local calls = {}
      for _ = 1, 50 do
        pcall(c.call, c, "api", function(inst)
          calls[inst.host] = (calls[inst.host] or 0) + 1
          if inst.host == "10.0.0.3" then error("boom") end
          return true
        end)
      end
      assert.equal(2, calls["10.0.0.3"])
      assert.equal(1, c.lb:outlier():stats().ejections.consecutive_5xx)
    end)
  end)

  it("checks outlier and slow_start with path errors", function()
    local reg = static(1)
    has(errmsg(fb.client, { registry = reg, outlier = { interval = "x" } }),
      "bad argument #1 to 'client' (outlier.interval: must be a positive number, got \"x\")")
    has(errmsg(fb.client, { registry = reg, outlier = { max_ejection_percent = 200 } }),
      "outlier.max_ejection_percent: must be in 0..100 percent, got 200")
    has(errmsg(fb.client, { registry = reg, slow_start = { aggression = 1 } }),
      "slow_start.slow_start_window: must be given (seconds)")
    has(errmsg(fb.client, { registry = reg, balancer = fb.balancer(reg, "random"), outlier = {} }),
      "outlier: give it to the balancer passed")
    local c = fb.client { registry = reg, balancer = "least_request",
      slow_start = { slow_start_window = 5 }, outlier = fb.outlier(reg) }
    assert.truthy(c.lb:outlier())
  end)
end)

describe("fusebox.ngx with outlier detection", function()
  it("counts 502/503/504 tries as gateway failures", function()
    local saved_ngx = _G.ngx
    local current
    package.loaded["ngx.balancer"] = {
      set_current_peer = function(host, port) current = host .. ":" .. port; return true end,
      set_more_tries = function() return true end,
    }
    local ngx_fb = require "fusebox.ngx"
    local ok, err = pcall(function()
      local u = ngx_fb.upstream { name = "spec_outlier", peers = { "127.0.0.1:1", "127.0.0.1:2",
        "127.0.0.1:3" }, breaker = false, tries = 1,
        outlier = { consecutive_gateway_failure = 2, enforcing_consecutive_gateway_failure = 100,
          consecutive_5xx = 0, max_ejection_percent = 34 } }
      local sent = {}
      for _ = 1, 12 do
        _G.ngx = { ctx = {}, var = {}, log = function() end, ERR = 4, ERROR = -1,
          exit = function(c) error("exit " .. c) end }
        u:balance()
        sent[current] = (sent[current] or 0) + 1
        ngx.var.upstream_status = current == "127.0.0.1:2" and "502" or "200"
        ngx.var.upstream_response_time = "0.001"
        u:log()
      end
      assert.equal(2, sent["127.0.0.1:2"])
      assert.equal(1, u.lb:outlier():stats().ejections.consecutive_gateway_failure)
      assert.truthy(fb.metrics():find(
        'fusebox_outlier_ejections_total{balancer="spec_outlier/outlier",reason="consecutive_gateway_failure"} 1',
        1, true))
      assert.truthy(errmsg(ngx_fb.upstream, { name = "x", peers = { "a:1" }, outlier = 1 })
        :find("outlier must be a table of outlier options, got number", 1, true))
      -- with a zone, the detector's ejection is every worker's (u:eject)
      local z = ngx_fb.upstream { name = "spec_outlier_zone", zone = "spec_outlier_zone",
        peers = { "127.0.0.1:1", "127.0.0.1:2" }, breaker = false, tries = 1,
        outlier = { consecutive_5xx = 1, max_ejection_percent = 50 } }
      _G.ngx = { ctx = {}, var = {}, log = function() end, ERR = 4, ERROR = -1,
        exit = function(c) error("exit " .. c) end }
      z:balance()
      ngx.var.upstream_status, ngx.var.upstream_response_time = "500", "0.001"
      z:log()
      local p = z:peers()[current]
      local ffi = require "ffi"
      pcall(ffi.cdef, "int getpid(void);")
      os.remove("/dev/shm/fusebox-zone.spec_outlier_zone." .. ffi.C.getpid()) -- mapped: still usable
      assert.truthy(p.ejected_for and p.ejected_for > 29, tostring(p.ejected_for))
    end)
    _G.ngx = saved_ngx
    package.loaded["ngx.balancer"] = nil
    assert(ok, err)
  end)
end)

describe("examples/outlier_ejection.lua", function()
  it("prints the table the README shows (virtual time, seed 1)", function()
    local out, err, code = T.cli("run --virtual-time --seed 1 examples/outlier_ejection.lua")
    assert.equal(0, code, err)
    local readme = T.slurp("README.md")
    local at = assert(readme:find("`examples/outlier_ejection.lua`: ten instances", 1, true))
    local block = readme:match("```\n(.-)```", at)
    assert.equal(block, out)
  end)
end)

describe("examples/slow_start.lua", function()
  it("prints the table the README shows (virtual time, seed 1)", function()
    local out, err, code = T.cli("run --virtual-time --seed 1 examples/slow_start.lua")
    assert.equal(0, code, err)
    local readme = T.slurp("README.md")
    local at = assert(readme:find("`examples/slow_start.lua`: four warm instances", 1, true))
    local block = readme:match("```\n(.-)```", at)
    assert.equal(block, out)
  end)
end)
