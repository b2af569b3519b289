-- fusebox report and run --report, through the CLI.
local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

describe("fusebox report", function()
  it("draws a cut, corrupted log and says what it skipped", function()
    local out = os.tmpname()
    local _, err, code = T.cli("report tests/fixtures/report_corrupt.jsonl -o " .. out)
    local html = slurp(out)
    os.remove(out)
    assert.are.equal(0, code)
    assert.truthy(err:find("skipped 2 lines of 'tests/fixtures/report_corrupt.jsonl' that are not JSON (first: line 3)", 1, true), err)
    assert.truthy(err:find("skipped 1 event of '[^']+' missing fields %(first: line 5%)"), err)
    assert.truthy(err:find("has no run_end", 1, true), err)
    assert.truthy(html:find("lines 3, 7.", 1, true))
    assert.truthy(html:find('<td id="seed">3</td>', 1, true))
    assert.truthy(html:find("my_own_event", 1, true))
    assert.falsy(html:find("<b>hi", 1, true))
    assert.truthy(html:find("</html>", 1, true))
  end)

  it("fails clearly on a missing file or bad usage", function()
    local _, err, code = T.cli("report /nonexistent/events.jsonl -o /dev/null")
    assert.are.equal(1, code)
    assert.truthy(err:find("cannot read events file '/nonexistent/events.jsonl'", 1, true), err)
    _, err, code = T.cli("report")
    assert.are.equal(2, code)
    assert.truthy(err:find("report: no events file given", 1, true), err)
    _, err, code = T.cli("report a.jsonl --bogus")
    assert.are.equal(2, code)
    assert.truthy(err:find("unknown option '--bogus'", 1, true), err)
  end)

  it("run --report draws the run and logs the script's arguments for the replay", function()
    local out, events = os.tmpname(), os.tmpname()
    local _, _, code = T.cli(string.format(
      "run --virtual-time --seed 5 --events %s --report %s examples/circuit_breaker.lua 'an arg'", events, out))
    local html, log = slurp(out), slurp(events)
    os.remove(out)
    os.remove(events)
    assert.are.equal(0, code)
    assert.truthy(log:find('"args":["an arg"]', 1, true), log)
    assert.truthy(html:find("fusebox run --virtual-time --seed 5 examples/circuit_breaker.lua &#39;an arg&#39;", 1, true))
    -- the breaker logs what it let through: the demo's 10 calls are all drawn
    assert.truthy(html:find('data-series="breaker 1" data-total="10"', 1, true))
  end)

  it("run --report without --events leaves no temporary file behind", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert.truthy(os.execute("mkdir " .. dir))
    -- the temporary events file goes to $TMPDIR: here, next to the page
    os.execute(string.format("TMPDIR=%s %s run --virtual-time --seed 1 --report %s/r.html "
      .. "examples/circuit_breaker.lua >/dev/null 2>&1", dir, T.fusebox_bin, dir))
    local html = slurp(dir .. "/r.html")
    local p = io.popen("ls " .. dir)
    local listing = p:read("*a")
    p:close()
    os.execute("rm -rf " .. dir)
    assert.truthy(html:find('id="breakers" data-count="1"', 1, true))
    assert.truthy(html:find("(a temporary file, removed)", 1, true))
    assert.are.equal("r.html\n", listing)
  end)
end)

-- Hostile events files: each run ends (timeout kills a hang), writes a
-- page under the bound (head cuts one byte past it), and lets nothing
-- from the file out as markup.
describe("fusebox report on hostile input", function()
  local PAGE_MAX = 16 * 1024 * 1024 -- FB_REPORT_PAGE_MAX

  -- Runs fusebox report on path with a time limit; the page (cut one byte
  -- past the bound), the exit code and stderr.
  local function report(path)
    local out, err, rc = os.tmpname(), os.tmpname(), os.tmpname()
    os.execute(string.format(
      "{ timeout -s KILL 60 %s report %s 2>%s; echo $? >%s; } | head -c %d >%s",
      T.fusebox_bin, path, err, rc, PAGE_MAX + 1, out))
    local html, e, code = slurp(out), slurp(err), tonumber(slurp(rc))
    os.remove(out)
    os.remove(err)
    os.remove(rc)
    return html, code, e
  end

  local function write(lines)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    return path
  end

  local function assert_bounded(html, code, err)
    assert.are.equal(0, code, err)
    assert.is_true(#html <= PAGE_MAX, "page of " .. #html .. " bytes")
    assert.truthy(html:find("</html>\n$"))
    assert.falsy(html:find("nan", 1, true))
  end

  it("ends with a bounded page whatever the times", function()
    local files = {
      -- t += step stopped advancing at 1e17: 600 MB in 5 s
      {'{"t":1e17,"kind":"call_end","service":"s","outcome":"success"}',
       '{"t":1e17,"kind":"run_end","ok":true,"summary":{"duration":1}}'},
      -- (t - t0) / width infinite: widening never ended
      {'{"t":-1e308,"kind":"call_end","service":"s","outcome":"success"}',
       '{"t":1e308,"kind":"call_end","service":"s","outcome":"success"}'},
      {'{"t":0,"kind":"call_end","service":"s","outcome":"success","latency":0.1}',
       '{"t":1e-310,"kind":"call_end","service":"s","outcome":"success"}'},
      {'{"t":1e11,"kind":"call_end","service":"s","outcome":"success"}',
       '{"t":1e11,"kind":"run_end","ok":true,"summary":{"duration":1e300}}'},
    }
    for i, lines in ipairs(files) do
      local path = write(lines)
      local html, code, err = report(path)
      os.remove(path)
      assert_bounded(html, code, err)
      if i <= 2 then
        assert.truthy(err:find("with t out of range (beyond +-1e+12 s; first: line 1)", 1, true), err)
        assert.truthy(html:find("whose time t is out of range", 1, true))
      end
    end
  end)

  it("draws a hostile fixture without letting markup through", function()
    local html, code, err = report("tests/fixtures/report_hostile.jsonl")
    assert_bounded(html, code, err)
    for n = 1, 7 do
      assert.falsy(html:find("alert(" .. n .. ")</script>", 1, true), n)
    end
    assert.falsy(html:find("<img", 1, true))
    assert.falsy(html:find("<svg onload", 1, true))
    assert.falsy(html:find("<b>", 1, true))
    assert.falsy(html:find('" onmouseover="', 1, true))
    assert.truthy(html:find("skipped"))
    assert.truthy(err:find("skipped 3 events", 1, true), err)
  end)

  it("reads 40,000 distinct instances in linear time and draws 100", function()
    local lines = {}
    for i = 1, 40000 do
      lines[i] = string.format('{"t":%g,"kind":"register","service":"api","host":"10.%d.%d.%d","port":80}',
        i * 0.001, math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
    end
    local path = write(lines)
    local t0 = os.time()
    local html, code, err = report(path)
    os.remove(path)
    assert_bounded(html, code, err)
    assert.is_true(os.time() - t0 < 30) -- 3.3 s plain with a linear search
    assert.truthy(html:find('<td id="total-instances">40000</td>', 1, true))
    assert.truthy(html:find('id="members-left-out" data-count="39900"', 1, true))
  end)

  it("skips a line longer than the limit without reading it whole", function()
    local path = write({
      '{"t":0,"kind":"call_end","service":"s","outcome":"success"}',
      '{"t":1,"kind":"call_end","service":"' .. string.rep("x", 2 * 1024 * 1024) .. '","outcome":"success"}',
      '{"t":2,"kind":"call_end","service":"s","outcome":"success"}'})
    local html, code, err = report(path)
    os.remove(path)
    assert_bounded(html, code, err)
    assert.truthy(err:find("skipped 1 line of '[^']+' longer than 1048576 bytes %(first: line 2%)"), err)
    assert.truthy(html:find('<td id="total-calls">2</td>', 1, true))
  end)
end)
