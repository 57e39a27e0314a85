#!/usr/bin/env bash
# Kong Gateway (OSS) in DB-less mode: proxy on the public port, Admin API on the admin port
# (the NSG admits only the allowed admin range). Routes/plugins/targets come from the register
# step through the Admin API.
set -euo pipefail
. /opt/kongstack/lib.sh
PROXY=${KONGSTACK_KONG_PROXY_PORT:-8000}
ADMIN=${KONGSTACK_KONG_ADMIN_PORT:-8001}
. /etc/os-release

apt_repo kong-gateway-39 https://packages.konghq.com/public/gateway-39/gpg.B9DCD032B1696A89.key \
  "deb [signed-by=KEYRING] https://packages.konghq.com/public/gateway-39/deb/ubuntu ${VERSION_CODENAME} main"
apt_install kong
if write_file /etc/kong/kong.conf 0644 <<CONF
database = off
proxy_listen = 0.0.0.0:${PROXY} reuseport backlog=16384
admin_listen = 0.0.0.0:${ADMIN}
status_listen = 127.0.0.1:8100
nginx_worker_processes = auto
log_level = notice
CONF
then restart=restart; else restart=; fi
if write_file /etc/systemd/system/kong.service 0644 <<'UNIT'
[Unit]
Description=Kong Gateway
After=network-online.target
[Service]
Type=forking
PIDFile=/usr/local/kong/pids/nginx.pid
ExecStartPre=/usr/local/bin/kong prepare -p /usr/local/kong -c /etc/kong/kong.conf
ExecStart=/usr/local/openresty/nginx/sbin/nginx -p /usr/local/kong -c nginx.conf
ExecReload=/usr/local/bin/kong reload -p /usr/local/kong -c /etc/kong/kong.conf
ExecStop=/usr/local/bin/kong quit -p /usr/local/kong
LimitNOFILE=65536
Restart=on-failure
[Install]
WantedBy=multi-user.target
UNIT
then systemctl daemon-reload; restart=restart; fi
service_up kong $restart
wait_http "http://127.0.0.1:${ADMIN}/status" 60
