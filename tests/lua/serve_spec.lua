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
    local function call(method, path, body, headers)
      local status, headers, text = fb.http.request { method = method, url = base .. path, body = body,
        headers = headers, timeout = 5 }
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
        -- the registry's own checks, word for word (issue 13, finding 8)
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"weight":1e400}', 400,
          "a number beyond the doubles (+-1.8e308) at .weight" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"weight":1e300}', 400,
          "weight must be an integer 1..1000000, got 1e+300" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"weight":1.5}', 400,
          "weight must be an integer 1..1000000, got 1.5" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"weight":0}', 400, "weight must be an integer" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"weight":1000001}', 400, "weight must be an integer" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"weight":"2"}', 400, "weight must be an integer" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":1e400}', 400, "a number beyond the doubles (+-1.8e308) at .port" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":1e300}', 400, "port must be 1..65535, got 1e+300" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"zone":7}', 400, "zone must be a string" },
        { "PUT", "/v1/services/a/instances", '{"host":"h","port":80,"zone":""}', 400, "zone must not be empty" },
        { "PUT", "/v1/services/a/instances", '{"host":7,"port":80}', 400, "host must be a string" },
        { "PUT", "/v1/services/a/instances", '{"port":80}', 400, "host must be a string, got nil" },
        -- numbers in paths and query strings: decimal digits only (finding 14)
        { "PUT", "/v1/services/a/instances/h:0x50/heartbeat", nil, 400, "bad instance 'h:0x50'" },
        { "PUT", "/v1/services/a/instances/h:8e1/heartbeat", nil, 400, "bad instance 'h:8e1'" },
        { "PUT", "/v1/services/a/instances/h:80.0/heartbeat", nil, 400, "bad instance 'h:80.0'" },
        { "PUT", "/v1/services/a/instances/h:+80/heartbeat", nil, 400, "bad instance" },
        { "PUT", "/v1/services/a/instances/h:0/heartbeat", nil, 400, "bad instance" },
        { "DELETE", "/v1/services/a/instances/h:0x50", nil, 400, "bad instance" },
        { "GET", "/v1/services/a?index=1e308", nil, 400, "index must be a decimal integer" },
        { "GET", "/v1/services/a?index=inf", nil, 400, "index must be a decimal integer" },
        { "GET", "/v1/services/a?index=-1", nil, 400, "index must be a decimal integer" },
        { "GET", "/v1/services/a?index=0x10", nil, 400, "index must be a decimal integer" },
        { "GET", "/v1/services/a?index=1.5", nil, 400, "index must be a decimal integer" },
        { "GET", "/v1/services/a?index=99999999999999999", nil, 400, "index must be a decimal integer" },
        { "GET", "/v1/services?index=", nil, 400, "index must be a decimal integer" },
        { "GET", "/v1/services/a?index=1&wait=1e3s", nil, 400, "bad wait" },
        { "GET", "/v1/services/a?index=1&wait=-5s", nil, 400, "bad wait" },
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

  it("answers a registration past a registry limit with a 429 naming it, and keeps serving", function()
    with_api(function(call, api)
      for i = 1, 10000 do api.registry:register("s" .. i, "10.0.0.1", 80) end -- the default max_services
      local st, body = call("PUT", "/v1/services/one-more/instances", '{"host":"10.0.0.1","port":80}')
      assert.are.equal(429, st)
      assert.is_true(has(body, '{"error":"registry full: max_services (10000) reached"}'), body)
      assert.are.equal(201, (call("PUT", "/v1/services/s1/instances", '{"host":"10.0.0.2","port":80}')))
      st, body = call("PUT", "/v1/services/one-more/instances/10.0.0.1:80/heartbeat")
      assert.are.equal(429, st)
      assert.is_true(has(body, "registry full: max_services (10000) reached"), body)
      st, body = call("GET", "/v1/services/one-more")
      assert.are.equal(200, st)
      assert.is_true(has(body, '"instances":[]'), body)
    end)
    with_api(function(call)
      assert.are.equal(201, (call("PUT", "/v1/services/a/instances", '{"host":"10.0.0.1","port":80}')))
      assert.are.equal(201, (call("PUT", "/v1/services/a/instances", '{"host":"10.0.0.2","port":80}')))
      local st, body = call("PUT", "/v1/services/a/instances", '{"host":"10.0.0.3","port":80}')
      assert.are.equal(429, st)
      assert.is_true(has(body, '{"error":"registry full: max_instances (2) reached"}'), body)
      assert.are.equal(200, (call("PUT", "/v1/services/a/instances", '{"host":"10.0.0.1","port":80}')))
      assert.are.equal(200, (call("DELETE", "/v1/services/a/instances/10.0.0.2:80")))
      assert.are.equal(201, (call("PUT", "/v1/services/a/instances", '{"host":"10.0.0.3","port":80}')))
    end, { registry = fb.registry { max_instances = 2 } })
  end)

  it("never locks out churned service names: one left without instances makes room", function()
    with_api(function(call)
      for i = 1, 200 do
        local path = "/v1/services/job-" .. i .. "/instances"
        assert.are.equal(201, (call("PUT", path, '{"host":"10.0.0.1","port":80}')), path)
        assert.are.equal(200, (call("DELETE", path .. "/10.0.0.1:80")), path)
      end
      assert.are.equal(201, (call("PUT", "/v1/services/a/instances", '{"host":"10.0.0.1","port":80}')))
      assert.are.equal(201, (call("PUT", "/v1/services/b/instances", '{"host":"10.0.0.1","port":80}')))
      local st, body = call("PUT", "/v1/services/c/instances", '{"host":"10.0.0.1","port":80}')
      assert.are.equal(429, st) -- two services with instances: full
      assert.is_true(has(body, "registry full: max_services (2) reached"), body)
      _, body = call("GET", "/v1/services")
      assert.is_true(has(body, '"name":"a"') and has(body, '"name":"b"') and not has(body, "job-"), body)
    end, { registry = fb.registry { max_services = 2 } })
  end)

  it("refuses a host with a NUL byte with a 400 naming it, and refreshes no other instance", function()
    with_api(function(call, api)
      assert.are.equal(201, (call("PUT", "/v1/services/n/instances", '{"host":"a","port":80}')))
      fb.sleep(0.2)
      local st, body = call("PUT", "/v1/services/n/instances", '{"host":"a\\u0000b","port":80}')
      assert.are.equal(400, st)
      assert.is_true(has(body, '{"error":"') and has(body, "NUL"), body)
      fb.sleep(0.2) -- a's last heartbeat is 0.4 s old: expired unless the write refreshed it
      _, body = call("GET", "/v1/services/n")
      assert.is_true(has(body, '"instances":[]'), body)
      assert.are.equal(0, #api.registry:discover("n"))
    end, { registry = fb.registry { heartbeat_timeout = 0.3 } })
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

  it("keeps answering GETs after a rejected write, with a body", function()
    with_api(function(call)
      assert.are.equal(201, (call("PUT", "/v1/services/w/instances", '{"host":"10.0.0.1","port":80}')))
      assert.are.equal(400, (call("PUT", "/v1/services/w/instances", '{"host":"10.0.0.2","port":80,"weight":1e400}')))
      local st, body = call("GET", "/v1/services/w")
      assert.are.equal(200, st)
      assert.is_true(has(body, '"host":"10.0.0.1"'), body)
      assert.is_false(has(body, "10.0.0.2"), body)
    end)
  end)

  it("answers an answer it cannot encode with a 500 and a JSON error, never an empty 200", function()
    with_api(function(call, api)
      api.registry:register("odd", "10.0.0.1", 80, { meta = { f = print } }) -- a script's meta
      local st, body = call("GET", "/v1/services/odd")
      assert.are.equal(500, st)
      assert.is_true(has(body, '{"error":"cannot encode the answer'), body)
      assert.are.equal(200, (call("GET", "/v1/services")))
    end)
  end)

  it("stores weight, zone and meta in the registry, where balancers see them", function()
    with_api(function(call, api)
      assert.are.equal(201, (call("PUT", "/v1/services/w/instances",
        '{"host":"10.0.0.1","port":80,"weight":3,"zone":"eu-1","meta":{"v":"2"}}')))
      assert.are.equal(201, (call("PUT", "/v1/services/w/instances", '{"host":"10.0.0.2","port":80}')))
      local v = api.registry:discover("w")[1]
      assert.are.same({ 3, "eu-1", "2" }, { v.weight, v.zone, v.meta.v })
      local lb = fb.balancer(api.registry, "weighted_round_robin")
      local picks = {}
      for _ = 1, 40 do
        local p = lb:pick("w")
        picks[p.host] = (picks[p.host] or 0) + 1
      end
      assert.are.same({ ["10.0.0.1"] = 30, ["10.0.0.2"] = 10 }, picks)
      -- omitted on re-registration: kept, as reg:register keeps them
      assert.are.equal(200, (call("PUT", "/v1/services/w/instances", '{"host":"10.0.0.1","port":80}')))
      local _, body = call("GET", "/v1/services/w")
      assert.is_true(has(body, '"weight":3') and has(body, '"zone":"eu-1"') and has(body, '"v":"2"'), body)
      -- given: replaced
      call("PUT", "/v1/services/w/instances", '{"host":"10.0.0.1","port":80,"weight":5,"meta":{"v":"3"}}')
      v = api.registry:discover("w")[1]
      assert.are.same({ 5, "3" }, { v.weight, v.meta.v })
      -- what a script registers is served the same way
      api.registry:register("w", "10.0.0.3", 80, { weight = 7 })
      _, body = call("GET", "/v1/services/w")
      assert.is_true(has(body, '"host":"10.0.0.3","meta":{},"port":80,"weight":7'), body)
      assert.is_nil(api.extra)
    end)
  end)

  it("frees the slot of a client that leaves a blocking query at once", function()
    local n = 4
    with_api(function(call, api)
      call("PUT", "/v1/services/s/instances", '{"host":"10.0.0.1","port":1}')
      local _, _, headers = call("GET", "/v1/services/s")
      local index = headers["x-fusebox-index"]
      local socks = {}
      for i = 1, n do
        socks[i] = assert(fb.tcp.connect("127.0.0.1", api:port()))
        assert(socks[i]:write("GET /v1/services/s?index=" .. index .. "&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n"))
      end
      fb.sleep(0.1)
      -- every slot is held: a new connection is turned away
      local extra = assert(fb.tcp.connect("127.0.0.1", api:port()))
      assert.is_nil(extra:read(2))
      extra:close()
      for i = 1, n do socks[i]:close() end
      fb.sleep(0.05)
      local t0 = fb.now()
      local st = call("GET", "/v1/services")
      assert.are.equal(200, st)
      assert.is_true(fb.now() - t0 < 1)
      assert.are.same({}, api.waiters)
    end, { max_connections = 4 })
  end)

  it("ends a blocking query early when the client sends more, and answers that too", function()
    with_api(function(call, api)
      call("PUT", "/v1/services/s/instances", '{"host":"10.0.0.1","port":1}')
      local _, _, headers = call("GET", "/v1/services/s")
      local index = headers["x-fusebox-index"]
      local sock = assert(fb.tcp.connect("127.0.0.1", api:port()))
      assert(sock:write("GET /v1/services/s?index=" .. index .. "&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n"))
      fb.sleep(0.1)
      local t0 = fb.now()
      assert(sock:write("GET /v1/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      local got = {}
      while true do
        local data = sock:read(5)
        if not data then break end
        got[#got + 1] = data
      end
      sock:close()
      local text = table.concat(got)
      assert.is_true(fb.now() - t0 < 1)
      local _, answers = text:gsub("HTTP/1.1 200 OK", "")
      assert.are.equal(2, answers, text)
      assert.is_true(has(text, '"service":"s"') and has(text, '"services":['), text)
    end)
  end)

  it("answers at once an index above the current one, with the current index", function()
    with_api(function(call)
      call("PUT", "/v1/services/s/instances", '{"host":"10.0.0.1","port":1}')
      local _, _, headers = call("GET", "/v1/services/s")
      local index = tonumber(headers["x-fusebox-index"])
      for _, path in ipairs { "/v1/services/s?index=", "/v1/services?index=" } do
        local t0 = fb.now()
        local st, _, h = call("GET", path .. (index + 1000) .. "&wait=5s")
        assert.are.equal(200, st)
        assert.is_true(fb.now() - t0 < 1, path)
        assert.is_true(tonumber(h["x-fusebox-index"]) <= index + 1)
      end
      -- wait is capped at 10m, not refused
      local t0 = fb.now()
      assert.are.equal(200, (call("GET", "/v1/services/s?index=" .. (index + 1) .. "&wait=99999999m")))
      assert.is_true(fb.now() - t0 < 1)
    end)
  end)
end)

describe("fusebox serve: bearer tokens", function()
  local TOKEN = "s3cret-token_1"
  local function bearer(t) return { Authorization = "Bearer " .. t } end

  it("needs the token for writes: 401 without, 403 wrong; reads stay open", function()
    with_api(function(call)
      local reg = '{"host":"10.0.0.1","port":80}'
      local st, body, h = call("PUT", "/v1/services/a/instances", reg)
      assert.are.equal(401, st)
      assert.is_true(has(body, '{"error":"a write needs a bearer token'), body)
      assert.is_true(has(h["www-authenticate"], "Bearer"))
      assert.are.equal(401, (call("PUT", "/v1/services/a/instances", reg, { Authorization = "Basic " .. TOKEN })))
      st, body = call("PUT", "/v1/services/a/instances", reg, bearer("s3cret-token_2"))
      assert.are.equal(403, st)
      assert.is_true(has(body, "wrong token"), body)
      assert.are.equal(403, (call("PUT", "/v1/services/a/instances", reg, bearer(TOKEN .. "x"))))
      assert.are.equal(403, (call("PUT", "/v1/services/a/instances", reg, bearer(TOKEN:sub(1, -2)))))
      assert.are.equal(401, (call("DELETE", "/v1/services/a/instances/10.0.0.1:80")))
      assert.are.equal(401, (call("PUT", "/v1/services/a/instances/10.0.0.1:80/heartbeat")))
      assert.are.equal(201, (call("PUT", "/v1/services/a/instances", reg, bearer(TOKEN))))
      assert.are.equal(201, (call("PUT", "/v1/services/a/instances", '{"host":"10.0.0.2","port":80}',
        { Authorization = "bearer  " .. TOKEN })))
      st, body = call("GET", "/v1/services/a")
      assert.are.equal(200, st)
      assert.is_true(has(body, "10.0.0.1"))
      assert.are.equal(200, (call("DELETE", "/v1/services/a/instances/10.0.0.1:80", nil, bearer(TOKEN))))
    end, { token = TOKEN })
  end)

  it("needs it for reads too with auth_reads", function()
    with_api(function(call)
      assert.are.equal(401, (call("GET", "/v1/services")))
      assert.are.equal(403, (call("GET", "/v1/services/a", nil, bearer("nope"))))
      assert.are.equal(200, (call("GET", "/v1/services/a", nil, bearer(TOKEN))))
    end, { token = TOKEN, auth_reads = true })
  end)

  it("listens beyond loopback only with a token or insecure=true", function()
    fb.run(function()
      local ok, err = pcall(fb.serve_registry, { host = "0.0.0.0", port = 0 })
      assert.is_false(ok)
      assert.is_true(has(err, "bad argument #1 to 'serve_registry' (host '0.0.0.0' is not loopback: give a token, or insecure=true)"), err)
      for _, t in ipairs { "", "with space", string.rep("x", 5000), 42 } do
        ok, err = pcall(fb.serve_registry, { port = 0, token = t })
        assert.is_false(ok)
        assert.is_true(has(err, "token must be 1..4096 printable characters"), err)
      end
      ok, err = pcall(fb.serve_registry, { port = 0, auth_reads = true })
      assert.is_false(ok)
      assert.is_true(has(err, "auth_reads needs a token"), err)
      for _, o in ipairs { { token = TOKEN }, { insecure = true } } do
        o.host, o.port = "0.0.0.0", 0
        local api = assert(fb.serve_registry(o))
        api:close()
      end
      local api = assert(fb.serve_registry { host = "127.0.0.2", port = 0 })
      api:close()
    end)
  end)
end)
