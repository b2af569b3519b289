-- tests/fuzz/http_request.lua -- a client's byte stream into `fusebox
-- serve`: fb.serve_registry{} as it is, on fb.http.serve as it is, with
-- tcp.listen swapped for a fake that hands over its connection handler;
-- the input arrives on one connection (in pieces, see lib.pieces), then
-- the client closes. The registry holds one instance, so heartbeats,
-- deletes and GETs meet something.
--
-- Findings: a crash, a Lua error or a fusebox error report (a handler
-- that raised: answered 500), an answer that is not HTTP, a 500, or a
-- 200/201 whose body is not a JSON object.

local fb, core, lib = ...
local tcp = core.import "fusebox.tcp"
local find, sub, type, tostring = string.find, string.sub, type, tostring

local listener = { port = function() return 8500 end, close = function() end, _unref = function() end }

-- The methods of the requests in input, in order, as the server parses
-- them (fb.serve_registry's body limit): an answer to HEAD has no body.
local function methods_of(input)
  local parser, out = core.http_parser("request", 64 * 1024), {}
  while input ~= "" do
    local used, msg = parser:feed(input)
    if not used or not msg then break end
    out[#out + 1] = msg.method
    input = sub(input, used + 1)
  end
  return out
end

-- Every answer in out, parsed as the client would parse it.
local function check_answers(out, methods)
  local n = 0
  while out ~= "" do
    n = n + 1
    local parser = core.http_parser("response", 64 * 1024 * 1024, methods[n] == "HEAD")
    local used, msg = parser:feed(out)
    if not used then lib.fail("answer is not HTTP (%s): %q", tostring(msg), out) end
    out = sub(out, used + 1)
    if not msg then lib.fail("answer cut short: %q", out) end
    if msg.status == 500 then lib.fail("answered %d: %s", msg.status, msg.body) end
    if methods[n] ~= "HEAD" then
      local doc = fb.json_decode(msg.body)
      if (msg.status == 200 or msg.status == 201) and type(doc) ~= "table" then
        lib.fail("answered %d with body %q", msg.status, msg.body)
      end
      if type(doc) ~= "table" then lib.fail("answer body is not JSON: %q", msg.body) end
    end
    if not find(msg.headers["content-type"] or "", "application/json", 1, true) then
      lib.fail("answer without a JSON content type: %d", msg.status)
    end
  end
end

return function(input)
  local handler, sock
  lib.with({
    { tcp, "check_real", function() end },
    { tcp, "listen", function(opts) handler = opts.handler; return listener end },
  }, function()
    lib.vrun(function()
      local api = assert(fb.serve_registry { sweep_interval = 30 })
      api.registry:register("web", "10.0.0.1", 8080)
      sock = lib.socket(input)
      handler(sock)
      api:close()
    end)
  end)
  if not sock:closed() then lib.fail("the connection was left open") end
  check_answers(sock:output(), methods_of(input))
end
