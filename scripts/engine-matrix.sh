#!/usr/bin/env bash
# The runtime's engine tests (packages/ociapp-runtime/tests/runtime.engine.test.ts: confinement,
# failures, hostile containers, faults) on the sandboxes and engines beside the default one:
#
#   scripts/engine-matrix.sh gvisor   runsc on the primary engine (scripts/engine.sh runsc registers
#                                      it), then fails if any runsc sandbox or shim was left behind
#   scripts/engine-matrix.sh classic  a second dockerd with the classic image store
#                                      (scripts/engines/classic-dockerd.sh), started and stopped here
#   scripts/engine-matrix.sh podman   Podman's Docker-compatible service (scripts/engines/podman.sh),
#                                      started and stopped here
#   scripts/engine-matrix.sh kubernetes  the KubernetesEngine on the single-node cluster of
#                                      scripts/k8s.sh (started if need be; left running), this
#                                      process standing in for the agent on the node
#   scripts/engine-matrix.sh all      every one of the above
#
# Artifacts are built on the primary engine (buildx) and loaded into the engine under test by the
# runtime; the test file reaches it through OCIAPP_TEST_ENGINE_SOCKET.
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

# other <name> <script> <socket>: the file against another engine's socket.
other() {
  local name=$1 script=$2 socket=$3 started
  started=$(date +%s)
  bash "scripts/engines/$script" up
  # The tests build images FROM the base image on the engine under test.
  bash "scripts/engines/$script" copy-image node:20-bookworm-slim
  say "runtime engine tests on $name ($socket)"
  local status=0
  OCIAPP_TEST_ENGINE_SOCKET=$socket OCIAPP_TEST_ENGINE_KIND=$name run_file || status=$?
  bash "scripts/engines/$script" down >/dev/null 2>&1 || true
  [ "$status" = 0 ] || die "the runtime engine tests failed on $name"
  say "$name: passed in $(($(date +%s) - started)) s"
}

classic() { other classic classic-dockerd.sh /run/ociapp-classic/docker.sock; }

kubernetes() {
  local started
  started=$(date +%s)
  bash scripts/k8s.sh up
  say "runtime engine tests on Kubernetes (the KubernetesEngine, pods in namespace ociapp-engine-test)"
  OCIAPP_TEST_ENGINE_KIND=kubernetes run_file || die "the runtime engine tests failed on Kubernetes"
  say "kubernetes: passed in $(($(date +%s) - started)) s"
}
podman() { other podman podman.sh /run/ociapp-podman/podman.sock; }

case "${1:-all}" in
  gvisor) gvisor ;;
  classic) classic ;;
  podman) podman ;;
  kubernetes) kubernetes ;;
  all) gvisor; classic; podman; kubernetes ;;
  *) die "usage: scripts/engine-matrix.sh [gvisor|classic|podman|kubernetes|all]" ;;
esac
