#!/usr/bin/env bash
# Makes sure the local services Daybook needs are listening: Postgres and Redis
# (and moto_server when --moto is given). Starts an installed but stopped
# service; where one is not installed, says in one line how to get it.
set -euo pipefail

want_moto=false
[ "${1:-}" = "--moto" ] && want_moto=true

hint="docker compose up -d postgres redis"

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting postgres..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  pg_up || { echo "Postgres is not running on 127.0.0.1:5432 and cannot be started here: $hint"; exit 1; }
fi

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting redis..."
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 1 30); do redis_up && break; sleep 1; done
  fi
  redis_up || { echo "Redis is not running on 127.0.0.1:6379 and cannot be started here: $hint"; exit 1; }
fi

if $want_moto; then
  moto_up() { curl -sf -o /dev/null http://127.0.0.1:4566/moto-api/ 2>/dev/null; }
  if ! moto_up; then
    if command -v moto_server >/dev/null 2>&1; then
      echo "starting moto_server..."
      nohup moto_server -H 127.0.0.1 -p 4566 >/tmp/moto_server.log 2>&1 &
      for _ in $(seq 1 30); do moto_up && break; sleep 1; done
    fi
    moto_up || { echo "moto_server is not running on 127.0.0.1:4566: pip install 'moto[server]'"; exit 1; }
  fi
fi
