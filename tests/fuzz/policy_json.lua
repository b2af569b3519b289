-- tests/fuzz/policy_json.lua -- policy JSON (fb.policy_from_json: the
-- decoder, lua/fusebox/schema.lua's checks, policy.lua's layers): a text
-- either loads or raises a clear "policy_from_json: JSON text: ..." error;
-- a policy that loads then runs calls that succeed, fail and take time
-- through every layer, under virtual time.
--
-- Findings: a crash, a Lua runtime error from inside fusebox (at load or
-- at call), or a call that fails with anything but the function's own
-- error or a rejection fb.rejection names.

local fb, _, lib = ...
local find, tostring, pcall = string.find, tostring, pcall

local BOOM = "fuzz: the guarded function failed"

-- Raises unless err is BOOM or a rejection.
local function expected(err, what)
  if err == BOOM or fb.rejection(err) then return end
  lib.fail("%s raised %s", what, tostring(err))
end

return function(input)
  -- text, not a path: fb.policy_from_json reads a file otherwise
  if not find(input, "^%s*{") then return end
  local ok, p = pcall(fb.policy_from_json, input)
  if not ok then
    if lib.internal(p, "policy_from_json: JSON text: ", input) then
      lib.fail("loading %q raised %s", input, tostring(p))
    end
    return
  end
  lib.vrun(function()
    -- Failures come from one budget, so no policy (retry attempts=1e9)
    -- makes a call last forever: after 12 the function only succeeds.
    local failures = 0
    local function flaky(n, by_value)
      if failures >= n then return "ok" end
      failures = failures + 1
      if by_value then return nil, "failed by value" end
      error(BOOM, 0)
    end
    for _, fn in ipairs {
      function() return "ok" end,
      function() return flaky(3) end,
      function() fb.sleep(0.5); return "ok" end,
      function() return flaky(9) end,
      function() return flaky(12, true) end,
    } do
      local done, r, err = pcall(p.call, p, fn)
      if not done then expected(r, "p:call")
      elseif r ~= "ok" and err ~= "failed by value" then expected(err, "p:call (failing by value)") end
    end
  end)
end
