#!/usr/bin/env bash
# Kibana (log dashboards) on the seed's port 9200, reading the local Elasticsearch.
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_KIBANA_UI_PORT:-9200}
ES=${KONGSTACK_ELASTICSEARCH_HTTP_PORT:-9201}

apt_repo elastic-8 https://artifacts.elastic.co/GPG-KEY-elasticsearch \
  "deb [signed-by=KEYRING] https://artifacts.elastic.co/packages/8.x/apt stable main"
apt_install kibana
if write_file /etc/kibana/kibana.yml 0660 <<CONF
server.port: ${PORT}
server.host: "0.0.0.0"
server.name: kongstack-kibana
elasticsearch.hosts: ["http://127.0.0.1:${ES}"]
logging.root.level: warn
CONF
then chown root:kibana /etc/kibana/kibana.yml; restart=restart; else restart=; fi
service_up kibana $restart
wait_http "http://127.0.0.1:${PORT}/api/status" 180
