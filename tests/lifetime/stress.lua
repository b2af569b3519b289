-- tests/lifetime/stress.lua -- lifetime stress of the Lua API (issue 13):
-- a seeded random program that creates registries, balancers, breakers
-- and policies, uses them, drops them and collects at random points,
-- holds views and permits past their owners, runs finalizers that touch
-- other objects, calls __gc by hand and calls methods on the wrong self.
-- Every operation's outcome is checked: a success, or one of the clean
-- errors below. A crash (the ASan build aborts), an internal error (a
-- file:line inside fusebox's Lua sources, "attempt to ...") or any other
-- message fails the run, which prints its seed.
--
--   FB_SEED=n (replay), FB_OPS=n (default 500000), FB_TRACE=1 (failures
--   with a traceback); run by tests/lifetime.t. A replay runs the same
--   program; when the collector runs depends on addresses too (strings
--   holding them, table layout), so a failure inside a finalizer may take
--   a few replays to show again.
local build = os.getenv("FB_BUILD") or "build"
package.cpath = build .. "/?.so;" .. package.cpath
local fb = require "fusebox"

local SEED = tonumber(os.getenv("FB_SEED") or "") or (os.time() * 1000 + math.floor(os.clock() * 1e6)) % 2147483647
local OPS = tonumber(os.getenv("FB_OPS") or "") or 500000
local format = string.format

-- xorshift32: the program depends on the seed alone.
local bit = require "bit"
local rstate = SEED % 4294967296
if rstate == 0 then rstate = 2463534242 end
local function rnd(n)
  rstate = bit.bxor(rstate, bit.lshift(rstate, 13))
  rstate = bit.bxor(rstate, bit.rshift(rstate, 17))
  rstate = bit.bxor(rstate, bit.lshift(rstate, 5))
  return (rstate % n) + 1 -- rstate is a signed 32-bit number
end
local function chance(p) return rnd(1000000) <= p * 1000000 end
local function choose(t) return t[rnd(#t)] end

-- ------------------------------------------------------------- checking

local failures = {}
local function fail(what, msg)
  failures[#failures + 1] = format("%s: %s", what, tostring(msg))
end

-- A clean error: what a user may see. Matched after the position the
-- error names (the caller's, never fusebox's own source) is removed.
local CLEAN = {
  "closed",
  "^bad argument #%d+ to '[^']+' %(.+%)$",
  "^calling '[^']+' on bad self",
  "^instance views are read%-only",
  "^circuit open: call rejected",
  "^no live instance of service '",
  "^done: no pick of ",
  "^balancer strategy '[^']*' returned ",
  "^balancer strategy '[^']*' failed: .*stress: injected",
  -- LuaJIT: a finalizer run while an error handler runs (the collector
  -- may step there) gets this from its own xpcall's error
  "^balancer strategy '[^']*' failed: error in error handling$",
  "^[%w_]+: permit already used$",
  "stress: injected",
}

local seen = {} -- CLEAN index -> how many errors matched it
for i = 1, #CLEAN do seen[i] = 0 end

local function clean(msg)
  if type(msg) ~= "string" then return false end
  msg = msg:match("^[^\n]*") -- a traceback may follow
  -- An error raised at the wrong level names fusebox's own source; the
  -- policy's breaker layer calls cb:call, whose errors name their caller
  -- (policy.lua), by design.
  msg = msg:gsub("^lua/fusebox/policy%.lua:%d+: ", "")
  if msg:find("lua/fusebox/[%w_]+%.lua:%d+:") then return false end
  if msg:find("attempt to ") or msg:find("stack overflow") then return false end
  msg = msg:gsub("^[^\n:]+:%d+: ", "") -- the caller's position
  for i, p in ipairs(CLEAN) do
    if msg:find(p) then
      seen[i] = seen[i] + 1
      return true
    end
  end
  return false
end

-- With FB_TRACE set, a failure's report has its traceback (clean() reads
-- the first line). Not by default: the handler allocates, so finalizers
-- run inside it, where LuaJIT refuses their own error handlers.
local traced
if os.getenv("FB_TRACE") then
  traced = function(e)
    if type(e) ~= "string" then return e end
    return e .. "\n" .. debug.traceback("", 2) -- traceback(e) would cut e at a NUL
  end
end

local function check(what, ok, err)
  if not ok and not clean(err) then fail(what, err) end
end

-- Listener and strategy errors are reported, not raised: they must be
-- clean too (the first line of the traceback the reporter gets).
fb.reporter(function(what, msg)
  local first = tostring(msg):match("^[^\n]*")
  if not clean(first) then fail("reported " .. what, msg) end
end)

-- ---------------------------------------------------------------- pools

local CAP = 6
local pools = { reg = {}, lb = {}, cb = {}, pol = {}, view = {}, permit = {}, token = {}, proxy = {},
  det = {} }
local function put(pool, v) pools[pool][rnd(CAP)] = v end
local function get(pool) return pools[pool][rnd(CAP)] end

local JUNK = { 0, 123, -1, 1.5, "", "x", true, {}, io.stdout, newproxy(true), function() end }
local function junk() return JUNK[rnd(#JUNK)] end
local function any()
  local r = rnd(10)
  if r == 1 then return junk() end
  return get(choose { "reg", "lb", "cb", "pol", "view", "permit", "det" })
end

local SERVICES = { "a", "b", "c" }
local HOSTS = { "h1", "h2", "h3", "10.0.0.1" }
local function service()
  if chance(0.01) then return choose { "", "a\0b", 7 } end
  return choose(SERVICES)
end
local function host()
  if chance(0.01) then return choose { "", "h\0x", false } end
  return choose(HOSTS)
end
local function port()
  if chance(0.01) then return choose { 0, 70000, 1.5, "80" } end
  return rnd(4)
end

-- ------------------------------------------------------------ operations

local ops, names = {}, {}
local depth = 0
local finalizing = 0 -- a finalizer cannot yield: no fb.sleep while > 0
local function sleep(t) if finalizing == 0 then fb.sleep(t) end end
local run_op -- forward: a random operation (callbacks run one too)

-- Callbacks (listeners, strategies, guarded functions) run an operation
-- now and then; not inside a finalizer, which cannot yield (a policy's
-- retry sleeps).
local function nested()
  if depth < 2 and finalizing == 0 and chance(0.3) then run_op() end
end

local function bad_strategy(list, ctx)
  nested()
  local r = rnd(8)
  if r == 1 then error("stress: injected") end
  if r == 2 then return "nonsense" end
  if r == 3 then return #list + 1 end
  if r == 4 then return ctx.random(1, #list) end
  return list[rnd(#list)]
end

local ALGOS = { "round_robin", "random", "weighted_round_robin", "least_request",
  "peak_ewma", "consistent_hash", "maglev" }

local function add(name, weight, fn)
  for _ = 1, weight do ops[#ops + 1] = fn; names[#ops] = name end
end

add("new registry", 2, function()
  put("reg", fb.registry { heartbeat_timeout = rnd(5) })
end)

local function listener()
  return function() nested() end
end

-- An outlier option: a detector from the pool (maybe closed, maybe over
-- another registry) or a table of its options.
local function outlier_option()
  if chance(0.5) then return get("det") end
  return { consecutive_5xx = rnd(3), max_ejection_percent = 100, base_ejection_time = rnd(3) / 10 }
end

add("new balancer", 3, function()
  local reg = chance(0.95) and get("reg") or junk()
  local algo = chance(0.8) and choose(ALGOS) or bad_strategy
  put("lb", fb.balancer(reg, algo, chance(0.3) and { outlier = outlier_option() } or nil))
end)

add("new outlier", 1, function()
  local reg = chance(0.95) and get("reg") or junk()
  local d = fb.outlier(reg, { consecutive_5xx = rnd(3), max_ejection_percent = 100,
    base_ejection_time = rnd(3) / 10 })
  if chance(0.5) then d:on(choose { "eject", "readmit" }, listener()) end
  put("det", d)
end)

add("outlier", 2, function()
  local d = get("det")
  if not d then return end
  if chance(0.5) then d:tick() else d:stats() end
end)

-- The catalog walks (serve.lua's, metrics.lua's), whose tables finalizers
-- may change under them.
local core
for i = 1, 64 do
  local name, v = debug.getupvalue(fb.reporter, i)
  if name == "core" then core = v break end
end
add("catalog", 2, function()
  local reg = get("reg")
  if not reg then return end
  for _, name in ipairs(core.registry_services(reg)) do
    if type(name) ~= "string" then fail("catalog", "a service named " .. tostring(name)) end
  end
  local _, members = core.registry_stats(reg)
  for _, m in ipairs(members) do
    if type(m.host) ~= "string" or type(m.port) ~= "number" then
      fail("catalog", format("a member %s:%s", tostring(m.host), tostring(m.port)))
    end
  end
end)

add("new breaker", 2, function()
  local cb = fb.breaker { failure_threshold = rnd(3), timeout = rnd(3), success_threshold = 1,
    is_failure = chance(0.3) and function(err) nested(); return rnd(3) == 1 end or nil }
  for _ = 1, rnd(3) - 1 do
    cb:on(choose { "state_change", "rejected", "outcome" }, listener())
  end
  put("cb", cb)
end)

add("new policy", 1, function()
  local spec = { retry = { attempts = rnd(3), base = 0.001 } }
  if chance(0.5) then
    spec.breaker = chance(0.5) and get("cb") or { failure_threshold = 2, timeout = 1 }
  end
  if chance(0.3) then spec.bulkhead = { max_concurrent = 1 + rnd(2) } end
  if chance(0.3) then spec.timeout = 0.05 end
  put("pol", fb.policy(spec))
end)

local REGISTRY_METHODS = { "register", "heartbeat", "deregister", "mark_down", "mark_up" }

add("registry write", 12, function()
  local reg = get("reg")
  if not reg then return end
  local m = choose(REGISTRY_METHODS)
  if m == "register" and chance(0.5) then
    reg:register(service(), host(), port(), { weight = rnd(5), zone = choose { "z1", "z2" }, meta = { n = rnd(9) } })
  else
    reg[m](reg, service(), host(), port())
  end
end)

add("set_healthy", 2, function()
  local reg = get("reg")
  if reg then reg:set_healthy(service(), host(), port(), chance(0.5)) end
end)

add("discover", 8, function()
  local reg = get("reg")
  if not reg then return end
  local list = reg:discover(service())
  for _, v in ipairs(list) do
    if chance(0.3) then put("view", v) end
  end
end)

local FIELDS = { "host", "port", "id", "weight", "zone", "meta", "healthy", "inflight",
  "successes", "failures", "latency", "nope" }

add("read view", 10, function()
  local v = get("view")
  if v == nil then return end
  local f = choose(FIELDS)
  local x = v[f]
  if (f == "host" and type(x) ~= "string") or (f == "port" and type(x) ~= "number") then
    fail("read view", format("%s is %s", f, tostring(x)))
  end
  if chance(0.1) then tostring(v) end
end)

add("write view", 2, function()
  local v = get("view")
  if v == nil then return end
  local ok, err = pcall(function() v[choose(FIELDS)] = "evil" end)
  if ok then fail("write view", "a view accepted a write") end
  check("write view", ok, err)
  if v.host == "evil" then fail("write view", "host changed") end
end)

add("pick", 10, function()
  local lb = get("lb")
  if not lb then return end
  local v = lb:pick(service(), chance(0.5) and choose { "k1", "k2", "k3" } or nil)
  if v then
    if chance(0.5) then put("view", v) end
    if chance(0.7) then lb:done(v, chance(0.8), rnd(100) / 1000) end
  end
end)

add("done", 4, function()
  local lb = get("lb")
  if lb then lb:done(chance(0.9) and get("view") or junk(), chance(0.5), rnd(10) / 100) end
end)

add("balancer call", 4, function()
  local lb = get("lb")
  if not lb then return end
  lb:call(service(), function(inst)
    local _ = inst.host
    nested()
    if chance(0.2) then error("stress: injected") end
    if chance(0.1) then sleep(0.001) end
    return inst.port
  end)
end)

local function guarded()
  nested()
  local r = rnd(10)
  if r == 1 then error("stress: injected") end
  if r == 2 then return nil, "stress: injected" end
  if r == 3 then sleep(0.01) end
  return true
end

add("breaker call", 8, function()
  local cb = get("cb")
  if not cb then return end
  local r = rnd(7)
  if r == 1 then cb:call(guarded)
  elseif r == 2 then cb:try(guarded)
  elseif r == 3 then
    local t = cb:permit()
    if t then
      if chance(0.5) then cb:record(t, choose { true, false, "ignore" }, rnd(10) / 100)
      else pools.token[rnd(CAP)] = { cb, t } end
    end
  elseif r == 4 then
    local p = cb:acquire()
    if p then
      if chance(0.5) then p[choose { "success", "failure", "ignore" }](p) else put("permit", p) end
    end
  elseif r == 5 then
    local _ = cb.state
    cb:metrics(); cb:metrics_json(); cb:transition(rnd(3) - 1)
  elseif r == 6 then
    cb[choose { "force_open", "disable", "reset" }](cb)
  else
    tostring(cb)
  end
end)

add("settle held permit", 3, function()
  local p = get("permit")
  if p then p[choose { "success", "failure", "ignore" }](p, chance(0.5) and 0.01 or nil) end
  local t = pools.token[rnd(CAP)]
  if t then t[1]:record(t[2], chance(0.5), 0.001) end
end)

add("policy call", 4, function()
  local p = get("pol")
  if p then p:call(guarded) end
end)

add("drop", 8, function()
  local pool = choose { "reg", "lb", "cb", "pol", "view", "permit", "token", "proxy", "det" }
  pools[pool][rnd(CAP)] = nil
end)

add("collect", 2, function()
  if chance(0.1) then collectgarbage() else collectgarbage("step", rnd(50)) end
end)

local OBJECT_POOLS = { "reg", "lb", "cb", "det" }

add("__gc by hand", 2, function()
  local obj = get(choose(OBJECT_POOLS))
  if obj == nil then return end
  local gc = getmetatable(obj).__gc
  gc(chance(0.7) and obj or any())
end)

-- A method of one type called on anything.
local METHODS = {
  reg = { "register", "heartbeat", "deregister", "discover", "mark_down", "set_healthy", "heartbeat_timeout" },
  lb = { "pick", "done", "call", "registry", "algorithm" },
  cb = { "call", "try", "permit", "record", "acquire", "on", "force_open", "reset", "metrics", "transition" },
  det = { "registry", "stats", "tick", "on" },
}
add("wrong self", 3, function()
  local kind = choose(OBJECT_POOLS)
  local obj = get(kind)
  if obj == nil then return end
  local m = obj[choose(METHODS[kind])]
  m(any(), service(), host(), port())
end)

add("finalizer", 4, function()
  -- captures a few objects (maybe the only references left) and runs a
  -- random operation on them when collected
  local p = newproxy(true)
  local held = { get("reg"), get("lb"), get("cb"), get("view"), get("permit"), get("det") }
  getmetatable(p).__gc = function()
    local r = rnd(8)
    finalizing = finalizing + 1
    local ok, err = pcall(function()
      if r == 1 and held[1] then held[1]:register("a", "h1", 1); held[1]:discover("a")
      elseif r == 2 and held[2] then local v = held[2]:pick("a"); if v then held[2]:done(v, true, 0) end
      elseif r == 3 and held[3] then held[3]:try(function() return 1 end); local _ = held[3].state
      elseif r == 4 and held[4] then local _ = held[4].weight, held[4].zone, held[4].meta
      elseif r == 5 and held[5] then held[5]:success()
      elseif r == 6 and held[1] then getmetatable(held[1]).__gc(held[1])
      elseif r == 7 and held[6] then getmetatable(held[6]).__gc(held[6])
      elseif r == 8 and held[1] then held[1]:deregister(service(), host(), port())
      end
    end)
    finalizing = finalizing - 1
    check("finalizer", ok, err)
  end
  if chance(0.5) then put("proxy", p) end -- sometimes kept a while
end)

function run_op()
  depth = depth + 1
  local i = rnd(#ops)
  local ok, err
  if traced then ok, err = xpcall(ops[i], traced) else ok, err = pcall(ops[i]) end
  depth = depth - 1
  check(names[i], ok, err)
end

-- ---------------------------------------------------------------- main

local done = 0
local ok, err = pcall(fb.run, function()
  for n = 1, OPS do
    run_op()
    done = n
    if #failures > 0 then break end
  end
  for k in pairs(pools) do pools[k] = {} end
  collectgarbage(); collectgarbage()
end, { virtual_time = true, seed = SEED % 2147483647 })
if not ok then fail("fb.run", err) end
collectgarbage(); collectgarbage()

print("1..1")
if #failures == 0 then
  print(format("ok 1 - lifetime stress: %d operations, seed %d", done, SEED))
  for i, p in ipairs(CLEAN) do print(format("# %6d errors %s", seen[i], p)) end
  os.exit(0)
end
print(format("not ok 1 - lifetime stress failed after %d operations, seed %d", done, SEED))
for i = 1, math.min(#failures, 5) do
  print("# " .. failures[i]:gsub("\n", "\n# "))
end
print(format("# replay: FB_SEED=%d sh tests/lifetime.t", SEED))
os.exit(1)
