-- The runtime finds a coroutine from its thread (fb.wake's handle) in a
-- table of its own (src/runtime.c: rt->threads): every live coroutine
-- found, every ended one not, however many come and go in any order.
local fb = require "fusebox"

describe("fb.wake's handle lookup", function()
  it("finds each waiting coroutine once, in any order, across growth and removals", function()
    T.vrun(function()
      local n, handles, woken = 3000, {}, {}
      for i = 1, n do
        handles[i] = fb.spawn(function()
          local ok, v = fb.wait("a test wake")
          woken[i] = ok and v
        end)
      end
      fb.sleep(0) -- every one is waiting now
      -- a fixed shuffle (no fb.random: the order alone matters)
      local order, x = {}, 7
      for i = 1, n do order[i] = i end
      for i = n, 2, -1 do
        x = (x * 1103515245 + 12345) % 2147483648
        local j = x % i + 1
        order[i], order[j] = order[j], order[i]
      end
      for k = 1, n do
        local i = order[k]
        assert.is_true(fb.wake(handles[i], i))
        assert.is_false(fb.wake(handles[i], -i)) -- queued to run: no longer waiting
        if k % 3 == 0 then fb.sleep(0) end      -- let some end between wakes
      end
      fb.sleep(0)
      for i = 1, n do
        assert.are.equal(i, woken[i])
        assert.is_false(fb.wake(handles[i])) -- ended: nothing to wake
      end
      assert.is_false(fb.wake(coroutine.create(function() end))) -- never the runtime's
    end)
  end)
end)
