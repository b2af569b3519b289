-- fusebox.lua -- the module users see: require "fusebox".
--
-- The C half (src/lua_fusebox.c) runs this chunk with its table of C
-- functions, `core`; every embedded module is loaded with core.import
-- and receives (name, core). Each lua/fusebox/*.lua adds one subsystem's
-- Lua methods to its type's metatable; this file assembles the public
-- table.

local core = select(2, ...)

local registry = core.import "fusebox.registry"
core.import "fusebox.balancer"
core.import "fusebox.breaker"
local tcp = core.import "fusebox.tcp"
local http = core.import "fusebox.http"
local serve = core.import "fusebox.serve"
local metrics = core.import "fusebox.metrics"
local health = core.import "fusebox.health"
core.import "fusebox.etcd" -- registers the etcd registry backend

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
  export = core.export,
  registry = registry.new,
  balancer = core.balancer,
  breaker = core.breaker,
  tcp = { connect = tcp.connect, listen = tcp.listen },
  http = { request = http.request, serve = http.serve },
  serve_registry = serve.serve,
  serve_metrics = metrics.serve,
  metrics = metrics.render,
  health_check = health.new,
}
