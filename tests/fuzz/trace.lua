-- tests/fuzz/trace.lua -- fb.trace.read (lua/fusebox/trace.lua) on any
-- bytes, as an events file and as an nginx access log, with small limits:
-- it reads a trace whose columns agree (every call's instance and outcome
-- indexed, times and latencies finite, the counts consistent) or raises
-- a limit's "trace.read: ..." message; nothing else.

local fb, _, lib = ...
local type, tostring = type, tostring
local path = os.tmpname()

local function check(tr, fmt, input)
  if type(tr) ~= "table" or type(tr.n) ~= "number" then lib.fail("%s: no trace", fmt) end
  for _, col in ipairs { "t", "inst", "latency", "outcome" } do
    if #tr[col] ~= tr.n then lib.fail("%s: column %s has %d of %d calls", fmt, col, #tr[col], tr.n) end
  end
  for i = 1, tr.n do
    local t, l = tr.t[i], tr.latency[i]
    if not (t == t and t > -1e300 and t < 1e300) then lib.fail("%s: call %d at %s", fmt, i, tostring(t)) end
    if not (l >= 0 and l < 1e300) then lib.fail("%s: call %d latency %s", fmt, i, tostring(l)) end
    if not tr.instances[tr.inst[i]] then lib.fail("%s: call %d names no instance", fmt, i) end
    if not tr.outcomes[tr.outcome[i]] then lib.fail("%s: call %d names no outcome", fmt, i) end
  end
  if #tr.instances > 8 then lib.fail("%s: %d instances past the limit of 8", fmt, #tr.instances) end
  if tr.skipped > tr.lines then lib.fail("%s: %d skipped of %d lines", fmt, tr.skipped, tr.lines) end
  local _ = input
end

return function(input)
  local f = assert(io.open(path, "wb"))
  f:write(input)
  f:close()
  for _, fmt in ipairs { "events", "nginx" } do
    local ok, tr = pcall(fb.trace.read, path, { format = fmt, max_line = 512, max_instances = 8,
      max_calls = 64 })
    if ok then
      check(tr, fmt, input)
    elseif type(tr) ~= "string" or not tr:find("trace.read: ", 1, true) then
      lib.fail("%s: raised %s", fmt, tostring(tr))
    end
  end
end
