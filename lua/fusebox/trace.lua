-- fusebox/trace.lua -- fb.trace.read: a timeline of calls per instance,
-- read from fusebox's own events file or from an nginx access log.
--
-- A trace holds its calls as columns (one Lua array each: start time,
-- instance, latency, outcome), so a million calls cost four arrays, not
-- a million tables. A call's time is when it started: an events file's
-- "done" event is logged at the end (t - latency), an nginx try starts
-- after the tries before it ($msec - $request_time + their times).
--
-- Outcomes are a small closed set: "success", "failure", "timeout", and
-- "http NNN" for an nginx try answered 500..599, so no input can make
-- the set grow. Lines that say nothing usable are counted and skipped,
-- as `fusebox report` does; the limits (line length, instances, calls)
-- are the options below.

local core = select(2, ...)
local base = core.import "fusebox.base"
local ffi = require "ffi"
local json_decode = core.json_decode
local scan_line, C, cast = base.api.trace_scan_line, ffi.C, ffi.cast
local PARSE, DONE, OTHER, BLANK = C.FB_TRACE_PARSE, C.FB_TRACE_DONE, C.FB_TRACE_OTHER, C.FB_TRACE_BLANK
local O_T, O_LAT, O_PORT, O_OK = C.FB_TRACE_T, C.FB_TRACE_LATENCY, C.FB_TRACE_PORT, C.FB_TRACE_OK
local O_HOST, O_HOST_LEN = C.FB_TRACE_HOST, C.FB_TRACE_HOST_LEN
local O_SERVICE, O_SERVICE_LEN = C.FB_TRACE_SERVICE, C.FB_TRACE_SERVICE_LEN
local scanned = ffi.new("double[?]", C.FB_TRACE_OUT)
local timed_out = base.timed_out
local format, type, tostring, tonumber, error = string.format, type, tostring, tonumber, error
local find, sub, byte = string.find, string.sub, string.byte
local huge = math.huge
local pairs, ipairs, sort = pairs, ipairs, table.sort

local M = {}

M.defaults = { max_line = 65536, max_instances = 10000, max_calls = 10000000 }
local FIRST = 10 -- line numbers kept per kind of bad line
local CHUNK = 65536

-- --------------------------------------------------------- the trace

local function new_trace(path, fmt, o)
  return {
    path = path, format = fmt, n = 0,
    t = {}, inst = {}, latency = {}, outcome = {}, -- the calls, by column
    instances = {}, index = {},                     -- "host:port" -> i
    outcomes = { "success" }, outcome_index = { success = 1 },
    requests = fmt == "nginx" and {} or nil,        -- first call of each request
    t0 = huge, t1 = -huge,
    lines = 0, skipped = 0, bad = {}, first_bad = {},
    limits = o,
  }
end

local function skip(tr, why, lineno)
  tr.skipped = tr.skipped + 1
  tr.bad[why] = (tr.bad[why] or 0) + 1
  local first = tr.first_bad[why]
  if not first then first = {}; tr.first_bad[why] = first end
  if #first < FIRST then first[#first + 1] = lineno end
end

local function limit(tr, lineno, what, option)
  error(format("trace.read: %s line %d: more than %d %s (the %s option)", tr.path, lineno,
    tr.limits[option], what, option), 0)
end

local function instance_of(tr, host, port, service, lineno)
  local name = (find(host, ":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
  local i = tr.index[name]
  if i then return i end
  i = #tr.instances + 1
  if i > tr.limits.max_instances then limit(tr, lineno, "instances", "max_instances") end
  tr.instances[i] = { name = name, host = host, port = port, service = service }
  tr.index[name] = i
  return i
end

-- instance_of through a cache by host, then port (per read, so no name
-- is made per call): most calls name an instance seen before.
local function instance_at(tr, hosts, host, port, service, lineno)
  local ports = hosts[host]
  local i = ports and ports[port]
  if i then return i end
  i = instance_of(tr, host, port, service, lineno)
  if not ports then ports = {}; hosts[host] = ports end
  ports[port] = i
  return i
end

local function outcome_of(tr, name)
  local k = tr.outcome_index[name]
  if k then return k end
  k = #tr.outcomes + 1
  tr.outcomes[k] = name
  tr.outcome_index[name] = k
  return k
end

local function add_call(tr, t, i, latency, outcome, lineno)
  local n = tr.n + 1
  if n > tr.limits.max_calls then limit(tr, lineno, "calls", "max_calls") end
  tr.n = n
  tr.t[n], tr.inst[n], tr.latency[n], tr.outcome[n] = t, i, latency, outcome
  if t < tr.t0 then tr.t0 = t end
  if t > tr.t1 then tr.t1 = t end
  return n
end

-- --------------------------------------------------- the events file

local function finite(x) return type(x) == "number" and x == x and x > -huge and x < huge end

local function valid_port(p) return type(p) == "number" and p >= 1 and p <= 65535 and p % 1 == 0 end

-- One line of an events file; only "done" events make calls. Most lines
-- are read in C (src/trace.c, fb_trace_scan_line) where the chunk read
-- holds them, never made Lua strings: a done event exactly as fusebox
-- writes it (keys sorted, plain strings, JSON numbers), or another kind's
-- event ({"t":... without "done"), passed over unparsed. Any other line
-- goes through the JSON parser.
local function parsed_line(tr, hosts, line, lineno)
  local e = json_decode(line)
  if type(e) ~= "table" then return skip(tr, "not_json", lineno) end
  if not finite(e.t) or type(e.kind) ~= "string" then return skip(tr, "bad_event", lineno) end
  if e.kind ~= "done" then return end
  local host, lat = e.host, e.latency
  if type(host) ~= "string" or host == "" or not valid_port(e.port) or type(e.ok) ~= "boolean"
    or not finite(lat) or lat < 0 then
    return skip(tr, "bad_event", lineno)
  end
  local service = type(e.service) == "string" and e.service or nil
  if tr.service and service ~= tr.service then return end
  local outcome = 1
  if not e.ok then outcome = outcome_of(tr, timed_out(e.error) and "timeout" or "failure") end
  add_call(tr, e.t - lat, instance_at(tr, hosts, host, e.port, service, lineno), lat, outcome, lineno)
end

-- The done line at s[pos..], as the scanner read it into `scanned`.
local function scanned_done(tr, hosts, s, pos, lineno)
  local o = scanned
  local at = pos + o[O_HOST]
  local host = sub(s, at, at + o[O_HOST_LEN] - 1)
  local service = nil
  if o[O_SERVICE] >= 0 then
    at = pos + o[O_SERVICE]
    service = sub(s, at, at + o[O_SERVICE_LEN] - 1)
  end
  if tr.service and service ~= tr.service then return end
  local lat = o[O_LAT]
  add_call(tr, o[O_T] - lat, instance_at(tr, hosts, host, o[O_PORT], service, lineno), lat,
    o[O_OK] == 1 and 1 or outcome_of(tr, "failure"), lineno)
end

-- The line of len bytes at s[pos..] (the chunk read, or a line of its own).
local function events_line(tr, hosts, s, pos, len, lineno)
  local kind = scan_line(cast("const char *", s) + (pos - 1), len, scanned)
  if kind == BLANK then return end
  tr.lines = tr.lines + 1
  if kind == DONE then return scanned_done(tr, hosts, s, pos, lineno) end
  if kind == OTHER then return end
  local line = sub(s, pos, pos + len - 1)
  if byte(line, -1) == 13 then line = sub(line, 1, -2) end
  return parsed_line(tr, hosts, line, lineno)
end

-- ------------------------------------------------------ nginx's log

-- The log_format (README.md, "Traces"; examples/nginx/nginx.conf):
--   log_format fusebox_trace '$msec $request_time "$upstream_addr" '
--                            '"$upstream_status" "$upstream_response_time"';
-- A request nginx tried on several peers lists them all, ", " between
-- tries and " : " between upstream groups (an internal redirect).
local NGINX = '^(%d+%.?%d*) (%d+%.?%d*) "([^"]*)" "([^"]*)" "([^"]*)"'

-- Splits "a, b : c" into { "a", "b", "c" }.
local function tries(s)
  local out, pos = {}, 1
  while true do
    local a, b = find(s, "%s*[,:]%s+", pos)
    if a == nil then out[#out + 1] = sub(s, pos); return out end
    out[#out + 1] = sub(s, pos, a - 1)
    pos = b + 1
    if #out > 64 then return nil end
  end
end

-- "host:port" or "[v6]:port" -> host, port; nil for an upstream's name
-- (nginx logs it when no peer was live) or a unix: socket.
local function address(a)
  local h, p
  if byte(a, 1) == 91 then h, p = a:match("^%[([^%]]+)%]:(%d+)$") -- [v6]:port
  else
    local c = find(a, ":", 1, true)
    if c and find(a, ":", c + 1, true) == nil and find(a, "^%d+$", c + 1) then
      h, p = sub(a, 1, c - 1), sub(a, c + 1)
    end
  end
  p = tonumber(p)
  if h == nil or h == "" or h == "unix" or not valid_port(p) then return nil end
  return h, p
end

local function status_outcome(tr, status)
  local code = tonumber(status)
  if code == nil then return outcome_of(tr, "failure") end -- "-": no answer
  if code == 504 then return outcome_of(tr, "timeout") end
  if code >= 500 and code <= 599 then return outcome_of(tr, "http " .. code) end
  return 1 -- the instance answered: a 4xx is the client's
end

local function nginx_line(tr, hosts, line, lineno)
  local _, _, msec, rtime, addrs, statuses, times = find(line, NGINX)
  if msec == nil then return skip(tr, "bad_line", lineno) end
  msec, rtime = tonumber(msec), tonumber(rtime)
  if addrs == "-" or addrs == "" then return skip(tr, "no_upstream", lineno) end
  if find(addrs, " ", 1, true) == nil and find(statuses, " ", 1, true) == nil
    and find(times, " ", 1, true) == nil then -- one try: most lines, no lists made
    local lat = tonumber(times) or 0
    if lat < 0 or lat ~= lat or lat == huge then return skip(tr, "bad_tries", lineno) end
    local host, port = address(addrs)
    if not host then
      tr.bad.no_instance = (tr.bad.no_instance or 0) + 1
      return
    end
    tr.requests[#tr.requests + 1] = add_call(tr, msec - rtime,
      instance_at(tr, hosts, host, port, nil, lineno), lat, status_outcome(tr, statuses), lineno)
    return
  end
  local a, s, l = tries(addrs), tries(statuses), tries(times)
  if not a or not s or not l or #a ~= #s or #a ~= #l then return skip(tr, "bad_tries", lineno) end
  local t, first = msec - rtime, nil
  for k = 1, #a do
    local lat = tonumber(l[k]) or 0
    if lat < 0 or lat ~= lat or lat == huge then return skip(tr, "bad_tries", lineno) end
    local host, port = address(a[k])
    if host then
      local n = add_call(tr, t, instance_at(tr, hosts, host, port, nil, lineno), lat,
        status_outcome(tr, s[k]), lineno)
      first = first or n
    else
      tr.bad.no_instance = (tr.bad.no_instance or 0) + 1
    end
    t = t + lat
  end
  if first then tr.requests[#tr.requests + 1] = first end
end

-- ----------------------------------------------------------- reading

-- A line too long to read is a line, and skipped: tr.lines counts it.
local function too_long(tr, lineno)
  tr.lines = tr.lines + 1
  skip(tr, "too_long", lineno)
end

-- Calls fn(tr, s, pos, len, lineno) for each line of f: len bytes at
-- s[pos..], s the chunk read (most lines) or a line of its own (one the
-- chunks cut, or the last without a newline).
local function each_line(f, tr, max_line, fn)
  local rest, lineno, long = "", 0, false
  while true do
    local chunk = f:read(CHUNK)
    if chunk == nil then break end
    local pos = 1
    while true do
      local nl = find(chunk, "\n", pos, true)
      if nl == nil then
        if not long then
          rest = rest .. sub(chunk, pos)
          if #rest > max_line then rest, long = "", true end
        end
        break
      end
      lineno = lineno + 1
      if long then
        long = false
        too_long(tr, lineno)
      elseif rest == "" then
        if nl - pos > max_line then too_long(tr, lineno)
        else fn(tr, chunk, pos, nl - pos, lineno) end
      else
        local line = rest .. sub(chunk, pos, nl - 1)
        rest = ""
        if #line > max_line then too_long(tr, lineno)
        else fn(tr, line, 1, #line, lineno) end
      end
      pos = nl + 1
    end
  end
  if long then lineno = lineno + 1; too_long(tr, lineno)
  elseif rest ~= "" then lineno = lineno + 1; fn(tr, rest, 1, #rest, lineno) end
  return lineno
end

-- The reader of a format, with its own cache of instances: events lines
-- as they lie in the chunk; an nginx line made a string, less a trailing
-- CR, blank ones not counted.
local function reader(fmt)
  local hosts = {}
  if fmt == "events" then
    return function(tr, s, pos, len, lineno) return events_line(tr, hosts, s, pos, len, lineno) end
  end
  return function(tr, s, pos, len, lineno)
    local line = (pos == 1 and len == #s) and s or sub(s, pos, pos + len - 1)
    if byte(line, -1) == 13 then line = sub(line, 1, -2) end
    if line == "" or not find(line, "%S") then return end
    tr.lines = tr.lines + 1
    return nginx_line(tr, hosts, line, lineno)
  end
end

local READ_OPTIONS = { format = true, service = true, max_line = true, max_instances = true,
  max_calls = true }

local function options(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    base.argerror(2, "read", "options must be a table, got " .. type(opts), 1)
  end
  local o = {}
  for k, v in pairs(opts) do
    if not READ_OPTIONS[k] then
      base.argerror(2, "read", format("unknown option '%s' (known: format, max_calls, "
        .. "max_instances, max_line, service)", tostring(k)), 1)
    end
    o[k] = v
  end
  if o.format ~= nil and o.format ~= "events" and o.format ~= "nginx" then
    base.argerror(2, "read", "format must be \"events\" or \"nginx\", got " .. tostring(o.format), 1)
  end
  if o.service ~= nil and type(o.service) ~= "string" then
    base.argerror(2, "read", "service must be a string, got " .. type(o.service), 1)
  end
  for k, default in pairs(M.defaults) do
    local v = o[k]
    if v == nil then o[k] = default
    elseif type(v) ~= "number" or v < 1 or v % 1 ~= 0 or v > 2 ^ 40 then
      base.argerror(2, "read", format("%s must be a positive integer, got %s", k, tostring(v)), 1)
    end
  end
  return o
end

-- The format of a file whose first bytes are head: JSON lines start with {.
local function detect(head)
  local c = head and head:match("^%s*(.)")
  return c == "{" and "events" or "nginx"
end

-- fb.trace.read(path [, {format = "events" | "nginx", service =,
-- max_line = 65536, max_instances = 10000, max_calls = 1e7}]) -> trace
function M.read(path, opts)
  if type(path) ~= "string" then
    base.argerror(1, "read", "path must be a string, got " .. type(path))
  end
  local o = options(opts)
  local f, err = io.open(path, "rb")
  if not f then error(format("trace.read: cannot read '%s': %s", path, tostring(err)), 2) end
  local fmt = o.format
  if fmt == nil then
    fmt = detect(f:read(256))
    f:seek("set", 0)
  end
  local tr = new_trace(path, fmt, o)
  tr.service = o.service
  local ok, e = pcall(each_line, f, tr, o.max_line, reader(fmt))
  f:close()
  if not ok then error(e, 2) end
  if tr.n == 0 then tr.t0, tr.t1 = 0, 0 end
  return tr
end

-- fb.trace.summary(trace) -> "N calls on K instances over S s; skipped ..."
function M.summary(tr)
  local kinds = {}
  for why in pairs(tr.bad) do kinds[#kinds + 1] = why end
  sort(kinds)
  local parts = {}
  for _, why in ipairs(kinds) do
    local first = tr.first_bad[why]
    parts[#parts + 1] = format("%d %s%s", tr.bad[why], why,
      first and " (lines " .. table.concat(first, ", ") .. ")" or "")
  end
  return format("%d calls on %d instances over %.3f s, %d lines, %d skipped%s", tr.n,
    #tr.instances, tr.t1 - tr.t0, tr.lines, tr.skipped,
    #parts > 0 and ": " .. table.concat(parts, "; ") or "")
end

return M
