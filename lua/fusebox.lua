-- fusebox.lua -- the module users see: require "fusebox".
--
-- The C half (src/lua_fusebox.c) runs this chunk with its table of C
-- functions, `core`; every embedded module is loaded with core.import
-- and receives (name, core). Each lua/fusebox/*.lua adds one subsystem's
-- Lua methods to its type's metatable; this file assembles the public
-- table.

local core = select(2, ...)

core.import "fusebox.registry"
core.import "fusebox.balancer"
core.import "fusebox.breaker"
local policy = core.import "fusebox.policy"
local config = core.import "fusebox.config"
local client = core.import "fusebox.client"

return {
  version = core.version,
  now = core.now,
  sleep = core.sleep,
  spawn = core.spawn,
  random = core.random,
  seed = core.seed,
  run = core.run,
  running = core.running,
  wait = core.wait,
  wake = core.wake,
  registry = core.registry,
  balancer = core.balancer,
  breaker = core.breaker,
  retry = policy.retry,
  timeout = policy.timeout,
  bulkhead = policy.bulkhead,
  rate_limiter = policy.rate_limiter,
  policy = policy.policy,
  rejection = policy.rejection,
  policy_from_json = config.policy_from_json,
  load_policy = config.load_policy,
  client = client.client,
  json_decode = core.json_decode,
  json_encode = core.json_encode,
  json_null = core.json_null,
}
