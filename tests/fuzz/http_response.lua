-- tests/fuzz/http_response.lua -- a server's byte stream into the HTTP
-- client (fb.http.request, which health checks and the etcd backend use):
-- tcp.connect is swapped for a fake whose socket reads the input (in
-- pieces, see lib.pieces) and then reports the connection closed. The
-- hash of the input picks GET or HEAD and a small or a large body limit.
--
-- Findings: a crash, a Lua error, or an answer of the wrong shape:
-- status, headers, body | nil and a message.

local fb, core, lib = ...
local tcp = core.import "fusebox.tcp"
local type, tostring, pairs = type, tostring, pairs

return function(input)
  local h = lib.hash(input)
  local method = h % 2 == 0 and "GET" or "HEAD"
  local max_body = h % 3 == 0 and 16 or nil
  lib.with({
    { tcp, "check_real", function() end },
    { tcp, "connect", function() return lib.socket(input) end },
  }, function()
    lib.vrun(function()
      local status, headers, body = fb.http.request {
        method = method, url = "http://10.0.0.1:2379/v3/kv/range", timeout = 5, max_body = max_body,
        pool = false, -- each input its own connection: no input sees another's
      }
      if status == nil then
        if type(headers) ~= "string" then lib.fail("failed without a message: %s", tostring(headers)) end
        return
      end
      if type(status) ~= "number" or status % 1 ~= 0 or status < 0 or status > 999 then
        lib.fail("status %s", tostring(status))
      end
      if type(headers) ~= "table" or type(body) ~= "string" then
        lib.fail("headers %s, body %s", type(headers), type(body))
      end
      for k, v in pairs(headers) do
        if type(k) ~= "string" or type(v) ~= "string" then lib.fail("header %s: %s", tostring(k), tostring(v)) end
      end
      if max_body and #body > max_body then lib.fail("body of %d bytes past max_body %d", #body, max_body) end
      if method == "HEAD" and body ~= "" then lib.fail("a body for HEAD: %q", body) end
    end)
  end)
end
