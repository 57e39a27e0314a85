-- Active health checks, as Kong's: every `healthy.interval` seconds a healthy target gets
-- `GET http_path`, every `unhealthy.interval` seconds an unhealthy one; the statuses and
-- counters decide (kongstack.targets.report). One worker probes; all workers see the state.
-- Targets with weight 0 are not probed (Kong reports them HEALTHCHECKS_OFF).
local targets = require "kongstack.targets"
local site = require "kongstack.site"

local M = {}

local TICK = 0.25  -- seconds: the resolution of the probe schedule
local last_probe = {}
local running = false

local function probe(t, active)
  local sock = ngx.socket.tcp()
  sock:settimeout((active.timeout or 1) * 1000)
  local ok, err = sock:connect(t.host, t.port)
  if not ok then
    return err == "timeout" and "timeouts" or "tcp_failures"
  end
  local request = "GET " .. (active.http_path or "/") .. " HTTP/1.0\r\nHost: " .. t.target
    .. "\r\nUser-Agent: kongstack-healthcheck\r\nConnection: close\r\n\r\n"
  ok, err = sock:send(request)
  local line
  if ok then
    line, err = sock:receive("*l")
  end
  sock:close()
  if not line then
    return err == "timeout" and "timeouts" or "tcp_failures"
  end
  local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
  if targets.status_in(status, active.healthy.http_statuses) then
    return "success"
  end
  if targets.status_in(status, active.unhealthy.http_statuses) then
    return "http_failures"
  end
  return nil  -- a status in neither list counts for nothing, as in Kong
end

local function run()
  local checks = site.current and site.current.healthchecks
  local active = checks and checks.active
  if not active then
    return
  end
  local now = ngx.now()
  local threads = {}
  for _, t in ipairs(targets.list()) do
    if t.weight > 0 then
      local unhealthy = targets.health(t.target) == "unhealthy"
      local interval = unhealthy and active.unhealthy.interval or active.healthy.interval
      if interval and interval > 0 and now - (last_probe[t.target] or 0) >= interval then
        last_probe[t.target] = now
        table.insert(threads, ngx.thread.spawn(function()
          local outcome = probe(t, active)
          if outcome then
            targets.report(t.target, outcome, active)
          end
        end))
      end
    end
  end
  for _, thread in ipairs(threads) do
    ngx.thread.wait(thread)
  end
end

local function tick(premature)
  if premature or running then
    return
  end
  running = true
  local ok, err = pcall(run)
  running = false
  if not ok then
    ngx.log(ngx.ERR, "kongstack: active health check failed: ", err)
  end
end

function M.start()
  if ngx.worker.id() ~= 0 then
    return
  end
  local ok, err = ngx.timer.every(TICK, tick)
  if not ok then
    ngx.log(ngx.ERR, "kongstack: cannot start active health checks: ", err)
  end
end

return M
