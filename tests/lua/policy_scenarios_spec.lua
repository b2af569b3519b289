-- The scenarios of examples/ whose numbers the README quotes: they still
-- show the failure each mechanism prevents, with the same numbers.
describe("scenario", function()
  it("retry_storm: without a budget the outage's load holds itself up; with one it stays within the ratio", function()
    local out, err, code = T.cli("run --virtual-time --seed 1 examples/retry_storm.lua")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("no budget      offered/s before   700, during the outage  2093 (2.99x), after it  2083 (2.98x); not recovered 30s after the outage ended", 1, true), out)
    assert.truthy(out:find("with a budget  offered/s before   700, during the outage   860 (1.23x), after it   753 (1.08x); recovered 4s after the outage ended", 1, true), out)
  end)

  it("hedged_requests: hedging cuts p99 and p99.9 for a few percent more requests", function()
    local out, err, code = T.cli("run --virtual-time --seed 1 examples/hedged_requests.lua")
    assert.are.equal(0, code, err)
    for _, line in ipairs {
      "no hedging                 p50  10.7 ms  p99 181.9 ms  p99.9 283.7 ms  requests sent 20000 for 20000 calls (+0.0%)",
      "hedge at p95               p50  10.6 ms  p99 118.4 ms  p99.9 175.2 ms  requests sent 21026 for 20000 calls (+5.1%)",
      "hedge at p90               p50  10.8 ms  p99  67.8 ms  p99.9 148.7 ms  requests sent 22069 for 20000 calls (+10.3%)",
      "hedge at p90, 3 attempts   p50  10.6 ms  p99  66.7 ms  p99.9 102.9 ms  requests sent 22233 for 20000 calls (+11.2%)",
    } do
      assert.truthy(out:find(line, 1, true), out)
    end
  end)
end)
