-- fusebox/http.lua -- fb.http: an HTTP/1.1 client and a small server on
-- fb.tcp, parsing with http-parser (src/lua_http.c).
--
-- Client: fb.http.request{...} -> status, headers, body | nil, err, on
-- keep-alive connections from a pool (fusebox/pool.lua; fb.http.pool),
-- with a timeout per phase (connect, first byte) within one for the whole.
-- Server: fb.http.serve{...} runs handler(req) in the connection's
-- coroutine (it may fb.sleep), keeps connections alive, answers
-- pipelined requests in order, and bounds what a client can hold: a read
-- timeout per read, a deadline per request, a body limit, a connection
-- limit, and the parser's bounds on the URL and header fields (see
-- src/lua_http.c), each refused with its status (413, 414, 431, ...).
-- Neither side ever writes a header that could split the message: names
-- are tokens, values have no CR, LF or NUL.

local core = select(2, ...)
local base = core.import "fusebox.base"
local tcp = core.import "fusebox.tcp"
local context = core.import "fusebox.context" -- deadlines: the fusebox-deadline header
local tls = core.import "fusebox.tls"
local lifecycle = core.import "fusebox.lifecycle"
local limiter = core.import "fusebox.limiter"
local pool = core.import "fusebox.pool"
local argerror, now = base.argerror, base.now
local format, concat, type, tostring, pairs = string.format, table.concat, type, tostring, pairs
local find, sub, lower, byte = string.find, string.sub, string.lower, string.byte
local xpcall, traceback, getmetatable, max = xpcall, debug.traceback, getmetatable, math.max

local M = {}

local REASONS = {
  [200] = "OK", [201] = "Created", [204] = "No Content", [301] = "Moved Permanently",
  [302] = "Found", [304] = "Not Modified", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [408] = "Request Timeout", [409] = "Conflict", [413] = "Content Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type", [422] = "Unprocessable Content",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}

-- Statuses whose response has no body (RFC 9110 15.3.5, 15.4.5).
local NO_BODY = { [204] = true, [304] = true }

-- The reason headers cannot be sent as they are, or nil: every name a
-- token, every value a string or number free of CR, LF and NUL (which
-- would end the field early and let the rest pose as another).
local function bad_headers(headers)
  if headers == nil then return nil end
  if type(headers) ~= "table" then return "headers must be a table, got " .. type(headers) end
  for k, v in pairs(headers) do
    if type(k) ~= "string" or not find(k, "^[%w!#$%%&'*+%-.^_`|~]+$") then
      return format("header name '%s' is not a token", tostring(k))
    end
    if type(v) ~= "string" and type(v) ~= "number" then
      return format("header '%s' must be a string or number, got %s", k, type(v))
    end
    if find(tostring(v), "[\r\n%z]") then
      return format("header '%s' has a CR, LF or NUL in its value", k)
    end
  end
  return nil
end

-- Appends "Name: value\r\n" lines to out, except the framing headers
-- this module writes itself.
local function add_headers(out, headers)
  if headers == nil then return end
  for k, v in pairs(headers) do
    local lk = lower(k)
    if lk ~= "content-length" and lk ~= "connection" and lk ~= "host"
        and lk ~= "transfer-encoding" then
      out[#out + 1] = k .. ": " .. tostring(v) .. "\r\n"
    end
  end
end

-- Reads from sock into parser until a message completes. input holds
-- the bytes read but not parsed yet: input.buf from input.pos on (an
-- index, so pipelined messages are not copied once each), and what
-- timeout_of(input) needs to say how long the next read may wait (->
-- seconds | nil, why): a table that lives as long as its connection, so
-- a message costs no closure. Returns msg | nil, err [, status]: a
-- status when the parser refused the message (the one to answer it
-- with), none when the connection failed.
local function read_message(sock, parser, input, timeout_of)
  while true do
    if input.pos <= #input.buf then
      local used, msg, status = parser:feed(input.buf, input.pos)
      if not used then return nil, msg, status end
      input.pos = input.pos + used
      if msg then return msg end
    end
    local t, why = timeout_of(input)
    if not t then return nil, why end
    local data, err = sock:read(t)
    if not data then
      if err ~= "closed" then return nil, err end
      local msg, perr, status = parser:finish()
      if msg then return msg, true end
      return nil, perr or "closed", status
    end
    input.buf, input.pos = data, 1
  end
end

-- Option checks of request and serve: raise "bad argument #1 to 'fname'
-- (name must be ..., got v)" at their caller unless v is nil or fits.
local function shown(v) return type(v) == "string" and format("%q", v) or tostring(v) end

local function check_size(v, fname, name) -- bytes; math.huge: no limit
  if v ~= nil and (type(v) ~= "number" or not (v >= 0) or v % 1 ~= 0 and v ~= math.huge) then
    error(format("bad argument #1 to '%s' (%s must be a non-negative integer, got %s)",
      fname, name, shown(v)), 3)
  end
end

local function check_count(v, fname, name)
  if v ~= nil and (type(v) ~= "number" or not (v >= 1) or v % 1 ~= 0) then
    error(format("bad argument #1 to '%s' (%s must be a positive integer, got %s)",
      fname, name, shown(v)), 3)
  end
end

local function check_seconds(v, fname, name)
  if v ~= nil and (type(v) ~= "number" or not (v > 0) or v == math.huge) then
    error(format("bad argument #1 to '%s' (%s must be a positive number, got %s)",
      fname, name, shown(v)), 3)
  end
end

-- ---------------------------------------------------------------- client

local REQUEST_OPTIONS = {
  method = true, url = true, instance = true, path = true, headers = true,
  body = true, timeout = true, connect_timeout = true, first_byte_timeout = true,
  max_body = true, pool = true, tls = true,
}

local MAX_BODY = 64 * 1024 * 1024 -- request's default max_body

-- Methods known to be upper-case tokens: checked by a lookup, any other
-- by a pattern.
local TOKEN_METHODS = { GET = true, HEAD = true, POST = true, PUT = true, DELETE = true,
  PATCH = true, OPTIONS = true }

-- Methods a request may be sent twice for (RFC 9110 9.2.2): a reused
-- connection the server had closed is retried once for these alone.
local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }

-- What a socket says when its peer closed it before answering.
local PEER_CLOSED = { closed = true, ["connection reset by peer"] = true, ["broken pipe"] = true }

-- Targets found free of spaces and control characters (which would end
-- the request line early), so the few a client sends again and again
-- cost a lookup, not a pattern match (which also stops LuaJIT's trace):
-- those up to 256 bytes, up to 1,024 of them (then it starts over).
local clean_targets, nclean = {}, 0
local function clean_target(target)
  if clean_targets[target] then return true end
  if find(target, "[%c ]") then return false end
  if #target <= 256 then
    if nclean >= 1024 then clean_targets, nclean = {}, 0 end
    clean_targets[target], nclean = true, nclean + 1
  end
  return true
end

-- host, port, target, scheme ("http" or "https") of a request | nil, why
-- (a bad argument).
local function target_of(opts)
  local scheme, host, port, target, https
  if opts.url ~= nil then
    if type(opts.url) ~= "string" then return nil, "url must be a string, got " .. type(opts.url) end
    scheme, host, port, target = core.http_parse_url(opts.url)
    scheme = scheme and lower(scheme)
    if scheme ~= "http" and scheme ~= "https" then
      return nil, format("url must be http[s]://host[:port]/path, got '%s'", opts.url)
    end
    https = scheme == "https"
    if opts.tls and not https then return nil, "tls is for https:// urls" end
    if opts.tls == false and https then return nil, "an https:// url needs tls (true or a table), got false" end
    port = port or (https and 443 or 80)
  else
    local inst = opts.instance
    if type(inst) ~= "table" or type(inst.host) ~= "string" or type(inst.port) ~= "number" then
      return nil, "url or instance ({host=, port=}) expected"
    end
    target = opts.path or "/"
    if type(target) ~= "string" or byte(target) ~= 47 then -- "/"
      return nil, "path must be a string starting with '/', got " .. tostring(target)
    end
    host, port, https = inst.host, inst.port, opts.tls ~= nil and opts.tls ~= false
  end
  if not clean_target(target) then
    return nil, "path must not contain spaces or control characters"
  end
  return host, port, target, https and "https" or "http"
end

-- The Host header's value: host:port, an IPv6 literal in brackets.
local function authority_of(host, port)
  if find(host, ":", 1, true) then return "[" .. host .. "]:" .. port end
  return host .. ":" .. port
end

-- The caller's header lines (add_headers), "" for none.
local function header_lines(headers)
  if headers == nil then return "" end
  local out = {}
  add_headers(out, headers)
  return concat(out)
end

-- The request, in one concatenation (one string made, nothing else):
-- close says the request asks the server to close after answering (the
-- connection's last request, or one that is not pooled).
local function build_request(method, authority, target, fields, body, close)
  local length = ""
  if body ~= "" or (method ~= "GET" and method ~= "HEAD") then
    length = "Content-Length: " .. #body .. "\r\n"
  end
  return method .. " " .. target .. " HTTP/1.1\r\nHost: " .. authority .. "\r\n" .. fields .. length
    .. (close and "Connection: close\r\n\r\n" or "\r\n") .. body
end

-- Whether the caller's headers ask for Connection: close.
local function asks_close(headers)
  if headers == nil then return false end
  for k, v in pairs(headers) do
    if lower(k) == "connection" and find(lower(tostring(v)), "close", 1, true) then return true end
  end
  return false
end

-- Reads the final response: interim 1xx ones (100 Continue, 103 Early
-- Hints) are skipped; a protocol switch was never asked for. A status
-- outside 100..599 is refused, and so is an interim one the end of the
-- stream completed (nothing can follow it: reading on would loop).
-- Returns msg, ended (the end of the stream delimited it) | nil, err.
local function read_response(sock, parser, input, timeout_of)
  local msg, ended
  repeat
    msg, ended = read_message(sock, parser, input, timeout_of)
    if not msg then return nil, ended end
    if msg.status < 100 or msg.status > 599 then
      return nil, format("bad status %d", msg.status)
    end
    if msg.status == 101 then return nil, "unexpected 101 Switching Protocols" end
    if ended and msg.status < 200 then return nil, "closed after an interim response" end
  until msg.status >= 200
  return msg, ended
end

-- ------------------------------------------------------------ the pool

-- Pool options: each default, and what it bounds (README: connection pool).
local POOL_DEFAULTS = {
  max_idle_per_host = 32, -- idle connections kept per scheme://host:port
  max_idle = 256,         -- idle connections kept in all
  idle_timeout = 15,      -- seconds; below common servers' own (fusebox serve 30, nginx 75)
  max_requests = 1000,    -- requests per connection, then it is closed (nginx's keepalive_requests)
}

local function with_defaults(opts)
  local o = {}
  for k, def in pairs(POOL_DEFAULTS) do
    if opts[k] == nil then o[k] = def else o[k] = opts[k] end
  end
  return o
end

-- fb.http.pool{max_idle_per_host=32, max_idle=256, idle_timeout=15,
-- max_requests=1000} -> a pool for request{pool=}: pool:stats(),
-- pool:close(). fb.http.default_pool serves every request that names none.
function M.pool(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then argerror(1, "pool", "options table expected, got " .. type(opts)) end
  for k in pairs(opts) do
    if POOL_DEFAULTS[k] == nil then argerror(1, "pool", format("unknown option '%s'", tostring(k))) end
  end
  check_count(opts.max_idle_per_host, "pool", "max_idle_per_host")
  check_count(opts.max_idle, "pool", "max_idle")
  check_seconds(opts.idle_timeout, "pool", "idle_timeout")
  check_count(opts.max_requests, "pool", "max_requests")
  return pool.new(with_defaults(opts))
end

M.default_pool = pool.new(with_defaults({}))

-- The pool key: connections under one key are interchangeable. A TLS
-- connection adds what its handshake depended on (server name, CA,
-- client certificate), so a plain and a TLS one, or two TLS ones made
-- with other settings, never share a key.
local function pool_key(scheme, host, port, secure)
  local key = scheme .. "://" .. host .. ":" .. port
  if not secure then return key end
  -- the context entry stands for the CA, certificate and verify settings
  -- (tls.lua caches one per set of files); the name is sent and checked
  return key .. " " .. tostring(secure.entry) .. " " .. (secure.server_name or host)
end

-- A new connection, within the request's time: conn = {sock=, key=,
-- requests=}; exchange adds the rest (its parser, its input: see
-- there). The connect phase has its own bound when connect_timeout is
-- given, the TLS handshake (secure: tls.client's) tls.handshake_timeout.
local function open(p, key, host, port, deadline, connect_timeout, secure)
  local t = deadline - now()
  if t <= 0 then return nil, "timeout" end
  local phase = connect_timeout and connect_timeout < t
  local sock, err = tcp.connect(host, port, { timeout = phase and connect_timeout or t })
  if not sock then return nil, (phase and err == "timeout") and "connect timeout" or err end
  if secure then -- the handshake: within the request's time, and its own bound
    t = deadline - now()
    if secure.handshake_timeout and secure.handshake_timeout < t then t = secure.handshake_timeout end
    sock, err = tls.handshake(sock, secure, host, t > 0 and t or 0)
    if not sock then return nil, err end
  end
  if p then p.opened = p.opened + 1 end
  return { sock = sock, key = key, requests = 0 }
end

-- How long the next read of a response may wait (read_message's
-- timeout_of; conn is its input): what is left of the request's time,
-- or of first_byte_timeout while no byte came. conn.bound names the one
-- it is, for a read that times out.
local function response_wait(conn)
  local t0 = now()
  local t, bound = conn.deadline - t0, "timeout"
  local first_by = conn.first_by
  if first_by and conn.buf == "" and first_by - t0 < t then
    t, bound = first_by - t0, "first byte timeout"
  end
  conn.bound = bound
  if t <= 0 then return nil, bound end
  return t
end

-- One request and its response on conn. Returns msg, reusable | nil,
-- err, retryable: retryable when the peer closed the connection before
-- a byte of the response arrived (it may never have seen the request).
-- reusable when the response was read to its end by its framing, both
-- sides kept the connection alive and nothing followed the response.
-- conn keeps its parser from one exchange to the next and is the input
-- of read_message (buf, pos, and deadline, first_by, bound for
-- response_wait): a request on a pooled connection allocates neither.
-- o: the request's options (first_byte_timeout, max_body).
local function exchange(conn, req, o, head, deadline)
  local sock = conn.sock
  conn.requests = conn.requests + 1
  local ok, err = sock:write(req, max(deadline - now(), 0))
  if not ok then return nil, err, PEER_CLOSED[err] end
  conn.buf, conn.pos, conn.deadline = "", 1, deadline
  conn.first_by = o.first_byte_timeout and now() + o.first_byte_timeout
  local parser, max_body = conn.parser, o.max_body or MAX_BODY
  if parser then
    parser:reset(max_body, head)
  else
    parser = core.http_parser("response", max_body, head)
    conn.parser = parser
  end
  local msg, ended = read_response(sock, parser, conn, response_wait)
  if not msg then
    if ended == "timeout" then ended = conn.bound end
    return nil, ended, conn.buf == "" and PEER_CLOSED[ended]
  end
  local reusable = not ended and msg.keep_alive and conn.pos > #conn.buf
  conn.buf = "" -- an idle connection holds no input, and its parser
  parser:reset(0) -- no big buffer (src/lua_http.c)
  return msg, reusable
end

-- Runs a request (o: its options, request's checks done; the rest as
-- request worked them out; p: its pool or false) on a pooled connection
-- or a new one, retrying once on a new connection when a reused one
-- turns out closed and the method is idempotent. No table of its own:
-- a pooled request allocates its request string and its response alone.
-- -> msg | nil, err
local function send(o, p, secure, method, scheme, host, port, target, headers, body, deadline)
  local key = p and pool_key(scheme, host, port, secure)
  local conn = p and p:get(key) or nil
  local reused = conn ~= nil
  local err, retryable
  if reused then
    p.reused = p.reused + 1
  else
    conn, err = open(p, key, host, port, deadline, o.connect_timeout, secure)
    if not conn then return nil, err end
  end
  local authority, fields = authority_of(host, port), header_lines(headers)
  local close, head = asks_close(headers), method == "HEAD"
  while true do
    local last = not p or close or conn.requests + 1 >= p.max_requests
    local req = build_request(method, authority, target, fields, body, last)
    local msg, keep
    msg, keep, retryable = exchange(conn, req, o, head, deadline)
    if msg then
      if keep and not last then p:put(conn) else conn.sock:close() end
      return msg
    end
    err = keep
    conn.sock:close()
    if not (reused and retryable and IDEMPOTENT[method]) then return nil, err end
    reused = false
    p.retried = p.retried + 1
    conn, err = open(p, key, host, port, deadline, o.connect_timeout, secure)
    if not conn then return nil, err end
  end
end

local function check_pool(v)
  if v == nil then return M.default_pool end
  if v == false or getmetatable(v) == pool.Pool then return v end
  argerror(1, "request", "pool must be a pool (fb.http.pool) or false, got " .. type(v), 1)
end

-- fb.http.request{method="GET", url= | instance= + path=, headers=,
-- body=, timeout=10, connect_timeout=, first_byte_timeout=,
-- max_body=64 MiB, pool=fb.http.default_pool | false, tls=}
-- -> status, headers, body | nil, err.
-- Failures are values: "connection refused", "timeout", "closed", a
-- response the parser refuses ("unsupported HTTP version 9.9", "body too
-- large (limit N bytes)", ...), a TLS failure ("certificate verify
-- failed: ..."). timeout bounds the whole exchange, the TLS handshake
-- included; connect_timeout the connect ("connect timeout") and
-- first_byte_timeout the wait from the request sent to the response's
-- first byte ("first byte timeout"), each within timeout. An https://
-- url (or tls= with instance=) speaks TLS: tls is as for fb.tcp.connect
-- (fusebox/tls.lua), default true (the system's CAs, the url's host
-- verified). The connection comes from pool and goes back to it when the
-- response was read to its end and neither side said Connection: close;
-- pool=false: a new connection, closed after. A reused connection that
-- the server had closed before answering is retried once on a new one,
-- for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) only.
-- Trailers of a chunked response are not returned.
function M.request(opts)
  tcp.check_io("http.request")
  if type(opts) ~= "table" then
    argerror(1, "request", "options table expected, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not REQUEST_OPTIONS[k] then argerror(1, "request", format("unknown option '%s'", tostring(k))) end
  end
  local host, port, target, scheme = target_of(opts)
  if not host then argerror(1, "request", port) end
  local secure = scheme == "https" and tls.client(opts.tls == nil or opts.tls, 1, "request")
  local method = opts.method or "GET"
  local body = opts.body or ""
  if not TOKEN_METHODS[method] and (type(method) ~= "string" or not find(method, "^%u+$")) then
    argerror(1, "request", "method must be an upper-case token, got " .. tostring(method))
  end
  if type(body) ~= "string" then argerror(1, "request", "body must be a string, got " .. type(body)) end
  local why = bad_headers(opts.headers)
  if why then argerror(1, "request", why) end
  check_seconds(opts.timeout, "request", "timeout")
  check_seconds(opts.connect_timeout, "request", "connect_timeout")
  check_seconds(opts.first_byte_timeout, "request", "first_byte_timeout")
  check_size(opts.max_body, "request", "max_body")
  local headers, timeout = context.outgoing(opts.headers, opts.timeout or 10)
  if headers == false then return nil, timeout end
  local msg, err = send(opts, check_pool(opts.pool), secure or nil, method, scheme, host, port, target,
    headers, body, now() + timeout)
  if not msg then return nil, err end
  return msg.status, msg.headers, msg.body
end

-- ---------------------------------------------------------------- server

local SERVE_OPTIONS = {
  host = true, port = true, handler = true, max_body = true, read_timeout = true,
  request_timeout = true, max_connections = true, backlog = true, background = true,
  tls = true, on_shutdown = true, limiter = true, retry_after = true,
}

-- head: the request was HEAD, so the body is announced, not sent.
local function response(status, headers, body, keep_alive, head)
  local out = { format("HTTP/1.1 %d %s\r\n", status, REASONS[status] or "Status") }
  add_headers(out, headers)
  if not NO_BODY[status] then out[#out + 1] = "Content-Length: " .. #body .. "\r\n" end
  if not keep_alive then out[#out + 1] = "Connection: close\r\n" end
  out[#out + 1] = "\r\n"
  if not head then out[#out + 1] = body end
  return concat(out)
end

local JSON_TYPE = { ["Content-Type"] = "application/json" }

-- A protocol error ends the connection with a JSON reason.
local function refuse(sock, status, why, timeout)
  sock:write(response(status, JSON_TYPE, core.json_encode { error = why }, false), timeout)
end

-- Why a handler's answer cannot be sent, or nil.
local function unsendable(status, headers, body)
  if type(status) ~= "number" or status % 1 ~= 0 or status < 200 or status > 599 then
    return "bad status " .. tostring(status)
  end
  if NO_BODY[status] and body ~= "" then return format("status %d with a body", status) end
  return bad_headers(headers)
end

-- Runs the handler; one that raises or returns what cannot be sent
-- (a bad status, a header that would split the response) is a 500.
local function handle(srv, req, sock)
  local before = context.incoming(req)
  local ok, status, headers, body = xpcall(srv.handler, traceback, req, sock)
  context.restore(before)
  local why
  if not ok then
    why = tostring(status)
  else
    body = body == nil and "" or tostring(body)
    why = unsendable(status, headers, body)
  end
  if why then
    core.report("http handler failed", why)
    return 500, JSON_TYPE, core.json_encode { error = "internal error" }
  end
  return status, headers, body
end

local function split_target(req)
  local q = find(req.url, "?", 1, true)
  req.path = q and sub(req.url, 1, q - 1) or req.url
  req.query = q and sub(req.url, q + 1) or ""
end

-- How long a server's next read may wait (read_message's timeout_of):
-- read_timeout, within what is left of the request's time.
local function request_wait(input)
  local d = input.deadline - now()
  if d <= 0 then return nil, "timeout" end
  local t = input.read_timeout
  return d < t and d or t
end

-- Serves one connection until it ends. srv: {handler=, max_body=,
-- read_timeout=, request_timeout=, closed=}; sock: anything with
-- read(timeout) -> data | nil, err, write(data, timeout) -> true | nil,
-- err, closed() and close(), so a harness can drive it in process.
local function serve_connection(srv, sock)
  local parser = core.http_parser("request", srv.max_body)
  local input = { buf = "", pos = 1, deadline = 0, read_timeout = srv.read_timeout }
  while not sock:closed() do
    input.deadline = now() + srv.request_timeout -- idle time counts too
    local req, err, refused = read_message(sock, parser, input, request_wait)
    if not req then
      if refused then refuse(sock, refused, err, srv.read_timeout) end
      break
    end
    split_target(req)
    if srv.conns then srv.conns[sock] = true end -- busy: a shutdown lets it finish
    local status, headers, body = (srv.guard or handle)(srv, req, sock)
    local keep = req.keep_alive and not srv.closed
    local head = req.method == "HEAD"
    if not sock:write(response(status, headers, body, keep, head), srv.read_timeout) or not keep then break end
    if srv.conns then srv.conns[sock] = false end
  end
  sock:close()
end

M.serve_connection = serve_connection

local server = {}
server.__index = server

-- server:port() -> the port it listens on
function server:port() return self.listener:port() end

-- server:close(): stops listening and closes every open connection
function server:close()
  lifecycle.remove(self)
  self:shutdown()
  for sock in pairs(self.conns) do sock:close() end
end

-- server:shutdown(): the graceful close (fusebox.lifecycle): stops
-- listening, calls on_shutdown, closes the connections waiting between
-- requests; those in a request answer it with Connection: close.
function server:shutdown()
  if self.closed then return end
  self.closed = true
  lifecycle.stop_serving(self)
  self.listener:close()
  if self.on_shutdown then
    local ok, err = xpcall(self.on_shutdown, traceback)
    if not ok then core.report("http on_shutdown failed", tostring(err)) end
  end
  for sock, busy in pairs(self.conns) do
    if not busy then sock:close() end
  end
end

-- fb.http.serve{host="127.0.0.1", port=0, handler=fn, max_body=1 MiB,
-- read_timeout=10, request_timeout=30, max_connections=1024,
-- background=false (true: the server does not keep a run going), tls=,
-- on_shutdown=fn (called once when the server stops accepting, by a
-- graceful shutdown or a close, before the idle connections close: where
-- a handler parked in a long poll is told to answer)} -> server | nil,
-- err. server:shutdown() is the graceful server:close()
-- (fusebox.lifecycle; SIGTERM starts it for every server). With tls =
-- {cert_file=, key_file= [, ca_file=]} (fusebox/tls.lua) it speaks HTTPS:
-- each connection's handshake, within its slot and bounded by
-- tls.handshake_timeout (else read_timeout), comes before its first
-- request; one that fails is closed. handler(req) gets {method, url, path, query,
-- version, headers (lower-case names), trailers (the same, after a
-- chunked body), body, keep_alive, deadline (the seconds its caller
-- gave it, from fusebox-deadline; nil for none)} and returns status (200..599),
-- headers, body. A HEAD request's body is announced, never sent.
-- Its second argument is the connection, for a handler that parks (a
-- long poll): sock:watch() tells it when the client leaves or sends more
-- (fb.tcp); it must not read or write it.
-- limiter= (an fb.limiter, or its options) guards the handler: a request
-- it rejects is answered 503 with Retry-After: retry_after (whole
-- seconds, 1) without running the handler (fusebox.limiter's guard).
function M.serve(opts)
  tcp.check_io("http.serve")
  if type(opts) ~= "table" then argerror(1, "serve", "options table expected, got " .. type(opts)) end
  for k in pairs(opts) do
    if not SERVE_OPTIONS[k] then argerror(1, "serve", format("unknown option '%s'", tostring(k))) end
  end
  if type(opts.handler) ~= "function" then
    argerror(1, "serve", "handler must be a function, got " .. type(opts.handler))
  end
  check_size(opts.max_body, "serve", "max_body")
  check_seconds(opts.read_timeout, "serve", "read_timeout")
  check_seconds(opts.request_timeout, "serve", "request_timeout")
  check_count(opts.max_connections, "serve", "max_connections")
  local guard = opts.limiter
  if guard ~= nil then
    if not limiter.is_limiter(guard) then
      if type(guard) ~= "table" then
        argerror(1, "serve", "limiter must be a limiter or its options, got " .. type(guard))
      end
      local ok, l = pcall(core.limiter, guard)
      if not ok then argerror(1, "serve", "limiter: " .. (l:match("%((.*)%)$") or l)) end
      guard = l
    end
    local ra = opts.retry_after or 1
    if type(ra) ~= "number" or not (ra >= 0 and ra <= 1e9) or ra % 1 ~= 0 then
      argerror(1, "serve", "retry_after must be an integer 0..1000000000 (seconds), got " .. shown(ra))
    end
    guard = limiter.guard(guard, ra, handle)
  elseif opts.retry_after ~= nil then
    argerror(1, "serve", "retry_after applies with a limiter only")
  end
  local secure = tls.server(opts.tls, 1, "serve")
  if opts.on_shutdown ~= nil and type(opts.on_shutdown) ~= "function" then
    argerror(1, "serve", "on_shutdown must be a function, got " .. type(opts.on_shutdown))
  end
  local srv = setmetatable({
    handler = opts.handler,
    max_body = opts.max_body or 1024 * 1024,
    read_timeout = opts.read_timeout or 10,
    request_timeout = opts.request_timeout or 30,
    max_connections = opts.max_connections or 1024,
    on_shutdown = opts.on_shutdown,
    conns = {}, -- sock -> true while it is in a request, false between them
    nconns = 0,
    closed = false,
    guard = guard, -- nil: every request goes to the handler
  }, server)
  local listener, err = tcp.listen {
    host = opts.host, port = opts.port, backlog = opts.backlog,
    handler = function(sock)
      if srv.nconns >= srv.max_connections or srv.closed then sock:close(); return end
      srv.conns[sock] = false
      srv.nconns = srv.nconns + 1
      if not secure or tls.handshake(sock, secure, nil, secure.handshake_timeout or srv.read_timeout) then
        serve_connection(srv, sock)
      end
      srv.conns[sock] = nil
      srv.nconns = srv.nconns - 1
      lifecycle.connection_ended()
    end,
  }
  if not listener then return nil, err end
  if opts.background then listener:_unref() end
  srv.listener = listener
  lifecycle.add(srv, not opts.background)
  return srv
end

return M
