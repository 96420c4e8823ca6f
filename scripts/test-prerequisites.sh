#!/usr/bin/env bash
# Make sure what the test suite talks to is there: Chromium, PostgreSQL and Redis.
# Installs Debian's chromium when missing, starts the services when they are stopped,
# and fails (never skips) when one of them cannot be had.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  echo "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! port_open 6379; then
  echo "starting Redis"
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /tmp --logfile /tmp/vgw-redis.log || true
fi
for _ in $(seq 1 50); do
  port_open 5432 && port_open 6379 && break
  sleep 0.2
done
port_open 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
port_open 6379 || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
command -v chromium >/dev/null || { echo "chromium is missing" >&2; exit 1; }
