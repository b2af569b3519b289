-- tests/fuzz/ngx_discovery.lua -- what a discovery source answers, into
-- fusebox.ngx's upstream{discover = ...} (lua/fusebox/ngx.lua): the
-- scheduler's fetch is swapped for a fake that serves the input, one poll
-- per segment (segments split at lines "===="; a segment "!NNN rest" is
-- status NNN with body rest, "!down" a failed connection, anything else
-- a 200 with that body). The input's first byte picks the source: "e" is
-- etcd's JSON gateway (a kv/range answer), anything else fusebox serve
-- (GET /v1/services/<name>). Under virtual time, one poll a second.
--
-- Findings: a Lua error or a crash; after any poll, more peers than the
-- upstream allows, a peer nginx's balancer could not be given (not an IP
-- literal, a port out of 1..65535), the upstream's peers and its
-- registry disagreeing, a poll not counted, or an unbounded log line.

local fb, core, lib = ...
local host = core.import "fusebox.host"
local ngx_fb = core.import "fusebox.ngx"
local find, sub, format, tostring, type, pairs = string.find, string.sub, string.format, tostring, type, pairs

local MAX_PEERS = 256 -- fusebox.ngx's bound on a discovered upstream
local POLLS = 8       -- at most this many segments are served

local function answer(seg)
  if seg == nil or seg == "!down" then return nil, "connect: connection refused" end
  local status = find(seg, "^!%d%d%d ") and tonumber(sub(seg, 2, 4))
  if status then return status, sub(seg, 6) end
  return 200, seg
end

local function ip_literal(h)
  local a, b, c, d = h:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then return tonumber(a) < 256 and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256 end
  return #h <= 45 and find(h, "^[%x:%.]+$") ~= nil and find(h, ":", 1, true) ~= nil
end

local function check(u, name, polls)
  local listed = u.registry:discover(name)
  if #listed > MAX_PEERS then lib.fail("%d peers (at most %d)", #listed, MAX_PEERS) end
  local by_peer = {}
  for _, v in ipairs(listed) do
    if type(v.host) ~= "string" or not ip_literal(v.host) then lib.fail("peer host %q", tostring(v.host)) end
    if not (v.port >= 1 and v.port <= 65535 and v.port % 1 == 0) then lib.fail("peer port %s", tostring(v.port)) end
    by_peer[format("%s:%d", v.host, v.port)] = true
  end
  local n = 0
  for peer in pairs(u:peers()) do
    n = n + 1
    if not by_peer[peer] then lib.fail("upstream lists %s, its registry does not", peer) end
  end
  if n ~= #listed then lib.fail("upstream has %d peers, its registry %d", n, #listed) end
  if u.discovery.polls ~= polls then lib.fail("%d polls counted, %d made", u.discovery.polls, polls) end
end

local runs = 0

return function(input)
  local etcd = sub(input, 1, 1) == "e"
  local segs = lib.segments(sub(input, 2), POLLS)
  local served = 0
  runs = runs + 1
  local name = "fz" .. runs
  local reports = {}
  local previous = fb.reporter(function(what, msg) reports[#reports + 1] = what .. ": " .. tostring(msg) end)
  local ok, err = pcall(lib.with, { { host.runtime, "fetch", function()
      served = served + 1
      return answer(segs[served])
    end } }, function()
    fb.run(function()
      local src = etcd and { etcd = "http://127.0.0.1:2379" } or { serve = "http://127.0.0.1:8500" }
      src.interval = 1
      local u = ngx_fb.upstream { name = name, discover = src, breaker = { failure_threshold = 2 } }
      for poll = 1, #segs do
        fb.sleep(poll == 1 and 0.5 or 1) -- the first poll is at once
        check(u, name, poll)
      end
    end, { virtual_time = true, seed = 1 })
  end)
  fb.reporter(previous)
  if not ok then error(err, 0) end
  for _, r in ipairs(reports) do
    if #r > 1000 then lib.fail("a log line of %d bytes", #r) end
    if not find(r, "discovery of '" .. name .. "'", 1, true) then lib.fail("fusebox reported: %s", r) end
  end
end
