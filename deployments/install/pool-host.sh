#!/usr/bin/env bash
set -euo pipefail
# A host the autoscaler added to a full pool (tasks/providers/azure/hostvm.py): a Docker engine
# the autoscaler drives over ssh:// and the stock API image. Self-contained (the VM has only
# cloud-init's packages) and idempotent: a re-run after a crash converges. Started detached by
# the autoscaler, which reads ~/.kongstack/pool-host.rc on later ticks.
IMAGE=${KONGSTACK_STOCK_API_IMAGE:?KONGSTACK_STOCK_API_IMAGE is not set}
ADMIN=${SUDO_USER:-$(id -un)}

if ! command -v docker >/dev/null 2>&1; then
  echo "installing docker.io"
  for attempt in 1 2 3; do  # the apt lock may still be cloud-init's
    if DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q docker.io; then break; fi
    [ "$attempt" = 3 ] && exit 1
    sleep $((attempt * 10))
  done
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl enable --now docker >/dev/null
fi
# The autoscaler connects as the admin user (ssh://ADMIN@host): it needs the engine's socket.
if [ "$ADMIN" != root ] && getent group docker >/dev/null && ! id -nG "$ADMIN" | grep -qw docker; then
  usermod -aG docker "$ADMIN"
  echo "changed: $ADMIN may use the engine"
fi
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  timeout 900 docker pull -q "$IMAGE" >/dev/null
  echo "changed: pulled $IMAGE"
fi
echo "pool host ready: $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo engine), $IMAGE"
