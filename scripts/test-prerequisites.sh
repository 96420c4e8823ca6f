#!/usr/bin/env bash
# Make sure what the test suite talks to is there: Chromium, PostgreSQL, redis-server, nginx, wrk.
# Installs Debian's packages when missing, starts PostgreSQL when stopped, and fails (never
# skips) when one of them cannot be had. The suite starts its own private redis-server on a
# free port, so it never touches a Redis someone else uses.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi

# The benchmark's harness tests (tests/test_bench.py) run Debian's nginx and wrk.
missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="nginx-light"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
# The alert rules' unit tests (tests/ops/test_alert_rules.py) run promtool.
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
# The instruction counts' test (tests/test_bench_instructions.py) runs valgrind's callgrind.
command -v callgrind_control >/dev/null 2>&1 || missing="$missing valgrind"
if [ -n "$missing" ]; then
  echo "installing Debian's$missing for the tests"
  as_root apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq $missing >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  echo "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
for _ in $(seq 1 50); do
  port_open 5432 && break
  sleep 0.2
done
port_open 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing" >&2; exit 1; }
command -v chromium >/dev/null || { echo "chromium is missing" >&2; exit 1; }
command -v promtool >/dev/null || { echo "promtool is missing" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "systemd-analyze is missing" >&2; exit 1; }
command -v callgrind_control >/dev/null || { echo "valgrind is missing" >&2; exit 1; }
command -v wrk >/dev/null && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || { echo "nginx or wrk is missing" >&2; exit 1; }
