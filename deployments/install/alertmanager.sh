#!/usr/bin/env bash
# Alertmanager on the monitoring VM (routing is rendered by tasks.monitoring and uploaded
# as /etc/prometheus/alertmanager.yml when present; a null receiver otherwise).
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_ALERTMANAGER_HTTP_PORT:-9093}

apt_install prometheus-alertmanager
if [ ! -s /etc/prometheus/alertmanager.yml ]; then
  printf 'route: {receiver: "null"}\nreceivers: [{name: "null"}]\n' > /etc/prometheus/alertmanager.yml
  changed "wrote a default alertmanager.yml"
fi
want_args="ARGS=\"--web.listen-address=0.0.0.0:${PORT} --cluster.listen-address=\""
restart=
if [ "$(grep '^ARGS=' /etc/default/prometheus-alertmanager 2>/dev/null)" != "$want_args" ]; then
  sed -i '/^ARGS=/d' /etc/default/prometheus-alertmanager 2>/dev/null || true
  echo "$want_args" >> /etc/default/prometheus-alertmanager; changed "set alertmanager listen address"; restart=restart
fi
amtool check-config /etc/prometheus/alertmanager.yml >/dev/null
service_up prometheus-alertmanager $restart
wait_http "http://127.0.0.1:${PORT}/-/ready" 60
