-- Upstream targets kept at run time, the way Kong's balancer keeps them: the list and its
-- version live in a shared dictionary (every worker sees a change at its next request, no
-- reload), health in another. Selection is nginx's smooth weighted round robin over the
-- targets with weight > 0 that are not unhealthy; weight 0 is a drain (no new requests,
-- open ones finish).
local cjson = require "cjson.safe"

local targets_dict = ngx.shared.kongstack_targets
local health_dict = ngx.shared.kongstack_health

local M = {}

local cache = { version = -1, list = {} }

local ADDRESS = "^([%w%.%-]+):(%d+)$"

function M.parse_address(address)
  if type(address) ~= "string" then
    return nil
  end
  local host, port = address:match(ADDRESS)
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil
  end
  return host, port
end

-- Validate a {address = weight} map; returns the sorted list or nil and the reason.
function M.validate(map)
  if type(map) ~= "table" then
    return nil, "targets: expected an object of address: weight"
  end
  local list = {}
  for address, weight in pairs(map) do
    if not M.parse_address(address) then
      return nil, "targets: " .. tostring(address) .. " is not host:port"
    end
    if type(weight) ~= "number" or weight ~= math.floor(weight) or weight < 0
        or weight > 65535 then
      return nil, "targets." .. address .. ": weight must be an integer 0..65535"
    end
    table.insert(list, { target = address, weight = weight })
  end
  table.sort(list, function(a, b) return a.target < b.target end)
  return list
end

local function forget_health(address)
  for _, suffix in ipairs({ "|state", "|success", "|tcp_failures", "|http_failures",
                            "|timeouts" }) do
    health_dict:delete(address .. suffix)
  end
end

-- Replace the whole target list; returns the new version.
function M.replace(list)
  local old = cjson.decode(targets_dict:get("targets") or "[]") or {}
  local keep = {}
  for _, t in ipairs(list) do
    keep[t.target] = true
  end
  for _, t in ipairs(old) do
    if not keep[t.target] then
      forget_health(t.target)
    end
  end
  local ok, err = targets_dict:set("targets", cjson.encode(list))
  if not ok then
    return nil, err
  end
  return targets_dict:incr("version", 1, 0)
end

-- init_by_lua: the list kongstack last wrote, so a (re)started nginx serves at once.
function M.load(path)
  local data = require("kongstack.site").read_json(path)
  local list = {}
  if data and data.targets then
    list = assert(M.validate(data.targets))
  end
  assert(M.replace(list))
end

function M.version()
  return targets_dict:get("version") or 0
end

local function refresh()
  local version = M.version()
  if version == cache.version then
    return cache.list
  end
  local previous = {}
  for _, t in ipairs(cache.list) do
    previous[t.target] = t.current
  end
  local list = {}
  for _, t in ipairs(cjson.decode(targets_dict:get("targets") or "[]") or {}) do
    local host, port = M.parse_address(t.target)
    table.insert(list, { target = t.target, weight = t.weight, host = host, port = port,
                         current = previous[t.target] or 0 })
  end
  cache = { version = version, list = list }
  return list
end

function M.list()
  return refresh()
end

function M.health(address)
  return health_dict:get(address .. "|state") or "healthy"
end

function M.set_health(address, state)
  health_dict:set(address .. "|state", state)
  for _, counter in ipairs({ "|success", "|tcp_failures", "|http_failures", "|timeouts" }) do
    health_dict:set(address .. counter, 0)
  end
end

-- Smooth weighted round robin (nginx's algorithm) among the selectable targets.
function M.pick(exclude)
  local best, total = nil, 0
  for _, t in ipairs(refresh()) do
    if t.weight > 0 and not (exclude and exclude[t.target])
        and M.health(t.target) ~= "unhealthy" then
      t.current = t.current + t.weight
      total = total + t.weight
      if best == nil or t.current > best.current then
        best = t
      end
    end
  end
  if best then
    best.current = best.current - total
  end
  return best
end

local function known(address)
  for _, t in ipairs(refresh()) do
    if t.target == address then
      return t.weight > 0
    end
  end
  return false
end

-- One observation about a target, active or passive: "success", "tcp_failures",
-- "http_failures" or "timeouts". Thresholds come from the upstream's healthchecks (Kong's
-- shape); 0 disables that criterion. A success clears the failure counters and vice versa.
function M.report(address, kind, checks)
  if checks == nil or not known(address) then
    return
  end
  local state = M.health(address)
  if kind == "success" then
    local needed = checks.healthy.successes or 0
    for _, counter in ipairs({ "|tcp_failures", "|http_failures", "|timeouts" }) do
      health_dict:set(address .. counter, 0)
    end
    if state == "unhealthy" and needed > 0 then
      if health_dict:incr(address .. "|success", 1, 0) >= needed then
        M.set_health(address, "healthy")
        ngx.log(ngx.WARN, "kongstack: target ", address, " is healthy again")
      end
    end
    return
  end
  local limit = checks.unhealthy[kind] or 0
  if limit <= 0 or state == "unhealthy" then
    return
  end
  health_dict:set(address .. "|success", 0)
  if health_dict:incr(address .. "|" .. kind, 1, 0) >= limit then
    M.set_health(address, "unhealthy")
    ngx.log(ngx.WARN, "kongstack: target ", address, " is unhealthy (", limit, " ", kind, ")")
  end
end

function M.status_in(status, statuses)
  for _, s in ipairs(statuses or {}) do
    if s == status then
      return true
    end
  end
  return false
end

return M
