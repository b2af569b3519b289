-- fusebox.lua -- the module users see: require "fusebox".
--
-- The C half (src/lua_fusebox.c) has already published its functions as
-- "fusebox.core"; each lua/fusebox/*.lua adds one subsystem's Lua methods
-- to its type's metatable. This file only assembles the public table.

local core = require "fusebox.core"

require "fusebox.registry"
local balancer = require "fusebox.balancer"
require "fusebox.breaker"

return {
  version = core.version,
  now = core.now,
  sleep = core.sleep,
  spawn = core.spawn,
  random = core.random,
  seed = core.seed,
  run = core.run,
  running = core.running,
  registry = core.registry,
  balancer = core.balancer,
  strategy = balancer.strategy,
  breaker = core.breaker,
}
