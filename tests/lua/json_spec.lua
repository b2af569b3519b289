-- The cJSON binding: fb.json_decode / fb.json_encode (core.json_*).
local fb = require "fusebox"

describe("json", function()
  it("round-trips nested objects and arrays, with sorted keys", function()
    local v = { name = "svc", ports = { 80, 443 }, tags = { a = true, b = false },
      nested = { { x = 1.5 }, { y = { "deep", { 1, 2, 3 } } } } }
    local text = assert(fb.json_encode(v))
    assert.are.equal('{"name":"svc","nested":[{"x":1.5},{"y":["deep",[1,2,3]]}],'
      .. '"ports":[80,443],"tags":{"a":true,"b":false}}', text)
    assert.are.same(v, fb.json_decode(text))
    assert.are.equal(text, fb.json_encode(fb.json_decode(text)))
  end)

  it("decodes scalars, escapes and null", function()
    assert.are.equal(3, fb.json_decode("3"))
    assert.are.equal("aé\n", fb.json_decode('"a\\u00e9\\n"'))
    assert.is_true(fb.json_decode(" true "))
    assert.are.equal(fb.json_null, fb.json_decode("null"))
    assert.are.equal(fb.json_null, fb.json_decode('{"a":null}').a)
    assert.are.equal("null", fb.json_encode(fb.json_null))
  end)

  it("keeps arrays and objects apart, empty ones included", function()
    local arr, obj = fb.json_decode("[]"), fb.json_decode("{}")
    assert.are.equal("[]", fb.json_encode(arr))
    assert.are.equal("{}", fb.json_encode(obj))
    assert.are.equal("{}", fb.json_encode({})) -- an unmarked empty table
    assert.are.equal('{"1":"a"}', fb.json_encode(fb.json_decode('{"1":"a"}')))
  end)

  it("keeps integers exact up to 2^53 and rounds beyond, as doubles do", function()
    for _, n in ipairs { 0, -1, 123456789, 2 ^ 53 - 1, 2 ^ 53, -(2 ^ 53) } do
      local text = fb.json_encode(n)
      assert.are.equal(string.format("%.0f", n), text)
      assert.are.equal(n, fb.json_decode(text))
    end
    -- 2^53 + 1 has no double: it reads back as 2^53
    assert.are.equal(2 ^ 53, fb.json_decode("9007199254740993"))
    assert.are.equal(0.1, fb.json_decode(fb.json_encode(0.1)))
    assert.are.equal(1 / 3, fb.json_decode(fb.json_encode(1 / 3)))
  end)

  it("says where malformed text goes wrong", function()
    local v, err = fb.json_decode('{"a": 1,\n "b": tru}')
    assert.is_nil(v)
    assert.are.equal("invalid JSON at line 2, column 7: syntax error near 'tru}'", err)
    v, err = fb.json_decode('{"a": 1} {}')
    assert.is_nil(v)
    assert.are.equal("invalid JSON at line 1, column 10: text after the value near '{}'", err)
    v, err = fb.json_decode("")
    assert.is_nil(v)
    assert.truthy(err:find("at the end of the text", 1, true), err)
  end)

  it("refuses values JSON cannot hold, naming where they are", function()
    local v, err = fb.json_encode({ retry = { retry_on = print } })
    assert.is_nil(v)
    assert.are.equal("cannot encode as JSON: a function value (JSON has none) at .retry.retry_on", err)
    v, err = fb.json_encode({ list = { 1, 0 / 0 } })
    assert.is_nil(v)
    assert.are.equal("cannot encode as JSON: a NaN or infinite number at .list[2]", err)
    v, err = fb.json_encode({ [1] = "a", [3] = "b" })
    assert.is_nil(v)
    assert.truthy(err:find("a number key in a table that is not the array 1..n", 1, true), err)
    local cycle = {}
    cycle.self = cycle
    v, err = fb.json_encode(cycle)
    assert.is_nil(v)
    assert.truthy(err:find("nested too deeply (a cycle?)", 1, true), err)
  end)

  it("handles nesting up to cJSON's limit and refuses deeper text", function()
    local deep = string.rep("[", 500) .. string.rep("]", 500)
    local v = assert(fb.json_decode(deep))
    for _ = 1, 499 do v = v[1] end
    assert.are.same({}, v)
    assert.is_nil(fb.json_decode(string.rep("[", 2000) .. string.rep("]", 2000)))
  end)

  it("pretty-prints on request", function()
    assert.are.equal('{\n\t"a":\t[1, 2]\n}', fb.json_encode({ a = { 1, 2 } }, true))
  end)
end)
