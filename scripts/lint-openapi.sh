#!/usr/bin/env bash
# Lints the committed OpenAPI document with Redocly CLI (fetched by npx on
# first use); says so and skips where npx is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npx >/dev/null 2>&1; then
  echo "lint-openapi: npx not installed (Node.js): skipped"
  exit 0
fi
npx --yes @redocly/cli@2.77.0 lint api/openapi.yaml
