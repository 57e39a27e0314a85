#!/usr/bin/env bash
set -euo pipefail
# Alertmanager on the monitoring VM. alertmanager.yml is rendered by the deployer
# (tasks.monitoring) and uploaded to $KONGSTACK_FILES with secrets/*: the receivers' secret
# files (SMTP password, Slack URL), resolved from env/Secret blocks at deploy time. They land
# in /etc/prometheus/alertmanager-secrets (0700 dir, 0600 files, owned by the service user);
# files of receivers no longer configured are removed. Changes are checked, then reloaded.
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_ALERTMANAGER_HTTP_PORT:-9093}
SECRETS=/etc/prometheus/alertmanager-secrets
USER_GROUP=prometheus:prometheus

apt_install prometheus-alertmanager
CONFIG=$(staged alertmanager.yml)
reload=
if [ ! -d "$SECRETS" ]; then install -d -m 0700 -o prometheus -g prometheus "$SECRETS"; changed "created $SECRETS"; fi
if [ "$(stat -c '%a %U:%G' "$SECRETS")" != "700 $USER_GROUP" ]; then
  chmod 0700 "$SECRETS"; chown "$USER_GROUP" "$SECRETS"; changed "set mode 0700 on $SECRETS"
fi
# secrets first: the checked config refers to them
if sync_dir "$KONGSTACK_FILES/secrets" "$SECRETS" 0600 "$USER_GROUP"; then reload=reload; fi
amtool check-config "$CONFIG" >/dev/null || die "rendered alertmanager.yml failed amtool check-config"
if put_file "$CONFIG" /etc/prometheus/alertmanager.yml 0644; then reload=reload; fi

restart=
if set_line /etc/default/prometheus-alertmanager ARGS \
    "\"--web.listen-address=0.0.0.0:${PORT} --cluster.listen-address=\""; then restart=restart; fi
since=$(date +%s)
if [ -z "$restart" ] && [ -n "$reload" ] && systemctl is-active --quiet prometheus-alertmanager; then
  systemctl reload prometheus-alertmanager; changed "reloaded alertmanager"
fi
service_up prometheus-alertmanager $restart
wait_http "http://127.0.0.1:${PORT}/-/ready" 60
[ -z "$reload$restart" ] || wait_loaded "http://127.0.0.1:${PORT}/metrics" alertmanager "$since" 30
