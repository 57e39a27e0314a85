#!/usr/bin/env bash
set -euo pipefail
# The log aggregator on the logs VM: Fluent Bit with deployments/logging/fluent-bit-aggregator.conf
# (rendered with the topology's ports) and parsers.conf, uploaded to $KONGSTACK_FILES.
# Inputs: secure forward :24224 (shippers; shared key = the log token), http on 127.0.0.1:9880
# behind nginx on the ingest port (log-gate.conf: only POST /kong with the log token, what
# Kong's http-log sends), syslog on 127.0.0.1:5140; output: Elasticsearch, daily indices
# kongstack-logs-YYYY.MM.DD, which the index template, ILM policy and ingest pipeline installed
# by the deployer match. fluent-bit.env (0600) holds the ELASTICSEARCH_* credentials and
# KONGSTACK_LOG_TOKEN that the config references; log-gate.conf (0600) holds the token too.
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_LOG_FORWARDER_INGEST_PORT:-8000}
. /etc/os-release

apt_repo fluent-bit https://packages.fluentbit.io/fluentbit.key \
  "deb [signed-by=KEYRING] https://packages.fluentbit.io/ubuntu/${VERSION_CODENAME} ${VERSION_CODENAME} main"
apt_install fluent-bit
CONFIG=$(staged fluent-bit.conf)
PARSERS=$(staged parsers.conf)
ENVFILE=$(staged fluent-bit.env)
GATE=$(staged log-gate.conf)
install -d -m 0750 /var/lib/fluent-bit/buffer
# check the pair before installing it (the config names parsers.conf relative to itself)
( set -a; . "$ENVFILE"; /opt/fluent-bit/bin/fluent-bit --dry-run -c "$CONFIG" >/dev/null ) \
  || die "rendered fluent-bit.conf failed fluent-bit --dry-run"
restart=
if put_file "$PARSERS" /etc/fluent-bit/parsers.conf 0644; then restart=restart; fi
if put_file "$CONFIG" /etc/fluent-bit/fluent-bit.conf 0644; then restart=restart; fi
if put_file "$ENVFILE" /etc/default/fluent-bit 0600; then restart=restart; fi
service_up fluent-bit $restart
wait_http "http://127.0.0.1:2020/" 30  # the monitoring server (HTTP_Server On)

# nginx on the ingest port: the token check in front of Fluent Bit's HTTP input
apt_install nginx
if [ -e /etc/nginx/sites-enabled/default ]; then
  rm -f /etc/nginx/sites-enabled/default; changed "removed nginx's default site"
fi
if put_file "$GATE" /etc/nginx/conf.d/kongstack-log-gate.conf 0600; then gate=restart; else gate=; fi
nginx -t -q || die "log-gate.conf failed nginx -t"
service_up nginx $gate
deadline=$(( $(date +%s) + 30 ))
until [ "$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:${PORT}/kong")" = 401 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || die "the log gate on ${PORT} does not refuse requests without the token"
  sleep 1
done
ok "Kong's logs are accepted on ${PORT} with the log token only"
