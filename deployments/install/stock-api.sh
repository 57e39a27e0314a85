#!/usr/bin/env bash
set -euo pipefail
# The stock API instances: containers of the stock API image, host networking, one per port,
# labelled with the owner/role/port contract (the autoscaler and cleanup find them by label).
# Request logs: LOG_FILE=/var/log/kongstack/api-<port>.log (bind-mounted), shipped by
# log-shipper.sh. A container is replaced when its image, its run arguments or its secret
# environment change. GATEWAY_SECRET (stock-api.env, rendered from the stack's instance_secret
# Secret block, kept 0600 in /etc/kongstack) makes the instances refuse /api requests that did
# not come through Kong; it reaches the containers as --env-file, never on a command line.
. /opt/kongstack/lib.sh
require_env KONGSTACK_STOCK_API_IMAGE
SECRETS=$(staged stock-api.env)
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
# JSON request logs go to /var/log/kongstack/api-<port>.log (LOG_FILE), tailed by the log
# shipper; the directory belongs to the image's unprivileged user.
LOGS=/var/log/kongstack
ENVFILE=/etc/kongstack/stock-api.env
put_file "$SECRETS" "$ENVFILE" 0600 || true
secret_hash=$(sha256sum "$ENVFILE" | cut -c1-16)  # a rotated secret restarts the instances
app_user=$(docker run --rm --network none --entrypoint id "$IMAGE" -u):$(docker run --rm --network none --entrypoint id "$IMAGE" -g)
if [ "$(stat -c '%u:%g' "$LOGS" 2>/dev/null)" != "$app_user" ]; then
  install -d -m 0755 -o "${app_user%%:*}" -g "${app_user##*:}" "$LOGS"; changed "made $LOGS writable by uid ${app_user%%:*}"
fi
for i in $(seq 0 $((COUNT - 1))); do
  port=$((BASE + i)); name="kongstack-api-${port}"
  args=(--network host --restart unless-stopped -v "$LOGS:$LOGS" --env-file "$ENVFILE"
        --label "kongstack.owner=${STACK}" --label kongstack.role=stock-api --label "kongstack.port=${port}"
        -e PORT="$port" -e HOST=0.0.0.0 -e INSTANCE_ID="$name" -e LOG_FILE="$LOGS/api-${port}.log"
        -e REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0" -e MONGODB_URI="mongodb://127.0.0.1:${MONGO_PORT}/")
  # the running container matches when its image and its run arguments are the wanted ones
  spec=$(printf '%s\n' "$want_id" "$secret_hash" "${args[@]}" | sha256sum | cut -c1-16)
  if [ "$(docker inspect -f '{{.State.Running}} {{index .Config.Labels "kongstack.spec"}}' "$name" 2>/dev/null)" = "true ${spec}" ]; then
    ok "$name running"; continue
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --label "kongstack.spec=${spec}" "${args[@]}" "$IMAGE" >/dev/null
  changed "started $name"
done
for i in $(seq 0 $((COUNT - 1))); do
  wait_http "http://127.0.0.1:$((BASE + i))/ready" 90
  # and the gateway secret is enforced: a request without it is refused
  code=$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE + i))/api/stocks")
  [ "$code" = 403 ] || die "instance on $((BASE + i)) answered /api without the gateway secret ($code)"
done
