#!/usr/bin/env bash
# Proves the three packages install the way users install them, against a real npm registry:
#
#  1. Verdaccio (pinned in scripts/registry-test/tools, installed with npm ci into the engine cache)
#     on 127.0.0.1 with throwaway storage and config in a temporary folder; its uplink is this
#     machine's npm registry (`npm config get registry`), read now and never written in the repository.
#     ociapp, ociapp-build and ociapp-runtime are local-only names there: never fetched from the uplink.
#  2. The air-gapped route first, before anything is published: `pnpm pack` each package, then one
#     `npm install a.tgz b.tgz c.tgz zod` in a fresh project (third-party packages from the registry;
#     a registry request for one of ours would be a 404), the README's tarball blocks as written (one
#     of them offline, from an npm cache), and a global install of the CLI from tarballs.
#  3. `pnpm publish` of the three packages (workspace:^ becomes a real range).
#  4. The README's registry blocks as written (npm, and pnpm with its build-script approvals); each
#     package alone, with npm and with pnpm, in fresh projects: it installs and imports.
#  5. The consumer: a fresh npm project outside the workspace runs `npm install ociapp ociapp-build
#     ociapp-runtime zod`; a TypeScript service is type-checked with strict and no skipLibCheck
#     (nodenext and bundler resolution); an app (its own npm project, TypeScript) is built with the
#     installed ociapp-build (managed mode: the SDK is packed from the app's own installed copy) and
#     executed with the installed Runtime in a real container; a stack trace through the installed
#     runtime points at shipped files.
#
# Every installed package is checked by scripts/registry-test/check-installed.mjs (licence, files named
# by main/types/exports/bin, source maps, the .d.ts imports). Verdaccio, containers, the image and the
# temporary folder are removed however the script ends (OCIAPP_KEEP_TMP=1 keeps the folder).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOG_TAG=registry
# shellcheck source=scripts/engines/common.sh
. scripts/engines/common.sh

PACKAGES=(ociapp ociapp-build ociapp-runtime)
TOOLS_SRC="$ROOT/scripts/registry-test/tools"
TOOLS="$CACHE_DIR/registry-test-tools"
TYPESCRIPT=$(node -p 'require("./package.json").devDependencies.typescript')
TYPES_NODE=$(node -p 'require("./package.json").devDependencies["@types/node"]')
IMAGE="ociapp-registry-test/app:$$"

started=$(date +%s)
step() { say "== $* ($(($(date +%s) - started)) s)"; }

work=""
verdaccio_pid=""
digest=""
cleanup() {
  local status=$?
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  if [ -n "$verdaccio_pid" ] && kill -0 "$verdaccio_pid" 2>/dev/null; then
    kill "$verdaccio_pid" 2>/dev/null || true
    wait_until 10 sh -c "! kill -0 $verdaccio_pid" || kill -KILL "$verdaccio_pid" 2>/dev/null || true
  fi
  if [ -n "$digest" ]; then
    local ids
    ids=$(timeout 30 docker ps -aq --filter "label=dev.ociapp.artifact=$digest" 2>/dev/null || true)
    # shellcheck disable=SC2086 # a list of ids
    [ -z "$ids" ] || timeout 60 docker rm -f $ids >/dev/null 2>&1 || true
  fi
  timeout 60 docker image rm -f "$IMAGE" >/dev/null 2>&1 || true
  if [ -n "$work" ]; then
    if [ "$status" != 0 ] && [ -f "$work/verdaccio.log" ]; then
      say "last lines of the registry's log:"
      tail -n 20 "$work/verdaccio.log" >&2 || true
    fi
    if [ -n "${OCIAPP_KEEP_TMP:-}" ]; then say "kept $work"; else rm -rf "$work"; fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run [-C DIR] SECONDS LOGNAME COMMAND...: runs COMMAND (in DIR) with its output in
# $work/logs/LOGNAME.log; on failure, its last lines and one line naming the step. It runs in the
# background and is waited for, so that a signal to this script stops it at once (cleanup kills it).
child=""
run() {
  local dir=$PWD
  if [ "$1" = -C ]; then
    dir=$2
    shift 2
  fi
  local limit=$1 name=$2 status=0
  shift 2
  (cd "$dir" && exec timeout "$limit" "$@") >"$work/logs/$name.log" 2>&1 &
  child=$!
  wait "$child" || status=$?
  child=""
  if [ "$status" != 0 ]; then
    tail -n 30 "$work/logs/$name.log" >&2
    die "$name failed (exit $status): $* (log above)"
  fi
}

# readme_blocks NEEDS: runs the READMEs' sh blocks marked `<!-- docs-test: needs NEEDS -->`, as
# written, each in a fresh project (new_project) that also holds the three tarballs when NEEDS is
# tarballs (tests/docs/blocks.ts extracts them).
readme_blocks() {
  local needs=$1 listing path source project count=0
  listing=$(node --import tsx tests/docs/blocks.ts emit "$needs" "$work/docs-$needs") ||
    die "cannot extract the README blocks that need $needs"
  while read -r path source; do
    [ -n "$path" ] || continue
    count=$((count + 1))
    project="$work/docs-$needs-$count"
    new_project "$project"
    [ "$needs" != tarballs ] || cp "${tarballs[@]}" "$project/"
    say "$source, in a fresh project"
    run -C "$project" 900 "docs-$needs-$count" bash -e -o pipefail "$path"
  done <<<"$listing"
  [ "$count" -gt 0 ] || die "no README block needs $needs: the Install section lost its markers"
}

# A fresh npm project at $1 that reads packages from the test registry only.
new_project() {
  mkdir -p "$1"
  printf '{ "name": "%s", "version": "1.0.0", "private": true, "type": "module" }\n' "$(basename "$1")" >"$1/package.json"
  printf 'registry=%s\n' "$REGISTRY" >"$1/.npmrc"
}

work=$(mktemp -d /tmp/ociapp-registry.XXXXXX)
mkdir -p "$work/logs" "$work/verdaccio" "$work/tarballs" "$work/out"

step "engine and packages"
bash scripts/engine.sh
run 600 build pnpm build

step "Verdaccio (scripts/registry-test/tools)"
lock_sum=$(cat "$TOOLS_SRC/package.json" "$TOOLS_SRC/package-lock.json" | sha256sum | awk '{print $1}')
if [ "$(cat "$TOOLS/.installed" 2>/dev/null)" != "$lock_sum" ]; then
  say "npm ci into $TOOLS"
  rm -rf "$TOOLS"
  mkdir -p "$TOOLS"
  cp "$TOOLS_SRC/package.json" "$TOOLS_SRC/package-lock.json" "$TOOLS/"
  run -C "$TOOLS" 600 tools npm ci --no-audit --no-fund
  printf '%s\n' "$lock_sum" >"$TOOLS/.installed"
fi
VERDACCIO="$TOOLS/node_modules/.bin/verdaccio"
[ -x "$VERDACCIO" ] || die "no verdaccio in $TOOLS; remove the folder and run again"

# Throwaway caches: nothing read from, or left in, the user's npm cache or pnpm store.
export npm_config_cache="$work/npm-cache"
export pnpm_config_store_dir="$work/pnpm-store" pnpm_config_cache_dir="$work/pnpm-cache"
# pnpm stops an install whose dependencies have build scripts nobody reviewed; dockerode's optional
# ssh transport (ssh2, cpu-features) and protobufjs's postinstall are not needed; ociapp-build's
# esbuild checks its platform binary in its own (README: Install).
PNPM_DENY_BUILDS=(--allow-build '!cpu-features' --allow-build '!protobufjs' --allow-build '!ssh2' --allow-build esbuild)

# The uplink and how to reach it, from this machine's npm configuration (read from /, so that no
# project's .npmrc is involved).
config_get() { (cd / && npm config get "$1" 2>/dev/null) | sed -e 's/^null$//' -e 's/^undefined$//'; }
uplink=$(config_get registry)
[ -n "$uplink" ] || die "npm config get registry printed nothing"
https_proxy_conf=$(config_get https-proxy)
http_proxy_conf=$(config_get proxy)
cafile=$(config_get cafile)
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -n "$cafile" ] && [ -f "$cafile" ]; then
  export NODE_EXTRA_CA_CERTS="$cafile"
fi
port=$(node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
REGISTRY="http://127.0.0.1:$port/"
{
  printf 'storage: %s\n' "$work/verdaccio/storage"
  printf 'auth:\n  htpasswd:\n    file: %s\n    max_users: 10\n' "$work/verdaccio/htpasswd"
  printf 'uplinks:\n  machine:\n    url: %s\n    timeout: 60s\n' "$uplink"
  [ -z "$https_proxy_conf" ] || printf 'https_proxy: %s\n' "$https_proxy_conf"
  [ -z "$http_proxy_conf" ] || printf 'http_proxy: %s\n' "$http_proxy_conf"
  printf 'packages:\n'
  for name in "${PACKAGES[@]}"; do
    printf "  '%s':\n    access: \$all\n    publish: \$authenticated\n" "$name"
  done
  printf "  '**':\n    access: \$all\n    publish: \$authenticated\n    proxy: machine\n"
  printf 'web:\n  enable: false\n'
  printf 'log: { type: stdout, format: pretty, level: warn }\n'
} >"$work/verdaccio/config.yaml"

step "starting Verdaccio $(node -p "require('$TOOLS/node_modules/verdaccio/package.json').version") on $REGISTRY (uplink $uplink)"
"$VERDACCIO" --config "$work/verdaccio/config.yaml" --listen "127.0.0.1:$port" >"$work/verdaccio.log" 2>&1 &
verdaccio_pid=$!
wait_until 60 curl -fsS "${REGISTRY}-/ping" || die "Verdaccio did not answer on $REGISTRY within 60 s; see its log above"
token=$(curl -fsS -X PUT -H 'content-type: application/json' \
  -d '{"name":"ci","password":"registry-test"}' "${REGISTRY}-/user/org.couchdb.user:ci" |
  node -e 'let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => console.log(JSON.parse(s).token ?? ""))')
[ -n "$token" ] || die "Verdaccio did not give the test user a token"
printf '//127.0.0.1:%s/:_authToken=%s\n' "$port" "$token" >"$work/publish.npmrc"

step "pnpm pack (the air-gapped route)"
for name in "${PACKAGES[@]}"; do
  run 120 "pack-$name" pnpm --dir "packages/$name" pack --pack-destination "$work/tarballs"
done
tarballs=("$work"/tarballs/*.tgz)
[ "${#tarballs[@]}" = 3 ] || die "expected 3 tarballs in $work/tarballs, found ${#tarballs[@]}"
for tgz in "${tarballs[@]}"; do
  if tar -xzOf "$tgz" package/package.json | grep -q '"workspace:'; then
    die "$(basename "$tgz") still has a workspace: dependency"
  fi
done
for tgz in "${tarballs[@]}"; do say "$(basename "$tgz"): $(($(stat -c %s "$tgz") / 1024)) KiB"; done

step "npm install of the three tarballs in one command, none of them published"
new_project "$work/from-tarballs"
run 600 install-tarballs npm --prefix "$work/from-tarballs" install "${tarballs[@]}" zod
node scripts/registry-test/check-installed.mjs "$work/from-tarballs"
# One SDK in the tree: the tarball's, shared by ociapp-build and ociapp-runtime.
copies=$(find "$work/from-tarballs/node_modules" -path '*/node_modules/ociapp/package.json' | wc -l)
[ "$copies" = 1 ] || die "the tarball install holds $copies copies of ociapp, not 1"
run -C "$work/from-tarballs" 60 import-tarballs node --input-type=module \
  -e 'await import("ociapp"); await import("ociapp/protocol"); await import("ociapp-build"); await import("ociapp-runtime");'
run 60 cli-tarballs "$work/from-tarballs/node_modules/.bin/ociapp-build" --version

step "README: the blocks that install from tarballs, as written"
readme_blocks tarballs

step "npm install -g of the CLI from tarballs"
ociapp_tgz=$(printf '%s\n' "${tarballs[@]}" | grep '/ociapp-0')
build_tgz=$(printf '%s\n' "${tarballs[@]}" | grep '/ociapp-build-0')
run -C "$work/from-tarballs" 600 install-global npm install -g --prefix "$work/global" "$ociapp_tgz" "$build_tgz"
run 60 cli-global "$work/global/bin/ociapp-build" --version

step "pnpm publish to $REGISTRY"
for name in "${PACKAGES[@]}"; do
  run 120 "publish-$name" pnpm --dir "packages/$name" publish --registry "$REGISTRY" --no-git-checks \
    --npmrc-auth-file "$work/publish.npmrc"
done
for name in ociapp-build ociapp-runtime; do
  spec=$(npm view "$name@0.2.0" dependencies.ociapp --registry "$REGISTRY")
  [ "$spec" = "^$(node -p 'require("./packages/ociapp/package.json").version')" ] ||
    die "$name was published with ociapp \"$spec\""
done

step "README: the blocks that install from a registry, as written"
readme_blocks registry

for name in "${PACKAGES[@]}"; do
  step "$name alone: npm install, pnpm add"
  new_project "$work/npm-$name"
  run 600 "npm-$name" npm --prefix "$work/npm-$name" install "$name"
  new_project "$work/pnpm-$name"
  run -C "$work/pnpm-$name" 600 "pnpm-$name" pnpm add "$name" "${PNPM_DENY_BUILDS[@]}"
  for project in "$work/npm-$name" "$work/pnpm-$name"; do
    node scripts/registry-test/check-installed.mjs "$project" "$name" >/dev/null
    run -C "$project" 60 "import-$name" node --input-type=module -e "await import('$name')"
  done
done

step "the consumer: npm install ociapp ociapp-build ociapp-runtime zod"
service="$work/service"
new_project "$service"
run 600 install-service npm --prefix "$service" install ociapp ociapp-build ociapp-runtime zod
run 600 install-service-dev npm --prefix "$service" install --save-dev "typescript@$TYPESCRIPT" "@types/node@$TYPES_NODE"
node scripts/registry-test/check-installed.mjs "$service"
cp scripts/registry-test/service/service.ts scripts/registry-test/service/tsconfig.json \
  scripts/registry-test/service/tsconfig.bundler.json "$service/"

step "tsc in the consumer: strict, no skipLibCheck (nodenext; bundler)"
run -C "$service" 300 tsc-nodenext node_modules/.bin/tsc -p tsconfig.json
run -C "$service" 300 tsc-bundler node_modules/.bin/tsc -p tsconfig.bundler.json

step "the app: its own npm project, built with the installed ociapp-build"
app="$work/app"
mkdir -p "$app"
cp -r scripts/registry-test/app/. "$app/"
printf 'registry=%s\n' "$REGISTRY" >"$app/.npmrc"
run 600 install-app npm --prefix "$app" install ociapp zod
run 600 install-app-dev npm --prefix "$app" install --save-dev "typescript@$TYPESCRIPT" "@types/node@$TYPES_NODE"
run -C "$service" 900 build-app node_modules/.bin/ociapp-build "$app" --output-dir "$work/out" \
  --network host --image "$IMAGE" --progress quiet --json
result=$(tail -n 1 "$work/logs/build-app.log")
artifact=$(node -e 'console.log(JSON.parse(process.argv[1]).path)' "$result")
digest=$(node -e 'console.log(JSON.parse(process.argv[1]).digest)' "$result")
say "built $artifact ($digest)"

step "the installed Runtime executes it in a container"
run -C "$service" 300 service node --enable-source-maps dist/service.js "$artifact"
cat "$work/logs/service.log" >&2

step "a stack trace through the installed runtime points at shipped files"
frame=$(cd "$service" && node --enable-source-maps --input-type=module -e '
  import { Runtime } from "ociapp-runtime";
  try { new Runtime({ maxInstances: 0 }); } catch (error) {
    console.log(/\((\/[^:)]+):\d+:\d+\)/.exec(error.stack.split("\n")[1])?.[1] ?? "");
  }')
case "$frame" in
  "$service"/node_modules/ociapp-runtime/src/*.ts) [ -f "$frame" ] || die "the stack trace names $frame, which is not installed" ;;
  *) die "the stack trace's first frame is \"$frame\", not a shipped source of ociapp-runtime" ;;
esac
say "first frame: ${frame#"$service/"}"

step "done: the packages install from a registry and from tarballs, type-check, build and run"
