-- Reading speed of fb.trace.read (BENCHMARKS.md, "Traces"): writes an
-- events file of n calls (a pick and a done line each, as a real run
-- logs them) and an nginx log of n requests (one in ten with a retry),
-- reads each `rounds` times and prints the median.
--   fusebox run tests/bench/trace_read.lua [n=1000000] [rounds=5]
local fb = require "fusebox"
local n, rounds = tonumber(arg[1]) or 1000000, tonumber(arg[2]) or 5

local function write(path, line)
  local f = assert(io.open(path, "wb"))
  local buf = {}
  for i = 1, n do
    buf[#buf + 1] = line(i)
    if #buf == 10000 then f:write(table.concat(buf)); buf = {} end
  end
  f:write(table.concat(buf))
  f:close()
end

local events, nginx = os.tmpname(), os.tmpname()
write(events, function(i)
  local host, t = "10.0.0." .. (i % 10 + 1), i * 0.001
  return string.format('{"t":%.17g,"kind":"pick","host":"%s","port":8080,"service":"api"}\n'
    .. '{"t":%.17g,"kind":"done","host":"%s","latency":%.17g,"ok":%s,"port":8080,"service":"api"}\n',
    t, host, t + 0.002, host, 0.002, tostring(i % 7 ~= 0))
end)
write(nginx, function(i)
  local a = "10.0.0." .. (i % 10 + 1) .. ":8080"
  if i % 10 == 0 then
    return string.format('%.3f 0.012 "%s, 10.0.0.11:8080" "502, 200" "0.002, 0.010"\n', 1.7e9 + i * 0.001, a)
  end
  return string.format('%.3f 0.002 "%s" "200" "0.002"\n', 1.7e9 + i * 0.001, a)
end)

for _, path in ipairs({ events, nginx }) do
  local times, tr = {}, nil
  for r = 1, rounds do
    collectgarbage()
    local t0 = os.clock()
    tr = fb.trace.read(path)
    times[r] = os.clock() - t0
  end
  table.sort(times)
  local med = times[math.ceil(rounds / 2)]
  print(string.format("%s: %d lines, %d calls: median %.2f s (%.0f lines/s, %.0f calls/s)",
    tr.format, tr.lines, tr.n, med, tr.lines / med, tr.n / med))
  os.remove(path)
end
