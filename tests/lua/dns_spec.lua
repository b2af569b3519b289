-- Host names (issue 17, item 1): fb.dns and fb.tcp.connect /
-- fb.http.request on names, all on loopback. The system resolver is only
-- ever asked for names /etc/hosts has (no query leaves the machine):
-- localhost and .invalid are answered without it (RFC 6761).
local fb = require "fusebox"

-- Names /etc/hosts maps to 127.0.0.1 (other than localhost), and
-- whether it has ip6-localhost.
local function etc_hosts()
  local v4, v6 = {}, false
  local f = io.open("/etc/hosts")
  for line in (f and f:lines() or function() end) do
    local addr, names = line:match("^%s*([%x:.]+)%s+([^#]+)")
    for name in (names or ""):gmatch("%S+") do
      if addr == "127.0.0.1" and name ~= "localhost" and name:find("^[%w-]+$") then v4[#v4 + 1] = name end
      if addr == "::1" and name == "ip6-localhost" then v6 = true end
    end
  end
  if f then f:close() end
  return v4, v6
end
local V4_NAMES, HAS_IP6_LOCALHOST = etc_hosts()

local function run(fn)
  fb.run(function()
    local ok, err = pcall(fn)
    fb.dns.configure { ttl = 30, max_names = 1024, timeout = 5 }
    assert(ok, err)
  end)
end

-- A TCP server on host:port that writes its name to each client.
local function named_server(host, port, name)
  return fb.tcp.listen { host = host, port = port, handler = function(s) s:write(name); s:close() end }
end

local function who(host, port)
  local s, err = fb.tcp.connect(host, port, { timeout = 2 })
  if not s then return nil, err end
  local data = s:read(2)
  s:close()
  return data
end

describe("fb.dns", function()
  it("resolves localhost to loopback, IPv4 first, without asking the resolver", function()
    run(function()
      local before = fb.dns.stats().lookups
      assert.are.same({ "127.0.0.1", "::1" }, fb.dns.resolve("localhost"))
      assert.are.same({ "127.0.0.1", "::1" }, fb.dns.resolve("api.LOCALHOST."))
      assert.are.equal(before, fb.dns.stats().lookups)
      local srv = assert(named_server("127.0.0.1", 0, "one"))
      assert.are.equal("one", who("localhost", srv:port()))
      srv:close()
    end)
  end)

  it("serves fb.http.request{url=} on a name", function()
    run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function(req) return 200, nil, req.headers.host end })
      local port = srv:port()
      local status, _, body = fb.http.request { url = "http://localhost:" .. port .. "/", timeout = 2 }
      srv:close()
      assert.are.equal(200, status)
      assert.are.equal("localhost:" .. port, body)
    end)
  end)

  it("resolves a name of /etc/hosts through the system resolver, then from its cache", function()
    if #V4_NAMES == 0 then
      pending("/etc/hosts maps no name but localhost to 127.0.0.1: nothing to ask the resolver without DNS")
      return
    end
    local name = V4_NAMES[1]
    run(function()
      fb.dns.flush()
      local s0 = fb.dns.stats()
      local addrs = assert(fb.dns.resolve(name))
      assert.are.equal("127.0.0.1", addrs[1])
      assert.are.same(addrs, fb.dns.resolve(name))
      local s1 = fb.dns.stats()
      assert.are.equal(s0.lookups + 1, s1.lookups) -- one query
      assert.are.equal(s0.hits + 1, s1.hits) -- the second from the cache
      local srv = assert(named_server("127.0.0.1", 0, "one"))
      assert.are.equal("one", who(name, srv:port()))
      srv:close()
    end)
  end)

  it("re-resolves once a cached answer's TTL has passed", function()
    if #V4_NAMES == 0 then
      pending("/etc/hosts maps no name but localhost to 127.0.0.1: nothing to ask the resolver without DNS")
      return
    end
    local name = V4_NAMES[1]
    run(function()
      fb.dns.flush()
      fb.dns.configure { ttl = 0.2 }
      local s0 = fb.dns.stats()
      assert(fb.dns.resolve(name))
      assert(fb.dns.resolve(name))
      assert.are.equal(s0.lookups + 1, fb.dns.stats().lookups)
      fb.sleep(0.3)
      assert(fb.dns.resolve(name))
      assert.are.equal(s0.lookups + 2, fb.dns.stats().lookups)
    end)
  end)

  it("asks the resolver once for lookups of one name at the same time", function()
    if #V4_NAMES == 0 then
      pending("/etc/hosts maps no name but localhost to 127.0.0.1: nothing to ask the resolver without DNS")
      return
    end
    local name, got = V4_NAMES[1], {}
    run(function()
      fb.dns.flush()
      local before = fb.dns.stats().lookups
      local done = 0
      local me = coroutine.running()
      for i = 1, 5 do
        fb.spawn(function()
          got[i] = fb.dns.resolve(name)[1]
          done = done + 1
          if done == 5 then fb.wake(me) end
        end)
      end
      fb.wait("the lookups", 5)
      assert.are.equal(before + 1, fb.dns.stats().lookups)
    end)
    assert.are.same({ "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1" }, got)
  end)

  it("forgets the lookups of a run that ended with them in flight", function()
    if #V4_NAMES == 0 then
      pending("/etc/hosts maps no name but localhost to 127.0.0.1: nothing to ask the resolver without DNS")
      return
    end
    local name = V4_NAMES[1]
    fb.dns.flush()
    fb.run(function()
      fb.spawn(function() fb.dns.resolve(name) end) -- in flight when the run ends
      fb.shutdown()
    end)
    local got, err, took
    fb.run(function()
      local t0 = fb.now()
      got, err = fb.dns.resolve(name, { timeout = 2 })
      took = fb.now() - t0
    end)
    assert.is_table(got, err) -- it waited for the dropped lookup before, and timed out
    assert.are.equal("127.0.0.1", got[1])
    assert.is_true(took < 1, took)
  end)

  -- A lookup the resolver never answers: core.dns_lookup swapped for one
  -- whose query waits for nothing, so the timeout is the only way out
  -- (real lookups answer in microseconds: whether one loses to a 1 ms
  -- timeout depends on how long the loop was busy, see below).
  it("times a lookup out on its own timeout, as a value, and goes on", function()
    local core
    for i = 1, 64 do
      local name, v = debug.getupvalue(fb.reporter, i)
      if name == "core" then core = v break end
    end
    local real, cancelled = core.dns_lookup, 0
    core.dns_lookup = function()
      return { _start = function(_, _, timeout) return core.wait("an answer that never comes", timeout) end,
        _cancel = function() cancelled = cancelled + 1 end }
    end
    local got, shared, t0, t1 = {}, {}, nil, nil
    local ok, err = pcall(run, function()
      fb.dns.flush()
      fb.dns.configure { timeout = 0.05 }
      t0 = fb.now()
      -- a second caller of the name in flight waits within its own timeout
      fb.spawn(function() shared = { fb.dns.resolve("never.answers.test", { timeout = 0.01 }) } end)
      got = { fb.dns.resolve("never.answers.test") }
      t1 = fb.now()
      core.dns_lookup = real
      fb.dns.configure { timeout = 5 }
      assert.are.same({ "127.0.0.1" }, fb.dns.resolve("2130706433")) -- the resolver goes on
    end)
    core.dns_lookup = real
    assert(ok, err)
    assert.are.same({ nil, "resolve failed: 'never.answers.test': timeout" }, got)
    assert.are.same({ nil, "resolve failed: 'never.answers.test': timeout" }, shared)
    assert.is_true(t1 - t0 >= 0.05 and t1 - t0 < 5, tostring(t1 - t0))
    assert.are.equal(1, cancelled)
  end)

  -- 2000 real lookups at once with a 1 ms timeout: each answers right or
  -- times out as a value (which, is up to the loop: answers that are in
  -- by its next poll win), and the resolver still answers after.
  it("answers every lookup of a burst right or with a timeout, and goes on", function()
    local n, ok, timed_out, wrong = 2000, 0, 0, {}
    run(function()
      fb.dns.flush()
      fb.dns.configure { timeout = 0.001, max_names = 4096 }
      local done, me = 0, coroutine.running()
      for i = 1, n do
        fb.spawn(function()
          local name = tostring(2130706432 + i)
          local addrs, err = fb.dns.resolve(name)
          if addrs and addrs[1] == string.format("127.0.%d.%d", math.floor(i / 256), i % 256) then
            ok = ok + 1
          elseif err == "resolve failed: '" .. name .. "': timeout" then
            timed_out = timed_out + 1
          else
            wrong[#wrong + 1] = tostring(addrs and addrs[1] or err)
          end
          done = done + 1
          if done == n then fb.wake(me) end
        end)
      end
      assert.is_true(fb.wait("the lookups", 30))
      fb.dns.configure { timeout = 5 }
      fb.dns.flush()
      assert.are.same({ "127.0.0.1" }, fb.dns.resolve("2130706433")) -- the resolver still answers
    end)
    assert.are.same({}, wrong)
    assert.are.equal(n, ok + timed_out)
  end)

  it("resolves ip6-localhost where the machine has it", function()
    if not HAS_IP6_LOCALHOST then
      pending("/etc/hosts has no ip6-localhost on this machine (and asking DNS is not allowed here)")
      return
    end
    run(function()
      local addrs = assert(fb.dns.resolve("ip6-localhost"))
      assert.are.equal("::1", addrs[1])
    end)
  end)

  it("fails a name that does not resolve with a value, connect and request too", function()
    run(function()
      local before = fb.dns.stats().lookups
      assert.are.same({ nil, "resolve failed: 'nowhere.invalid': .invalid names never resolve (RFC 6761)" },
        { fb.dns.resolve("nowhere.invalid") })
      assert.are.same({ nil, "resolve failed: 'nowhere.invalid': .invalid names never resolve (RFC 6761)" },
        { fb.tcp.connect("nowhere.invalid", 80, { timeout = 1 }) })
      assert.are.same({ nil, "resolve failed: 'api.invalid': .invalid names never resolve (RFC 6761)" },
        { fb.http.request { url = "http://api.invalid:8080/health", timeout = 1 } })
      assert.are.equal(before, fb.dns.stats().lookups)
    end)
  end)

  it("tries every address of a name in order, IPv6 and IPv4", function()
    run(function()
      local one = assert(named_server("127.0.0.1", 0, "one"))
      local port = one:port()
      local two = assert(named_server("127.0.0.2", port, "two"))
      fb.dns.hosts {
        ["two-first.test"] = { "127.0.0.2", "127.0.0.1" },
        ["dead-first.test"] = { "127.0.0.3", "127.0.0.1" }, -- nothing listens on .3
        ["v6-first.test"] = { "::1", "127.0.0.1" },         -- nor on ::1, this port
        ["all-dead.test"] = { "127.0.0.3", "127.0.0.4" },
      }
      assert.are.equal("two", who("two-first.test", port))
      assert.are.equal("one", who("dead-first.test", port))
      assert.are.equal("one", who("v6-first.test", port))
      assert.are.same({ nil, "connection refused" }, { who("all-dead.test", port) })
      one:close()
      two:close()
    end)
  end)

  it("connects to registry instances registered by name", function()
    run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function() return 200, nil, "from a name" end })
      fb.dns.hosts { ["users.internal"] = { "127.0.0.3", "127.0.0.1" } }
      local reg = fb.registry()
      reg:register("users", "users.internal", srv:port())
      local inst = fb.balancer(reg, "round_robin"):pick("users")
      local status, _, body = fb.http.request { instance = inst, path = "/", timeout = 2 }
      srv:close()
      assert.are.equal(200, status)
      assert.are.equal("from a name", body)
    end)
  end)

  it("takes IP literals as they are, [::1] in URLs too", function()
    run(function()
      assert.are.same({ "::1" }, fb.dns.resolve("[::1]"))
      assert.are.same({ "10.1.2.3" }, fb.dns.resolve("10.1.2.3"))
      local srv, err = fb.http.serve { host = "::1", port = 0, handler = function(req) return 200, nil, req.headers.host end }
      if not srv then
        pending("no IPv6 loopback here: " .. tostring(err))
        return
      end
      local port = srv:port()
      local status, _, body = fb.http.request { url = "http://[::1]:" .. port .. "/", timeout = 2 }
      srv:close()
      assert.are.equal(200, status)
      assert.are.equal("[::1]:" .. port, body)
    end)
  end)

  it("refuses hostile names in one bounded line, asking no one", function()
    run(function()
      local before = fb.dns.stats().lookups
      local long = ("a"):rep(300)
      assert.are.same({ nil, "resolve failed: '" .. ("a"):rep(64) .. "'... (300 bytes): a host name is 1-253 bytes, got 300" },
        { fb.dns.resolve(long) })
      assert.are.same({ nil, "resolve failed: '" .. ("b"):rep(64) .. "'... (65 bytes): a label is at most 63 bytes, got 64" },
        { fb.dns.resolve(("b"):rep(64) .. ".") })
      assert.are.same({ nil, "resolve failed: 'a b\\0\\10': a host name has only A-Z a-z 0-9 - _ and dots, got byte 2" },
        { fb.dns.resolve("a b\0\n") })
      assert.are.same({ nil, "resolve failed: 'a..b': a host name has no empty label" }, { fb.dns.resolve("a..b") })
      assert.are.same({ nil, "resolve failed: '[10.0.0.1]': a host name has only A-Z a-z 0-9 - _ and dots, got byte 1" },
        { fb.dns.resolve("[10.0.0.1]") })
      assert.are.equal(before, fb.dns.stats().lookups)
    end)
  end)

  it("holds at most max_names answers", function()
    run(function()
      fb.dns.flush()
      fb.dns.configure { max_names = 3 }
      local t = {}
      for i = 1, 20 do t["n" .. i .. ".test"] = "127.0.0." .. i end
      fb.dns.hosts(t)
      for i = 1, 20 do assert.are.same({ "127.0.0." .. i }, fb.dns.resolve("n" .. i .. ".test")) end
      assert.are.equal(3, fb.dns.stats().cached)
    end)
  end)

  it("checks its arguments", function()
    run(function()
      assert.has_error(function() fb.dns.resolve(nil) end, "bad argument #1 to 'resolve' (name must be a string, got nil)")
      assert.has_error(function() fb.dns.resolve("a", { timeout = 0 }) end,
        "bad argument #2 to 'resolve' (timeout must be a positive number of seconds, got 0)")
      assert.has_error(function() fb.dns.hosts { ["a.test"] = "not-an-ip" } end,
        "bad argument #1 to 'hosts' ('a.test': 'not-an-ip' is not an IP address)")
      assert.has_error(function() fb.dns.hosts { ["10.0.0.1"] = "10.0.0.2" } end,
        "bad argument #1 to 'hosts' ('10.0.0.1' is not a host name)")
      assert.has_error(function() fb.dns.hosts { ["a.test"] = {} } end,
        "bad argument #1 to 'hosts' ('a.test' must map to an address or a list of 1-64, got 0)")
      local many = {}
      for i = 1, 65 do many[i] = "127.0.0.1" end
      assert.has_error(function() fb.dns.hosts { ["a.test"] = many } end,
        "bad argument #1 to 'hosts' ('a.test' must map to an address or a list of 1-64, got 65)")
      assert.has_error(function() fb.dns.configure { ttl = -1 } end,
        "bad argument #1 to 'configure' (ttl must be a number of seconds >= 0, got -1)")
      assert.has_error(function() fb.dns.configure { max_names = 0.5 } end,
        "bad argument #1 to 'configure' (max_names must be an integer 1..1000000, got 0.5)")
      assert.has_error(function() fb.dns.configure { timeout = 0 } end,
        "bad argument #1 to 'configure' (timeout must be a positive number of seconds, got 0)")
      assert.has_error(function() fb.dns.configure { retries = 1 } end,
        "bad argument #1 to 'configure' (unknown option 'retries')")
    end)
  end)
end)

describe("fb.dns under virtual time", function()
  it("resolves through fb.dns.hosts only, never the machine's resolver", function()
    local got, missing, lookups
    T.vrun(function()
      local before = fb.dns.stats().lookups
      fb.dns.hosts { ["api.sim"] = { "10.0.0.1", "10.0.0.2" } }
      got = fb.dns.resolve("api.sim")
      missing = { fb.dns.resolve(V4_NAMES[1] or "runsc") }
      lookups = fb.dns.stats().lookups - before
    end)
    assert.are.same({ "10.0.0.1", "10.0.0.2" }, got)
    assert.is_nil(missing[1])
    assert.truthy(missing[2]:find("not in fb.dns.hosts (under --virtual-time names resolve through it only)", 1, true))
    assert.are.equal(0, lookups)
  end)

  it("keys names case-blind, a rooted name (a trailing dot) as the same", function()
    local got = {}
    T.vrun(function()
      fb.dns.hosts { ["DB.Internal."] = "10.0.0.5" }
      for i, name in ipairs { "db.internal", "DB.INTERNAL.", "db.Internal" } do got[i] = fb.dns.resolve(name)[1] end
      fb.dns.hosts { ["db.internal"] = false }
    end)
    assert.are.same({ "10.0.0.5", "10.0.0.5", "10.0.0.5" }, got)
  end)

  it("caches the table's answers for the TTL, then sees its changes", function()
    local seen = {}
    T.vrun(function()
      fb.dns.configure { ttl = 30 }
      fb.dns.hosts { ["db.sim"] = "10.0.0.1" }
      seen[1] = fb.dns.resolve("db.sim")[1]
      fb.dns.hosts { ["db.sim"] = "10.0.0.9" } -- a DNS change
      fb.sleep(29)
      seen[2] = fb.dns.resolve("db.sim")[1]   -- still the cached answer
      fb.sleep(2)
      seen[3] = fb.dns.resolve("db.sim")[1]   -- expired: asked again
      fb.dns.hosts { ["db.sim"] = false }
      fb.dns.flush()
      seen[4] = fb.dns.resolve("db.sim")
    end)
    assert.are.same({ "10.0.0.1", "10.0.0.1", "10.0.0.9" }, { seen[1], seen[2], seen[3] })
    assert.is_nil(seen[4])
  end)
end)
