#!/usr/bin/env bash
# nginx on the Kong VM: a plain reverse proxy to the stock API instances (the seed's second
# proxy), on its own port; Kong is the public entry point. Access logs are JSON lines
# (kongstack_json, the local gateway's format) in /var/log/kongstack/nginx-access.log, which the
# log shipper forwards; the correlation id is the client's, else Kong's, else nginx's own.
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_NGINX_HTTP_PORT:-8080}
BASE=${KONGSTACK_STOCK_API_HTTP_PORT:-3021}
COUNT=${KONGSTACK_STOCK_API_COUNT:-3}

apt_install nginx
servers=""
for i in $(seq 0 $((COUNT - 1))); do servers+="    server 127.0.0.1:$((BASE + i)) max_fails=3 fail_timeout=10s;"$'\n'; done
[ -d /var/log/kongstack ] || install -d -m 0755 /var/log/kongstack
if write_file /etc/nginx/conf.d/kongstack.conf 0644 <<CONF
log_format kongstack_json escape=json '{"ts":"\$time_iso8601","level":"info","msg":"request",'
  '"method":"\$request_method","path":"\$uri","status":\$status,"request_time_s":\$request_time,'
  '"upstream_addr":"\$upstream_addr","upstream_status":"\$upstream_status",'
  '"correlation_id":"\$kongstack_cid","remote_addr":"\$remote_addr","source":"nginx"}';
map \$http_x_correlation_id \$kongstack_cid_in { "" \$http_kong_request_id; default \$http_x_correlation_id; }
map \$kongstack_cid_in \$kongstack_cid { "" \$request_id; default \$kongstack_cid_in; }
upstream stock_api {
${servers}    keepalive 32;
}
server {
    listen ${PORT};
    access_log /var/log/kongstack/nginx-access.log kongstack_json;
    location /nginx_status { stub_status; allow 127.0.0.1; deny all; }
    location / {
        proxy_pass http://stock_api;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Correlation-ID \$kongstack_cid;
    }
}
CONF
then nginx -t -q; restart=restart; else restart=; fi
if [ -e /etc/nginx/sites-enabled/default ]; then
  rm -f /etc/nginx/sites-enabled/default; changed "disabled the default site"; restart=restart
fi
service_up nginx $restart
wait_http "http://127.0.0.1:${PORT}/nginx_status" 30
