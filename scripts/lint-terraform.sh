#!/usr/bin/env bash
# Lints terraform/: formatting, validation against the offline provider mirror,
# the offline plan tests in terraform/tests/, and tfsec. Steps whose tool is missing print one line and are skipped.
# Leaves nothing behind in the repository: init runs on a temporary copy.
set -euo pipefail

cd "$(dirname "$0")/.."
dir=terraform
plugins=${TF_PLUGIN_MIRROR:-/opt/tf-plugins}

if [ ! -d "$dir" ]; then
	echo "lint-terraform: no $dir/ directory; nothing to check"
	exit 0
fi

# A TF_CLI_CONFIG_FILE pointing at a missing file makes terraform warn on every
# command; nothing in it is needed here.
if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then
	unset TF_CLI_CONFIG_FILE
fi
export TF_IN_AUTOMATION=1 TF_INPUT=0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! command -v terraform >/dev/null 2>&1; then
	echo "lint-terraform: terraform not installed; skipping fmt and validate"
else
	echo "lint-terraform: terraform fmt -check -recursive $dir/"
	if ! terraform fmt -check -recursive "$dir/"; then
		echo "lint-terraform: files above need 'terraform fmt -recursive $dir/'" >&2
		exit 1
	fi

	if [ ! -d "$plugins" ]; then
		echo "lint-terraform: no provider mirror at $plugins; skipping init and validate"
	else
		# Copy the configuration so that init's .terraform/ and
		# .terraform.lock.hcl land in the temporary directory.
		mkdir "$tmp/config"
		(cd "$dir" && tar --exclude=.terraform --exclude=.terraform.lock.hcl --exclude='*.tfstate*' -cf - .) |
			(cd "$tmp/config" && tar -xf -)
		export TF_DATA_DIR="$tmp/data"
		echo "lint-terraform: terraform init -backend=false -plugin-dir=$plugins"
		if ! out=$(terraform -chdir="$tmp/config" init -backend=false -plugin-dir="$plugins" -input=false -no-color 2>&1); then
			echo "$out" >&2
			exit 1
		fi
		echo "lint-terraform: terraform validate"
		terraform -chdir="$tmp/config" validate -no-color
		if [ -d "$tmp/config/tests" ]; then
			# Offline plan assertions against a mocked provider (no credentials).
			echo "lint-terraform: terraform test"
			terraform -chdir="$tmp/config" test -no-color
		fi
		unset TF_DATA_DIR
	fi
fi

tfsec_bin=$(command -v tfsec 2>/dev/null || true)
if [ -z "$tfsec_bin" ] && command -v go >/dev/null 2>&1; then
	candidate="$(go env GOPATH 2>/dev/null)/bin/tfsec"
	[ -x "$candidate" ] && tfsec_bin=$candidate
fi
if [ -z "$tfsec_bin" ]; then
	echo "lint-terraform: tfsec not installed (go install github.com/aquasecurity/tfsec/cmd/tfsec@v1.26.0); skipping security scan"
else
	echo "lint-terraform: tfsec $dir/"
	"$tfsec_bin" "$dir" --no-color --concise-output --no-module-downloads
fi

echo "lint-terraform: ok"
