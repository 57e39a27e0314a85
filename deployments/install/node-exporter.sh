#!/usr/bin/env bash
# The node exporter on every VM (HostHighCpu/HostHighMemory and the dashboards read it),
# on the exporters role's node port; Prometheus scrapes it over the private network.
set -euo pipefail
. /opt/kongstack/lib.sh
require_env KONGSTACK_NODE_EXPORTER_PORT
PORT=$KONGSTACK_NODE_EXPORTER_PORT

apt_install prometheus-node-exporter
restart=
if set_line /etc/default/prometheus-node-exporter ARGS "\"--web.listen-address=:${PORT}\""; then
  restart=restart
fi
service_up prometheus-node-exporter $restart
wait_http "http://127.0.0.1:${PORT}/metrics" 30
