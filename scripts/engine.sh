#!/usr/bin/env bash
# Makes sure a Docker engine that can export OCI tarballs is running, and that the managed build's
# default base image exists in it. Idempotent: seconds when everything is already in place.
#
#   scripts/engine.sh            both steps
#   scripts/engine.sh engine     only the engine
#   scripts/engine.sh base-image only the base image
#
# Recipe and measurements: see "The Docker engine" in README.md.
set -euo pipefail

STATE_DIR=${OCIAPP_ENGINE_STATE:-/var/lib/ociapp-engine}
CACHE_DIR=${OCIAPP_ENGINE_CACHE:-/var/cache/ociapp-engine}
DOCKERD_LOG=${OCIAPP_DOCKERD_LOG:-/var/log/dockerd.log}
DEBIAN_MIRROR=${OCIAPP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 20)
BASE_IMAGE=${OCIAPP_BASE_IMAGE:-node:${NODE_MAJOR}-bookworm-slim}

say() { printf '[engine] %s\n' "$*" >&2; }
die() { printf '[engine] error: %s\n' "$*" >&2; exit 1; }

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

wait_for_engine() {
  local i
  for i in $(seq 1 120); do
    engine_answers && return 0
    sleep 0.5
  done
  return 1
}

start_dockerd() {
  say "starting dockerd (log: $DOCKERD_LOG)"
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  # A stale pid file from a killed daemon makes dockerd refuse to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  if [ -f /run/containerd/containerd.pid ] && ! kill -0 "$(cat /run/containerd/containerd.pid)" 2>/dev/null; then
    rm -f /run/containerd/containerd.pid
  fi
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  wait_for_engine || die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
  say "dockerd answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
}

write_daemon_json() {
  mkdir -p /etc/docker
  if [ -f /etc/docker/daemon.json ] && grep -q '"containerd-snapshotter": *true' /etc/docker/daemon.json; then
    return 0
  fi
  say "writing /etc/docker/daemon.json (containerd image store)"
  printf '{"features":{"containerd-snapshotter":true}}\n' >/etc/docker/daemon.json
}

install_engine() {
  [ "$(id -u)" = 0 ] || die "no Docker engine with buildx answers; install Docker Engine >= 25 with buildx and the containerd image store, or run this script as root on Debian to install it"
  [ -f /etc/debian_version ] || die "no Docker engine with buildx answers and this is not Debian; install Docker Engine >= 25 with buildx and the containerd image store"
  command -v apt-get >/dev/null || die "apt-get not found; install Docker Engine >= 25 with buildx by hand"
  say "installing Docker Engine 26 + buildx from Debian trixie packages (on bookworm)"
  local src="$CACHE_DIR/apt-sources" lists="$CACHE_DIR/apt-lists" debs="$CACHE_DIR/debs"
  mkdir -p "$src" "$lists/partial" "$debs"
  cat >"$src/trixie.sources" <<SRC
Types: deb
URIs: $DEBIAN_MIRROR
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  local opts=(-oDir::Etc::SourceList=/dev/null "-oDir::Etc::SourceParts=$src" "-oDir::State::Lists=$lists")
  local log="$CACHE_DIR/install.log"
  say "downloading docker.io, docker-buildx and containerd (log: $log)"
  {
    apt-get "${opts[@]}" -q update
    (cd "$debs" && apt-get "${opts[@]}" -q download docker.io docker-buildx containerd)
    apt-get -q update
  } >"$log" 2>&1 || die "fetching the packages failed; see $log"
  say "installing them with their bookworm dependencies (runc, iptables, tini)"
  # The packages try to start their services; there is no init system here, so that part fails
  # and is expected to: dockerd is started below.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "$debs"/containerd_*.deb "$debs"/docker.io_*.deb "$debs"/docker-buildx_*.deb >>"$log" 2>&1 || true
  command -v dockerd >/dev/null || die "dockerd is still missing after the install; see the apt output above"
  [ -x /usr/libexec/docker/cli-plugins/docker-buildx ] || die "the buildx plugin is missing after the install"
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
  engine_exports_oci || die "the engine started but buildx cannot export type=oci; check /etc/docker/daemon.json and /usr/libexec/docker/cli-plugins"
  say "engine ready: docker $(docker version --format '{{.Server.Version}}'), buildx $(docker buildx version | awk '{print $2}')"
}

build_base_image() {
  [ "$(id -u)" = 0 ] || die "$BASE_IMAGE is not in the engine and cannot be pulled; building it offline needs root"
  command -v debootstrap >/dev/null || {
    say "installing debootstrap"
    apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  local root="$CACHE_DIR/rootfs-bookworm"
  if [ ! -f "$root/.complete" ]; then
    say "debootstrap bookworm into $root (about a minute)"
    rm -rf "$root"
    mkdir -p "$root"
    debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $CACHE_DIR/debootstrap.log"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    touch "$root/.complete"
  fi
  local node_bin npm_dir
  node_bin=$(command -v node)
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  say "copying this machine's Node $(node --version) and npm into the image"
  mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules"
  cp -f "$node_bin" "$root/usr/local/bin/node"
  rm -rf "$root/usr/local/lib/node_modules/npm"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  # Registries are reached through a TLS proxy whose CA is only in this machine's bundle.
  mkdir -p "$root/etc/ssl/certs"
  cp -f /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  say "importing $root as $BASE_IMAGE"
  tar -C "$root" --exclude=./.complete -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    -c 'CMD ["node"]' - "$BASE_IMAGE" >/dev/null
}

ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE is present: nothing to do"
    return 0
  fi
  say "base image $BASE_IMAGE is missing; trying one pull"
  if timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    say "pulled $BASE_IMAGE"
    return 0
  fi
  say "pull failed (no registry reachable); building $BASE_IMAGE offline"
  build_base_image
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE is still missing after the offline build"
  say "base image $BASE_IMAGE ready"
}

case "${1:-all}" in
  engine) ensure_engine ;;
  base-image) ensure_base_image ;;
  all) ensure_engine; ensure_base_image ;;
  *) die "usage: scripts/engine.sh [engine|base-image|all]" ;;
esac
