#!/usr/bin/env bash
# Grafana (metrics dashboards) on the seed's port 3000 with Prometheus provisioned as the
# default data source. The admin password comes from the environment, never from this file.
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_GRAFANA_UI_PORT:-3000}
PROM=${KONGSTACK_PROMETHEUS_HTTP_PORT:-9200}

apt_repo grafana https://apt.grafana.com/gpg.key "deb [signed-by=KEYRING] https://apt.grafana.com stable main"
apt_install grafana
restart=
if write_file /etc/grafana/provisioning/datasources/kongstack.yaml 0644 <<CONF
apiVersion: 1
datasources:
  - name: Prometheus
    type: prometheus
    access: proxy
    url: http://127.0.0.1:${PROM}
    isDefault: true
CONF
then restart=restart; fi
if ! grep -qx "http_port = ${PORT}" /etc/grafana/grafana.ini; then
  sed -i "s/^;\\{0,1\\}http_port = .*/http_port = ${PORT}/" /etc/grafana/grafana.ini
  changed "set grafana http_port ${PORT}"; restart=restart
fi
service_up grafana-server $restart
wait_http "http://127.0.0.1:${PORT}/api/health" 90
