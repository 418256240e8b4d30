#!/usr/bin/env bash
# Burn-down: fills a fresh database's queue with EVENTS events through
# `daybook serve` alone (the batch endpoint), stops it, then starts
# `daybook worker` alone and times how fast it takes the whole backlog to
# COMPLETED. Prints events/s, the CPU each process spent per event (read from
# /proc: the worker, every Postgres backend, Redis), and checks in the
# database that every event is COMPLETED exactly once.
#
#   scripts/bench-drain.sh                 # 100,000 events with bin/daybook
#   EVENTS=50000 BIN=/tmp/old/daybook scripts/bench-drain.sh
#   KEEP=1 ...                             # keep the database (daybook_drain) afterwards
#   PPROF=/tmp/worker.pprof ...            # a CPU profile of the worker's first 5 s of burn-down,
#                                          # and its allocations over the whole burn-down in $PPROF.allocs
#   PREFILL=2000000 ...                    # store that many COMPLETED events (and their log entries) first
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-100000}
BIN=${BIN:-bin/daybook}
BATCH=${BATCH:-100}
API=127.0.0.1:18090
WORKER=127.0.0.1:18091
run_id=$(date +%s%N)
db=daybook_drain
log=$(mktemp -t daybook-drain.XXXXXX.log)

export DATABASE_URL="postgres://postgres@localhost:5432/${db}?sslmode=disable"
export DAYBOOK_HTTP_ADDR=$API DAYBOOK_WORKER_ADDR=$WORKER DAYBOOK_RATE_LIMIT=0 DAYBOOK_LOG_LEVEL=warn
export DAYBOOK_REDIS_PREFIX="drain${run_id}:"
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS ${db}" >/dev/null
archive=$(mktemp -d -t daybook-drain-archive.XXXXXX)
export DAYBOOK_ARCHIVE_URL="file://$archive"

pid=
cleanup() {
  [[ -n $pid ]] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  redis-cli -h 127.0.0.1 --scan --pattern "${DAYBOOK_REDIS_PREFIX}*" |
    xargs -r -n 1000 redis-cli -h 127.0.0.1 UNLINK >/dev/null 2>&1 || true
  rm -rf "$archive"
  [[ -n ${KEEP:-} ]] || psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS ${db}" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# wait_ready waits for addr's path (default /ready) to answer 200.
wait_ready() {
  for _ in $(seq 1 300); do curl -sf "http://$1${2:-/ready}" >/dev/null && return 0; sleep 0.1; done
  echo "not ready: $1; log: $log"; cat "$log"; exit 1
}

# completed reads daybook_events_processed_total{status="COMPLETED"}.
completed() {
  curl -sf "http://$WORKER/metrics" |
    awk '/^daybook_events_processed_total\{.*status="COMPLETED"/ {s += $2} END {printf "%d\n", s}'
}

# cpu_ticks sums utime+stime (clock ticks) of the given pids.
cpu_ticks() {
  local t=0 p f
  for p in "$@"; do
    f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
    t=$((t + ${f% *} + ${f#* }))
  done
  echo "$t"
}

echo "== fill: $EVENTS events through daybook serve (batch $BATCH)"
"$BIN" serve >"$log" 2>&1 &
pid=$!
wait_ready "$API"
redis_pid=$(pgrep -x redis-server | head -1)
pg_pids() { pgrep -x postgres | tr '\n' ' '; }
tick=$(getconf CLK_TCK)
a0=$(cpu_ticks "$pid"); fp0=$(cpu_ticks $(pg_pids)); fr0=$(cpu_ticks "$redis_pid")
go run ./loadtest ingest -url "http://$API" -rate 20000 -duration "$((EVENTS / 20000))s" \
  -batch "$BATCH" -workers 16 -drain-timeout 0 | grep -E 'accepted|sent|failed' || true
a1=$(cpu_ticks "$pid"); fp1=$(cpu_ticks $(pg_pids)); fr1=$(cpu_ticks "$redis_pid")
kill -TERM "$pid"; wait "$pid" || true
pid=
backlog=$(redis-cli -h 127.0.0.1 XLEN "${DAYBOOK_REDIS_PREFIX}daybook.events")
echo "backlog: $backlog events on the stream"
fill_us() { echo "scale=0; ($1) * 1000000 / $tick / $backlog" | bc -l; }
printf 'fill CPU per event: API %d µs, postgres %d µs, redis %d µs (batches of %d)\n' \
  "$(fill_us "$a1 - $a0")" "$(fill_us "$fp1 - $fp0")" "$(fill_us "$fr1 - $fr0")" "$BATCH"
prefill=${PREFILL:-0}
if ((prefill > 0)); then
  echo "== prefill: $prefill COMPLETED events and their event-log entries, stored directly"
  # Synthetic history: inserted COMPLETED at once, so the state-machine
  # trigger (which wants PENDING first) is off for this statement only.
  psql -q -h 127.0.0.1 -U postgres -d "$db" -v ON_ERROR_STOP=1 -v n="$prefill" <<'SQL'
BEGIN;
ALTER TABLE ingestion_events DISABLE TRIGGER ingestion_events_state_machine;
INSERT INTO ingestion_events (id, idempotency_key, source, type, order_id, payload, received_at, status, attempts)
SELECT gen_random_uuid(), 'prefill-' || g, 'order_updates', 'order.updated', 'prefill-' || (g % 100000),
       jsonb_build_object('status', 'shipped', 'n', g, 'note', repeat('x', 120)), now() - interval '1 day', 'COMPLETED', 1
FROM generate_series(1, :n) g;
ALTER TABLE ingestion_events ENABLE TRIGGER ingestion_events_state_machine;
INSERT INTO event_log (event_id, stream_id, stream_version, event_type, data, recorded_at)
SELECT gen_random_uuid(), 'ingest-' || id, 1, 'ingest.event_processed',
       jsonb_build_object('event_id', id, 'source', source, 'type', type, 'payload', payload), received_at
FROM ingestion_events WHERE idempotency_key LIKE 'prefill-%';
COMMIT;
VACUUM ANALYZE ingestion_events;
VACUUM ANALYZE event_log;
SQL
fi

echo "== burn-down: daybook worker alone ($BIN)"
[[ -n ${PPROF:-} ]] && export DAYBOOK_PPROF_ADDR=127.0.0.1:18092
"$BIN" worker >>"$log" 2>&1 &
pid=$!
if [[ -n ${PPROF:-} ]]; then
  wait_ready "$WORKER" /health
  curl -sf "http://127.0.0.1:18092/debug/pprof/profile?seconds=5" -o "$PPROF" &
fi
w0=$(cpu_ticks "$pid"); p0=$(cpu_ticks $(pg_pids)); r0=$(cpu_ticks "$redis_pid")
start=$(date +%s.%N)
wait_ready "$WORKER" /health
deadline=$(($(date +%s) + 600))
while :; do
  done_n=$(completed || echo 0)
  ((done_n >= backlog)) && break
  (($(date +%s) > deadline)) && { echo "gave up: $done_n of $backlog COMPLETED after 600 s"; exit 1; }
  sleep 0.1
done
end=$(date +%s.%N)
w1=$(cpu_ticks "$pid"); p1=$(cpu_ticks $(pg_pids)); r1=$(cpu_ticks "$redis_pid")
peak_rss=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
[[ -n ${PPROF:-} ]] && curl -sf "http://127.0.0.1:18092/debug/pprof/allocs" -o "$PPROF.allocs"
kill -TERM "$pid"; wait "$pid" || true
pid=

secs=$(echo "$end - $start" | bc -l)
us() { echo "scale=0; ($1) * 1000000 / $tick / $backlog" | bc -l; }
printf 'drained %d events in %.2f s: %.0f events/s\n' "$backlog" "$secs" "$(echo "$backlog / $secs" | bc -l)"
printf 'CPU per event: worker %d µs, postgres %d µs, redis %d µs (all Postgres backends on the machine)\n' \
  "$(us "$w1 - $w0")" "$(us "$p1 - $p0")" "$(us "$r1 - $r0")"
printf 'worker peak RSS: %d MiB\n' $((peak_rss / 1024))

# A row never updated (created_at = updated_at) was inserted COMPLETED at first sight.
read -r total completed_n first_sight logged < <(psql -qtA -F' ' -h 127.0.0.1 -U postgres -d "$db" -c "
  SELECT (SELECT count(*) FROM ingestion_events) - $prefill,
         (SELECT count(*) FROM ingestion_events WHERE status = 'COMPLETED' AND attempts = 1) - $prefill,
         (SELECT count(*) FROM ingestion_events WHERE status = 'COMPLETED' AND created_at = updated_at) - $prefill,
         (SELECT count(*) FROM event_log WHERE stream_id LIKE 'ingest-%') - $prefill")
echo "check: $total events, $completed_n COMPLETED at the first attempt ($first_sight of them at first sight), $logged event-log entries"
[[ $total == "$completed_n" && $total == "$logged" ]] || { echo "FAIL: not every event COMPLETED exactly once"; exit 1; }

echo "== bytes per stored event (table + indexes + TOAST, / all $((total + prefill)) events; archive / $total)"
psql -qtA -F' ' -h 127.0.0.1 -U postgres -d "$db" -c "
  SELECT relname, pg_total_relation_size(oid), round(pg_total_relation_size(oid)::numeric / $((total + prefill)))
  FROM pg_class WHERE relname IN ('ingestion_events', 'event_log', 'outbox', 'orders') ORDER BY relname" |
  while read -r name bytes per; do printf '  %-18s %12d bytes  %6d B/event\n' "$name" "$bytes" "$per"; done
archive_bytes=$(du -sb "$archive" | cut -f1)
archive_disk=$(du -s --block-size=1 "$archive" | cut -f1)
archive_files=$(find "$archive" -type f | wc -l)
printf '  %-18s %12d bytes  %6d B/event  (%d files; %d B/event on disk in whole blocks)\n' archive \
  "$archive_bytes" $((archive_bytes / total)) "$archive_files" $((archive_disk / total))
