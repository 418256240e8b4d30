#!/usr/bin/env bash
# Runs the k6 load tests in loadtest/k6/ against a freshly started Daybook
# (`daybook run` on 127.0.0.1, a free port, its own database and Redis prefix,
# rate limit off): ingest at 500/s and 2,000/s, then the double-spend race.
# Prints k6's summaries, writes them as JSON under var/loadtest/, reports how
# far the worker drained, stops Daybook (SIGTERM) and removes its database,
# Redis keys and archive. Exits non-zero when any k6 run failed a threshold.
#
# Override: RATES ("500 2000"), DURATION (30s), DOUBLE_SPEND_VUS (100),
# DRAIN_TIMEOUT (seconds, 120; 0 skips the drain report), KEEP=1 keeps the
# database and Redis keys for inspection, K6 (path of the k6 binary).
set -euo pipefail
cd "$(dirname "$0")/.."

K6_MODULE=go.k6.io/k6@v1.8.1
K6=${K6:-$(go env GOPATH)/bin/k6}
RATES=${RATES:-500 2000}
DURATION=${DURATION:-30s}
DOUBLE_SPEND_VUS=${DOUBLE_SPEND_VUS:-100}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-120}
KEEP=${KEEP:-0}

# Bounds, in seconds: nothing here may hang.
k6_install_max=1800 # the first build of k6 takes several minutes on 2 cores
build_max=600
ready_max=60
k6_run_max=180      # one k6 run: 30 s of load plus graceful stop and setup
stop_max=30         # beyond DAYBOOK_SHUTDOWN_TIMEOUT (10 s)

run_id=$(date +%Y%m%d%H%M%S)_$$
out=var/loadtest
db=daybook_loadtest_${run_id}
prefix="loadtest${run_id}:"
pg_admin_url="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
mkdir -p "$out"
log="$out/daybook-${run_id}.log"
archive=$(mktemp -d -t daybook-loadtest-archive.XXXXXX)

started=$SECONDS

if [ ! -x "$K6" ]; then
  echo "== installing k6 ($K6_MODULE, a tool only: never a dependency of go.mod)"
  timeout "$k6_install_max" go install "$K6_MODULE"
fi
scripts/services.sh
timeout "$build_max" go build -o bin/daybook ./cmd/daybook

# free_port prints a TCP port on 127.0.0.1 that nothing answers on.
free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}
addr=127.0.0.1:$(free_port)
base_url="http://$addr"

export DATABASE_URL="postgres://postgres@127.0.0.1:5432/${db}?sslmode=disable"
export REDIS_URL="redis://127.0.0.1:6379/0"
export DAYBOOK_HTTP_ADDR=$addr DAYBOOK_RATE_LIMIT=0 DAYBOOK_REDIS_PREFIX=$prefix
export DAYBOOK_ARCHIVE_URL="file://$archive" DAYBOOK_LOG_LEVEL=warn

pid=
cleanup() {
  local cleanup_started=$SECONDS
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((stop_max * 5))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "daybook did not stop within ${stop_max}s of SIGTERM; killing it (log: $log)"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then
    echo "kept database $db and Redis keys ${prefix}*"
  else
    psql -q "$pg_admin_url" -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || echo "could not drop database $db"
    redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "${prefix}*" 2>/dev/null |
      xargs -r -n 1000 redis-cli -h 127.0.0.1 -p 6379 UNLINK >/dev/null 2>&1 || echo "could not delete Redis keys ${prefix}*"
  fi
  rm -rf "$archive"
  echo "== stopped daybook and cleaned up in $((SECONDS - cleanup_started))s; $((SECONDS - started))s in all"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin/daybook run >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 $((ready_max * 5))); do
  curl -sf "$base_url/ready" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
curl -sf "$base_url/ready" >/dev/null || { echo "daybook did not become ready; log: $log"; cat "$log"; exit 1; }
echo "== daybook run on $addr, database $db, Redis prefix $prefix, log $log"

failed=()
# k6_run NAME SCRIPT [k6 args...] runs one k6 test, keeps its summary as
# $out/NAME.json and $out/NAME.txt, and records NAME when it fails. Each run
# gets its own RUN_ID, so no two runs send the same event_id.
k6_run() {
  local name=$1 script=$2
  shift 2
  echo
  echo "== k6 $name"
  rm -f "$out/$name.json" "$out/$name.txt"
  local rc=0
  timeout "$k6_run_max" "$K6" run --quiet --no-usage-report \
    --summary-export "$out/$name.json" \
    -e BASE_URL="$base_url" -e RUN_ID="${run_id}_$name" "$@" "$script" 2>&1 | tee "$out/$name.txt" || rc=$?
  case $rc in
    0) ;;
    99) echo "!! k6 $name: thresholds failed"; failed+=("$name") ;;
    124) echo "!! k6 $name: did not finish within ${k6_run_max}s"; failed+=("$name") ;;
    *) echo "!! k6 $name: exit $rc"; failed+=("$name") ;;
  esac
}

for rate in $RATES; do
  k6_run "ingest-$rate" loadtest/k6/ingest.js -e RATE="$rate" -e DURATION="$DURATION"
done
k6_run double_spend loadtest/k6/double_spend.js -e VUS="$DOUBLE_SPEND_VUS"

# How far the worker got with the accepted events: a report, not a threshold
# (the drain rate is a known gap, see README.md's Performance section).
if [ "$DRAIN_TIMEOUT" -gt 0 ] && command -v jq >/dev/null 2>&1 && command -v psql >/dev/null 2>&1; then
  accepted=0
  for rate in $RATES; do
    n=$(jq -r '.metrics.checks.passes // 0' "$out/ingest-$rate.json" 2>/dev/null || echo 0)
    accepted=$((accepted + n))
  done
  echo
  echo "== drain: waiting up to ${DRAIN_TIMEOUT}s for the worker to finish the $accepted accepted events"
  drain_started=$SECONDS
  done_count=0
  while :; do
    done_count=$(psql -tAq "$DATABASE_URL" -c \
      "SELECT count(*) FROM ingestion_events WHERE status IN ('COMPLETED','FAILED')" 2>/dev/null || echo 0)
    [ "$done_count" -ge "$accepted" ] && break
    [ $((SECONDS - drain_started)) -ge "$DRAIN_TIMEOUT" ] && break
    sleep 2
  done
  echo "after $((SECONDS - drain_started))s more (by status):"
  psql -q "$DATABASE_URL" -c "SELECT status, count(*) FROM ingestion_events GROUP BY status ORDER BY status" || true
fi

if command -v jq >/dev/null 2>&1; then
  echo
  echo "== figures (http_req_duration in ms; JSON in $out/)"
  printf '%-14s %9s %9s %9s %9s %10s %8s %8s\n' run requests 'req/s' p50 p95 p99 failed dropped
  for name in $(for rate in $RATES; do echo "ingest-$rate"; done) double_spend; do
    f="$out/$name.json"
    [ -f "$f" ] || continue
    jq -r --arg run "$name" '.metrics as $m | [
        $run,
        ($m.http_reqs.count // 0),
        (($m.http_reqs.rate // 0) | floor),
        (($m.http_req_duration.med // 0) * 100 | round / 100),
        (($m.http_req_duration["p(95)"] // 0) * 100 | round / 100),
        (($m.http_req_duration["p(99)"] // 0) * 100 | round / 100),
        (($m.http_req_failed.value // 0) * 10000 | round / 100 | tostring + "%"),
        ($m.dropped_iterations.count // 0)
      ] | @tsv' "$f" | xargs printf '%-14s %9s %9s %9s %9s %10s %8s %8s\n'
  done
  if [ -f "$out/double_spend.json" ]; then
    jq -r '.metrics as $m | "double spend: \($m.transfers_succeeded.count // 0) succeeded, \($m.transfers_insufficient_funds.count // 0) insufficient-funds, \($m.transfers_other.count // 0) other, final balance ok: \($m.final_balance_ok.count // 0)"' "$out/double_spend.json"
  fi
fi

echo
echo "== load tests done after $((SECONDS - started))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all k6 thresholds passed"
