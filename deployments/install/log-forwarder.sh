#!/usr/bin/env bash
# The log forwarder: Fluent Bit with an HTTP input on the seed's ingest port (Kong's http-log
# plugin posts there) and Elasticsearch as output (index kongstack-YYYY.MM.DD).
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_LOG_FORWARDER_INGEST_PORT:-8000}
ES=${KONGSTACK_ELASTICSEARCH_HTTP_PORT:-9201}
. /etc/os-release

apt_repo fluent-bit https://packages.fluentbit.io/fluentbit.key \
  "deb [signed-by=KEYRING] https://packages.fluentbit.io/ubuntu/${VERSION_CODENAME} ${VERSION_CODENAME} main"
apt_install fluent-bit
if write_file /etc/fluent-bit/fluent-bit.conf 0644 <<CONF
[SERVICE]
    Flush        2
    Log_Level    warn
    HTTP_Server  On
    HTTP_Listen  127.0.0.1
    HTTP_Port    2020

[INPUT]
    Name    http
    Listen  0.0.0.0
    Port    ${PORT}
    Tag     kong

[OUTPUT]
    Name               es
    Match              *
    Host               127.0.0.1
    Port               ${ES}
    Logstash_Format    On
    Logstash_Prefix    kongstack
    Suppress_Type_Name On
    Retry_Limit        5
CONF
then restart=restart; else restart=; fi
service_up fluent-bit $restart
wait_http "http://127.0.0.1:2020/api/v1/health" 30
