-- A scenario that fails exactly when two of its three fault kinds are on
-- together (outage and burst; noise only makes the run longer):
-- tests/explore.t checks that fusebox explore finds every such seed, that
-- each replay command fails the same way, and that shrinking a seed with
-- noise on finds noise not needed.
local fb = require "fusebox"
local on = fb.sim.swarm { "outage", "burst", "noise" }
fb.sleep(on.noise and 2 or 1)
fb.expect(not (on.outage and on.burst), "an outage during a burst, seed %s", fb.seed())
