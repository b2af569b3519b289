-- fusebox.ngx outside nginx: what upstream{} refuses and builds, and
-- lua/?.lua on package.path not hiding the C module (tests/nginx.t runs
-- it inside a real nginx).
local fb = require "fusebox"
local ngx_fb = require "fusebox.ngx"

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

describe("fusebox.ngx", function()
  it("builds an upstream over a static registry with a breaker per peer", function()
    local u = ngx_fb.upstream { name = "spec_api", peers = { "127.0.0.1:1", "127.0.0.1:2" },
      breaker = { failure_threshold = 2 } }
    local p = u:peers()
    assert.equal("CLOSED", p["127.0.0.1:1"].state)
    assert.equal("CLOSED", p["127.0.0.1:2"].state)
    assert.truthy(fb.metrics():find('fusebox_breaker_state{breaker="spec_api/127.0.0.1:2"', 1, true))
    assert.equal(math.huge, u.registry:heartbeat_timeout())
  end)

  it("puts every peer's breaker in a zone, shared by the upstreams built over it", function()
    local peers = { "127.0.0.1:1", "127.0.0.1:2" }
    local ffi = require "ffi"
    pcall(ffi.cdef, "int getpid(void);")
    local name = "spec_zone_" .. ffi.C.getpid()
    -- two workers' upstreams: two registries, two balancers, one breaker per peer
    local a = ngx_fb.upstream { name = "zapi", peers = peers, zone = name, zone_size = 65536,
      breaker = { failure_threshold = 2, timeout = 30 } }
    local b = ngx_fb.upstream { name = "zapi", peers = peers, zone = name,
      breaker = { failure_threshold = 2, timeout = 30 } }
    local cb = a.breakers[a.registry:discover("zapi")[1].id]
    assert.equal("zapi/127.0.0.1:1", cb.name)
    for _ = 1, 2 do cb:record(cb:permit(), false) end
    assert.equal("OPEN", b:peers()["127.0.0.1:1"].state)
    assert.equal("CLOSED", b:peers()["127.0.0.1:2"].state)
    assert.equal(4, a.zone:info().entries) -- a breaker and a load record per peer
    -- the load: a's calls in flight are b's too
    local v1, v2 = a.lb:pick("zapi"), a.lb:pick("zapi") -- round robin: one each
    local sum = function(p) return p["127.0.0.1:1"].shared_inflight + p["127.0.0.1:2"].shared_inflight end
    assert.equal(2, sum(b:peers()))
    assert.equal(1, b:peers()["127.0.0.1:1"].shared_inflight)
    assert.equal(0, b:peers()["127.0.0.1:1"].inflight) -- b's own
    a.lb:done(v1, true, 0.01)
    a.lb:done(v2, true, 0.01)
    assert.equal(0, sum(b:peers()))
    -- one upstream's ejection is the other's
    assert.equal(0, b:peers()["127.0.0.1:2"].ejected_for)
    a:eject("127.0.0.1:2", 30)
    local left = b:peers()["127.0.0.1:2"].ejected_for
    assert.is_true(left > 29 and left <= 30)
    a:eject("127.0.0.1:2", 0)
    assert.equal(0, b:peers()["127.0.0.1:2"].ejected_for)
    assert.truthy(errmsg(a.eject, a, "127.0.0.1:9", 1)
      :find("bad argument #1 to 'eject' (not a peer of upstream 'zapi': 127.0.0.1:9)", 1, true))
    assert.truthy(errmsg(a.eject, a, "127.0.0.1:1", -1)
      :find("bad argument #2 to 'eject' (seconds must be a finite number >= 0, got -1)", 1, true))
    -- closed by hand: a clear error, and balance() would ignore the records
    getmetatable(a.zone).__gc(a.zone)
    assert.truthy(errmsg(a.peers, a):find("calling 'peers' on upstream 'zapi' whose zone is closed", 1, true))
    assert.truthy(errmsg(a.eject, a, "127.0.0.1:1", 1)
      :find("calling 'eject' on upstream 'zapi' whose zone is closed", 1, true))
    os.remove("/dev/shm/fusebox-zone." .. name .. "." .. ffi.C.getpid())
  end)

  it("says what is wrong with its options", function()
    local function up(o) return function() ngx_fb.upstream(o) end end
    assert.truthy(errmsg(up { name = "x", peers = { "127.0.0.1" } })
      :find("bad argument #1 to 'upstream' (peers[1] must be \"host:port\" with a port 1..65535, got \"127.0.0.1\")", 1, true))
    assert.truthy(errmsg(up { name = "x", peers = {} })
      :find("peers must be a non-empty array", 1, true))
    assert.truthy(errmsg(up { name = "x", peers = { "a:1" }, tries = 2 })
      :find("tries must be an integer 1..1 (the peers), got 2", 1, true))
    assert.truthy(errmsg(up { name = "x", peers = { "a:1", "a:1" } })
      :find("peers[2] (a:1) is listed twice", 1, true))
    assert.truthy(errmsg(up { name = "x", peers = { "a:1" }, retries = 1 })
      :find("unknown option 'retries'", 1, true))
    assert.truthy(errmsg(up { peers = { "a:1" } }):find("name must be a non-empty string", 1, true))
    local many = {}
    for k = 1, 257 do many[k] = "10.0.0.1:" .. k end
    assert.truthy(errmsg(up { name = "x", peers = many }):find("peers has 257 entries, at most 256", 1, true))
    assert.truthy(errmsg(up { name = "x", peers = { "a:1" }, breaker = 3 })
      :find("breaker must be a table of breaker options or false, got number", 1, true))
    assert.truthy(errmsg(up { name = "x", peers = { "a:1" }, zone_size = 65536 })
      :find("bad argument #1 to 'upstream' (zone_size needs zone)", 1, true))
    assert.truthy(errmsg(up { name = "x", peers = { "a:1" }, zone = 3 })
      :find("zone must be a non-empty string (a zone name), got 3", 1, true))
    assert.truthy(errmsg(up { name = "x", peers = { "a:1" }, zone = "z/1" })
      :find("bad argument #1 to 'upstream' (zone: zone name must be 1..64 of [A-Za-z0-9_.-], got 'z/1')", 1, true))
    assert.truthy(errmsg(up { name = "x", peers = { "a:1" }, zone = "zz", zone_size = 1 })
      :find("bad argument #1 to 'upstream' (zone: size must be an integer 65536..1073741824, got 1)", 1, true))
    assert.truthy(errmsg(function() ngx_fb.upstream { name = "y", peers = { "a:1" } }.balance({}) end)
      :find("calling 'balance' on bad self", 1, true))
  end)

  it("loads the C module even with lua/?.lua first on package.path", function()
    local cmd = string.format("cd /tmp && LUA_PATH='%s/lua/?.lua;;' LUA_CPATH='%s/%s/?.so' luajit -e "
      .. "'local n = require \"fusebox.ngx\"; local fb = require \"fusebox\"; "
      .. "io.write(type(n.upstream), \" \", type(fb.registry))' 2>&1",
      os.getenv("PWD"), os.getenv("PWD"), T.build)
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    assert.equal("function function", out)
  end)

  it("is found in fusebox.so by require before fusebox itself", function()
    local p = io.popen(string.format("cd /tmp && LUA_PATH=';;' LUA_CPATH='%s/%s/?.so' luajit -e "
      .. "'local n = require \"fusebox.ngx\"; io.write(type(n.upstream), \" \", "
      .. "tostring(require(\"fusebox.ngx\") == n))' 2>&1", os.getenv("PWD"), T.build))
    local out = p:read("*a")
    p:close()
    assert.equal("function true", out)
  end)
end)
