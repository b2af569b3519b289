-- Loading fusebox and then forking, as nginx's master does: no loop (and
-- so no epoll fd or eventfd) before something needs one, a child gets
-- its own seed (unless one was chosen) and its own loop.
local function slurp(p)
  local f = assert(io.open(p)); local s = f:read("*a"); f:close(); os.remove(p); return s
end

describe("fusebox in a process that forks", function()
  it("opens no loop at load time, and a child re-seeds", function()
    local out = os.tmpname()
    assert.is_truthy(os.execute(string.format("LUA_CPATH='%s/?.so' luajit tests/fixtures/fork.lua %s",
      T.build, out)))
    local r = {}
    for k, v in (slurp(out) .. slurp(out .. ".child")):gmatch("(%S+) ([^\n]*)") do r[k] = v end
    assert.equal("0", r.loaded_fds)
    assert.equal("0", r.parent_fds)
    assert.equal("0", r.child_status)
    assert.are_not.equal(r.parent_seed, r.child_seed)
    assert.equal("true", r.child_run)
    assert.equal("true", r.parent_run_after)
  end)

  it("keeps a chosen seed, and gives a child its own loop", function()
    local out = os.tmpname()
    assert.is_truthy(os.execute(string.format("LUA_CPATH='%s/?.so' luajit tests/fixtures/fork.lua %s 42 run",
      T.build, out)))
    local r = {}
    for k, v in (slurp(out) .. slurp(out .. ".child")):gmatch("(%S+) ([^\n]*)") do r[k] = v end
    assert.equal("42", r.parent_seed)
    assert.equal("42", r.child_seed)
    assert.is_true(tonumber(r.parent_fds) >= 1) -- the run made the loop
    assert.equal("true", r.child_run)
    assert.equal("0", r.child_status)
    assert.equal("true", r.parent_run_after)
  end)
end)
