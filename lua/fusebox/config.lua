-- fusebox/config.lua -- policies from JSON: fb.policy_from_json(text or
-- path [, code]) and fb.load_policy(path [, code]).
--
-- The JSON object has fb.policy's fields, checked by the same schemas:
--
--   { "retry":      { "attempts": 3, "backoff": "exponential", "base": 0.1 },
--     "breaker":    { "failure_threshold": 5, "timeout": 30 },
--     "rate_limit": { "rate": 100, "burst": 20 },
--     "bulkhead":   { "max_concurrent": 10, "max_queue": 50 },
--     "timeout":    2 }
--
-- An unknown or ill-typed field is an error naming its path:
-- "policy.json: breaker.failure_rate: must be a number in 0..1, got
-- "high"". Functions (fallback, retry.retry_on, breaker.is_failure)
-- cannot be written in JSON; pass them in code, a table merged into the
-- decoded one: fb.load_policy("p.json", { fallback = fn, retry = {
-- retry_on = fn } }).

local core = select(2, ...)
local policy = core.import "fusebox.policy"
local schema = core.import "fusebox.schema"
local format, type, pairs, error = string.format, type, pairs, error

local M = {}

-- Copies the fields of code into t, merging tables that both have.
local function merge(t, code)
  for k, v in pairs(code) do
    if type(v) == "table" and type(t[k]) == "table" and not policy.is_object(v) then
      merge(t[k], v)
    else
      t[k] = v
    end
  end
  return t
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  return text
end

-- Builds the policy the JSON text describes; where names the text in
-- messages. Raises at level (counted from the public function).
local function from_text(text, where, code, fname)
  local cfg, err = core.json_decode(text)
  if cfg == nil then error(format("%s: %s: %s", fname, where, err), 3) end
  if code ~= nil and type(code) ~= "table" then
    error(format("bad argument #2 to '%s' (a table expected, got %s)", fname, type(code)), 3)
  end
  if type(cfg) == "table" and code then merge(cfg, code) end
  err = schema.check(cfg, policy.schema, nil)
  if err then error(format("%s: %s: %s", fname, where, err), 3) end
  local ok, p = pcall(policy.new_policy, cfg, nil)
  if not ok then error(format("%s: %s: %s", fname, where, p), 3) end
  return p
end

-- fb.load_policy(path [, code]) -> the policy in the JSON file at path
function M.load_policy(path, code)
  if type(path) ~= "string" then
    error("bad argument #1 to 'load_policy' (a path expected, got " .. type(path) .. ")", 2)
  end
  local text, err = read_file(path)
  if not text then error("load_policy: " .. err, 2) end
  local p = from_text(text, path, code, "load_policy")
  return p -- not a tail call: from_text's errors point at our caller
end

-- fb.policy_from_json(text or path [, code]): text when it starts (after
-- blanks) with "{", else the path of a file.
function M.policy_from_json(src, code)
  if type(src) ~= "string" then
    error("bad argument #1 to 'policy_from_json' (JSON text or a path expected, got "
      .. type(src) .. ")", 2)
  end
  local text, where = src, "JSON text"
  if not src:find("^%s*{") then
    local err
    text, err = read_file(src)
    if not text then error("policy_from_json: " .. err, 2) end
    where = src
  end
  local p = from_text(text, where, code, "policy_from_json")
  return p -- not a tail call: from_text's errors point at our caller
end

return M
