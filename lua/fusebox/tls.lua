-- fusebox/tls.lua -- the one home of TLS options: checks the `tls = ...`
-- of fb.tcp.connect, fb.tcp.listen, fb.http.request, fb.http.serve,
-- fb.serve_registry and the etcd backend, makes their OpenSSL contexts
-- (src/lua_tls.c) once per set of files, and runs the handshake on a
-- connected socket (src/lua_tcp.c moves the bytes).
--
-- Client: tls = true | { server_name=, ca_file=, cert_file=, key_file=,
--   verify=true, handshake_timeout=10 }: the server's chain is checked
--   against the system CA store (or ca_file) and its certificate must
--   name server_name (default: the host connected to; an IP address is
--   matched as one), sent as SNI; cert_file + key_file for mutual TLS.
--   verify=false checks nothing (tests only).
-- Server: tls = { cert_file=, key_file=, ca_file=, handshake_timeout=10 }:
--   with ca_file, every client must present a certificate that chains
--   to it.
-- Files are read when a context is first made, and again once they
-- change (current() below): certificates renew without a restart.

local core = select(2, ...)
local format, find, type, tostring, error, pairs, concat =
  string.format, string.find, type, tostring, error, pairs, table.concat

local M = {}

local sock = core.tcp_mt.methods
-- sock:tls() -> {version=, cipher=, peer=} of a TLS socket after its
-- handshake (peer: the subject of the peer's certificate, if it sent
-- one), else nil
sock.tls = sock._tls_info

M.HANDSHAKE_TIMEOUT = 10

local CLIENT = {
  server_name = true, ca_file = true, cert_file = true, key_file = true,
  verify = true, handshake_timeout = true,
}
local SERVER = { cert_file = true, key_file = true, ca_file = true, handshake_timeout = true }

local function shown(v) return type(v) == "string" and format("%q", v) or tostring(v) end

local function bad_file(v, key)
  if v ~= nil and (type(v) ~= "string" or v == "" or find(v, "\0", 1, true)) then
    return format("tls.%s must be a file name, got %s", key, shown(v))
  end
end

-- Seconds between looks at a context's files, for renewed certificates.
M.RELOAD_CHECK = 1

-- server, ca, cert, key, verify -> {context=, the settings, stamp= of
-- the files it was made from, checked= when they were last looked at}
local contexts = {}

local function context(server, ca, cert, key, verify)
  local id = concat({ server and "s" or "c", ca or "", cert or "", key or "", verify and "1" or "0" }, "\0")
  local e = contexts[id]
  if e then return e end
  local stamp = core.tls_stamp(ca, cert, key)
  local ctx, err = core.tls_context(server, ca, cert, key, verify)
  if not ctx then return nil, "tls: " .. err end
  e = { context = ctx, server = server, ca = ca, cert = cert, key = key, verify = verify,
    stamp = stamp, checked = core.now() }
  contexts[id] = e
  return e
end

-- The context of entry e, made again from its files once they changed
-- (looked at no more often than every RELOAD_CHECK seconds): a renewed
-- certificate, key or CA file is used from the next handshake on. New
-- files that cannot be used (a rotation half done: a new certificate,
-- the old key) leave the old context in use, reported once each.
local function current(e)
  local t = core.now()
  if t - e.checked < M.RELOAD_CHECK then return e.context end
  e.checked = t
  local stamp = core.tls_stamp(e.ca, e.cert, e.key)
  if stamp == e.stamp or stamp == e.failed then return e.context end
  local ctx, err = core.tls_context(e.server, e.ca, e.cert, e.key, e.verify)
  if ctx then
    e.context, e.stamp, e.failed = ctx, stamp, nil
  else
    e.failed = stamp
    core.report("tls", "cannot use the changed files, keeping the ones before: " .. err)
  end
  return e.context
end

-- The checked settings of tls for M.handshake: {entry=, server_name=,
-- handshake_timeout=} | nil when tls is nil or false | false, why it
-- cannot be used ("tls.ca_file must be a file name, got 42", "tls:
-- cannot read ca_file 'x': No such file or directory").
function M.check(tls, server)
  if tls == nil or tls == false then return nil end
  if tls == true then
    if server then return false, "tls must be a table with cert_file and key_file, got true" end
    tls = {}
  end
  if type(tls) ~= "table" then
    return false, "tls must be " .. (server and "a table" or "true or a table") .. ", got " .. type(tls)
  end
  local allowed = server and SERVER or CLIENT
  for k in pairs(tls) do
    if not allowed[k] then return false, format("tls: unknown option '%s'", tostring(k)) end
  end
  local why = bad_file(tls.ca_file, "ca_file") or bad_file(tls.cert_file, "cert_file")
    or bad_file(tls.key_file, "key_file")
  if why then return false, why end
  if (tls.cert_file == nil) ~= (tls.key_file == nil) then
    return false, "tls.cert_file and tls.key_file go together"
  end
  if server and not tls.cert_file then return false, "tls.cert_file and tls.key_file are required" end
  local sn = tls.server_name
  if sn ~= nil and (type(sn) ~= "string" or sn == "" or #sn > 253 or find(sn, "[%z%s/]")) then
    return false, "tls.server_name must be a host name, got " .. shown(sn)
  end
  local verify = tls.verify
  if verify == nil then verify = true end
  if type(verify) ~= "boolean" then return false, "tls.verify must be a boolean, got " .. shown(verify) end
  local ht = tls.handshake_timeout
  if ht ~= nil and (type(ht) ~= "number" or not (ht > 0) or ht == math.huge) then
    return false, "tls.handshake_timeout must be a positive number of seconds, got " .. shown(ht)
  end
  local e, err = context(server, tls.ca_file, tls.cert_file, tls.key_file, verify)
  if not e then return false, err end
  return { entry = e, server_name = sn, handshake_timeout = ht }
end

-- M.check for argument n of the API function fname, whose caller the
-- error points at: M.client(tls, n, fname), M.server(tls, n, fname).
local function checked(tls, server, n, fname)
  local cfg, why = M.check(tls, server)
  if cfg == false then error(format("bad argument #%d to '%s' (%s)", n, fname, why), 4) end
  return cfg
end
function M.client(tls, n, fname)
  local cfg = checked(tls, false, n, fname) -- not a tail call: the level counts this frame
  return cfg
end
function M.server(tls, n, fname)
  local cfg = checked(tls, true, n, fname)
  return cfg
end

-- Runs the handshake on connected sock: as a client of host when cfg is
-- M.client's (server_name, if given, instead), else as a server. timeout
-- (default cfg.handshake_timeout, else 10 s) bounds it. -> sock | nil,
-- err; a failure closes sock: "certificate verify failed: ...", "tls
-- handshake failed: ...", "tls handshake timeout".
function M.handshake(s, cfg, host, timeout)
  s:_tls_start(current(cfg.entry), host and (cfg.server_name or host) or nil)
  local woke, ok, err = s:_handshake(timeout or cfg.handshake_timeout or M.HANDSHAKE_TIMEOUT)
  if woke and ok then return s end
  if not woke then s:_cancel_read() end
  s:close()
  return nil, woke and err or "tls handshake timeout"
end

return M
