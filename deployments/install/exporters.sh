#!/usr/bin/env bash
# Exporters on the monitoring VM: node (this host), Redis and MongoDB on the Kong VM (reached
# over the private network; KONGSTACK_HOST_VM_KONG is its private address).
set -euo pipefail
. /opt/kongstack/lib.sh
KONG_HOST=${KONGSTACK_HOST_VM_KONG:-127.0.0.1}
NODE=${KONGSTACK_EXPORTERS_NODE_PORT:-9100}
REDIS=${KONGSTACK_EXPORTERS_REDIS_PORT:-9121}
MONGO=${KONGSTACK_EXPORTERS_MONGODB_PORT:-9216}

apt_install prometheus-node-exporter prometheus-redis-exporter prometheus-mongodb-exporter
set_args() {  # set_args DEFAULTS_FILE UNIT ARGS
  local want="ARGS=\"$3\""
  if [ "$(grep '^ARGS=' "$1" 2>/dev/null)" != "$want" ]; then
    sed -i '/^ARGS=/d' "$1" 2>/dev/null || true; echo "$want" >> "$1"
    changed "configured $2"; service_up "$2" restart
  else
    service_up "$2"
  fi
}
set_args /etc/default/prometheus-node-exporter prometheus-node-exporter "--web.listen-address=:${NODE}"
set_args /etc/default/prometheus-redis-exporter prometheus-redis-exporter \
  "-redis.addr redis://${KONG_HOST}:${KONGSTACK_REDIS_REDIS_PORT:-6379} -web.listen-address :${REDIS}"
set_args /etc/default/prometheus-mongodb-exporter prometheus-mongodb-exporter \
  "--mongodb.uri=mongodb://${KONG_HOST}:${KONGSTACK_MONGODB_MONGODB_PORT:-5044} --web.listen-address=:${MONGO}"
for port in "$NODE" "$REDIS" "$MONGO"; do wait_http "http://127.0.0.1:${port}/metrics" 30; done
