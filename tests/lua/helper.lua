-- Loaded by busted before every spec: finds the fusebox module under
-- test in $FB_BUILD, and gives specs a few shared helpers.
local build = os.getenv("FB_BUILD") or "build"
package.cpath = build .. "/?.so;" .. package.cpath

local T = {}
T.build = build
T.fusebox_bin = build .. "/fusebox"

-- Runs fn inside a virtual-time run with a fixed seed; errors propagate.
function T.vrun(fn, seed)
  local fb = require "fusebox"
  fb.run(fn, { virtual_time = true, seed = seed or 1 })
end

-- Bytes the heap grew by over n calls of fn() with the collector
-- stopped, after 200 calls to warm it (traces compiled, pools filled).
function T.bytes_grown(n, fn)
  for _ = 1, 200 do fn() end
  collectgarbage("stop")
  local before = collectgarbage("count")
  for _ = 1, n do fn() end
  local grown = (collectgarbage("count") - before) * 1024
  collectgarbage("restart")
  return grown
end

-- The whole file at path, as bytes.
function T.slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs the CLI; returns stdout, stderr, exit code.
function T.cli(args)
  local out, err = os.tmpname(), os.tmpname()
  local ok, _, code = os.execute(string.format("%s %s >%s 2>%s",
    T.fusebox_bin, args, out, err))
  if type(ok) == "number" then code = ok / 256 end -- Lua 5.1 os.execute
  local o, e = T.slurp(out), T.slurp(err)
  os.remove(out)
  os.remove(err)
  return o, e, code
end

_G.T = T
