#!/usr/bin/env bash
set -euo pipefail
# Prometheus on the seed's port. Its configuration is rendered by the deployer
# (tasks.monitoring.write_monitoring_files for the VMs' private addresses) and uploaded to
# $KONGSTACK_FILES: prometheus.yml, rules/kongstack.rules.yml, targets/stock_api.json.
# Relative paths in prometheus.yml resolve to /etc/prometheus/{rules,targets}. The staged set
# is checked with promtool before it replaces anything; a changed config is reloaded (SIGHUP).
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_PROMETHEUS_HTTP_PORT:-9200}
ETC=/etc/prometheus

apt_install prometheus
CONFIG=$(staged prometheus.yml)
staged rules/kongstack.rules.yml >/dev/null
promtool check config "$CONFIG" >/dev/null || die "rendered prometheus.yml failed promtool check"

reload=
if put_file "$CONFIG" "$ETC/prometheus.yml" 0644; then reload=reload; fi
if sync_dir "$KONGSTACK_FILES/rules" "$ETC/rules" 0644; then reload=reload; fi
# file_sd targets: Prometheus re-reads them itself (inotify), no reload needed
if sync_dir "$KONGSTACK_FILES/targets" "$ETC/targets" 0644; then :; fi

restart=
want_args="--web.listen-address=0.0.0.0:${PORT} --web.enable-lifecycle --storage.tsdb.retention.time=15d"
if set_line /etc/default/prometheus ARGS "\"${want_args}\""; then restart=restart; fi
promtool check config "$ETC/prometheus.yml" >/dev/null
since=$(date +%s)
if [ -z "$restart" ] && [ -n "$reload" ] && systemctl is-active --quiet prometheus; then
  systemctl reload prometheus; changed "reloaded prometheus"
fi
service_up prometheus $restart
wait_http "http://127.0.0.1:${PORT}/-/ready" 60
[ -z "$reload$restart" ] || wait_loaded "http://127.0.0.1:${PORT}/metrics" prometheus "$since" 30
