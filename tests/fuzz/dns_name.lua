-- tests/fuzz/dns_name.lua -- host names into fb.dns (lua/fusebox/dns.lua,
-- src/lua_dns.c's literal parser), under virtual time, so the machine's
-- resolver is never asked: the input's first line is a name for
-- fb.dns.hosts, the rest one to resolve. Resolving answers a list of IP
-- literals or nil and one bounded "resolve failed: " line, never raises;
-- a name fb.dns.hosts took resolves to what it was given (unless it is
-- a localhost or .invalid name, which never ask the table).

local fb, _, lib = ...
local find, sub, lower, format = string.find, string.sub, string.lower, string.format
local type, pcall, tostring = type, pcall, tostring

local function check_answer(name, addrs, err)
  if addrs == nil then
    if type(err) ~= "string" or sub(err, 1, 16) ~= "resolve failed: " then
      lib.fail("resolve(%q) failed without its line: %s", name, tostring(err))
    end
    if #err > 400 or find(err, "[%z\1-\31]") then lib.fail("unbounded or raw error line: %q", err) end
    return
  end
  if type(addrs) ~= "table" or #addrs == 0 or #addrs > 64 then
    lib.fail("resolve(%q) answered %s", name, tostring(addrs))
  end
  for _, a in ipairs(addrs) do
    if type(a) ~= "string" or not find(a, "^[%x:.]+$") then lib.fail("resolve(%q) gave address %q", name, tostring(a)) end
  end
end

local function special(name)
  local key = lower(name):gsub("%.$", "")
  return find(key, "localhost$") or find(key, "invalid$")
end

return function(input)
  local nl = find(input, "\n", 1, true)
  local listed, asked = nl and sub(input, 1, nl - 1) or input, nl and sub(input, nl + 1) or input
  lib.vrun(function()
    fb.dns.flush()
    local took = pcall(fb.dns.hosts, { [listed] = "10.1.2.3" })
    for _, name in ipairs { listed, asked } do
      local ok, addrs, err = pcall(fb.dns.resolve, name)
      if not ok then lib.fail("resolve(%q) raised: %s", name, tostring(addrs)) end
      check_answer(name, addrs, err)
    end
    if took and not special(listed) then
      local addrs = fb.dns.resolve(listed)
      if not addrs or addrs[1] ~= "10.1.2.3" then
        lib.fail("hosts took %q but resolve gave %s", listed, addrs and addrs[1] or "nil")
      end
    end
    fb.dns.hosts { [listed] = took and false or nil }
  end)
end
