#!/usr/bin/env bash
# Every host, before its roles: base packages and the helper library the role scripts source.
# Idempotent: each step checks before it changes and prints "changed: ..." only when it did.
set -euo pipefail

LIB=/opt/kongstack/lib.sh
want_lib=$(cat <<'LIBEOF'
# kongstack install helpers (written by common.sh). Every helper checks before it changes.
changed() { echo "changed: $*"; }
ok() { echo "ok: $*"; }
die() { echo "error: $*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt_fresh() {  # refresh the package index at most once an hour
  local stamp=/var/lib/apt/periodic/kongstack-update
  if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
    apt-get update -q >/dev/null && mkdir -p "$(dirname "$stamp")" && touch "$stamp"
  fi
}
apt_install() {  # apt_install pkg... : installs only the missing ones
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then ok "packages present: $*"; return 0; fi
  apt_fresh
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  changed "installed ${missing[*]}"
}
apt_repo() {  # apt_repo name key_url "deb [signed-by=KEYRING] ..." (KEYRING is substituted)
  local name=$1 key_url=$2 line=$3 keyring="/etc/apt/keyrings/$1.gpg" list="/etc/apt/sources.list.d/$1.list"
  line=${line//KEYRING/$keyring}
  if [ ! -s "$keyring" ]; then
    install -d -m 0755 /etc/apt/keyrings
    curl -fsSL --max-time 60 --retry 3 "$key_url" | gpg --dearmor -o "$keyring.tmp" && mv "$keyring.tmp" "$keyring"
    changed "added signing key for $name"
  fi
  if [ "$(cat "$list" 2>/dev/null)" != "$line" ]; then
    echo "$line" > "$list"; rm -f /var/lib/apt/periodic/kongstack-update
    changed "added apt repository $name"
  fi
}
write_file() {  # write_file PATH MODE < content ; returns 0 if it changed the file, 1 if not
  local path=$1 mode=$2 tmp
  tmp=$(mktemp); cat > "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; return 1; fi
  install -D -m "$mode" "$tmp" "$path"; rm -f "$tmp"; changed "wrote $path"; return 0
}
service_up() {  # service_up UNIT [restart] : enabled + running; restarted when asked
  local unit=$1 restart=${2:-}
  systemctl is-enabled --quiet "$unit" 2>/dev/null || { systemctl enable --quiet "$unit"; changed "enabled $unit"; }
  if ! systemctl is-active --quiet "$unit"; then systemctl start "$unit"; changed "started $unit"
  elif [ "$restart" = restart ]; then systemctl restart "$unit"; changed "restarted $unit"
  else ok "$unit running"; fi
}
wait_http() {  # wait_http URL SECONDS : poll a readiness endpoint with a deadline
  local url=$1 deadline=$(( $(date +%s) + ${2:-60} ))
  until curl -fsS --max-time 3 -o /dev/null "$url"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$url not ready after ${2:-60}s"
    sleep 1
  done
  ok "$url ready"
}
require_env() { local v; for v in "$@"; do [ -n "${!v:-}" ] || die "$v is not set"; done; }
LIBEOF
)
if [ "$(cat "$LIB" 2>/dev/null)" != "$want_lib" ]; then
  install -d -m 0755 /opt/kongstack
  printf '%s\n' "$want_lib" > "$LIB"
  echo "changed: wrote $LIB"
fi
# shellcheck source=/dev/null
. "$LIB"

apt_install ca-certificates curl gnupg jq
install -d -m 0755 /etc/kongstack
if write_file /etc/kongstack/host.env 0644 <<ENV
STACK=${KONGSTACK_STACK:-kongstack}
VM=${KONGSTACK_VM:-$(hostname)}
ADMIN_CIDR=${KONGSTACK_ADMIN_CIDR:-}
ENV
then :; fi
ok "common done on $(hostname)"
