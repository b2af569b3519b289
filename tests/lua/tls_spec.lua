-- TLS on fb.tcp and fb.http, on loopback, against a test PKI the spec
-- makes with the openssl command (tests/tls/mkcerts.sh): a good chain, a
-- wrong host name, an expired and a self-signed certificate, client
-- certificates; and peers that send garbage, cut the handshake short,
-- never answer or announce an oversized record.
local fb = require "fusebox"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("sh tests/tls/mkcerts.sh " .. dir) == 0, "mkcerts.sh failed")
local function pem(name) return dir .. "/" .. name end
local CA = { ca_file = pem "ca.pem" }

local function run(fn) fb.run(fn) end

-- An HTTPS server presenting cert (a name in the PKI), answering with the
-- path and the client's certificate subject.
local function https_server(cert, extra)
  local tls = { cert_file = pem(cert .. ".pem"), key_file = pem(cert .. ".key") }
  for k, v in pairs(extra or {}) do tls[k] = v end
  return assert(fb.http.serve { port = 0, tls = tls, handler = function(req, sock)
    local info = sock:tls()
    return 200, { ["X-Peer"] = info.peer or "none", ["X-Version"] = info.version }, "hi " .. req.path
  end })
end

-- status, headers-or-error, body of a GET of https://host:port/path.
local function get(srv, tls, host, path)
  return fb.http.request { url = string.format("https://%s:%d%s", host or "localhost", srv:port(), path or "/"),
    tls = tls, timeout = 5 }
end

-- A plain TCP server whose handler is fn(sock).
local function raw_server(fn)
  return assert(fb.tcp.listen { port = 0, handler = fn })
end

describe("TLS", function()
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("verifies a good chain from ca_file, host name and IP address, over TLS 1.2+", function()
    local a, b
    run(function()
      local srv = https_server("server")
      a = { get(srv, CA, "localhost", "/name") }
      b = { get(srv, CA, "127.0.0.1", "/ip") }
      srv:close()
    end)
    assert.are.equal(200, a[1])
    assert.are.equal("hi /name", a[3])
    assert.are.equal("TLSv1.3", a[2]["x-version"])
    assert.are.equal("none", a[2]["x-peer"])
    assert.are.equal(200, b[1])
    assert.are.equal("hi /ip", b[3])
  end)

  it("verifies against the system CA store by default, which does not know the test CA", function()
    local r
    run(function()
      local srv = https_server("server")
      r = { get(srv, nil) }
      srv:close()
    end)
    assert.are.same({ nil, "certificate verify failed: unable to get local issuer certificate" }, r)
  end)

  it("refuses a certificate for another host name, and takes it with that server_name", function()
    local wrong, named
    run(function()
      local srv = https_server("wrong")
      wrong = { get(srv, CA) }
      named = { get(srv, { ca_file = CA.ca_file, server_name = "wrong.example" }) }
      srv:close()
    end)
    assert.are.same({ nil, "certificate verify failed: hostname mismatch" }, wrong)
    assert.are.equal(200, named[1])
  end)

  it("refuses an expired certificate and a self-signed one", function()
    local expired, self, insecure
    run(function()
      local a, b = https_server("expired"), https_server("self")
      expired = { get(a, CA) }
      self = { get(b, CA) }
      insecure = { get(b, { verify = false }) }
      a:close()
      b:close()
    end)
    assert.are.same({ nil, "certificate verify failed: certificate has expired" }, expired)
    assert.are.same({ nil, "certificate verify failed: self-signed certificate" }, self)
    assert.are.equal(200, insecure[1]) -- verify = false checks nothing
  end)

  it("requires a client certificate from the server's ca_file (mutual TLS)", function()
    local with, without, rogue
    run(function()
      local srv = https_server("server", { ca_file = CA.ca_file })
      with = { get(srv, { ca_file = CA.ca_file, cert_file = pem "client.pem", key_file = pem "client.key" }) }
      without = { get(srv, CA) }
      rogue = { get(srv, { ca_file = CA.ca_file, cert_file = pem "rogue.pem", key_file = pem "rogue.key" }) }
      srv:close()
    end)
    assert.are.equal(200, with[1])
    assert.are.equal("CN=fusebox-client", with[2]["x-peer"])
    assert.is_nil(without[1])
    assert.are.equal("tls: tlsv13 alert certificate required", without[2])
    assert.is_nil(rogue[1])
    assert.matches("unknown ca", rogue[2])
  end)

  it("serves 100 concurrent HTTPS clients, each its own handshake, all answered", function()
    local ok, done = 0, 0
    run(function()
      local srv = https_server("server")
      for i = 1, 100 do
        fb.spawn(function()
          local status, _, body = get(srv, CA, "localhost", "/" .. i)
          if status == 200 and body == "hi /" .. i then ok = ok + 1 end
          done = done + 1
        end)
      end
      while done < 100 do fb.sleep(0.01) end
      srv:close()
    end)
    assert.are.equal(100, ok)
  end)

  it("uses renewed certificate files from the next handshake on, keeping the old while the new cannot be used", function()
    local function copy(from, to) assert(os.execute(string.format("cp %s %s", pem(from), pem(to))) == 0) end
    copy("server.pem", "live.pem")
    copy("server.key", "live.key")
    local before, renewed, half
    run(function()
      local srv = https_server("live")
      before = { get(srv, CA) }
      copy("wrong.pem", "live.pem") -- renewed: now for wrong.example
      copy("wrong.key", "live.key")
      fb.sleep(1.1) -- tls.lua looks at the files at most once a second
      renewed = { get(srv, CA) }
      copy("server.pem", "live.pem") -- half a rotation: the new certificate, the old key
      fb.sleep(1.1)
      half = { get(srv, { ca_file = CA.ca_file, server_name = "wrong.example" }) }
      srv:close()
    end)
    assert.are.equal(200, before[1])
    assert.are.same({ nil, "certificate verify failed: hostname mismatch" }, renewed)
    assert.are.equal(200, half[1]) -- still the wrong.example certificate
  end)

  it("carries plaintext both ways over fb.tcp, in any size, with tls = true defaults", function()
    local echoed, info, defaults
    local big = string.rep("0123456789abcdef", 256 * 1024) -- 4 MiB: many records, partial writes
    run(function()
      local srv = assert(fb.tcp.listen { port = 0,
        tls = { cert_file = pem "server.pem", key_file = pem "server.key" },
        handler = function(s)
          while true do
            local data = s:read(5)
            if not data or not s:write(data, 5) then break end
          end
          s:close()
        end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port(), { timeout = 2, tls = CA }))
      info = c:tls()
      local parts, n = {}, 0
      fb.spawn(function() assert(c:write(big, 10)) end)
      while n < #big do
        local data = assert(c:read(5))
        parts[#parts + 1] = data
        n = n + #data
      end
      echoed = table.concat(parts)
      c:close()
      defaults = { fb.tcp.connect("127.0.0.1", srv:port(), { tls = true }) }
      srv:close()
    end)
    assert.are.equal(#big, #echoed)
    assert.is_true(echoed == big)
    assert.are.equal("TLSv1.3", info.version)
    assert.are.equal("CN=localhost", info.peer)
    assert.are.same({ nil, "certificate verify failed: unable to get local issuer certificate" }, defaults)
  end)

  it("serves plain HTTP clients of an HTTPS server nothing, and goes on serving", function()
    local plain, after
    run(function()
      local srv = https_server("server")
      plain = { fb.http.request { url = "http://localhost:" .. srv:port() .. "/", timeout = 2 } }
      after = { get(srv, CA) }
      srv:close()
    end)
    assert.are.same({ nil, "closed" }, plain)
    assert.are.equal(200, after[1])
  end)

  it("fails a handshake with a server that sends garbage", function()
    local r
    run(function()
      local srv = raw_server(function(s)
        s:read(2)
        s:write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        s:close()
      end)
      r = { fb.tcp.connect("127.0.0.1", srv:port(), { tls = CA }) }
      srv:close()
    end)
    assert.is_nil(r[1])
    assert.are.equal("tls handshake failed: wrong version number", r[2])
  end)

  it("fails a handshake the server cuts short, and one that never gets an answer, in time", function()
    local cut, silent, took
    run(function()
      local real = https_server("server")
      -- forwards the ClientHello, then only the first 60 bytes of the answer
      local proxy = raw_server(function(s)
        local up = assert(fb.tcp.connect("127.0.0.1", real:port()))
        up:write(assert(s:read(2)))
        local answer = assert(up:read(2))
        s:write(answer:sub(1, 60))
        up:close()
        s:close()
      end)
      cut = { fb.tcp.connect("127.0.0.1", proxy:port(), { tls = CA }) }
      local mute = raw_server(function(s) s:read(5); fb.sleep(1); s:close() end)
      local t0 = fb.now()
      silent = { fb.tcp.connect("127.0.0.1", mute:port(),
        { tls = { ca_file = CA.ca_file, handshake_timeout = 0.2 } }) }
      took = fb.now() - t0
      real:close()
      proxy:close()
      mute:close()
    end)
    assert.are.same({ nil, "tls handshake failed: closed" }, cut)
    assert.are.same({ nil, "tls handshake timeout" }, silent)
    assert.is_true(took >= 0.2 and took < 0.8, "took " .. took)
  end)

  it("fails a read when a record is forged after the handshake, and reads a close_notify as closed", function()
    local forged, closed
    run(function()
      local real = assert(fb.tcp.listen { port = 0,
        tls = { cert_file = pem "server.pem", key_file = pem "server.key" },
        handler = function(s)
          local cmd = s:read(2)
          if cmd == "close" then s:close() else fb.sleep(0.5); s:close() end
        end })
      local inject = false
      -- forwards both ways; once told, forges an application-data record
      local proxy = raw_server(function(s)
        local up = assert(fb.tcp.connect("127.0.0.1", real:port()))
        fb.spawn(function()
          while true do
            local data = s:read(2)
            if not data or not up:write(data) then break end
          end
          up:close()
        end)
        while true do
          local data = up:read(0.05)
          if inject then s:write("\23\3\3\0\32" .. string.rep("\1", 32)); break end
          if data and not s:write(data) then break end
          if not data and up:closed() then break end
        end
        fb.sleep(0.1)
        s:close()
      end)
      local c = assert(fb.tcp.connect("127.0.0.1", proxy:port(), { tls = CA }))
      assert(c:write("wait"))
      inject = true
      forged = { c:read(2) }
      c:close()
      c = assert(fb.tcp.connect("127.0.0.1", real:port(), { tls = CA }))
      assert(c:write("close"))
      closed = { c:read(2) }
      c:close()
      proxy:close()
      real:close()
    end)
    assert.is_nil(forged[1])
    assert.are.equal("tls: decryption failed or bad record mac", forged[2])
    assert.are.same({ nil, "closed" }, closed)
  end)

  it("times out a write to a peer that reads nothing, and a server drops a client forging records", function()
    local wrote, served, forged
    run(function()
      local stuck = assert(fb.tcp.listen { port = 0,
        tls = { cert_file = pem "server.pem", key_file = pem "server.key" },
        handler = function(s) fb.sleep(1); s:close() end })
      local c = assert(fb.tcp.connect("127.0.0.1", stuck:port(), { tls = CA }))
      wrote = { c:write(string.rep("x", 32 * 1024 * 1024), 0.2) }
      assert.is_true(c:closed())
      stuck:close()
      local srv = assert(fb.http.serve { port = 0,
        tls = { cert_file = pem "server.pem", key_file = pem "server.key" },
        handler = function() served = true; return 200, {}, "" end })
      -- forwards both ways until told, then forges a record to the server
      local inject, upstream_said = false, nil
      local proxy = raw_server(function(s)
        local up = assert(fb.tcp.connect("127.0.0.1", srv:port()))
        fb.spawn(function()
          while true do
            local data = up:read(2)
            if not data then upstream_said = "closed"; break end
            if not s:write(data) then break end
          end
          s:close()
        end)
        while true do
          local data = s:read(0.05)
          if inject then up:write("\23\3\3\0\32" .. string.rep("\1", 32)); break end
          if data and not up:write(data) then break end
          if not data and s:closed() then break end
        end
        fb.sleep(0.2)
        up:close()
      end)
      local c = assert(fb.tcp.connect("127.0.0.1", proxy:port(), { tls = CA }))
      inject = true
      forged = { c:read(2) }
      c:close()
      proxy:close()
      srv:close()
      forged[3] = upstream_said
    end)
    assert.are.same({ nil, "timeout" }, wrote)
    -- the server refused it with an alert, and hung up
    assert.are.same({ nil, "tls: sslv3 alert bad record mac", "closed" }, forged)
    assert.is_nil(served)
  end)

  it("refuses an oversized record at once, however much follows", function()
    local r, sent
    run(function()
      local srv = raw_server(function(s)
        s:read(2)
        -- a handshake record announcing 65535 bytes (TLS allows 16 KiB + 2 KiB), then 1 MiB
        sent = 0
        if s:write("\22\3\3\255\255", 2) then
          local junk = string.rep("A", 64 * 1024)
          for _ = 1, 16 do
            if not s:write(junk, 2) then break end
            sent = sent + #junk
          end
        end
        s:close()
      end)
      r = { fb.tcp.connect("127.0.0.1", srv:port(), { tls = CA }) }
      fb.sleep(0.05)
      srv:close()
    end)
    assert.is_nil(r[1])
    assert.matches("^tls handshake failed: ", r[2])
  end)

  it("closes a server connection whose handshake never comes, after handshake_timeout", function()
    local got, took, served
    run(function()
      local srv = assert(fb.http.serve { port = 0,
        tls = { cert_file = pem "server.pem", key_file = pem "server.key", handshake_timeout = 0.2 },
        handler = function() served = true; return 200, {}, "" end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      local t0 = fb.now()
      got = { c:read(2) }
      took = fb.now() - t0
      c:close()
      srv:close()
    end)
    assert.are.same({ nil, "closed" }, got)
    assert.is_true(took >= 0.15 and took < 1, "took " .. took)
    assert.is_nil(served)
  end)

  it("watches a TLS connection: data that is only a record part is no wake", function()
    local why, data
    run(function()
      local srv = assert(fb.tcp.listen { port = 0,
        tls = { cert_file = pem "server.pem", key_file = pem "server.key" },
        handler = function(s)
          fb.sleep(0.1)
          s:write("late")
          s:read(2)
          s:close()
        end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port(), { tls = CA }))
      if not c:watch() then
        local _, w = fb.wait("watch", 2)
        why = w
      end
      data = c:read(1)
      c:close()
      srv:close()
    end)
    assert.are.equal("data", why)
    assert.are.equal("late", data)
  end)

  it("health-checks instances over HTTPS: an expired certificate is a failed probe", function()
    local good, expired
    run(function()
      local a, b = https_server("server"), https_server("expired")
      local reg = fb.registry {}
      reg:register("web", "127.0.0.1", a:port())
      reg:register("web", "127.0.0.1", b:port())
      local hc = fb.health_check { registry = reg, service = "web", type = "http", interval = 0.05,
        timeout = 1, healthy_threshold = 1, unhealthy_threshold = 1, tls = CA }
      fb.sleep(0.3)
      good, expired = hc:is_healthy("127.0.0.1", a:port()), hc:is_healthy("127.0.0.1", b:port())
      hc:stop()
      a:close()
      b:close()
    end)
    assert.is_true(good)
    assert.is_false(expired)
  end)

  it("raises on options it cannot use, naming the argument", function()
    local function err(fn)
      local ok, e
      run(function() ok, e = pcall(fn) end)
      assert.is_false(ok)
      return e
    end
    local function connect(tls) return function() fb.tcp.connect("127.0.0.1", 1, { tls = tls }) end end
    assert.matches("bad argument #3 to 'connect' %(tls: unknown option 'cafile'%)",
      err(connect { cafile = "x" }))
    assert.matches("bad argument #3 to 'connect' %(tls: cannot read ca_file '/nonexistent': No such file or directory%)",
      err(connect { ca_file = "/nonexistent" }))
    assert.matches("bad argument #3 to 'connect' %(tls.cert_file and tls.key_file go together%)",
      err(connect { cert_file = pem "client.pem" }))
    assert.matches("bad argument #3 to 'connect' %(tls: key_file '.-' does not match cert_file '.-'%)",
      err(connect { cert_file = pem "client.pem", key_file = pem "server.key" }))
    assert.matches("bad argument #3 to 'connect' %(tls: cannot load ca_file '.-': no certificate",
      err(connect { ca_file = pem "client.key" }))
    assert.matches("bad argument #3 to 'connect' %(tls.verify must be a boolean, got \"no\"%)",
      err(connect { verify = "no" }))
    assert.matches("bad argument #3 to 'connect' %(tls.handshake_timeout must be a positive number",
      err(connect { handshake_timeout = 0 }))
    assert.matches("bad argument #1 to 'request' %(tls is for https:// urls%)",
      err(function() fb.http.request { url = "http://127.0.0.1:1/", tls = CA } end))
    assert.matches("bad argument #1 to 'request' %(an https:// url needs tls %(true or a table%), got false%)",
      err(function() fb.http.request { url = "https://127.0.0.1:1/", tls = false } end))
    assert.matches("bad argument #1 to 'serve' %(tls.cert_file and tls.key_file are required%)",
      err(function() fb.http.serve { port = 0, tls = { ca_file = CA.ca_file }, handler = print } end))
    assert.matches("bad argument #1 to 'listen' %(tls must be a table with cert_file and key_file, got true%)",
      err(function() fb.tcp.listen { port = 0, tls = true, handler = print } end))
  end)
end)
