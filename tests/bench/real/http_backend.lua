-- The local backend of tests/bench/http_pool.sh: fb.http.serve answering
-- every request 200 "ok", keep-alive, until killed. Prints its URL.
local fb = require "fusebox"
local srv = assert(fb.http.serve { port = 0, max_connections = 4096, handler = function() return 200, nil, "ok" end })
print("backend on http://127.0.0.1:" .. srv:port() .. "/")
io.stdout:flush()
fb.wait("until killed")
