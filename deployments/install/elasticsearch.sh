#!/usr/bin/env bash
# Elasticsearch 8 (log index), single node, HTTP on the topology's port (9200 belongs to
# Kibana in the seed). Security is off because the NSG admits the admin range only; the
# forwarder and Kibana reach it on loopback.
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_ELASTICSEARCH_HTTP_PORT:-9201}

apt_repo elastic-8 https://artifacts.elastic.co/GPG-KEY-elasticsearch \
  "deb [signed-by=KEYRING] https://artifacts.elastic.co/packages/8.x/apt stable main"
apt_install elasticsearch
if write_file /etc/elasticsearch/elasticsearch.yml 0660 <<CONF
cluster.name: kongstack-logs
node.name: ${KONGSTACK_VM:-logs}
path.data: /var/lib/elasticsearch
path.logs: /var/log/elasticsearch
network.host: 0.0.0.0
http.port: ${PORT}
discovery.type: single-node
xpack.security.enabled: false
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
CONF
then chown root:elasticsearch /etc/elasticsearch/elasticsearch.yml; restart=restart; else restart=; fi
if write_file /etc/elasticsearch/jvm.options.d/kongstack.options 0644 <<'CONF'
-Xms1g
-Xmx1g
CONF
then restart=restart; fi
service_up elasticsearch $restart
wait_http "http://127.0.0.1:${PORT}/_cluster/health?wait_for_status=yellow&timeout=50s" 120
