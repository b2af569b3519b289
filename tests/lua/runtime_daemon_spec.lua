-- fb.daemon while the runtime's table of coroutines grows: the daemon
-- mark went into the table the growth had just freed (src/runtime.c read
-- rt->coros before spawn() moved it), so the new daemon counted as a
-- plain coroutine and a run whose daemons wait forever never ended (and
-- ASan saw a write after free). Issue 18's hedge and deadline workers are
-- daemons started while many calls are in flight.
local fb = require "fusebox"

describe("fb.daemon", function()
  it("is a daemon even when starting it grows the table of coroutines", function()
    local started = 0
    T.vrun(function()
      for _ = 1, 3000 do -- every growth of the table (64, 128, ... 4096) is a daemon's
        fb.daemon(function() started = started + 1; fb.wait("forever") end)
      end
      fb.sleep(1) -- they start, and park
    end)
    assert.are.equal(3000, started) -- and the run ended: only daemons were left
  end)
end)
