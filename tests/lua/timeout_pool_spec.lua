-- fb.timeout's child runs on a pooled thread on fusebox's runtime
-- (core.spawn_pooled): a thread a finished child left runs the next
-- child, and nothing of the one before may show in it.
local fb = require "fusebox"
local running = coroutine.running

describe("a timeout's pooled child", function()
  it("runs on the thread the last child left, without its deadline", function()
    T.vrun(function()
      local first, second, ctx_first, ctx_second
      local p = fb.policy { deadline = 5, timeout = 10 }
      p:call(function() first, ctx_first = running(), fb.context() end)
      fb.timeout(10):call(function() second, ctx_second = running(), fb.context() end)
      assert.are.equal(first, second) -- reused
      assert.is_not_nil(ctx_first)    -- the caller's deadline, inherited
      assert.is_nil(ctx_second)       -- not the last child's
    end)
  end)

  it("is not abandoned because the last child on its thread was", function()
    T.vrun(function()
      local t = fb.timeout(0.1)
      local slow = fb.sim.service { name = "slow", latency = 1 }
      local slower = fb.sim.service { name = "slower", latency = 3 }
      local fast = fb.sim.service { name = "fast", latency = 0.01 }
      local threads = {}
      fb.spawn(function() t:call(function() threads[1] = running(); return slow() end) end)
      fb.spawn(function() t:call(slower) end)
      fb.sleep(2) -- slow's orphan ended, its thread is free; slower's runs on
      assert.are.same({ "ok" }, { t:call(function() threads[2] = running(); return fast() or "ok" end) })
      assert.are.equal(threads[1], threads[2])
      -- fast answered its own caller in time, though the last child on
      -- that thread had been abandoned (and another still is)
      assert.are.same({ 1, 0 }, { fast.successes, fast.timeouts })
      assert.are.same({ 0, 1 }, { slow.successes, slow.timeouts })
      fb.sleep(2)
      assert.are.same({ 2, 2 }, { t.timeouts, t.late })
    end)
  end)

  it("reuses the thread of a function that raised (the child caught it)", function()
    T.vrun(function()
      local t = fb.timeout(10)
      local raised, after
      local ok, err = pcall(t.call, t, function() raised = running(); error("boom", 0) end)
      assert.are.same({ false, "boom" }, { ok, err })
      assert.are.equal("dead", coroutine.status(raised)) -- pooled, between children
      assert.is_false(fb.wake(raised))                   -- a stale handle wakes nothing
      t:call(function() after = running() end)
      assert.are.equal(raised, after)
      assert.are.same({ 1, nil, 3, 4, n = 4 }, { n = 4, t:call(function(...) return ... end, 1, nil, 3, 4) })
    end)
  end)

  it("lets the threads past its pool's bound go (FB_SPAWN_POOL, 256), and runs on", function()
    T.vrun(function()
      local t, n, done = fb.timeout(10), 1000, 0
      for i = 1, n do -- 1000 children at once: 744 of their threads are let go when they end
        fb.spawn(function()
          assert.are.equal(i, t:call(function() fb.sleep(1); return i end))
          done = done + 1
        end)
      end
      fb.sleep(2)
      assert.are.equal(n, done)
      local threads = {}
      for i = 1, 300 do -- 256 pooled, then new ones
        fb.spawn(function() t:call(function() threads[running()] = true; fb.sleep(1) end) end)
      end
      fb.sleep(2)
      local distinct = 0
      for _ in pairs(threads) do distinct = distinct + 1 end
      assert.are.equal(300, distinct)
      assert.are.same({ 0, 0 }, { t.timeouts, t.late })
    end)
  end)

  it("makes no thread a call once warm, only the call's box", function()
    T.vrun(function()
      local t = fb.timeout(10)
      local fn = function(x) return x end
      local grown = T.bytes_grown(20000, function() return t:call(fn, 1) end)
      -- the box is about 250 bytes; a thread made per call was 1,000 more
      assert.is_true(grown < 20000 * 512, grown .. " bytes for 20000 calls")
    end)
  end)
end)

describe("a timeout's box (the results it hands over)", function()
  it("is used again only by a call after one that ended in time, nothing of it left", function()
    T.vrun(function()
      local t = fb.timeout(0.5)
      local got = {}
      got[1] = { t:call(function() return 1, 2, 3, 4, 5 end) }
      got[2] = { t:call(function() return nil, "refused" end) }
      got[3] = { pcall(t.call, t, function() error("boom", 0) end) }
      got[4] = { t:call(function() return "four" end) }
      got[5] = { t:call(function() return end) }
      assert.are.same({ { 1, 2, 3, 4, 5 }, { nil, "refused" }, { false, "boom" }, { "four" }, {} }, got)
      -- and a box waiting to be used again holds none of its results
      local weak = setmetatable({}, { __mode = "v" })
      t:call(function() local r = {}; weak[1] = r; return r end)
      t:call(function() local r = {}; weak[2] = r; return 1, 2, 3, r end)
      collectgarbage()
      collectgarbage()
      assert.are.same({}, weak)
    end)
  end)

  it("of a call that timed out is not used again while its child runs on", function()
    T.vrun(function()
      local t = fb.timeout(0.1)
      local late = {}
      fb.spawn(function()
        late[1] = { t:call(function() fb.sleep(1) return "late", "answer" end) }
      end)
      fb.sleep(0.2) -- the first call gave up; its child sleeps on
      local got = {}
      for i = 1, 3 do
        fb.spawn(function() got[i] = { t:call(function() fb.sleep(0.02 * i) return i end) } end)
      end
      fb.sleep(2) -- every child ended, the late one too
      assert.are.same({ { nil, "timeout: no result within 0.1s" } }, late)
      assert.are.same({ { 1 }, { 2 }, { 3 } }, got)
      assert.are.same({ 1, 1 }, { t.timeouts, t.late })
      assert.are.same({ "again" }, { t:call(function() return "again" end) })
    end)
  end)
end)
