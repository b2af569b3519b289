-- tests/fuzz/lib.lua -- what the Lua fuzz targets share. Run once by
-- lua_target.c with fb; returns the table the target scripts get
-- as their third argument.
--
-- The targets drive fusebox's network code in process: tcp.connect and
-- tcp.listen are swapped for fakes whose sockets read the fuzz input and
-- keep what is written, and everything runs under virtual time, so a
-- blocking query or a backoff costs no real time.

local fb = ...
local bit = require "bit"
local byte, sub, format, find, match = string.byte, string.sub, string.format, string.find, string.match
local type, pairs, getmetatable, tostring, error = type, pairs, getmetatable, tostring, error

local M = {}

-- FNV-1a of s, as a non-negative integer: one input always replays the
-- same way, and different inputs are cut differently.
function M.hash(s)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, byte(s, i))
    h = bit.tobit(h * 16777619)
  end
  return bit.band(h, 0x7fffffff)
end

-- s cut into the reads a socket would deliver: all at once, one byte at
-- a time, or pieces of a size chosen by the hash (what makes a parser's
-- callbacks see a header or a chunk size split anywhere).
function M.pieces(s)
  local h, out = M.hash(s), {}
  local mode, size = h % 4, 1 + bit.rshift(h, 2) % 128
  if mode == 0 then size = #s elseif mode == 1 then size = 1 end
  for i = 1, #s, size > 0 and size or 1 do out[#out + 1] = sub(s, i, i + size - 1) end
  return out
end

-- The input cut at lines "====" into at most max segments (the answers
-- the etcd and ngx_discovery targets serve one after another).
function M.segments(input, max)
  local out, i = {}, 1
  while #out < (max or math.huge) do
    local a, b = find(input, "\n====\n", i, true)
    if not a then out[#out + 1] = sub(input, i); break end
    out[#out + 1] = sub(input, i, a - 1)
    i = b + 1
  end
  return out
end

local sock = {}

function sock:read(timeout)
  if type(timeout) ~= "number" then
    error(format("fake socket: read timeout must be a number, got %s", tostring(timeout)), 2)
  end
  if self.is_closed then return nil, "closed" end
  local data = self.reads[self.next]
  if data == nil then return nil, "closed" end
  self.next = self.next + 1
  return data
end

function sock:write(data, _)
  if type(data) ~= "string" then error("fake socket: write of a " .. type(data), 2) end
  if self.is_closed then return nil, "closed" end
  self.out[#self.out + 1] = data
  return true
end

-- The client's whole stream is known, so data or its end is always
-- there (fb.tcp's sock:watch: a handler parked in a long poll).
function sock:watch() return true end
function sock:unwatch() end

function sock:close() self.is_closed = true end
function sock:closed() return self.is_closed end
function sock:port() return 40000 end
function sock:output() return table.concat(self.out) end

-- A method the fake lacks is named, not a nil call: add it here.
local sock_mt = { __index = function(_, k)
  local m = sock[k]
  if m == nil then error(format("fake socket: no method '%s' (add it to tests/fuzz/lib.lua)", tostring(k)), 2) end
  return m
end }

-- A socket whose reads deliver input (cut by M.pieces), then "closed".
function M.socket(input)
  return setmetatable({ reads = M.pieces(input), next = 1, out = {}, is_closed = false }, sock_mt)
end

-- Runs fn with t[k] = v for every {t, k, v} in patches, restoring them
-- however fn ends; fn's error is raised again.
function M.with(patches, fn)
  local saved = {}
  for i, p in pairs(patches) do saved[i] = p[1][p[2]]; p[1][p[2]] = p[3] end
  local ok, err = xpcall(fn, debug.traceback)
  for i, p in pairs(patches) do p[1][p[2]] = saved[i] end
  if not ok then error(err, 0) end
end

-- fn() in a virtual-time run with a fixed seed, fusebox's error reports
-- (a handler that raised, a listener that failed) counted as findings.
function M.vrun(fn)
  local reports = {}
  local previous = fb.reporter(function(what, msg) reports[#reports + 1] = what .. ": " .. msg end)
  local ok, err = pcall(fb.run, fn, { virtual_time = true, seed = 1 })
  fb.reporter(previous)
  if not ok then error(err, 0) end
  if #reports > 0 then error("fusebox reported: " .. reports[1], 0) end
end

-- Deep equality of decoded JSON values: the same keys, the same scalars,
-- arrays marked as arrays on both sides.
function M.same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  if getmetatable(a) ~= getmetatable(b) then return false end
  for k, v in pairs(a) do
    if not M.same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- Raises "fuzz: <what>" with the value shown, the way a finding is told.
function M.fail(fmt, ...)
  error("fuzz: " .. format(fmt, ...), 2)
end

-- Whether msg, an error fusebox raised, comes from a Lua runtime error
-- inside it (at a position in fusebox's Lua: "lua/fusebox/policy.lua:470:
-- attempt to index ...") rather than being one of its own clear messages,
-- which point at the caller (or at nothing). prefix: what a clear message
-- starts with; input: the text the message may quote, where libFuzzer
-- plants whatever the check looks for (a JSON key "lua/fusebox/x.lua:1: "),
-- so a position found in the input is not one.
function M.internal(msg, prefix, input)
  msg = tostring(msg)
  local at = find(msg, prefix, 1, true)
  if not at then return true end
  local rest = sub(msg, at + #prefix)
  local pos = match(rest, "^lua/fusebox[%w_/]*%.lua:%d+: ") or match(rest, "^%[string [^%]]*%]:%d+: ")
  return pos ~= nil and not find(input, pos, 1, true)
end

return M
