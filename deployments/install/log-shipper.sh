#!/usr/bin/env bash
set -euo pipefail
# The log shipper on the VMs that write request logs (stock API instances, nginx): Fluent Bit
# with deployments/logging/fluent-bit-shipper.conf (rendered with the logs VM's private address)
# and parsers.conf, uploaded to $KONGSTACK_FILES. It tails /var/log/kongstack/api-*.log and
# nginx-access.log and forwards to the aggregator (:24224, secure forward: the shared key is the
# log token, KONGSTACK_LOG_TOKEN in fluent-bit.env -> /etc/default/fluent-bit, 0600); offsets
# and chunks live on disk.
. /opt/kongstack/lib.sh
. /etc/os-release

apt_repo fluent-bit https://packages.fluentbit.io/fluentbit.key \
  "deb [signed-by=KEYRING] https://packages.fluentbit.io/ubuntu/${VERSION_CODENAME} ${VERSION_CODENAME} main"
apt_install fluent-bit
CONFIG=$(staged fluent-bit.conf)
PARSERS=$(staged parsers.conf)
ENVFILE=$(staged fluent-bit.env)
[ -d /var/log/kongstack ] || install -d -m 0755 /var/log/kongstack  # owned by the API user (stock-api.sh)
install -d -m 0750 /var/lib/fluent-bit/buffer
( set -a; . "$ENVFILE"; /opt/fluent-bit/bin/fluent-bit --dry-run -c "$CONFIG" >/dev/null ) \
  || die "rendered fluent-bit.conf failed fluent-bit --dry-run"
restart=
if put_file "$PARSERS" /etc/fluent-bit/parsers.conf 0644; then restart=restart; fi
if put_file "$CONFIG" /etc/fluent-bit/fluent-bit.conf 0644; then restart=restart; fi
if put_file "$ENVFILE" /etc/default/fluent-bit 0600; then restart=restart; fi
service_up fluent-bit $restart
wait_http "http://127.0.0.1:2020/" 30  # the monitoring server (HTTP_Server On)
