#!/usr/bin/env bash
# Fails when the committed client/client.gen.go differs from what `go generate ./client/...`
# produces from api/openapi.yaml (run `make generate` and commit the result). The committed file
# is put back afterwards, so the check leaves the working tree as it found it.
set -euo pipefail
cd "$(dirname "$0")/.."

generated=client/client.gen.go
saved=$(mktemp -t daybook-client.XXXXXX)
cp "$generated" "$saved"
trap 'cp "$saved" "$generated"; rm -f "$saved"' EXIT

go generate ./client/...
if ! diff -u --label "$generated (committed)" --label "$generated (generated)" "$saved" "$generated"; then
  echo "check-client: $generated is stale; run \`make generate\` and commit it" >&2
  exit 1
fi
echo "check-client: $generated is up to date"
