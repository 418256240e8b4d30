#!/usr/bin/env bash
# The ledger benchmark and its reference in one run: transfers/s (uniform over
# 1,000 accounts and hot account, both lock strategies, 16 clients) from the Go
# benchmarks, then pgbench's TPC-B-like figure with the same 16 clients on a
# scratch database of the same server, and the ratios the ledger issue asks for.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCHTIME=${BENCHTIME:-5s}
PGB_SECONDS=${PGB_SECONDS:-20}
out=$(mktemp -t daybook-ledger-bench.XXXXXX)

echo "== ledger transfers (go test -bench Transfer -benchtime $BENCHTIME ./ledger/)"
go test -run '^$' -bench Transfer -benchtime "$BENCHTIME" ./ledger/ | tee "$out"

echo
echo "== pgbench TPC-B-like, 16 clients, ${PGB_SECONDS}s, scale 10 (reference)"
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS daybook_pgbench" -c "CREATE DATABASE daybook_pgbench" >/dev/null 2>&1
pgbench -q -h 127.0.0.1 -U postgres -i -s 10 daybook_pgbench >/dev/null 2>&1
tps=$(pgbench -h 127.0.0.1 -U postgres -c 16 -j 2 -T "$PGB_SECONDS" daybook_pgbench 2>/dev/null | awk '/^tps = /{print $3; exit}')
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE daybook_pgbench" >/dev/null
echo "pgbench tps: $tps"

echo
echo "== ratios"
awk -v tps="$tps" '
  /transfers\/s/ {
    for (i = 1; i <= NF; i++) if ($(i+1) == "transfers/s") rate = $i
    name = $1; sub(/-[0-9]+$/, "", name); rates[name] = rate
  }
  END {
    for (n in rates) printf "%-45s %10.0f transfers/s  %.2fx pgbench\n", n, rates[n], rates[n] / tps
    split("postgres redis", ls, " ")
    for (i in ls) {
      u = rates["BenchmarkTransfer_Uniform/" ls[i]]; h = rates["BenchmarkTransfer_HotAccount/" ls[i]]
      if (u > 0) printf "hot/uniform (%s): %.0f%%\n", ls[i], 100 * h / u
    }
  }' "$out"
