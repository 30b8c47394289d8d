#!/usr/bin/env bash
# The farm's main job, end to end on this machine: install, migrate, start the API and a
# worker, submit a batch of prompts over HTTP, show progress, save the images.
#
#   ./infra/demo.sh [PROMPTS_FILE]     (default: infra/demo-prompts.txt)
#
# Uses Postgres database "fresco" and Redis db 0 on loopback (override with FRESCO_*).
source "$(dirname "$0")/setup.sh"

prompts="${1:-infra/demo-prompts.txt}"
out="$ROOT/var/demo"
mkdir -p "$out/logs"
export FRESCO_DATABASE_URL="${FRESCO_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/fresco}"
export FRESCO_BROKER_URL="${FRESCO_BROKER_URL:-redis://127.0.0.1:6379/0}"
export FRESCO_STORAGE_URL="${FRESCO_STORAGE_URL:-file://$out/store}"
port="${FRESCO_DEMO_PORT:-8000}"
export FRESCO_API_URL="http://127.0.0.1:$port"

dbname="${FRESCO_DATABASE_URL##*/}"
if ! psql "${FRESCO_DATABASE_URL%/*}/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$dbname'" | grep -q 1; then
  psql "${FRESCO_DATABASE_URL%/*}/postgres" -qc "CREATE DATABASE \"$dbname\""
fi
echo "== migrate: alembic upgrade head" >&2
alembic upgrade head 2>&1 | tail -n 1 >&2

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
echo "== API:    uvicorn api.main:app --port $port   (log: var/demo/logs/api.log)" >&2
uvicorn api.main:app --host 127.0.0.1 --port "$port" >"$out/logs/api.log" 2>&1 &
pids+=($!)
echo "== worker: celery -A worker.app worker -E       (log: var/demo/logs/worker.log)" >&2
celery -A worker.app worker -E -n "demo@%h" --loglevel INFO >"$out/logs/worker.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 120); do
  curl -sf "$FRESCO_API_URL/healthz" >/dev/null 2>&1 && grep -q "ready." "$out/logs/worker.log" && break
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a process exited; see var/demo/logs" >&2; exit 1; }; done
  sleep 0.5
done
curl -sf "$FRESCO_API_URL/healthz" >/dev/null || { echo "API did not come up; see var/demo/logs/api.log" >&2; exit 1; }

export FRESCO_API_KEY="$(fresco keys create --tenant demo 2>/dev/null | tail -n 1)"
echo "== submit: fresco submit $prompts --wait --out var/demo/images" >&2
rm -rf "$out/images"
fresco submit "$prompts" --wait --out "$out/images"
echo "== done: the images are in $out/images (one file per prompt, in prompt order)" >&2
