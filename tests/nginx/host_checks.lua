-- tests/nginx.t's checks of fusebox on nginx's scheduler
-- (lua/fusebox/ngx_host.lua): each function is one location's handler.
local fb = require "fusebox"
require "fusebox.ngx" -- installs nginx's scheduler in this worker

local M = {}
local format = string.format

-- init_worker: a health check on a port nobody listens on; worker 0
-- probes it, the other worker must not. And HTTP checks of this nginx's
-- own /sick (503) and /fast (200).
function M.init_worker(dead_port, self_port)
  M.dead = dead_port
  local reg = fb.registry { static = true }
  reg:register("hc", "127.0.0.1", dead_port)
  M.checker = fb.health_check { registry = reg, service = "hc", interval = 0.2, timeout = 0.2,
    unhealthy_threshold = 2, on_change = function(inst, healthy)
      ngx.log(ngx.WARN, "fusebox-test health ", inst.port, " ", tostring(healthy),
        " worker ", ngx.worker.id())
    end }
  -- and one whose next round is far off: a graceful stop must not wait
  -- for it
  M.slow = fb.health_check { registry = reg, service = "hc", interval = 60, timeout = 0.2 }
  for _, path in ipairs { "/sick", "/fast" } do
    local r = fb.registry { static = true }
    r:register("self", "127.0.0.1", self_port)
    fb.health_check { registry = r, service = "self", type = "http", path = path,
      interval = 0.2, timeout = 0.5, unhealthy_threshold = 2, on_change = function(_, healthy)
        ngx.log(ngx.WARN, "fusebox-test http health ", path, " ", tostring(healthy))
      end }
  end
end

-- A retry with backoff around a timeout, in the handler: two attempts
-- time out (their children sleep 1 s and are killed), the third answers.
function M.policy()
  local p = fb.policy { retry = { attempts = 3, backoff = "constant", base = 0.2 }, timeout = 0.3 }
  local n, t0 = 0, fb.now()
  local r, err = p:call(function()
    n = n + 1
    if n < 3 then
      fb.sleep(1)
      return "too late"
    end
    return "ok"
  end)
  ngx.say(format("%s %s attempts=%d took=%.3f", tostring(r), tostring(err), n, fb.now() - t0))
end

function M.sleep()
  local t0 = fb.now()
  fb.sleep(1)
  ngx.say(format("slept %.3f", fb.now() - t0))
end

function M.refusals()
  local _, run_err = pcall(fb.run, function() end)
  local _, http_err = pcall(fb.http.request, { url = "http://127.0.0.1:1/" })
  ngx.say(run_err)
  ngx.say(http_err)
  -- a waiter nginx killed is not woken (a bulkhead would hand it a slot)
  local co = ngx.thread.spawn(function() fb.wait("forever") end)
  ngx.thread.kill(co)
  ngx.say("wake a killed waiter: ", tostring(fb.wake(co)))
  ngx.say(select(2, pcall(fb.sleep, -1)))
  ngx.say(select(2, pcall(fb.wait, "x", 0 / 0)))
end

-- log_by_lua: nothing may wait here
function M.log_phase()
  local _, err = pcall(fb.sleep, 0.1)
  ngx.log(ngx.WARN, "fusebox-test phase: ", err)
end

-- fb.client's outlier ejection: port 1 fails once, its breaker opens for
-- 1 s and the registry ejects it that long; after that it is picked again.
function M.client()
  local reg = fb.registry { static = true }
  reg:register("svc", "127.0.0.1", 1)
  reg:register("svc", "127.0.0.1", 2)
  local c = fb.client { registry = reg, balancer = "round_robin",
    policy = { retry = { attempts = 2, base = 0 } },
    per_instance_breaker = { failure_threshold = 1, timeout = 1 } }
  local broken, hits = true, {}
  local function call()
    return c:call("svc", function(inst)
      hits[#hits + 1] = inst.port
      if inst.port == 1 and broken then return nil, "503" end
      return inst.port
    end)
  end
  local function count(from)
    local n = 0
    for i = from, #hits do if hits[i] == 1 then n = n + 1 end end
    return n
  end
  for _ = 1, 2 do call() end -- port 1 fails (and is ejected), the retry reaches 2
  local mark = #hits + 1
  for _ = 1, 6 do call() end
  local during = count(mark)
  broken = false
  fb.sleep(1.2)
  mark = #hits + 1
  for _ = 1, 6 do call() end
  ngx.say(format("during=%d after=%d", during, count(mark)))
end

-- A bulkhead of one slot, queue_timeout 3 s: /bulk?hold=S holds the slot
-- S seconds.
local bulk
function M.bulkhead()
  bulk = bulk or fb.bulkhead { max_concurrent = 1, max_queue = 10, queue_timeout = 3 }
  local hold = tonumber(ngx.var.arg_hold) or 0
  local t0 = fb.now()
  local r, err = bulk:call(function() fb.sleep(hold); return "ok" end)
  ngx.say(format("%s %s %.3f", tostring(r), tostring(err), fb.now() - t0))
end

function M.clock()
  ngx.say(format("%d %.6f", ngx.worker.id(), fb.now()))
end

return M
