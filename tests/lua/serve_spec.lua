-- The registry API (fb.serve_registry, behind `fusebox serve`), driven
-- over real HTTP on 127.0.0.1 the way other processes would.
local fb = require "fusebox"

-- Runs fn(call) with a fresh API server; call(method, path, body) ->
-- status, decoded JSON body, headers.
local function with_api(fn, opts)
  fb.run(function()
    opts = opts or {}
    opts.port = 0
    local api = assert(fb.serve_registry(opts))
    local base = "http://127.0.0.1:" .. api:port()
    local function call(method, path, body)
      local status, headers, text = fb.http.request { method = method, url = base .. path, body = body, timeout = 5 }
      assert(status, headers)
      return status, text, headers
    end
    local ok, err = pcall(fn, call, api)
    api:close()
    assert(ok, err)
  end)
end

local function has(text, s) return text:find(s, 1, true) ~= nil end

describe("fusebox serve: registry API", function()
  it("registers, heartbeats, discovers, lists and deregisters", function()
    with_api(function(call)
      local st, body = call("PUT", "/v1/services/users/instances", '{"host":"10.0.0.1","port":8080,"weight":2,"meta":{"zone":"a"}}')
      assert.are.equal(201, st)
      assert.is_true(has(body, '"added":true'))
      st = call("PUT", "/v1/services/users/instances", '{"host":"10.0.0.2","port":8080}')
      assert.are.equal(201, st)
      st, body = call("PUT", "/v1/services/users/instances/10.0.0.2:8080/heartbeat")
      assert.are.equal(200, st)
      assert.is_true(has(body, '"added":false'))
      st, body = call("GET", "/v1/services/users")
      assert.are.equal(200, st)
      assert.is_true(has(body, '"host":"10.0.0.1"') and has(body, '"host":"10.0.0.2"'))
      assert.is_true(has(body, '"zone":"a"') and has(body, '"weight":2'))
      st, body = call("GET", "/v1/services")
      assert.is_true(has(body, '{"live":2,"name":"users"}') or has(body, '{"name":"users","live":2}'))
      st = call("DELETE", "/v1/services/users/instances/10.0.0.2:8080")
      assert.are.equal(200, st)
      st, body = call("DELETE", "/v1/services/users/instances/10.0.0.2:8080")
      assert.are.equal(404, st)
      assert.is_true(has(body, '"error"'))
      st, body = call("GET", "/v1/services/users")
      assert.is_false(has(body, "10.0.0.2"))
      st, body = call("GET", "/v1/services/nobody")
      assert.are.equal(200, st)
      assert.is_true(has(body, '"instances":[]'))
    end)
  end)

  it("answers malformed input with 4xx and a JSON error, and keeps serving", function()
    with_api(function(call)
      local cases = {
        { "PUT", "/v1/services/a/instances", '{"host":', 400, "invalid JSON" },
        { "PUT", "/v1/services/a/instances", '[1,2]', 400, "JSON object" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":0}', 400, "port must be" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":70000}', 400, "port must be" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":1.5}', 400, "port must be" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":"80"}', 400, "port must be" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"colour":"red"}', 400, "unknown field 'colour'" },
        { "PUT", "/v1/services/a/instances", '{"host":"","port":80}', 400, "host must be" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"weight":-1}', 400, "weight" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"meta":{"k":1}}', 400, "meta values" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80} x', 400, "text after the value" },
        { "PUT", "/v1/services/a/instances", string.rep("[", 5000), 400, "invalid JSON" },
        { "PUT", "/v1/services/a/instances/h:99999/heartbeat", nil, 400, "bad instance" },
        { "PUT", "/v1/services/a/instances/nohost/heartbeat", nil, 400, "bad instance" },
        { "PUT", "/v1/services/a%20b/instances", '{}', 400, "bad service name" },
        { "POST", "/v1/services/a", nil, 405, "method not allowed" },
        { "GET", "/v2/whatever", nil, 404, "no such endpoint" },
        { "GET", "/v1/services/a?index=x", nil, 400, "index must be" },
        { "GET", "/v1/services/a?index=1&wait=forever", nil, 400, "bad wait" },
        { "PUT", "/v1/services/a/instances", string.rep("x", 70 * 1024), 413, "too large" },
      }
      for _, c in ipairs(cases) do
        local st, body = call(c[1], c[2], c[3])
        assert.are.equal(c[4], st, c[2] .. " " .. tostring(c[3]):sub(1, 40))
        assert.is_true(has(body, '{"error":"') and has(body, c[5]), body)
      end
      assert.are.equal(201, (call("PUT", "/v1/services/a/instances", '{"host":"h","port":80}')))
    end)
  end)

  it("blocks a discover with index= until the membership changes", function()
    with_api(function(call, api)
      call("PUT", "/v1/services/s/instances", '{"host":"10.0.0.1","port":1}')
      local _, body, headers = call("GET", "/v1/services/s")
      local index = tonumber(headers["x-fusebox-index"])
      assert.is_true(has(body, '"index":' .. index))
      local got, t_done
      fb.spawn(function()
        local _, b = call("GET", "/v1/services/s?index=" .. index .. "&wait=5s")
        got, t_done = b, fb.now()
      end)
      fb.sleep(0.1)
      assert.is_nil(got) -- still blocked
      local t_change = fb.now()
      call("PUT", "/v1/services/s/instances", '{"host":"10.0.0.2","port":2}')
      for _ = 1, 100 do if got then break end; fb.sleep(0.01) end
      assert.is_true(has(got, "10.0.0.2"))
      assert.is_true(t_done - t_change < 1)
      -- an unchanged index waits out the wait, then answers
      local _, _, h2 = call("GET", "/v1/services/s?index=" .. (index + 1) .. "&wait=100ms")
      assert.are.equal(index + 1, tonumber(h2["x-fusebox-index"]))
      assert.is_truthy(api)
    end)
  end)

  it("wakes a blocking query when an instance expires", function()
    with_api(function(call)
      call("PUT", "/v1/services/e/instances", '{"host":"10.0.0.1","port":1}')
      local _, _, headers = call("GET", "/v1/services/e")
      local _, body = call("GET", "/v1/services/e?index=" .. headers["x-fusebox-index"] .. "&wait=5s")
      assert.is_true(has(body, '"instances":[]'))
    end, { registry = fb.registry { heartbeat_timeout = 0.2 }, sweep_interval = 0.05 })
  end)

  it("keeps serving others while a client holds a half-sent request", function()
    with_api(function(call, api)
      local slow = assert(fb.tcp.connect("127.0.0.1", api:port()))
      slow:write("PUT /v1/services/a/instances HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
      local st = call("GET", "/v1/services")
      slow:close()
      assert.are.equal(200, st)
    end)
  end)
end)
