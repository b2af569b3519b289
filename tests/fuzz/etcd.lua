-- tests/fuzz/etcd.lua -- what etcd's JSON gateway answers, into the etcd
-- registry backend (lua/fusebox/etcd.lua) as it is: http.request and
-- tcp.connect are swapped for fakes that serve the input, cut into
-- segments at lines "====". Each request the backend makes (kv/range,
-- lease/grant, kv/put, keepalive, ...) is answered with the next segment
-- as its body, status 200 unless the segment starts "!NNN "; each watch
-- connection reads the next segment as the raw HTTP stream (in pieces,
-- see lib.pieces). Once the segments run out, etcd is unreachable.
--
-- The run registers, heartbeats and deregisters an own instance, reads
-- every service the cache holds and closes the registry.
--
-- Findings: a crash, a Lua error (a coroutine that raised fails the
-- run), a view of the cache that is not host, port, weight.

local fb, core, lib = ...
local tcp = core.import "fusebox.tcp"
local http = core.import "fusebox.http"
local find, sub, tonumber, type, tostring, ipairs = string.find, string.sub, tonumber, type, tostring, ipairs

local function check_views(reg)
  for _, name in ipairs(core.registry_services(reg)) do
    for _, v in ipairs(reg:discover(name)) do
      if type(v.host) ~= "string" or type(v.port) ~= "number" or type(v.weight) ~= "number" then
        lib.fail("service %q: view %s:%s weight %s", name, tostring(v.host), tostring(v.port), tostring(v.weight))
      end
    end
  end
end

return function(input)
  local segs, next_seg = lib.segments(input), 1
  local function take()
    local s = segs[next_seg]
    next_seg = next_seg + 1
    return s
  end
  lib.with({
    { tcp, "check_real", function() end },
    { http, "request", function(opts)
        if type(fb.json_decode(opts.body)) ~= "table" then lib.fail("etcd request body %q", opts.body) end
        local s = take()
        if s == nil then return nil, "connection refused" end
        local status = find(s, "^!%d%d%d ") and tonumber(sub(s, 2, 4)) or 200
        return status, {}, status == 200 and s or sub(s, 6)
      end },
    { tcp, "connect", function()
        local s = take()
        if s == nil then return nil, "connection refused" end
        return lib.socket(s)
      end },
  }, function()
    lib.vrun(function()
      local reg = fb.registry { backend = "etcd", endpoints = { "http://10.0.0.1:2379" },
        heartbeat_timeout = 10, timeout = 1 }
      reg:register("web", "10.0.0.2", 8080, { weight = 3 })
      fb.sleep(1)
      check_views(reg)
      reg:heartbeat("web", "10.0.0.2", 8080)
      fb.sleep(1)
      check_views(reg)
      reg:deregister("web", "10.0.0.2", 8080)
      fb.sleep(1)
      check_views(reg)
      reg:close()
      fb.sleep(5) -- the backend's coroutines see the close
    end)
  end)
end
