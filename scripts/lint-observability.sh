#!/usr/bin/env bash
# Checks the Prometheus config, alert rules and their unit tests with promtool
# (Debian package prometheus); says so and skips where promtool is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
  echo "lint-observability: promtool not installed (apt-get install prometheus): skipped"
  exit 0
fi
promtool check config observability/prometheus/prometheus.yml
promtool check rules observability/prometheus/alerts.yml
promtool test rules observability/prometheus/alerts_test.yml
