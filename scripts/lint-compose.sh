#!/usr/bin/env bash
# Checks docker-compose.yml and the Dockerfile without a Docker engine (none is
# needed to parse them). Prints which validator ran.
#
# 1. The Compose schema and model, by the first of:
#    a. `docker compose config -q` (the Compose v2 plugin parses without an engine);
#    b. a standalone `docker-compose` v2;
#    c. the compose-go loader (the library Compose v2 itself uses), built with the
#       Go toolchain into a cache directory on first use.
#    docker-compose v1 (Debian bookworm's 1.29) is not used: it predates the Compose
#    spec features this file uses (top-level `name`, `env_file: {path, required}`).
# 2. Daybook's own expectations (services, commands, healthchecks, depends_on
#    conditions, pinned tags, volumes), with python3 + PyYAML when present.
# 3. The Dockerfile with hadolint when installed, else a few structural checks.
set -euo pipefail
cd "$(dirname "$0")/.."

file="${1:-docker-compose.yml}"
compose_go_version=v2.16.2
fail=0
schema=""

compose_go() {
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/daybook/compose-lint-$compose_go_version"
  local bin="$cache/compose-lint"
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null 2>&1 || return 2
    mkdir -p "$cache"
    local src
    src="$(mktemp -d)"
    cat >"$src/main.go" <<'EOF'
// compose-lint loads Compose files the way docker compose does (schema, interpolation,
// merge keys, depends_on consistency) and exits 1 on the first error.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	opts, err := cli.NewProjectOptions(os.Args[1:], cli.WithOsEnv, cli.WithDotEnv, cli.WithName("lint"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	proj, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	names := proj.ServiceNames()
	sort.Strings(names)
	fmt.Println("services:", names)
}
EOF
    printf 'module composelint\n\ngo 1.26\n' >"$src/go.mod"
    if ! (cd "$src" && export GOWORK=off GOFLAGS=-mod=mod &&
      go get "github.com/compose-spec/compose-go/v2@$compose_go_version" >/dev/null 2>&1 &&
      go mod tidy >/dev/null 2>&1 && go build -o "$bin" .); then
      rm -rf "$src"
      return 2
    fi
    rm -rf "$src"
  fi
  "$bin" "$file"
}

# --- 1. Compose schema -------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  schema="docker compose $(docker compose version --short 2>/dev/null)"
  docker compose -f "$file" config -q || fail=1
elif command -v docker-compose >/dev/null 2>&1 &&
  docker-compose version --short 2>/dev/null | grep -Eq '^v?2\.'; then
  schema="docker-compose $(docker-compose version --short)"
  docker-compose -f "$file" config -q || fail=1
else
  rc=0
  compose_go || rc=$?
  case $rc in
    0) schema="compose-go $compose_go_version loader" ;;
    2) echo "compose-go loader could not be built (no Go toolchain or module proxy)" ;;
    *) schema="compose-go $compose_go_version loader"; fail=1 ;;
  esac
fi
if [ -n "$schema" ]; then
  echo "compose schema: $schema: $([ $fail = 0 ] && echo ok || echo FAILED)"
else
  echo "compose schema: no validator available (docker compose v2, docker-compose v2 or Go)"
fi

# --- 2. Daybook's expectations -----------------------------------------------
if command -v python3 >/dev/null 2>&1 && python3 -c 'import yaml' 2>/dev/null; then
  if python3 - "$file" <<'EOF'; then
import os, re, sys, yaml

path = sys.argv[1]
doc = yaml.safe_load(open(path))
errors, warnings = [], []
def err(msg): errors.append(msg)

def default(s):
    # ${VAR:-default} / ${VAR-default} -> default (what an empty environment yields)
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", str(s))

if "version" in doc:
    err("top-level `version:` is obsolete in the Compose spec")
services = doc.get("services") or {}
want = {"postgres", "redis", "migrate", "api", "worker", "prometheus", "grafana"}
for s in sorted(want - services.keys()):
    err(f"service {s} is missing")

for name, svc in services.items():
    image = default(svc.get("image", ""))
    if not image:
        if "build" not in svc:
            err(f"{name}: neither image nor build")
        continue
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if not tag or tag == "latest":
        err(f"{name}: image {image!r} must pin a tag other than latest")

for name in ("postgres", "redis", "prometheus", "grafana"):
    if not (services.get(name) or {}).get("healthcheck"):
        err(f"{name}: needs a healthcheck")

for name, svc in services.items():
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        deps = {d: {"condition": "service_started"} for d in deps}
    for dep, spec in deps.items():
        cond = (spec or {}).get("condition", "service_started")
        target = services.get(dep)
        if target is None:
            err(f"{name}: depends_on unknown service {dep}")
        elif cond == "service_healthy" and not target.get("healthcheck"):
            err(f"{name}: waits for {dep} healthy, but {dep} has no healthcheck")
        elif cond == "service_completed_successfully" and str(target.get("restart", "no")) != "no":
            err(f"{name}: waits for {dep} to complete, but {dep} restarts")

def cmd(name):
    c = (services.get(name) or {}).get("command")
    return c.split() if isinstance(c, str) else [str(x) for x in (c or [])]

for name, want_cmd in {"api": ["serve"], "worker": ["worker"], "migrate": ["migrate", "up"]}.items():
    if cmd(name) != want_cmd:
        err(f"{name}: command {cmd(name)} != {want_cmd}")
    svc = services.get(name) or {}
    if "build" not in svc:
        err(f"{name}: must build the Daybook image")
    envf = svc.get("env_file") or []
    if not any(isinstance(e, dict) and e.get("path") == ".env" and e.get("required") is False for e in envf):
        err(f"{name}: env_file .env must be optional (required: false)")
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    if "@postgres:5432/" not in str(env.get("DATABASE_URL", "")):
        err(f"{name}: DATABASE_URL must point at the postgres service")
    if not str(env.get("REDIS_URL", "")).startswith("redis://redis:6379"):
        err(f"{name}: REDIS_URL must point at the redis service")
for name in ("api", "worker"):
    deps = (services.get(name) or {}).get("depends_on") or {}
    for dep, cond in (("postgres", "service_healthy"), ("redis", "service_healthy"),
                      ("migrate", "service_completed_successfully")):
        if not isinstance(deps, dict) or (deps.get(dep) or {}).get("condition") != cond:
            err(f"{name}: depends_on {dep} must have condition {cond}")
if str((services.get("migrate") or {}).get("restart")) != "no":
    err('migrate: restart must be "no"')

rcmd = " ".join(cmd("redis"))
for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
    if flag not in rcmd:
        err(f"redis: command lacks {flag}")

prom = services.get("prometheus") or {}
if "./observability/prometheus:/etc/prometheus:ro" not in (prom.get("volumes") or []):
    err("prometheus: must mount ./observability/prometheus:/etc/prometheus:ro")
if "--config.file=/etc/prometheus/prometheus.yml" not in cmd("prometheus"):
    err("prometheus: --config.file=/etc/prometheus/prometheus.yml expected")

# Volumes: named ones declared, bind sources present (warn only: they may be in the works).
declared = set((doc.get("volumes") or {}).keys())
host_ports = {}
for name, svc in services.items():
    for v in svc.get("volumes") or []:
        src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
        if src.startswith((".", "/", "~")):
            if not os.path.exists(os.path.join(os.path.dirname(os.path.abspath(path)), src)):
                warnings.append(f"{name}: bind source {src} does not exist (yet)")
        elif src and src not in declared:
            err(f"{name}: named volume {src} is not declared at top level")
    for p in svc.get("ports") or []:
        parts = default(p).split(":")
        hp = ":".join(parts[:-1])
        if hp in host_ports:
            err(f"{name}: host port {hp} already published by {host_ports[hp]}")
        host_ports[hp] = name

for w in warnings:
    print("warning:", w)
for e in errors:
    print("error:", e)
print(f"compose expectations: python3 + PyYAML: {len(services)} services, "
      f"{'ok' if not errors else f'{len(errors)} error(s)'}")
sys.exit(1 if errors else 0)
EOF
    :
  else
    fail=1
  fi
else
  echo "compose expectations: skipped (python3 with PyYAML not available)"
  [ -n "$schema" ] || fail=1
fi

# --- 3. Dockerfile -----------------------------------------------------------
if command -v hadolint >/dev/null 2>&1; then
  if hadolint Dockerfile; then echo "dockerfile: hadolint: ok"; else echo "dockerfile: hadolint: FAILED"; fail=1; fi
else
  echo "dockerfile: hadolint not installed: skipped; structural checks only"
  df_ok=1
  grep -q '^# syntax=docker/dockerfile:1' Dockerfile || { echo "error: Dockerfile lacks '# syntax=docker/dockerfile:1'"; df_ok=0; }
  [ "$(grep -c '^FROM ' Dockerfile)" -ge 2 ] || { echo "error: Dockerfile is not multi-stage"; df_ok=0; }
  if grep -E '^FROM ' Dockerfile | grep -Eq ':latest( |$)|^FROM( --platform=[^ ]+)? [^-: ][^: ]*( |$)'; then
    echo "error: Dockerfile base image without a pinned tag"; df_ok=0
  fi
  last_user="$(grep -E '^USER ' Dockerfile | tail -n1 | awk '{print $2}')"
  case "$last_user" in ""|root|0|0:0) echo "error: Dockerfile must end as a non-root USER"; df_ok=0 ;; esac
  grep -q '^ENTRYPOINT \["/daybook"\]' Dockerfile || { echo "error: ENTRYPOINT [\"/daybook\"] expected"; df_ok=0; }
  if [ $df_ok = 1 ]; then echo "dockerfile: structural checks: ok"; else fail=1; fi
fi

exit $fail
