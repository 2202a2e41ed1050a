#!/usr/bin/env bash
# `make run`: the dashboard on http://127.0.0.1:${PORT:-8000} with demo data in a local store,
# or against the Upstash database named by UPSTASH_REDIS_REST_URL / _TOKEN.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DEBUG="${DEBUG:-1}"
export SECRET_KEY="${SECRET_KEY:-memoryadmin-dev-only-secret}"
PORT="${PORT:-8000}"
STORE_PORT="${STORE_PORT:-8079}"
mkdir -p var

$PY manage.py migrate --noinput >/dev/null

children=()
cleanup() { for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if [[ -z "${UPSTASH_REDIS_REST_URL:-}" || -z "${UPSTASH_REDIS_REST_TOKEN:-}" ]]; then
  export UPSTASH_REDIS_REST_URL="http://127.0.0.1:${STORE_PORT}"
  export UPSTASH_REDIS_REST_TOKEN="memoryadmin-local-dev-token"
  # With Upstash's limits (its defaults). LOCALSTORE_ARGS adds flags, e.g. "--read-only-token ro --replica-lag-ms 200".
  # shellcheck disable=SC2086 # LOCALSTORE_ARGS is split into flags on purpose
  $PY manage.py localstore --port "$STORE_PORT" --token "$UPSTASH_REDIS_REST_TOKEN" --data-dir var/localstore \
    ${LOCALSTORE_ARGS:-} &
  children+=($!)
  $PY - <<'PY'
import os, time, urllib.request
for _ in range(150):
    try:
        urllib.request.urlopen(os.environ["UPSTASH_REDIS_REST_URL"], timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("The local store did not start; see its output above.")
PY
  $PY manage.py seed_demo --if-empty
else
  echo "Using the Upstash database at $UPSTASH_REDIS_REST_URL (no demo data is written)."
fi

$PY manage.py demo_login --url "http://127.0.0.1:${PORT}/"
# The background worker runs re-summarizations and bulk jobs, and content searches in a thread of
# their own (the "search" queue), so a long search never holds up a purge.
$PY manage.py worker &
children+=($!)
echo "Dashboard: http://127.0.0.1:${PORT}/"
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload &
children+=($!)
wait -n "${children[@]}"
