-- tests/fuzz/json.lua -- core.json_decode / core.json_encode round trips
-- (src/lua_json.c): whatever decodes, encodes (unless it holds a value
-- JSON cannot: an infinity), and decodes back to the same value; the
-- encoder's sorted keys make the second text equal the first.

local fb, _, lib = ...
local decode, encode = fb.json_decode, fb.json_encode
local type, tostring = type, tostring

return function(input)
  local v, err = decode(input)
  if v == nil then
    if type(err) ~= "string" then lib.fail("decode failed without a message: %s", tostring(err)) end
    return
  end
  for _, pretty in ipairs { false, true } do
    local text, eerr = encode(v, pretty)
    if text == nil then
      if type(eerr) ~= "string" then lib.fail("encode failed without a message") end
      return
    end
    local v2, derr = decode(text)
    if v2 == nil then lib.fail("encode gave %q, which does not decode: %s", text, derr) end
    if not lib.same(v, v2) then lib.fail("decode(encode(v)) ~= v for %q: %q", input, text) end
    local text2 = encode(v2, pretty)
    if text2 ~= text then lib.fail("encode is not stable: %q then %q", text, tostring(text2)) end
  end
end
