#!/usr/bin/env bash
# Make sure what the test suite talks to is there: Chromium, PostgreSQL, Redis, nginx and wrk.
# Installs Debian's chromium, nginx-light and wrk when missing, starts the services when stopped,
# and fails (never skips) when one of them cannot be had.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi

# The benchmark's harness tests (tests/test_bench.py) run Debian's nginx and wrk.
missing_bench=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing_bench="nginx-light"
command -v wrk >/dev/null 2>&1 || missing_bench="$missing_bench wrk"
if [ -n "$missing_bench" ]; then
  echo "installing Debian's$missing_bench for the benchmark tests"
  as_root apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq $missing_bench >/dev/null
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
command -v wrk >/dev/null && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || { echo "nginx or wrk is missing" >&2; exit 1; }
