-- fb.zone and breakers in it (zone = z): shared by every mapping of the
-- zone, in this process and in another one (the reload case: a new
-- process finds the breaker as the old one left it), found by name and
-- config, on the clock every process shares; errors and lifetime.
local fb = require "fusebox"
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
pcall(ffi.cdef, "typedef struct { long tv_sec, tv_nsec; } fb_test_timespec;"
  .. "int clock_gettime(int clk, fb_test_timespec *ts);")

local function monotonic() -- CLOCK_MONOTONIC (1), in seconds
  local ts = ffi.new("fb_test_timespec")
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir) == 0 or true)

local function zone(name, opts)
  local o = { name = name, dir = dir, size = 65536 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return fb.zone(o)
end

local function fail(cb, n)
  for _ = 1, n do cb:record(assert(cb:permit()), false) end
end

describe("zone", function()
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("shares a breaker between two mappings, found by name", function()
    local a, b = zone("two"), zone("two")
    local x = fb.breaker { name = "api/1", zone = a, failure_threshold = 3, timeout = 30 }
    local y = fb.breaker { name = "api/1", zone = b, failure_threshold = 3, timeout = 30 }
    fail(x, 2)
    fail(y, 1) -- the third failure in a row, through the other mapping
    assert.are.equal("OPEN", x.state)
    assert.are.equal("OPEN", y.state)
    local token, wait = y:permit()
    assert.is_nil(token)
    assert.is_true(wait > 29 and wait <= 30)
    assert.are.equal(1, a:info().entries)
    assert.are.equal(65536, b:info().size)
  end)

  -- A process takes a zone breaker's permits from a book of tokens of its
  -- own (a CLOSED breaker's without the zone's lock): one book per zone
  -- handle, so every object of one breaker through one handle shares it.
  it("gives one book of tokens to the objects of a breaker through one handle", function()
    local z = zone("book")
    local x = fb.breaker { name = "api/1", zone = z, failure_threshold = 3, timeout = 30 }
    local y = fb.breaker { name = "api/1", zone = z, failure_threshold = 3, timeout = 30 }
    local t1, t2 = x:permit(), y:permit()
    assert.are.equal(t1 + 1, t2) -- one book: in order
    assert.is_true(y:record(t1, true)) -- through the other object: counted once
    assert.is_false(x:record(t1, true))
    assert.is_true(x:record(t2, false))
    assert.are.equal(2, x:metrics().calls)
    -- another handle's breaker never takes a token of this one's for its own
    local w = fb.breaker { name = "api/1", zone = zone("book"), failure_threshold = 3, timeout = 30 }
    local t3 = x:permit()
    local ok, counted = pcall(w.record, w, t3, false)
    assert.is_true(not ok or counted == false)
    assert.are.equal(2, w:metrics().calls)
    assert.is_true(x:record(t3, true))
    assert.are.equal(3, w:metrics().calls)
  end)

  it("drops a permit taken before another mapping opened the breaker", function()
    local a, b = zone("stale"), zone("stale")
    local x = fb.breaker { name = "api/1", zone = a, failure_threshold = 2, timeout = 30 }
    local y = fb.breaker { name = "api/1", zone = b, failure_threshold = 2, timeout = 30 }
    local early = assert(x:permit())
    fail(y, 2)
    assert.are.equal("OPEN", x.state)
    y:reset()
    assert.is_false(x:record(early, false)) -- of a state that ended: dropped
    assert.are.equal("CLOSED", y.state)
    assert.are.equal(2, y:metrics().failures) -- the two that opened it, not the dropped one
  end)

  it("is found again by another process, in the state this one left", function()
    local z = zone("proc")
    local x
    -- on the real clock, which the other process reads too (outside a
    -- run, fb.now() is where the last run left it: a virtual run's end)
    fb.run(function()
      x = fb.breaker { name = "k", zone = z, failure_threshold = 2, timeout = 60 }
      fail(x, 2)
    end)
    local script = string.format([[
      package.cpath = %q .. "/?.so;" .. package.cpath
      local fb = require "fusebox"
      local z = fb.zone { name = "proc", dir = %q, size = 65536, owner = %d }
      local cb = fb.breaker { name = "k", zone = z, failure_threshold = 2, timeout = 60 }
      local t, wait = cb:permit()
      io.write(cb.state, " ", tostring(t), " ", string.format("%%.0f", wait))
      cb:reset()
    ]], T.build, dir, ffi.C.getpid())
    local f = assert(io.popen("luajit -e '" .. script:gsub("'", "'\\''") .. "' 2>&1"))
    local out = f:read("*a")
    f:close()
    assert.are.equal("OPEN nil 60", out)
    assert.are.equal("CLOSED", x.state) -- its reset is ours
  end)

  it("announces to a breaker found in the zone only the changes made after", function()
    local z = zone("seen")
    local a = fb.breaker { name = "k", zone = z, failure_threshold = 1 }
    for _ = 1, 3 do fail(a, 1); a:reset() end -- six changes by "another process"
    local b = fb.breaker { name = "k", zone = z, failure_threshold = 1 }
    local got = {}
    b:on("state_change", function(from, to) got[#got + 1] = from .. ">" .. to end)
    fail(b, 1)
    assert.are.same({ "CLOSED>OPEN" }, got)
  end)

  it("makes a breaker of another config another entry, started fresh", function()
    local z = zone("cfg")
    local old = fb.breaker { name = "k", zone = z, failure_threshold = 3 }
    old:force_open()
    local new = fb.breaker { name = "k", zone = z, failure_threshold = 4 }
    assert.are.equal("CLOSED", new.state)
    assert.are.equal("FORCED_OPEN", fb.breaker { name = "k", zone = z, failure_threshold = 3 }.state)
    assert.are.equal(2, z:info().entries)
  end)

  it("says when it is full, naming the zone and its size", function()
    local z = zone("full")
    local ok, err
    for i = 1, 1000 do
      ok, err = pcall(fb.breaker, { name = "b" .. i, zone = z })
      if not ok then break end
    end
    assert.is_false(ok)
    assert.matches("breaker: zone 'full' (65536 bytes) is full", err, 1, true)
  end)

  it("refuses bad options with the option named", function()
    local cases = {
      { { dir = dir }, "name is required" },
      { { name = "a/b", dir = dir }, "zone name must be 1..64 of [A-Za-z0-9_.-], got 'a/b'" },
      { { name = "x", size = 10, dir = dir }, "size must be an integer 65536..1073741824, got 10" },
      { { name = "x", owner = 0, dir = dir }, "owner must be an integer 1..4194304, got 0" },
      { { name = "x", colour = 1 }, "unknown option 'colour'" },
      { { name = "x", dir = dir .. "/none" }, "zone 'x': cannot open" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(fb.zone, c[1])
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
    end
    local z = zone("opts")
    local ok, err = pcall(fb.breaker, { zone = z })
    assert.is_false(ok)
    assert.matches("a breaker in a zone needs a name (its key there)", err, 1, true)
    ok, err = pcall(fb.breaker, { name = "x", zone = {} })
    assert.is_false(ok)
    assert.matches("zone must be a fusebox.zone (fb.zone), got table", err, 1, true)
  end)

  it("keeps its breakers usable after the zone is closed, and refuses new ones", function()
    local z = zone("life")
    local cb = fb.breaker { name = "k", zone = z, failure_threshold = 1 }
    getmetatable(z).__gc(z)
    getmetatable(z).__gc(z) -- twice: a no-op
    collectgarbage()
    fail(cb, 1)
    assert.are.equal("OPEN", cb.state) -- still mapped: the breaker holds it
    local ok, err = pcall(fb.breaker, { name = "k2", zone = z })
    assert.is_false(ok)
    assert.matches("zone is closed", err, 1, true)
    ok, err = pcall(z.info, z)
    assert.is_false(ok)
    assert.matches("fusebox.zone is closed", err, 1, true)
    getmetatable(cb).__gc(cb)
    ok, err = pcall(cb.permit, cb)
    assert.is_false(ok)
    assert.matches("closed breaker", err, 1, true)
  end)

  it("runs its breakers on the runtime's clock: CLOCK_MONOTONIC, every process's, on the real one", function()
    local z = zone("clock")
    fb.run(function()
      local cb = fb.breaker { name = "real", zone = z, failure_threshold = 1, timeout = 5 }
      fail(cb, 1)
      local _, _, at = cb:transition(0)
      assert.is_true(math.abs(at - monotonic()) < 5) -- the machine's clock, not a per-process one
    end)
    T.vrun(function() -- one process in virtual time: its clock, exactly
      local cb = fb.breaker { name = "virtual", zone = z, failure_threshold = 1, timeout = 5 }
      fb.sleep(1)
      fail(cb, 1)
      assert.is_nil(cb:permit())
      local _, _, at = cb:transition(0)
      assert.are.equal(1, at)
      fb.sleep(4.5)
      assert.is_nil(cb:permit()) -- t = 5.5: 4.5 s of its 5 s timeout
      fb.sleep(1)
      assert.is_not_nil(cb:permit()) -- its timeout passed in virtual time: a probe
    end)
  end)
end)
