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
staged() {  # staged REL : path of a rendered file the deployer uploaded ($KONGSTACK_FILES)
  [ -n "${KONGSTACK_FILES:-}" ] || die "KONGSTACK_FILES is not set (run by the deploy-stack flow)"
  [ -f "$KONGSTACK_FILES/$1" ] || die "rendered file $1 missing from $KONGSTACK_FILES"
  echo "$KONGSTACK_FILES/$1"
}
put_file() {  # put_file SRC DEST MODE [USER:GROUP] : returns 0 if it changed DEST, 1 if not
  local src=$1 dest=$2 mode=$3 owner=${4:-root:root}
  [ -f "$src" ] || die "put_file: $src does not exist"
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    [ "$(stat -c '%a %U:%G' "$dest")" != "${mode#0} $owner" ] || return 1
    chmod "$mode" "$dest"; chown "$owner" "$dest"; changed "set mode $mode $owner on $dest"; return 0
  fi
  install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$src" "$dest"; changed "wrote $dest"
}
sync_dir() {  # sync_dir SRC DEST MODE [USER:GROUP] : DEST's regular files become SRC's; 0 if changed
  local src=$1 dest=$2 mode=$3 owner=${4:-root:root} rc=1 f
  if [ ! -d "$dest" ]; then install -d -m 0755 "$dest"; changed "created $dest"; rc=0; fi
  if [ -d "$src" ]; then
    for f in "$src"/*; do
      [ -f "$f" ] || continue
      if put_file "$f" "$dest/$(basename "$f")" "$mode" "$owner"; then rc=0; fi
    done
  fi
  for f in "$dest"/*; do  # files no longer rendered (e.g. a removed receiver's secret)
    [ -f "$f" ] || continue
    [ -f "$src/$(basename "$f")" ] && continue
    rm -f "$f"; changed "removed $f"; rc=0
  done
  return $rc
}
set_line() {  # set_line FILE KEY VALUE : FILE holds exactly one KEY=VALUE line; 0 if changed
  local file=$1 key=$2 want="$2=$3"
  [ "$(grep "^${key}=" "$file" 2>/dev/null)" != "$want" ] || return 1
  [ ! -f "$file" ] || sed -i "/^${key}=/d" "$file"
  echo "$want" >> "$file"; changed "set ${key} in $file"
}
loaded_since() {  # loaded_since METRICS_URL PREFIX SINCE : last config load succeeded at/after SINCE
  local metrics ts
  metrics=$(curl -fsS --max-time 3 "$1") || return 1
  grep -qx "${2}_config_last_reload_successful 1" <<< "$metrics" || return 1
  ts=$(awk -v m="${2}_config_last_reload_success_timestamp_seconds" '$1 == m {printf "%d", $2}' <<< "$metrics")
  [ "${ts:-0}" -ge "$3" ]
}
wait_loaded() {  # wait_loaded METRICS_URL PREFIX SINCE SECONDS : a SIGHUP reload is asynchronous
  local deadline=$(( $(date +%s) + $4 ))
  until loaded_since "$1" "$2" "$3"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$2 did not load its new configuration within $4s"
    sleep 1
  done
  ok "$2 runs the installed configuration"
}
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
