-- fusebox.lua -- the module users see: require "fusebox".
--
-- The C half (src/lua_fusebox.c) runs this chunk with its table of C
-- functions, `core`; every embedded module is loaded with core.import
-- and receives (name, core). Each lua/fusebox/*.lua adds one subsystem's
-- Lua methods to its type's metatable; this file assembles the public
-- table.

local core = select(2, ...)
if type(core) ~= "table" then
  -- Found as a plain file on package.path (lua/?.lua put there, as nginx
  -- configs often do) before fusebox.so on package.cpath: this file is
  -- the library's source, embedded in fusebox.so; load the C module.
  local path = package.searchpath("fusebox", package.cpath)
  if path == nil then
    error("fusebox: " .. debug.getinfo(1, "S").short_src .. " is the library's Lua source; "
      .. "the module is fusebox.so, not found on package.cpath (" .. package.cpath .. ")", 2)
  end
  return assert(package.loadlib(path, "luaopen_fusebox"))("fusebox")
end

local host = core.import "fusebox.host"
local registry = core.import "fusebox.registry"
local balancer = core.import "fusebox.balancer"
core.import "fusebox.breaker"
core.import "fusebox.limiter"
local tcp = core.import "fusebox.tcp"
local http = core.import "fusebox.http"
local serve = core.import "fusebox.serve"
local metrics = core.import "fusebox.metrics"
local health = core.import "fusebox.health"
local policy = core.import "fusebox.policy"
local config = core.import "fusebox.config"
local client = core.import "fusebox.client"
local events = core.import "fusebox.events"
local scenario = core.import "fusebox.scenario"
local lifecycle = core.import "fusebox.lifecycle"
local dns = core.import "fusebox.dns"

local default_report = core.report

-- fb.reporter([fn]) -> the previous reporter: fn(what, message) receives
-- every error that must not stop the run (a listener or strategy that
-- raised); nil restores the default, which prints to stderr.
local function reporter(fn)
  if fn ~= nil and type(fn) ~= "function" then
    error("bad argument #1 to 'reporter' (function or nil expected, got " .. type(fn) .. ")", 2)
  end
  local previous = core.report
  core.report = fn or default_report
  return previous
end
core.import "fusebox.etcd" -- registers the etcd registry backend

-- The shipped strategies are fb.strategies; require "fusebox.strategies"
-- (once fusebox is loaded, as the CLI always has it) gives the same table.
local strategies = core.import "fusebox.strategies"
if package.loaded["fusebox.strategies"] == nil then
  package.loaded["fusebox.strategies"] = strategies
end
-- require "fusebox.ngx" (in nginx) loads the embedded copy, never one
-- on package.path; it is imported only then, as it needs nginx.
package.preload["fusebox.ngx"] = function() return core.import "fusebox.ngx" end

return {
  reporter = reporter,
  version = core.version,
  now = core.import("fusebox.base").now, -- through the FFI: a few ns, not tens
  sleep = host.sleep, -- fusebox's runtime's, or the host's (fb.host)
  spawn = host.spawn,
  random = core.random,
  seed = core.seed,
  run = host.run,
  running = core.running,
  wait = host.wait,
  wake = host.wake,
  host = host.host,
  export = core.export,
  registry = registry.new,
  balancer = core.balancer,
  strategy = balancer.strategy,
  strategies = strategies,
  breaker = core.breaker,
  zone = core.zone,
  limiter = core.limiter,
  daemon = host.daemon,
  real_now = core.real_now,
  emit = events.emit,
  sim = core.import "fusebox.sim",
  expect = scenario.expect,
  at = scenario.at,
  eventually = scenario.eventually,
  retry = policy.retry,
  timeout = policy.timeout,
  bulkhead = policy.bulkhead,
  rate_limiter = policy.rate_limiter,
  retry_budget = core.import("fusebox.budget").retry_budget,
  hedge = core.import("fusebox.hedge").hedge,
  deadline = core.import("fusebox.hedge").deadline,
  context = core.import("fusebox.context").current,
  policy = policy.policy,
  rejection = policy.rejection,
  policy_from_json = config.policy_from_json,
  load_policy = config.load_policy,
  client = client.client,
  json_decode = core.json_decode,
  json_encode = core.json_encode,
  json_null = core.json_null,
  tcp = { connect = tcp.connect, listen = tcp.listen },
  dns = { resolve = dns.resolve, hosts = dns.set_hosts, configure = dns.configure,
          stats = dns.stats, flush = dns.flush },
  http = { request = http.request, serve = http.serve },
  serve_registry = serve.serve,
  serve_metrics = metrics.serve,
  metrics = metrics.render,
  health_check = health.new,
  on_signal = lifecycle.on_signal,
  shutdown = function(opts) return lifecycle.shutdown(opts) end, -- no signal name from users
}
