-- The gateway's configuration, read once per configuration load (init_by_lua, in the
-- master): routes, key-auth, consumers with their groups and limits, health checks.
-- Written by kongstack (tasks/gateway/nginx/site.py); a change is a reload. Targets are
-- not part of it: they change at run time (kongstack.targets).
local cjson = require "cjson.safe"

local M = { current = nil }

local function read_json(path)
  local file, err = io.open(path, "r")
  if not file then
    return nil, err
  end
  local raw = file:read("*a")
  file:close()
  local data, decode_err = cjson.decode(raw)
  if data == nil then
    return nil, path .. ": " .. tostring(decode_err)
  end
  return data
end
M.read_json = read_json

-- JSON null becomes absent, so Lua code tests fields with plain nil checks.
local function strip_nulls(value)
  if type(value) ~= "table" then
    return value
  end
  for k, v in pairs(value) do
    if v == cjson.null then
      value[k] = nil
    else
      strip_nulls(v)
    end
  end
  return value
end

local function set_of(list)
  local out = {}
  for _, v in ipairs(list or {}) do
    out[v] = true
  end
  return out
end

function M.init(site_path, targets_path)
  local site = strip_nulls(assert(read_json(site_path)))
  site.keys = {}
  for username, consumer in pairs(site.consumers or {}) do
    consumer.username = username
    consumer.group_set = set_of(consumer.groups)
    consumer.groups_header = table.concat(consumer.groups or {}, ", ")
    site.keys[consumer.key] = consumer
    consumer.key = nil  -- the lookup table holds it; nothing else needs it
  end
  site.by_path = {}
  for _, route in ipairs(site.routes or {}) do
    route.method_set = route.methods and set_of(route.methods) or nil
    if route.acl then
      route.acl.allow_set = route.acl.allow and set_of(route.acl.allow) or nil
      route.acl.deny_set = route.acl.deny and set_of(route.acl.deny) or nil
    end
    for _, path in ipairs(route.paths) do
      site.by_path[path] = site.by_path[path] or {}
      table.insert(site.by_path[path], route)
    end
  end
  M.current = site
  require("kongstack.targets").load(targets_path)
end

return M
