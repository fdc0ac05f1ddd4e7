#!/usr/bin/env bash
# Two progresscast instances on one Redis, behind nginx (deploy/nginx.conf).
# Needs: redis-server listening on 6379 (store + message queue), nginx with the
# config above, PROGRESSCAST_SECRET_KEY in the environment. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PROGRESSCAST_SECRET_KEY:?set PROGRESSCAST_SECRET_KEY (the same on every instance)}"
export PROGRESSCAST_STORE_URL="${PROGRESSCAST_STORE_URL:-redis://127.0.0.1:6379/0}"
export PROGRESSCAST_MESSAGE_QUEUE_URL="${PROGRESSCAST_MESSAGE_QUEUE_URL:-redis://127.0.0.1:6379/0}"
pids=()
for port in 8001 8002; do
  PROGRESSCAST_BIND="127.0.0.1:$port" .venv/bin/gunicorn -k eventlet -w 1 wsgi:app &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
echo "instances on :8001 and :8002; nginx (deploy/nginx.conf) serves them on :8080"
wait
