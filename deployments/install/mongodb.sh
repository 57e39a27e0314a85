#!/usr/bin/env bash
# MongoDB 7 (the stock API's store) from MongoDB's apt repository, on the seed's port.
set -euo pipefail
. /opt/kongstack/lib.sh
PORT=${KONGSTACK_MONGODB_MONGODB_PORT:-5044}
PRIVATE=$(hostname -I | awk '{print $1}')
. /etc/os-release

apt_repo mongodb-org-7.0 https://www.mongodb.org/static/pgp/server-7.0.asc \
  "deb [arch=amd64,arm64 signed-by=KEYRING] https://repo.mongodb.org/apt/ubuntu ${VERSION_CODENAME}/mongodb-org/7.0 multiverse"
apt_install mongodb-org
if write_file /etc/mongod.conf 0644 <<CONF
storage:
  dbPath: /var/lib/mongodb
systemLog:
  destination: file
  logAppend: true
  path: /var/log/mongodb/mongod.log
net:
  port: ${PORT}
  bindIp: 127.0.0.1,${PRIVATE}
processManagement:
  timeZoneInfo: /usr/share/zoneinfo
CONF
then restart=restart; else restart=; fi
service_up mongod $restart
deadline=$(( $(date +%s) + 60 ))
until mongosh --quiet --port "$PORT" --eval 'db.runCommand({ping:1}).ok' 2>/dev/null | grep -q 1; do
  [ "$(date +%s)" -lt "$deadline" ] || die "mongod not answering on ${PORT}"
  sleep 1
done
ok "mongod answers on ${PORT}"
