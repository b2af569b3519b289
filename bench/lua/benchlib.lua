-- bench/lua/benchlib.lua -- what the Lua benchmark scripts share (under
-- `fusebox run` and under plain luajit): a monotonic clock and the
-- result line bench/table.py reads (one JSON object per
-- line; keys and values here are ours, so only numbers and plain strings).
local ffi = require "ffi"

pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } fb_bench_timespec;
int clock_gettime(int clk, fb_bench_timespec *ts);
]])
local C = ffi.C
local ts = ffi.new("fb_bench_timespec")
local CLOCK_MONOTONIC = 1

local M = { RUNS = 5 }

-- The clock the run is on: bench/run.sh runs the hot-path scripts twice,
-- under --virtual-time and on the real clock (FB_BENCH_CLOCK=real), the
-- way users run. Every row says which.
M.CLOCK = os.getenv("FB_BENCH_CLOCK") or "virtual"

-- naive() -> a new userdata of the naive classic C-API binding
-- (bench/lua/naive.c, built as $FB_BUILD/cmp/naive.so): the baseline the
-- hot paths are measured against in the same process.
function M.naive()
  local dir = os.getenv("FB_BUILD") or "build"
  if not package.cpath:find(dir .. "/cmp/?.so", 1, true) then
    package.cpath = dir .. "/cmp/?.so;" .. package.cpath
  end
  return require("naive")()
end

function M.ns()
  C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

local function quote(s)
  assert(not s:find('[%c"\\]'), "benchlib: string needs JSON escaping")
  return '"' .. s .. '"'
end

local function number(x)
  assert(x == x and x ~= math.huge and x ~= -math.huge, "benchlib: not finite")
  return string.format("%.17g", x)
end

-- emit{bench=, case=, impl=, n=, runs={...}, unit=, note=}
function M.emit(r)
  local runs = {}
  for i, v in ipairs(r.runs) do runs[i] = number(v) end
  local note = r.note and (',"note":' .. quote(r.note)) or ""
  io.write('{"bench":', quote(r.bench), ',"case":', quote(r.case),
    ',"impl":', quote(r.impl), ',"clock":', quote(r.clock or M.CLOCK), ',"n":', number(r.n),
    ',"runs":[', table.concat(runs, ","), '],"unit":', quote(r.unit or "ns/op"),
    note, "}\n")
  io.flush()
end

function M.skip(bench, case, impl, why)
  io.write('{"bench":', quote(bench), ',"case":', quote(case), ',"impl":',
    quote(impl), ',"skip":', quote(why:gsub('[%c"\\]', " ")), "}\n")
  io.flush()
end

-- Runs fn() RUNS times after one warm-up; returns the per-run results.
function M.repeat_runs(fn, runs)
  fn()
  local out = {}
  for i = 1, runs or M.RUNS do out[i] = fn(i) end
  return out
end

return M
