#!/usr/bin/env bash
# Start the local PostgreSQL and Redis when they are installed but stopped (tests need both).
set -uo pipefail

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "Starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  fi
fi
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "Starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  fi
fi

# The offline demo voice (Media Streams' embedded default) speaks with espeak-ng, a Debian
# package; without it its tests are skipped, so install it when this machine can.
if ! command -v espeak-ng >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Installing espeak-ng"
  apt-get install -y -q espeak-ng >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q espeak-ng >/dev/null 2>&1; } \
    || echo "espeak-ng could not be installed: the demo voice's tests are skipped" >&2
fi

ready=""
for _ in $(seq 1 50); do
  if pg_isready -q -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    ready=yes
    break
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) is not reachable." >&2
  exit 1
fi

# The tests' DATABASE_URL names this database; pytest-django creates test_switchboard beside it.
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'switchboard'" | grep -q 1; then
  createdb -h 127.0.0.1 -U postgres switchboard
fi
