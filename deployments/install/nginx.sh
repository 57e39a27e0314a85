#!/usr/bin/env bash
# nginx on the Kong VM: a plain reverse proxy to the stock API instances (the seed's second
# proxy), on its own port; Kong is the public entry point.
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_NGINX_HTTP_PORT:-8080}
BASE=${KONGSTACK_STOCK_API_HTTP_PORT:-3021}
COUNT=${KONGSTACK_STOCK_API_COUNT:-3}

apt_install nginx
servers=""
for i in $(seq 0 $((COUNT - 1))); do servers+="    server 127.0.0.1:$((BASE + i)) max_fails=3 fail_timeout=10s;"$'\n'; done
if write_file /etc/nginx/conf.d/kongstack.conf 0644 <<CONF
upstream stock_api {
${servers}    keepalive 32;
}
server {
    listen ${PORT};
    location /nginx_status { stub_status; allow 127.0.0.1; deny all; }
    location / {
        proxy_pass http://stock_api;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
}
CONF
then nginx -t -q; restart=restart; else restart=; fi
if [ -e /etc/nginx/sites-enabled/default ]; then
  rm -f /etc/nginx/sites-enabled/default; changed "disabled the default site"; restart=restart
fi
service_up nginx $restart
wait_http "http://127.0.0.1:${PORT}/nginx_status" 30
