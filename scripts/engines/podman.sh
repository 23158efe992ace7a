#!/usr/bin/env bash
# Podman's Docker-compatible API service, as root, on a socket and storage of its own (nothing
# shared with the Docker engines or with another podman on the machine). For tests of the runtime
# against Podman.
#
#   scripts/engines/podman.sh up             install Debian's podman if missing, start the service
#   scripts/engines/podman.sh down           stop the service (SIGTERM, then SIGKILL after 20 s)
#   scripts/engines/podman.sh env            print export DOCKER_HOST=... for a shell
#   scripts/engines/podman.sh status         exit 0 when the service answers
#   scripts/engines/podman.sh podman ARGS... the podman CLI on the same storage (e.g. images)
#   scripts/engines/podman.sh copy-image REF...  docker save REF on the primary Docker engine,
#                                            podman load into this storage (skips present ones)
#
# Debian's package of the machine's own release is used: on bookworm that is podman 4.3.1 (trixie's
# 5.4 needs libc6 >= 2.38 and does not install on bookworm). Facts: docs/engines.md.
set -euo pipefail

LOG_TAG=podman
# shellcheck source=scripts/engines/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=ociapp-podman
RUN_DIR=/run/$NAME
SOCKET=$RUN_DIR/podman.sock
PIDFILE=$RUN_DIR/service.pid
LOG=${OCIAPP_PODMAN_LOG:-/var/log/$NAME.log}
STORAGE=${OCIAPP_PODMAN_STORAGE:-/var/lib/$NAME}
# Read instead of /usr/share/containers/containers.conf by the service and the CLI below.
export CONTAINERS_CONF=/etc/$NAME/containers.conf
# Every podman invocation (service and CLI) gets these: own storage, run root and libpod tmp dir
# (which holds the events log), no systemd (cgroupfs, events in a file).
PODMAN_FLAGS=(
  --root "$STORAGE/storage"
  --runroot "$RUN_DIR/runroot"
  --tmpdir "$RUN_DIR/libpod"
  --cgroup-manager cgroupfs
  --events-backend file
  --storage-driver overlay
)

pm() { podman "${PODMAN_FLAGS[@]}" "$@"; }

answers() { timeout 10 curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }

running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = podman ] || return 1
  printf '%s\n' "$pid"
}

install_podman() {
  command -v podman >/dev/null && return 0
  need_root "installing podman"
  command -v apt-get >/dev/null || die "podman is not installed and apt-get is missing; install podman >= 4"
  local log="$CACHE_DIR/podman-install.log"
  mkdir -p "$CACHE_DIR"
  say "installing Debian's podman, catatonit (its --init) and uidmap (log: $log)"
  {
    timeout 300 apt-get -q update
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends podman catatonit uidmap
  } >"$log" 2>&1 || die "installing podman failed; see $log"
}

# Rootful podman gives containers RLIMIT_NOFILE and RLIMIT_NPROC of 1048576 unless told otherwise;
# where root lacks CAP_SYS_RESOURCE (as here), raising a hard limit fails and no container starts
# ("error setting rlimit type 7: operation not permitted"; type 6 for nproc). Containers get the
# service's own hard limits instead: this shell's, and for nproc at most 32768, the limit podman
# 4.3's service process was seen to run with whatever it inherited.
hard_limit() {
  local value cap=$2
  value=$(ulimit -H "$1")
  if [ "$value" = unlimited ] || [ "$value" -gt "$cap" ]; then value=$cap; fi
  printf '%s\n' "$value"
}

write_config() {
  local nofile nproc want
  nofile=$(hard_limit -n 1048576)
  nproc=$(hard_limit -u 32768)
  want=$(printf '# Written by scripts/engines/podman.sh\n[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]' \
    "$nofile" "$nofile" "$nproc" "$nproc")
  mkdir -p "$(dirname "$CONTAINERS_CONF")"
  if [ "$(cat "$CONTAINERS_CONF" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" >"$CONTAINERS_CONF"
    say "wrote $CONTAINERS_CONF (containers' limits: nofile $nofile, nproc $nproc)"
  fi
}

up() {
  need_root "starting the podman service"
  if answers; then
    say "podman service answers on $SOCKET: nothing to do"
    return 0
  fi
  install_podman
  local pid
  if pid=$(running_pid); then
    die "podman service $pid (from $PIDFILE) is running but does not answer on $SOCKET; see $LOG, or run '$0 down'"
  fi
  rm -f "$PIDFILE" "$SOCKET"
  mkdir -p "$RUN_DIR" "$STORAGE" "$(dirname "$LOG")"
  chmod 0711 "$RUN_DIR"
  write_config
  say "starting podman $(podman --version | awk '{print $3}') system service on $SOCKET (storage $STORAGE, log $LOG)"
  local start
  start=$(now_ms)
  # From its own folder: conmon (started by the service) writes an empty file named "oom" into its
  # working directory when a container is OOM-killed (which podman 4.3 never reads).
  (cd "$RUN_DIR" && exec setsid nohup podman "${PODMAN_FLAGS[@]}" system service --time=0 "unix://$SOCKET" \
    >>"$LOG" 2>&1 </dev/null) &
  printf '%s\n' "$!" >"$PIDFILE"
  wait_until 60 answers || die "the podman service did not answer within 60 s; see $LOG"
  say "podman service answers after $(($(now_ms) - start)) ms"
}

down() {
  local pid
  if ! pid=$(running_pid); then
    say "podman service is not running"
    rm -f "$PIDFILE"
    return 0
  fi
  say "stopping podman service $pid (SIGTERM; containers keep running under conmon)"
  kill -TERM "$pid"
  if ! wait_until 20 bash -c "! kill -0 $pid"; then
    say "still running after 20 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 bash -c "! kill -0 $pid" || die "podman service $pid survived SIGKILL"
  fi
  rm -f "$PIDFILE" "$SOCKET"
  say "podman service stopped"
}

copy_image() {
  need_root "copying images into the podman storage"
  local ref
  for ref in "$@"; do
    if pm image exists "$ref"; then
      say "$ref is present: nothing to do"
      continue
    fi
    docker image inspect "$ref" >/dev/null 2>&1 || die "$ref is not in the primary Docker engine"
    say "copying $ref from the primary Docker engine (docker save | podman load)"
    docker save "$ref" | pm load -q >/dev/null || die "copying $ref failed"
  done
}

command=${1:-}
[ $# -eq 0 ] || shift
case "$command" in
  up) up ;;
  down) need_root "stopping the podman service"; down ;;
  env) printf 'export DOCKER_HOST=unix://%s\n' "$SOCKET" ;;
  status) answers ;;
  podman) pm "$@" ;;
  copy-image) copy_image "$@" ;;
  *) die "usage: $0 up|down|env|status|podman ARGS...|copy-image REF..." ;;
esac
