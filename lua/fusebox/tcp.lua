-- fusebox/tcp.lua -- fb.tcp: coroutine-style TCP on the real clock.
--
-- The C primitives (src/lua_tcp.c) return `true, results...` when done,
-- or `false` when their wait timed out; these wrappers turn a timeout
-- into `nil, "timeout"` after cancelling, so failures are values:
-- sock:read() -> data | nil, "closed" | nil, "timeout" | nil, err.

local core = select(2, ...)
local base = core.import "fusebox.base"
local tls = core.import "fusebox.tls"
local host = core.import "fusebox.host"
local dns = core.import "fusebox.dns"
local now = base.now
local argerror = base.argerror
local format, type, tostring, error = string.format, type, tostring, error

local sock = core.tcp_mt.methods
core.tcp_mt.__index = sock
core.tcp_mt.__tostring = function(self)
  return format("fusebox.tcp %s(%p)", self:closed() and "closed " or "", self)
end

local M = {}

-- argerror for the check_ helpers below: they are called by an API
-- function, so the error points one level further out, at its caller.
local function bad(n, fname, msg)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 4)
end

-- Raises at the caller's caller when the clock is virtual: real sockets
-- would make a simulation's outcome depend on the machine.
function M.check_real(fname, level)
  if core.virtual_time() then
    error(fname .. " is not available under --virtual-time", level or 3)
  end
end

-- check_real, and raises at the caller's caller unless fusebox's own
-- sockets work under the installed scheduler (inside nginx they do not:
-- nginx does the I/O). Through M.check_real, so that what stands in for
-- it (the fuzz targets' in-memory sockets) stands in here too.
function M.check_io(fname)
  M.check_real(fname, 4)
  local why = host.io(fname)
  if why then error(why, 3) end
end

-- Raises unless opts (argument n) is nil or a table of allowed keys.
function M.check_options(opts, n, fname, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    bad(n, fname, "options must be a table, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not allowed[k] then
      bad(n, fname, format("unknown option '%s'", tostring(k)))
    end
  end
  return opts
end

function M.check_timeout(v, n, fname, what)
  if v == nil then return nil end
  if type(v) ~= "number" or not (v >= 0) or v == math.huge then
    bad(n, fname, format("%s must be a non-negative number of seconds, got %s",
      what or "timeout", tostring(v)))
  end
  return v
end

-- Argument numbers: nh for the host, np for the port.
function M.check_host_port(host, port, nh, np, fname)
  if type(host) ~= "string" or host == "" then
    bad(nh, fname, "host must be a non-empty string, got " .. tostring(host))
  end
  if type(port) ~= "number" or port ~= port or port < 0 or port > 65535 or port % 1 ~= 0 then
    bad(np, fname, "port must be 0..65535, got " .. tostring(port))
  end
end

local CONNECT_OPTIONS = { timeout = true, tls = true }

-- fb.tcp.connect(host, port [, {timeout=, tls=}]) -> sock | nil, err. host
-- is an IP address ("::1" or "[::1]") or a name (fusebox.dns resolves it:
-- nil, "resolve failed: ..." when it cannot); each of a name's addresses
-- is tried in turn until one connects, each with an equal share of what
-- is left of timeout, which bounds the whole connect, lookup included.
-- All failing: the first address's error (the preferred one's). With tls
-- (fusebox/tls.lua), the handshake is done before it returns (bounded by
-- tls.handshake_timeout, else timeout, else 10 s), naming and verifying
-- host as given, not the address it resolved to, and reads and writes
-- carry plaintext.
function M.connect(host, port, opts)
  M.check_io("tcp.connect")
  M.check_host_port(host, port, 1, 2, "connect")
  opts = M.check_options(opts, 3, "connect", CONNECT_OPTIONS)
  local timeout = M.check_timeout(opts.timeout, 3, "connect")
  local secure = tls.client(opts.tls, 3, "connect")
  local deadline = timeout and now() + timeout
  local addrs, err = dns.lookup(host, timeout)
  if not addrs then return nil, err end
  local first
  for i = 1, #addrs do
    local t = deadline and (deadline - now()) / (#addrs - i + 1)
    if t and t <= 0 then first = first or "timeout"; break end
    local s = core.tcp_new()
    local woke, ok
    woke, ok, err = s:_connect(addrs[i], port, t)
    if woke and ok then
      if secure then
        local left = deadline and deadline - now()
        return tls.handshake(s, secure, host, secure.handshake_timeout or left)
      end
      return s
    end
    s:close()
    first = first or (woke and err or "timeout")
  end
  return nil, first
end

-- sock:read([timeout]) -> the next chunk of data | nil, err
function sock:read(timeout)
  local woke, data, err = self:_read(timeout)
  if woke then return data, err end
  self:_cancel_read()
  return nil, "timeout"
end

-- sock:write(data [, timeout]) -> true | nil, err; a write that times
-- out closes the socket (how much of data went out is unknown).
function sock:write(data, timeout)
  local woke, ok, err = self:_write(data, timeout)
  if woke then return ok, err end
  self:close()
  return nil, "timeout"
end

-- sock:watch() -> true when data or the end of the stream is already
-- there; else false, and from now on the calling coroutine, parked in a
-- wait of its own (fb.wait), wakes with "data" or "closed" as soon as
-- either arrives; the data stays for the next read. One wake ends the
-- watch; sock:unwatch() ends it earlier and must come before the
-- coroutine parks on anything else.
sock.watch, sock.unwatch = sock._watch, sock._unwatch

-- sock:port() -> the local port
sock.port = sock._port

local LISTEN_OPTIONS = { host = true, port = true, backlog = true, handler = true, tls = true }

-- fb.tcp.listen{host="127.0.0.1", port=0, handler=fn [, backlog=511, tls=]}
-- -> server | nil, err: fn(sock) runs as a new coroutine per connection;
-- server:port(), server:close(). Loopback unless told otherwise. With
-- tls (fusebox/tls.lua) fn gets the connection after its handshake; one
-- that fails or times out is closed without fn.
function M.listen(opts)
  M.check_io("tcp.listen")
  opts = M.check_options(opts, 1, "listen", LISTEN_OPTIONS)
  local host, port = opts.host or "127.0.0.1", opts.port or 0
  M.check_host_port(host, port, 1, 1, "listen")
  local handler = opts.handler
  if type(handler) ~= "function" then
    argerror(1, "listen", "handler must be a function, got " .. type(handler))
  end
  local secure = tls.server(opts.tls, 1, "listen")
  if secure then
    local plain = handler
    handler = function(s)
      if tls.handshake(s, secure) then return plain(s) end
    end
  end
  return core.tcp_listen(host, port, opts.backlog or 511, handler)
end

return M
