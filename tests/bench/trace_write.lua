-- Writes the million-call trace tests/bench/compare.sh replays: an events
-- file as a real run logs its calls (a pick and a done line each), n
-- calls over four instances one every millisecond, one in ten failing,
-- the second instance failing every call from 40% to 60% of the run.
--   fusebox run tests/bench/trace_write.lua PATH [n=1000000]
local path, n = assert(arg[1], "usage: trace_write.lua PATH [n]"), tonumber(arg[2]) or 1000000
local f = assert(io.open(path, "wb"))
local buf, format = {}, string.format
for i = 1, n do
  local k = i % 4 + 1
  local host, t = "10.0.0." .. k, i * 0.001
  local down = k == 2 and i > 0.4 * n and i < 0.6 * n
  local lat = down and 0.001 or 0.002 + (i * 7919 % 97) * 0.0001
  buf[#buf + 1] = format('{"t":%.17g,"kind":"pick","host":"%s","port":8080,"service":"api"}\n'
    .. '{"t":%.17g,"kind":"done","host":"%s","latency":%.17g,"ok":%s,"port":8080,"service":"api"}\n',
    t, host, t + lat, host, lat, tostring(not down and i % 10 ~= 0))
  if #buf == 10000 then f:write(table.concat(buf)); buf = {} end
end
f:write(table.concat(buf))
f:close()
