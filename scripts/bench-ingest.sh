#!/usr/bin/env bash
# Starts a fresh Daybook on 127.0.0.1:18080 (its own database and Redis
# prefix, rate limit off), drives it with the ingest load tool, prints the
# figures, and stops it. Override RATE, DURATION, BATCH, WORKERS, BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-5000}
DURATION=${DURATION:-10s}
BATCH=${BATCH:-1}
WORKERS=${WORKERS:-128}
ADDR=127.0.0.1:18080
run_id=$(date +%s)
log=$(mktemp -t daybook-bench.XXXXXX.log)

export DATABASE_URL="postgres://postgres@localhost:5432/daybook_bench?sslmode=disable"
export DAYBOOK_HTTP_ADDR=$ADDR DAYBOOK_RATE_LIMIT=0 DAYBOOK_REDIS_PREFIX="bench${run_id}:"
# A fresh database each run: figures must not depend on what earlier runs left.
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS daybook_bench" >/dev/null
archive=$(mktemp -d -t daybook-archive.XXXXXX)
export DAYBOOK_ARCHIVE_URL="file://$archive" DAYBOOK_LOG_LEVEL=warn

"${BIN:-bin/daybook}" run >"$log" 2>&1 &
pid=$!
# A run leaves ~3 Redis keys per event (idempotency key, pending marker,
# handled uuid) for up to 24 h: delete them with the archive, or every later
# test that scans for its own prefix walks millions of keys.
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "${DAYBOOK_REDIS_PREFIX}*" |
    xargs -r -n 1000 redis-cli -h 127.0.0.1 -p 6379 UNLINK >/dev/null 2>&1 || echo "could not delete Redis keys ${DAYBOOK_REDIS_PREFIX}*"
  rm -rf "$archive"
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS daybook_bench" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 50); do curl -sf "http://$ADDR/ready" >/dev/null && break; sleep 0.2; done
curl -sf "http://$ADDR/ready" >/dev/null || { echo "daybook did not become ready; log: $log"; cat "$log"; exit 1; }

echo "== bare Go HTTP server under the same load (reference)"
go run ./loadtest echo-baseline -rate "$RATE" -duration "$DURATION" -batch "$BATCH" -workers "$WORKERS" || true
echo
echo "== daybook ingest (API + worker in one process), log: $log"
go run ./loadtest ingest -url "http://$ADDR" -rate "$RATE" -duration "$DURATION" -batch "$BATCH" -workers "$WORKERS" -drain-timeout 120s
