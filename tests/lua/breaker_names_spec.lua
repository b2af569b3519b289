-- Breakers have names (issue 14, item 13): the name option labels a
-- breaker in events, the report and metrics; fb.client names each
-- instance's breaker after its instance; and the report counts, draws and
-- bands every breaker that logged anything, state changes or not.
local fb = require "fusebox"

local slurp = T.slurp

local function count(text, s)
  local n, at = 0, 1
  while true do
    local i = text:find(s, at, true)
    if not i then return n end
    n, at = n + 1, i + #s
  end
end

-- Runs script under the CLI with --events and --report; returns the
-- events text, the page and stderr.
local function run(script)
  local src, events, page = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(src, "w"))
  f:write(script)
  f:close()
  local _, err, code = T.cli(string.format("run --virtual-time --seed 1 --events %s --report %s %s",
    events, page, src))
  local log, html = slurp(events), slurp(page)
  os.remove(src); os.remove(events); os.remove(page)
  assert.are.equal(0, code, err)
  return log, html, err
end

describe("breaker names", function()
  it("are an option, read back as cb.name and shown by tostring", function()
    local cb = fb.breaker { name = "payments" }
    assert.are.equal("payments", cb.name)
    assert.truthy(tostring(cb):find("fusebox.breaker 'payments' CLOSED", 1, true))
    assert.is_nil(fb.breaker {}.name)
    assert.has_error(function() fb.breaker { name = 5 } end,
      "bad argument #1 to 'breaker' (name must be a string, got number)")
    assert.has_error(function() fb.breaker { name = "" } end,
      "bad argument #1 to 'breaker' (name must not be empty)")
    local p = fb.policy_from_json('{"breaker": {"name": "db", "failure_threshold": 2}}')
    assert.are.equal("db", p.layers[1].breaker.name)
    local ok, err = pcall(fb.policy_from_json, '{"breaker": {"name": 7}}')
    assert.is_false(ok)
    assert.truthy(err:find("breaker.name: must be a non-empty string, got 7", 1, true), err)
  end)

  it("label events, the report and the summary; a quiet breaker still gets its band", function()
    local log, html, err = run [[
      local fb = require "fusebox"
      local quiet = fb.breaker { name = "quiet" }
      local loud = fb.breaker { name = "payments", failure_threshold = 1, timeout = 5 }
      local anon = fb.breaker { failure_threshold = 1, timeout = 5 }
      for _ = 1, 10 do
        quiet:call(function() return 1 end)
        pcall(loud.call, loud, error, "down")
        pcall(anon.call, anon, error, "down")
        fb.sleep(1)
      end
    ]]
    assert.truthy(log:find('"breaker":1,"duration":0,"name":"quiet","outcome":"success"', 1, true), log)
    assert.truthy(log:find('"kind":"state_change","breaker":2,"from":"CLOSED","name":"payments","to":"OPEN"', 1, true), log)
    -- the requests panel, the states panel and the header agree
    for _, label in ipairs { "breaker quiet", "breaker payments", "breaker 3" } do
      assert.are.equal(1, count(html, string.format('data-series="%s" data-total="10"', label)), label)
      assert.are.equal(1, count(html, string.format('data-breaker="%s"', label)), label)
    end
    assert.truthy(html:find('<td id="total-breakers">3</td>', 1, true))
    assert.truthy(err:find("summed over 3 breakers): CLOSED 10.000s", 1, true), err)
  end)

  it("of a client's instances are their host:port, in events and the report", function()
    local log, html = run [[
      local fb = require "fusebox"
      local reg = fb.registry {}
      reg:register("users", "10.0.0.1", 80)
      reg:register("users", "10.0.0.2", 80)
      local c = fb.client { registry = reg, per_instance_breaker = { failure_threshold = 2 } }
      for _ = 1, 4 do c:call("users", function() return "ok" end) end
      assert(c:breaker("10.0.0.1", 80).name == "10.0.0.1:80")
      local named = fb.client { registry = reg, per_instance_breaker = { name = "users" } }
      named:call("users", function() return "ok" end)
      assert(named:breaker("10.0.0.1", 80).name == "users 10.0.0.1:80")
    ]]
    assert.truthy(log:find('"name":"10.0.0.1:80"', 1, true), log)
    assert.truthy(log:find('"name":"10.0.0.2:80"', 1, true), log)
    assert.truthy(html:find('data-breaker="breaker 10.0.0.1:80"', 1, true))
    assert.truthy(html:find('data-breaker="breaker 10.0.0.2:80"', 1, true))
    assert.truthy(html:find('data-breaker="breaker users 10.0.0.1:80"', 1, true))
    assert.truthy(html:find('<td id="total-breakers">3</td>', 1, true))
  end)

  it("label metrics next to the export name", function()
    local cb = fb.breaker { name = "payments-db" }
    fb.export("payments", cb)
    fb.export("anonymous", fb.breaker {})
    local text = fb.metrics()
    fb.export("payments", nil)
    fb.export("anonymous", nil)
    assert.truthy(text:find('fusebox_breaker_state{breaker="payments",name="payments-db",state="closed"} 1', 1, true), text)
    assert.truthy(text:find('fusebox_breaker_state{breaker="anonymous",state="closed"} 1', 1, true), text)
  end)
end)
