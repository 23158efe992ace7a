#!/usr/bin/env bash
# Runs the runtime's engine tests again beside a competing CPU load (stress-ng, one worker per core),
# so timing assumptions that only hold on a quiet machine fail here rather than on a user's.
# Installs stress-ng from Debian when missing (root). The load is stopped however the tests end.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[loaded] %s\n' "$*" >&2; }

if ! command -v stress-ng >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "error: stress-ng is missing; install it (Debian: apt-get install stress-ng)"
    exit 1
  fi
  say "installing stress-ng"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends stress-ng >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends stress-ng >/dev/null; }
fi

cpus=$(nproc)
say "starting stress-ng --cpu $cpus"
stress-ng --cpu "$cpus" --timeout 3600s --quiet &
load=$!
trap 'kill "$load" 2>/dev/null || true; wait "$load" 2>/dev/null || true' EXIT

started=$(date +%s)
pnpm exec vitest run --project engine packages/ociapp-runtime/tests/runtime.engine.test.ts
say "runtime engine tests passed under load in $(($(date +%s) - started)) s"
