#!/usr/bin/env bash
# The runtime's engine tests (packages/ociapp-runtime/tests/runtime.engine.test.ts: confinement,
# failures, hostile containers, faults) on the sandboxes and engines beside the default one:
#
#   scripts/engine-matrix.sh gvisor   runsc on the primary engine (scripts/engine.sh runsc registers
#                                      it), then fails if any runsc sandbox or shim was left behind
#   scripts/engine-matrix.sh all      every one of the above
#
# Each run prints its time. Facts about each engine: docs/engines.md; the support table: the runtime
# README.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[matrix] %s\n' "$*" >&2; }
die() { printf '[matrix] error: %s\n' "$*" >&2; exit 1; }

run_file() {
  pnpm exec vitest run --project engine packages/ociapp-runtime/tests/runtime.engine.test.ts
}

gvisor() {
  local started leftovers
  started=$(date +%s)
  bash scripts/engine.sh runsc
  say "runtime engine tests under gVisor (runsc)"
  OCIAPP_TEST_OCI_RUNTIME=runsc run_file
  # A failed gVisor start can leave a runsc sandbox and its shim behind (docs/engines.md): none may.
  leftovers=$(bash scripts/engine.sh runsc-leftovers)
  [ -z "$leftovers" ] || die "runsc left processes behind: $leftovers"
  say "gVisor: passed, nothing left behind, in $(($(date +%s) - started)) s"
}

case "${1:-all}" in
  gvisor) gvisor ;;
  all) gvisor ;;
  *) die "usage: scripts/engine-matrix.sh [gvisor|all]" ;;
esac
