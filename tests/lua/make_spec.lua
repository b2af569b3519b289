-- The Makefile's package lists: `make demo` installs only what building
-- needs; the test and benchmark tools come with `make test` / `make bench`.
-- Checked with make -n on a machine where dpkg-query reports nothing
-- installed, so every package a target needs shows in its apt-get line.
local function installs(target)
  local bin = os.tmpname()
  os.remove(bin)
  os.execute("mkdir " .. bin)
  local f = assert(io.open(bin .. "/dpkg-query", "w"))
  f:write("#!/bin/sh\nexit 1\n")
  f:close()
  os.execute("chmod +x " .. bin .. "/dpkg-query")
  local p = io.popen(string.format("PATH=%s:$PATH make -n %s 2>&1", bin, target))
  local out = p:read("*a")
  p:close()
  os.execute("rm -r " .. bin)
  local pkgs = {}
  local function add(list)
    for name in list:gmatch("[%w][%w.+-]*") do pkgs[name] = true end
  end
  for list in out:gmatch('m="([^"]*)"') do add(list) end
  for list in out:gmatch("apt%-get install %-y %-q ([^;$]*);") do add(list) end
  return pkgs, out
end

describe("make's dependencies", function()
  it("installs only the build packages for make demo", function()
    local pkgs, out = installs("demo")
    for _, want in ipairs { "pkg-config", "gcc", "libluajit2-5.1-dev", "luajit2", "libuv1-dev",
                            "libcjson-dev", "libhttp-parser-dev" } do
      assert.is_true(pkgs[want], want .. " missing from: " .. out)
    end
    for _, tool in ipairs { "wrk", "prometheus", "etcd-server", "etcd-client", "valgrind",
                            "lua-busted", "libcmocka-dev", "curl" } do
      assert.is_nil(pkgs[tool], tool .. " installed by make demo: " .. out)
    end
  end)

  it("installs the test tools for make test, and wrk for make bench", function()
    local pkgs, out = installs("test")
    for _, want in ipairs { "lua-busted", "libcmocka-dev", "valgrind", "prometheus", "curl", "libuv1-dev" } do
      assert.is_true(pkgs[want], want .. " missing from: " .. out)
    end
    assert.is_nil(pkgs.wrk, out)
    pkgs, out = installs("bench")
    assert.is_true(pkgs.wrk, out)
    assert.is_nil(pkgs.valgrind, out)
  end)
end)
