#!/usr/bin/env bash
set -euo pipefail
# Kong Gateway (OSS) in DB-less mode with kong.conf rendered by the deployer
# (tasks.providers.azure.role_files.kong_conf, uploaded to $KONGSTACK_FILES): the proxy on the
# public port; the Admin API on 127.0.0.1 only (Kong OSS has no Admin API authentication: the
# deployer and the autoscaler reach it through an SSH tunnel); Kong Manager off; the Status API
# (/status, /metrics) for Prometheus. Routes/plugins/targets come from the register step.
. /opt/kongstack/lib.sh
ADMIN=${KONGSTACK_KONG_ADMIN_PORT:-8001}
. /etc/os-release
CONFIG=$(staged kong.conf)
# Refuse a configuration whose Admin API or Kong Manager would listen beyond loopback.
for key in admin_listen admin_gui_listen; do
  value=$(sed -n "s/^${key} *= *//p" "$CONFIG")
  [ -n "$value" ] || die "kong.conf sets no ${key}"
  [ "$value" = off ] && continue
  IFS=',' read -ra listeners <<< "$value"
  for listener in "${listeners[@]}"; do
    address=$(awk '{print $1}' <<< "$listener")
    case "$address" in
      127.0.0.1:*|\[::1\]:*) ;;
      *) die "kong.conf: ${key} ${address} is not a loopback address; refusing to install" ;;
    esac
  done
done

apt_repo kong-gateway-39 https://packages.konghq.com/public/gateway-39/gpg.B9DCD032B1696A89.key \
  "deb [signed-by=KEYRING] https://packages.konghq.com/public/gateway-39/deb/ubuntu ${VERSION_CODENAME} main"
apt_install kong
if put_file "$CONFIG" /etc/kong/kong.conf 0644; then restart=restart; else restart=; fi
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
