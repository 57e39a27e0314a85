#!/usr/bin/env bash
set -euo pipefail
# Grafana (metrics dashboards) on the seed's port 3000. The deployer uploads to
# $KONGSTACK_FILES the provisioning of deployments/grafana (data sources rendered with this
# stack's addresses; the Prometheus one has uid kongstack-prometheus, which the dashboards
# reference) and the dashboards, installed into /var/lib/grafana/dashboards/kongstack.
# The admin password comes from the environment, never from this file.
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_GRAFANA_UI_PORT:-3000}
PROVISIONING=/etc/grafana/provisioning
DASHBOARDS=/var/lib/grafana/dashboards/kongstack

apt_repo grafana https://apt.grafana.com/gpg.key "deb [signed-by=KEYRING] https://apt.grafana.com stable main"
apt_install grafana
staged provisioning/datasources/kongstack.yml >/dev/null
staged provisioning/dashboards/kongstack.yml >/dev/null
restart=
if put_file "$KONGSTACK_FILES/provisioning/datasources/kongstack.yml" \
    "$PROVISIONING/datasources/kongstack.yml" 0640 root:grafana; then restart=restart; fi
if put_file "$KONGSTACK_FILES/provisioning/dashboards/kongstack.yml" \
    "$PROVISIONING/dashboards/kongstack.yml" 0640 root:grafana; then restart=restart; fi
if [ -e "$PROVISIONING/datasources/kongstack.yaml" ]; then  # an earlier version's file (no uid)
  rm -f "$PROVISIONING/datasources/kongstack.yaml"; changed "removed the old data source file"; restart=restart
fi
[ -d "$(dirname "$DASHBOARDS")" ] || install -d -m 0755 "$(dirname "$DASHBOARDS")"
# the provider re-reads the folder every 60 s: new dashboards need no restart
if sync_dir "$KONGSTACK_FILES/dashboards" "$DASHBOARDS" 0644; then :; fi
if ! grep -qx "http_port = ${PORT}" /etc/grafana/grafana.ini; then
  sed -i "s/^;\\{0,1\\}http_port = .*/http_port = ${PORT}/" /etc/grafana/grafana.ini
  changed "set grafana http_port ${PORT}"; restart=restart
fi
service_up grafana-server $restart
wait_http "http://127.0.0.1:${PORT}/api/health" 90
