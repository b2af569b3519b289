-- fusebox/http.lua -- fb.http: an HTTP/1.1 client and a small server on
-- fb.tcp, parsing with http-parser (src/lua_http.c).
--
-- Client: fb.http.request{...} -> status, headers, body | nil, err; one
-- connection per request (Connection: close), so nothing lingers.
-- Server: fb.http.serve{...} runs handler(req) in the connection's
-- coroutine (it may fb.sleep), keeps connections alive, answers
-- pipelined requests in order, and bounds what a client can hold: a read
-- timeout per read, a deadline per request, a body limit, a connection
-- limit.

local core = select(2, ...)
local base = core.import "fusebox.base"
local tcp = core.import "fusebox.tcp"
local argerror, now = base.argerror, base.now
local format, concat, type, tostring, pairs = string.format, table.concat, type, tostring, pairs
local find, sub, lower = string.find, string.sub, string.lower
local xpcall, traceback = xpcall, debug.traceback

local M = {}

local REASONS = {
  [200] = "OK", [201] = "Created", [204] = "No Content", [301] = "Moved Permanently",
  [302] = "Found", [304] = "Not Modified", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [408] = "Request Timeout", [409] = "Conflict", [413] = "Content Too Large",
  [415] = "Unsupported Media Type", [422] = "Unprocessable Content",
  [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

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

-- Reads from sock into parser until a message completes; leftover is
-- what was read but not yet parsed. Returns msg, leftover | nil, err.
local function read_message(sock, parser, leftover, timeout_of)
  local buf = leftover
  while true do
    if buf ~= "" then
      local used, msg = parser:feed(buf)
      if not used then return nil, msg end
      buf = sub(buf, used + 1)
      if msg then return msg, buf end
    end
    local t, why = timeout_of()
    if not t then return nil, why end
    local data, err = sock:read(t)
    if not data then
      if err ~= "closed" then return nil, err end
      local msg, perr = parser:finish()
      if msg then return msg, "" end
      return nil, perr or "closed"
    end
    buf = data
  end
end

-- ---------------------------------------------------------------- client

local REQUEST_OPTIONS = {
  method = true, url = true, instance = true, path = true, headers = true,
  body = true, timeout = true, max_body = true,
}

local function target_of(opts)
  if opts.url ~= nil then
    if type(opts.url) ~= "string" then
      argerror(1, "request", "url must be a string, got " .. type(opts.url))
    end
    local scheme, host, port, target = core.http_parse_url(opts.url)
    if not scheme or lower(scheme) ~= "http" then
      argerror(1, "request", format("url must be http://host[:port]/path, got '%s'", opts.url))
    end
    return host, port or 80, target
  end
  local inst = opts.instance
  if type(inst) ~= "table" or type(inst.host) ~= "string" or type(inst.port) ~= "number" then
    argerror(1, "request", "url or instance ({host=, port=}) expected")
  end
  local path = opts.path or "/"
  if type(path) ~= "string" or sub(path, 1, 1) ~= "/" then
    argerror(1, "request", "path must be a string starting with '/', got " .. tostring(path))
  end
  return inst.host, inst.port, path
end

local function build_request(method, host, port, target, headers, body)
  local out = { method, " ", target, " HTTP/1.1\r\nHost: ", host, ":", tostring(port), "\r\n" }
  add_headers(out, headers)
  if body ~= "" or (method ~= "GET" and method ~= "HEAD") then
    out[#out + 1] = "Content-Length: " .. #body .. "\r\n"
  end
  out[#out + 1] = "Connection: close\r\n\r\n"
  out[#out + 1] = body
  return concat(out)
end

-- fb.http.request{method="GET", url= | instance= + path=, headers=,
-- body=, timeout=10, max_body=} -> status, headers, body | nil, err.
-- Failures are values: "connection refused", "timeout", "closed", ...
-- timeout bounds the whole exchange.
function M.request(opts)
  tcp.check_real("http.request")
  if type(opts) ~= "table" then
    argerror(1, "request", "options table expected, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not REQUEST_OPTIONS[k] then argerror(1, "request", format("unknown option '%s'", tostring(k))) end
  end
  local host, port, target = target_of(opts)
  local method = opts.method or "GET"
  local body = opts.body or ""
  if type(method) ~= "string" or not find(method, "^%u+$") then
    argerror(1, "request", "method must be an upper-case token, got " .. tostring(method))
  end
  if type(body) ~= "string" then argerror(1, "request", "body must be a string, got " .. type(body)) end
  local timeout = opts.timeout or 10
  if type(timeout) ~= "number" or not (timeout > 0) then
    argerror(1, "request", "timeout must be a positive number, got " .. tostring(timeout))
  end
  local deadline = now() + timeout
  local function left()
    local t = deadline - now()
    if t <= 0 then return nil, "timeout" end
    return t
  end
  local sock, err = tcp.connect(host, port, { timeout = timeout })
  if not sock then return nil, err end
  local ok
  ok, err = sock:write(build_request(method, host, port, target, opts.headers, body), left() or 0)
  if not ok then sock:close(); return nil, err end
  local parser = core.http_parser("response", opts.max_body or 64 * 1024 * 1024, method == "HEAD")
  local msg
  msg, err = read_message(sock, parser, "", left)
  sock:close()
  if not msg then return nil, err end
  return msg.status, msg.headers, msg.body
end

-- ---------------------------------------------------------------- server

local SERVE_OPTIONS = {
  host = true, port = true, handler = true, max_body = true, read_timeout = true,
  request_timeout = true, max_connections = true, backlog = true, background = true,
}

local function response(status, headers, body, keep_alive)
  local out = { format("HTTP/1.1 %d %s\r\n", status, REASONS[status] or "Status") }
  add_headers(out, headers)
  out[#out + 1] = "Content-Length: " .. #body .. "\r\n"
  if not keep_alive then out[#out + 1] = "Connection: close\r\n" end
  out[#out + 1] = "\r\n"
  out[#out + 1] = body
  return concat(out)
end

local JSON_TYPE = { ["Content-Type"] = "application/json" }

-- A protocol error ends the connection with a JSON reason.
local function refuse(sock, status, why, timeout)
  sock:write(response(status, JSON_TYPE, core.json_encode { error = why }, false), timeout)
end

-- Runs the handler; a handler that raises or returns no status is a 500.
local function handle(srv, req, sock)
  local ok, status, headers, body = xpcall(srv.handler, traceback, req, sock)
  if not ok then
    core.report("http handler failed", tostring(status))
    return 500, JSON_TYPE, core.json_encode { error = "internal error" }
  end
  if type(status) ~= "number" or not REASONS[status] and (status < 100 or status > 599) then
    core.report("http handler failed", "bad status " .. tostring(status))
    return 500, JSON_TYPE, core.json_encode { error = "internal error" }
  end
  return status, headers, body == nil and "" or tostring(body)
end

local function split_target(req)
  local q = find(req.url, "?", 1, true)
  req.path = q and sub(req.url, 1, q - 1) or req.url
  req.query = q and sub(req.url, q + 1) or ""
end

local function serve_connection(srv, sock)
  local parser = core.http_parser("request", srv.max_body)
  local leftover = ""
  while not sock:closed() do
    local deadline = now() + srv.request_timeout -- idle time counts too
    local function left()
      local d = deadline - now()
      if d <= 0 then return nil, "timeout" end
      return d < srv.read_timeout and d or srv.read_timeout
    end
    local req, err = read_message(sock, parser, leftover, left)
    if not req then
      if err == "body too large" then refuse(sock, 413, err, srv.read_timeout)
      elseif err ~= "closed" and err ~= "timeout" and err ~= "connection reset by peer" then
        refuse(sock, 400, err, srv.read_timeout)
      end
      break
    end
    leftover = err
    split_target(req)
    local status, headers, body = handle(srv, req, sock)
    local keep = req.keep_alive and not srv.closed
    if not sock:write(response(status, headers, body, keep), srv.read_timeout) or not keep then break end
  end
  sock:close()
end

local server = {}
server.__index = server

-- server:port() -> the port it listens on
function server:port() return self.listener:port() end

-- server:close(): stops listening and closes every open connection
function server:close()
  if self.closed then return end
  self.closed = true
  self.listener:close()
  for sock in pairs(self.conns) do sock:close() end
end

-- fb.http.serve{host="127.0.0.1", port=0, handler=fn, max_body=1 MiB,
-- read_timeout=10, request_timeout=30, max_connections=1024,
-- background=false (true: the server does not keep a run going)}
-- -> server | nil, err. handler(req) gets {method, url, path, query,
-- headers (lower-case names), body} and returns status, headers, body.
-- Its second argument is the connection, for a handler that parks (a
-- long poll): sock:watch() tells it when the client leaves or sends more
-- (fb.tcp); it must not read or write it.
function M.serve(opts)
  tcp.check_real("http.serve")
  if type(opts) ~= "table" then argerror(1, "serve", "options table expected, got " .. type(opts)) end
  for k in pairs(opts) do
    if not SERVE_OPTIONS[k] then argerror(1, "serve", format("unknown option '%s'", tostring(k))) end
  end
  if type(opts.handler) ~= "function" then
    argerror(1, "serve", "handler must be a function, got " .. type(opts.handler))
  end
  local srv = setmetatable({
    handler = opts.handler,
    max_body = opts.max_body or 1024 * 1024,
    read_timeout = opts.read_timeout or 10,
    request_timeout = opts.request_timeout or 30,
    max_connections = opts.max_connections or 1024,
    conns = {},
    nconns = 0,
    closed = false,
  }, server)
  local listener, err = tcp.listen {
    host = opts.host, port = opts.port, backlog = opts.backlog,
    handler = function(sock)
      if srv.nconns >= srv.max_connections or srv.closed then sock:close(); return end
      srv.conns[sock] = true
      srv.nconns = srv.nconns + 1
      serve_connection(srv, sock)
      srv.conns[sock] = nil
      srv.nconns = srv.nconns - 1
    end,
  }
  if not listener then return nil, err end
  if opts.background then listener:_unref() end
  srv.listener = listener
  return srv
end

return M
