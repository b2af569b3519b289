-- A policy file in Lua: fb.policy's options (or a built policy).
return { breaker = { failure_threshold = 5, timeout = 2 }, timeout = 1 }
