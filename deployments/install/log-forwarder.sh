#!/usr/bin/env bash
set -euo pipefail
# The log aggregator on the logs VM: Fluent Bit with deployments/logging/fluent-bit-aggregator.conf
# (rendered with the topology's ports) and parsers.conf, uploaded to $KONGSTACK_FILES.
# Inputs: forward :24224 (shippers), http on the ingest port (Kong's http-log plugin), syslog
# :5140 (nginx); output: Elasticsearch, daily indices kongstack-logs-YYYY.MM.DD, which the
# index template, ILM policy and ingest pipeline installed by the deployer match.
# fluent-bit.env (0600) holds the ELASTICSEARCH_* credentials the config references.
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_LOG_FORWARDER_INGEST_PORT:-8000}
. /etc/os-release

apt_repo fluent-bit https://packages.fluentbit.io/fluentbit.key \
  "deb [signed-by=KEYRING] https://packages.fluentbit.io/ubuntu/${VERSION_CODENAME} ${VERSION_CODENAME} main"
apt_install fluent-bit
CONFIG=$(staged fluent-bit.conf)
PARSERS=$(staged parsers.conf)
ENVFILE=$(staged fluent-bit.env)
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
deadline=$(( $(date +%s) + 30 ))
until curl -s --max-time 3 -o /dev/null "http://127.0.0.1:${PORT}/"; do  # the http input listens
  [ "$(date +%s)" -lt "$deadline" ] || die "fluent-bit http input not listening on ${PORT}"
  sleep 1
done
ok "fluent-bit accepts Kong's logs on ${PORT}"
