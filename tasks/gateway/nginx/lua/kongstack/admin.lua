-- The runtime API of the local gateway, on the loopback-only status server:
--   GET /kongstack/targets                  targets with weight and health, and the version
--   PUT /kongstack/targets {"targets": {"host:port": weight, ...}}
--                                           replace the list (add, drain = weight 0, remove)
--   PUT /kongstack/targets/{host:port}/healthy|unhealthy
--                                           manual override, as Kong's Admin API
-- A change is in effect for the next request of every worker: nothing reloads.
local cjson = require "cjson.safe"
local site = require "kongstack.site"
local targets = require "kongstack.targets"

local M = {}

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(cjson.encode(body))
  return ngx.exit(status)
end

local function health_of(t)
  if t.weight == 0 then
    return "HEALTHCHECKS_OFF"
  end
  local checks = site.current and site.current.healthchecks
  if checks == nil or (checks.active == nil and checks.passive == nil) then
    return "HEALTHCHECKS_OFF"
  end
  return targets.health(t.target) == "unhealthy" and "UNHEALTHY" or "HEALTHY"
end

local function list()
  local data = {}
  for _, t in ipairs(targets.list()) do
    table.insert(data, { target = t.target, weight = t.weight, health = health_of(t) })
  end
  return { version = targets.version(), data = data }
end

function M.targets()
  local method = ngx.req.get_method()
  if method == "GET" then
    return reply(200, list())
  end
  if method ~= "PUT" then
    return reply(405, { message = "Method not allowed" })
  end
  ngx.req.read_body()
  local body = cjson.decode(ngx.req.get_body_data() or "")
  if type(body) ~= "table" then
    return reply(400, { message = "Cannot parse JSON body" })
  end
  local validated, err = targets.validate(body.targets)
  if not validated then
    return reply(400, { message = err })
  end
  local version, set_err = targets.replace(validated)
  if not version then
    return reply(500, { message = "cannot store targets: " .. tostring(set_err) })
  end
  local out = list()
  out.version = version
  return reply(200, out)
end

function M.set_health(address, state)
  if ngx.req.get_method() ~= "PUT" then
    return reply(405, { message = "Method not allowed" })
  end
  for _, t in ipairs(targets.list()) do
    if t.target == address then
      targets.set_health(address, state)
      return ngx.exit(204)
    end
  end
  return reply(404, { message = "Not found" })
end

return M
