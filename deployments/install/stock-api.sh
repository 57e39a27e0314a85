#!/usr/bin/env bash
# The stock API instances: containers of the stock API image, host networking, one per port,
# labelled with the owner/role/port contract (the autoscaler and cleanup find them by label).
set -euo pipefail
. /opt/kongstack/lib.sh
require_env KONGSTACK_STOCK_API_IMAGE
BASE=${KONGSTACK_STOCK_API_HTTP_PORT:-3021}
COUNT=${KONGSTACK_STOCK_API_COUNT:-3}
STACK=${KONGSTACK_STACK:-kongstack}
REDIS_PORT=${KONGSTACK_REDIS_REDIS_PORT:-6379}
MONGO_PORT=${KONGSTACK_MONGODB_MONGODB_PORT:-5044}
IMAGE=$KONGSTACK_STOCK_API_IMAGE

apt_install docker.io
service_up docker
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  docker pull -q "$IMAGE" >/dev/null
  changed "pulled $IMAGE"
fi
want_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
for i in $(seq 0 $((COUNT - 1))); do
  port=$((BASE + i)); name="kongstack-api-${port}"
  if [ "$(docker inspect -f '{{.State.Running}} {{.Image}}' "$name" 2>/dev/null)" = "true ${want_id}" ]; then
    ok "$name running"; continue
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --restart unless-stopped --network host \
    --label "kongstack.owner=${STACK}" --label kongstack.role=stock-api --label "kongstack.port=${port}" \
    -e PORT="$port" -e HOST=0.0.0.0 -e INSTANCE_ID="$name" \
    -e REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0" \
    -e MONGODB_URI="mongodb://127.0.0.1:${MONGO_PORT}/" "$IMAGE" >/dev/null
  changed "started $name"
done
for i in $(seq 0 $((COUNT - 1))); do wait_http "http://127.0.0.1:$((BASE + i))/ready" 90; done
