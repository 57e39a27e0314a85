#!/usr/bin/env bash
# Redis (the stock API cache): bound to loopback and the private address; the NSG keeps its
# port closed from outside the VNet (the exporters reach it over the private network).
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_REDIS_REDIS_PORT:-6379}
PRIVATE=$(hostname -I | awk '{print $1}')

apt_install redis-server
if write_file /etc/redis/redis.conf.d-kongstack 0640 <<CONF
bind 127.0.0.1 ${PRIVATE}
port ${PORT}
protected-mode no
maxmemory 256mb
maxmemory-policy allkeys-lru
save ""
appendonly no
CONF
then restart=restart; else restart=; fi
if ! grep -qx "include /etc/redis/redis.conf.d-kongstack" /etc/redis/redis.conf; then
  echo "include /etc/redis/redis.conf.d-kongstack" >> /etc/redis/redis.conf
  changed "included kongstack settings in redis.conf"; restart=restart
fi
chown redis:redis /etc/redis/redis.conf.d-kongstack
service_up redis-server $restart
redis-cli -p "$PORT" ping | grep -q PONG || die "redis does not answer PING on $PORT"
ok "redis answers on ${PORT}"
