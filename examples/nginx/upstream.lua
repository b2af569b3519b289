-- The upstream of examples/nginx/nginx.conf, built in each worker by
-- init_worker_by_lua: a static peer list, a breaker per peer shared by the
-- workers (zone), up to three tries per request, each on a peer the
-- request has not tried.
return require("fusebox.ngx").upstream {
  name = "api",
  algorithm = "least_request",
  peers = { "127.0.0.1:18081", "127.0.0.1:18082", "127.0.0.1:18083" },
  breaker = { failure_threshold = 3, timeout = 3, success_threshold = 1 },
  tries = 3,
  -- the breakers live in shared memory, one per peer for every worker,
  -- and survive `nginx -s reload` (README, "In nginx")
  zone = "fusebox",
  -- what counts as a failed try (default: a 5xx; nginx reports a refused
  -- or timed-out connection as 502 or 504)
  is_failure = function(status) return status >= 500 end,
}
