#!/usr/bin/env bash
# Prometheus on the seed's port, scraping the exporters and Kong over the private network.
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_PROMETHEUS_HTTP_PORT:-9200}
AM=${KONGSTACK_ALERTMANAGER_HTTP_PORT:-9093}
KONG_HOST=${KONGSTACK_HOST_VM_KONG:-127.0.0.1}
KONG_ADMIN=${KONGSTACK_KONG_ADMIN_PORT:-8001}

apt_install prometheus
if write_file /etc/prometheus/prometheus.yml 0644 <<CONF
global:
  scrape_interval: 15s
  evaluation_interval: 15s
alerting:
  alertmanagers:
    - static_configs: [{targets: ["127.0.0.1:${AM}"]}]
rule_files: ["/etc/prometheus/rules/*.yml"]
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:${PORT}"]}]
  - job_name: node
    static_configs: [{targets: ["127.0.0.1:${KONGSTACK_EXPORTERS_NODE_PORT:-9100}"]}]
  - job_name: redis
    static_configs: [{targets: ["127.0.0.1:${KONGSTACK_EXPORTERS_REDIS_PORT:-9121}"]}]
  - job_name: mongodb
    static_configs: [{targets: ["127.0.0.1:${KONGSTACK_EXPORTERS_MONGODB_PORT:-9216}"]}]
  - job_name: kong
    static_configs: [{targets: ["${KONG_HOST}:${KONG_ADMIN}"]}]
  - job_name: stock_api
    file_sd_configs: [{files: ["/etc/prometheus/targets/stock_api.json"]}]
CONF
then restart=restart; else restart=; fi
install -d -m 0755 /etc/prometheus/rules /etc/prometheus/targets
[ -f /etc/prometheus/targets/stock_api.json ] || { echo '[]' > /etc/prometheus/targets/stock_api.json; changed "created empty stock_api targets"; }
want_args="ARGS=\"--web.listen-address=0.0.0.0:${PORT} --web.enable-lifecycle --storage.tsdb.retention.time=15d\""
if [ "$(grep '^ARGS=' /etc/default/prometheus 2>/dev/null)" != "$want_args" ]; then
  sed -i '/^ARGS=/d' /etc/default/prometheus 2>/dev/null || true
  echo "$want_args" >> /etc/default/prometheus; changed "set prometheus listen address"; restart=restart
fi
promtool check config /etc/prometheus/prometheus.yml >/dev/null
service_up prometheus $restart
wait_http "http://127.0.0.1:${PORT}/-/ready" 60
