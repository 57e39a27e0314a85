-- The request path of the local gateway, in the order of Kong's plugins: route by path and
-- method, key-auth (priority 1250), ACL (950), rate-limiting (910), then the balancer.
-- Every refusal is Kong's status and body, carries the request id, is logged with the
-- correlation id and the reason ($kongstack_denied), and never reaches an instance.
local cjson = require "cjson.safe"
local balancer = require "ngx.balancer"
local site = require "kongstack.site"
local targets = require "kongstack.targets"

local ratelimit_dict = ngx.shared.kongstack_ratelimit

local M = {}

local WINDOWS = { { "second", 1 }, { "minute", 60 }, { "hour", 3600 }, { "day", 86400 } }
local CONSUMER_HEADERS = { "X-Consumer-ID", "X-Consumer-Custom-ID", "X-Consumer-Username",
                           "X-Credential-Identifier", "X-Anonymous-Consumer",
                           "X-Consumer-Groups", "X-Authenticated-Groups" }

local function refuse(status, message, reason, headers)
  ngx.var.kongstack_denied = reason
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  for name, value in pairs(headers or {}) do
    ngx.header[name] = value
  end
  ngx.print(cjson.encode({ message = message, request_id = ngx.var.request_id }))
  return ngx.exit(status)
end

local function match_route(path_key)
  local method = ngx.req.get_method()
  for _, route in ipairs(site.current.by_path[path_key] or {}) do
    if route.method_set == nil or route.method_set[method] then
      return route
    end
  end
  return nil
end

-- Kong's key-auth: the first configured name found in a header (and, if allowed, the query
-- string); a repeated header is "Duplicate API key found".
local function find_key(conf)
  local headers = ngx.req.get_headers()
  local args = conf.key_in_query and ngx.req.get_uri_args() or nil
  for _, name in ipairs(conf.key_names) do
    local value = conf.key_in_header and headers[name] or nil
    if value == nil and args then
      value = args[name]
    end
    if type(value) == "table" then
      return nil, name, true
    end
    if value ~= nil and value ~= true and value ~= "" then
      return value, name, false
    end
  end
  return nil, nil, false
end

local function key_auth(conf)
  local key, name, duplicate = find_key(conf)
  local challenge = { ["WWW-Authenticate"] = conf.realm and ('Key realm="' .. conf.realm .. '"')
                      or "Key" }
  if duplicate then
    return refuse(401, "Duplicate API key found", "duplicate_key", challenge)
  end
  if key == nil then
    local reason = "no_key"
    if not conf.key_in_query then
      local args = ngx.req.get_uri_args()
      for _, n in ipairs(conf.key_names) do
        if args[n] ~= nil then
          reason = "key_in_query_not_allowed"
        end
      end
    end
    return refuse(401, "No API key found in request", reason, challenge)
  end
  local consumer = site.current.keys[key]
  if consumer == nil then
    return refuse(401, "Unauthorized", "invalid_key", challenge)
  end
  if conf.hide_credentials then
    ngx.req.clear_header(name)
    if conf.key_in_query then
      local args = ngx.req.get_uri_args()
      if args[name] ~= nil then
        args[name] = nil
        ngx.req.set_uri_args(args)
      end
    end
  end
  ngx.req.set_header("X-Consumer-Username", consumer.username)
  ngx.var.kongstack_consumer = consumer.username
  return consumer
end

local function acl(rule, consumer)
  if consumer == nil then
    return refuse(401, "Unauthorized", "acl_no_consumer")
  end
  local in_group = false
  local groups = rule.allow_set or rule.deny_set or {}
  for group in pairs(consumer.group_set) do
    if groups[group] then
      in_group = true
    end
  end
  local blocked = rule.deny_set and in_group or (not rule.deny_set and not in_group)
  if blocked then
    local wanted = table.concat(rule.allow or rule.deny or {}, ", ")
    return refuse(403, "You cannot consume this service",
                  "acl: consumer " .. consumer.username .. " not in " .. wanted)
  end
  if not rule.hide_groups_header then
    ngx.req.set_header("X-Consumer-Groups", consumer.groups_header)
  end
end

-- Kong's rate-limiting with policy local: fixed windows aligned to the clock, counted per
-- consumer (or client IP without one); the most constrained window fills RateLimit-*.
local function rate_limit(limits, identifier)
  local now = ngx.time()
  local headers, stop = {}, nil
  local best_remaining, best_window, best_limit, reset
  local counted = {}
  for _, w in ipairs(WINDOWS) do
    local period, size = w[1], w[2]
    local limit = limits[period]
    if limit then
      local start = now - now % size
      local key = identifier .. "|" .. period .. "|" .. start
      local used = ratelimit_dict:incr(key, 1, 0, size + 1)
      table.insert(counted, key)
      local remaining = limit - (used or 0)
      if remaining < 0 then
        stop = period
      end
      remaining = math.max(0, remaining)
      local window_reset = math.max(1, size - (now - start))
      headers["X-RateLimit-Limit-" .. period:gsub("^%l", string.upper)] = limit
      headers["X-RateLimit-Remaining-" .. period:gsub("^%l", string.upper)] = remaining
      if best_remaining == nil or remaining < best_remaining
          or (remaining == best_remaining and size > best_window) then
        best_remaining, best_window, best_limit, reset = remaining, size, limit, window_reset
      end
    end
  end
  if best_limit == nil then
    return
  end
  headers["RateLimit-Limit"] = best_limit
  headers["RateLimit-Remaining"] = best_remaining
  headers["RateLimit-Reset"] = reset
  ngx.ctx.ratelimit_headers = headers
  if stop then
    for _, key in ipairs(counted) do  -- a refused request uses no budget, as in Kong
      ratelimit_dict:incr(key, -1, 0)
    end
    headers["Retry-After"] = reset
    return refuse(429, "API rate limit exceeded", "rate_limited:" .. stop)
  end
end

function M.access(path_key)
  local current = site.current
  for _, header in ipairs(CONSUMER_HEADERS) do  -- never trust a client's identity headers
    ngx.req.clear_header(header)
  end
  local route = match_route(path_key)
  if route == nil then
    return refuse(404, "no Route matched with those values", "no_route")
  end
  ngx.var.kongstack_route = route.name
  local consumer
  if current.key_auth then
    consumer = key_auth(current.key_auth)
  end
  if route.acl then
    acl(route.acl, consumer)
  end
  local limits = consumer and consumer.limits or current.limits
  if limits then
    -- Kong's limit_by consumer falls back to the client IP when there is no consumer.
    local identifier = (consumer and current.limit_by ~= "ip")
                       and ("consumer:" .. consumer.username) or ("ip:" .. ngx.var.remote_addr)
    rate_limit(limits, identifier)
  end
  -- Kong's request-transformer (priority 801, after rate limiting): remove, then add; the
  -- added values (the gateway secret) come from the 0600 site file, never from the client.
  for _, header in ipairs(current.remove_headers or {}) do
    ngx.req.clear_header(header)
  end
  local add = current.add_headers
  if add and next(add) then
    local present = ngx.req.get_headers()  -- case-insensitive lookups
    for header, value in pairs(add) do
      if present[header] == nil then
        ngx.req.set_header(header, value)
      end
    end
  end
  if route.strip_path then
    local uri = ngx.var.uri:sub(#path_key + 1)
    ngx.req.set_uri(uri:sub(1, 1) == "/" and uri or ("/" .. uri), false)
  end
  local peer = targets.pick()
  if peer == nil then
    return refuse(503, "failure to get a peer from the ring-balancer", "no_healthy_target")
  end
  ngx.ctx.peer = peer
  ngx.ctx.tried = { [peer.target] = true }
end

-- A retry reports the previous try to the passive checks (as Kong's balancer does) and
-- moves to another target when there is one.
function M.balance()
  local ctx = ngx.ctx
  local checks = site.current.healthchecks
  if ctx.tries == nil then
    ctx.tries = 1
    if (site.current.retries or 0) > 0 then
      balancer.set_more_tries(site.current.retries)
    end
  else
    ctx.tries = ctx.tries + 1
    local state, code = balancer.get_last_failure()
    local passive = checks and checks.passive
    if passive and state == "failed" then
      targets.report(ctx.peer.target, code == 504 and "timeouts" or "tcp_failures", passive)
    elseif passive and state == "next" then
      if targets.status_in(code, passive.unhealthy.http_statuses) then
        targets.report(ctx.peer.target, "http_failures", passive)
      end
    end
    ctx.peer = targets.pick(ctx.tried) or ctx.peer
    ctx.tried[ctx.peer.target] = true
  end
  local ok, err = balancer.set_current_peer(ctx.peer.host, ctx.peer.port)
  if not ok then
    ngx.log(ngx.ERR, "kongstack: cannot set peer ", ctx.peer.target, ": ", err)
    return ngx.exit(500)
  end
end

function M.header_filter()
  local headers = ngx.ctx.ratelimit_headers
  if headers then
    for name, value in pairs(headers) do
      ngx.header[name] = value
    end
  end
end

local function last(list)
  return list and list:match("([^,%s]+)%s*$") or nil
end

-- The last try's outcome goes to the passive checks: no connection is a TCP failure, a
-- timeout a timeout, otherwise the upstream's status.
function M.log()
  local ctx = ngx.ctx
  local checks = site.current.healthchecks
  local passive = checks and checks.passive
  if ctx.peer == nil or passive == nil then
    return
  end
  local status = tonumber(last(ngx.var.upstream_status))
  local header_time = last(ngx.var.upstream_header_time)
  if ngx.status == 504 and (header_time == nil or header_time == "-") then
    targets.report(ctx.peer.target, "timeouts", passive)
  elseif status == nil or status == 502 and (header_time == nil or header_time == "-") then
    targets.report(ctx.peer.target, "tcp_failures", passive)
  elseif targets.status_in(status, passive.unhealthy.http_statuses) then
    targets.report(ctx.peer.target, "http_failures", passive)
  elseif targets.status_in(status, passive.healthy.http_statuses) then
    targets.report(ctx.peer.target, "success", passive)
  end
end

return M
