#!/usr/bin/env bash
# Redis and MongoDB exporters on the monitoring VM, pointed at the Kong VM over the private
# network (KONGSTACK_HOST_VM_KONG is its private address). The node exporter runs on every VM
# (node-exporter.sh). The MongoDB URI is passed in the environment (MONGODB_URL, from the
# 0600 defaults file), never on the command line, where `ps` would show it.
set -euo pipefail
. /opt/kongstack/lib.sh
KONG_HOST=${KONGSTACK_HOST_VM_KONG:-127.0.0.1}
REDIS=${KONGSTACK_EXPORTERS_REDIS_PORT:-9121}
MONGO=${KONGSTACK_EXPORTERS_MONGODB_PORT:-9216}

apt_install prometheus-redis-exporter prometheus-mongodb-exporter
configure() {  # configure DEFAULTS_FILE UNIT KEY=VALUE... : the unit restarts when a line changed
  local file=$1 unit=$2 restart= kv
  shift 2
  for kv in "$@"; do
    if set_line "$file" "${kv%%=*}" "${kv#*=}"; then restart=restart; fi
  done
  if [ "$(stat -c '%a' "$file")" != 600 ]; then chmod 0600 "$file"; changed "set mode 0600 on $file"; fi
  service_up "$unit" $restart
}
configure /etc/default/prometheus-redis-exporter prometheus-redis-exporter \
  "ARGS=\"-redis.addr redis://${KONG_HOST}:${KONGSTACK_REDIS_REDIS_PORT:-6379} -web.listen-address :${REDIS}\""
configure /etc/default/prometheus-mongodb-exporter prometheus-mongodb-exporter \
  "MONGODB_URL='mongodb://${KONG_HOST}:${KONGSTACK_MONGODB_MONGODB_PORT:-5044}'" \
  "ARGS=\"-web.listen-address=:${MONGO}\""
for port in "$REDIS" "$MONGO"; do wait_http "http://127.0.0.1:${port}/metrics" 30; done
if pgrep -a -f prometheus-mongodb-exporter | grep -q 'mongodb://'; then
  die "the MongoDB URI is visible in the process list"
fi
ok "exporters up; MongoDB URI only in the environment"
