#!/usr/bin/env bash
# Start the gateway with several workers. Several workers share limits through Redis,
# so REDIS_URL is required; PostgreSQL (DATABASE_URL) is recommended.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${REDIS_URL:-}" ]; then
  echo "start_production.sh: set REDIS_URL (limits are shared between workers through Redis)" >&2
  exit 2
fi
WORKERS="${GATEWAY_WORKERS:-$(nproc)}"
BIN=".venv/bin"
[ -x "$BIN/vllm-gateway" ] || make install
exec "$BIN/vllm-gateway" serve --workers "$WORKERS" "$@"
