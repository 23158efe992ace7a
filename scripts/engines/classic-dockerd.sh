#!/usr/bin/env bash
# A second Docker daemon with the classic image store (graphdriver overlay2, not containerd's
# snapshotter), beside the primary one and sharing nothing with it: its own data root, exec root,
# pid file, socket, config file, containerd (started by this dockerd) and containerd namespaces,
# no bridge and no iptables rules. For tests of the runtime against the classic store.
#
# It runs in a network namespace of its own (ip netns "ociapp-classic", loopback only): dockerd
# started with --bridge=none deletes any interface named docker0 it can see (Docker's
# removeDefaultBridgeInterface), which in the host's namespace is the primary engine's bridge.
# Only the network namespace differs (nsenter --net): files, mounts and cgroups are the host's, and
# a Unix socket in a host folder is reachable from its containers as from any other.
#
#   scripts/engines/classic-dockerd.sh up             start it (nothing to do when it answers)
#   scripts/engines/classic-dockerd.sh down           stop it (SIGTERM, then SIGKILL after 30 s)
#   scripts/engines/classic-dockerd.sh env            print export DOCKER_HOST=... for a shell
#   scripts/engines/classic-dockerd.sh status         exit 0 when it answers
#   scripts/engines/classic-dockerd.sh copy-image REF...  docker save REF on the primary engine,
#                                                     docker load into this one (skips present ones)
#   scripts/engines/classic-dockerd.sh runsc-cleanup  scripts/engine.sh runsc-cleanup for this daemon
#
# Needs root and dockerd (scripts/engine.sh engine installs it). Facts: docs/engines.md.
set -euo pipefail

LOG_TAG=classic-dockerd
# shellcheck source=scripts/engines/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=ociapp-classic
RUN_DIR=/run/$NAME
SOCKET=$RUN_DIR/docker.sock
PIDFILE=$RUN_DIR/dockerd.pid
EXEC_ROOT=$RUN_DIR/exec
DATA_ROOT=${OCIAPP_CLASSIC_DATA_ROOT:-/var/lib/$NAME}
CONFIG_FILE=/etc/$NAME/daemon.json
LOG=${OCIAPP_CLASSIC_LOG:-/var/log/$NAME-dockerd.log}
NAMESPACE=$NAME
NETNS=$NAME
RUNSC_PATH=/usr/bin/runsc
RUNSC_ARGS='["--platform=systrap","--network=none","--host-uds=open"]'

answers() { timeout 10 docker -H "unix://$SOCKET" info >/dev/null 2>&1; }

running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
  printf '%s\n' "$pid"
}

write_config() {
  mkdir -p "$(dirname "$CONFIG_FILE")"
  local result
  # The classic store: no containerd-snapshotter feature (false, not merely absent, so a later
  # default change cannot flip it).
  result=$(json_put "$CONFIG_FILE" features.containerd-snapshotter false) || die "cannot write $CONFIG_FILE"
  [ "$result" = same ] || say "wrote $CONFIG_FILE (classic image store)"
  if [ -x "$RUNSC_PATH" ]; then
    result=$(json_put "$CONFIG_FILE" runtimes.runsc "{\"path\":\"$RUNSC_PATH\",\"runtimeArgs\":$RUNSC_ARGS}") ||
      die "cannot write $CONFIG_FILE"
    [ "$result" = same ] || say "registered runsc in $CONFIG_FILE"
  fi
}

up() {
  need_root "starting a second dockerd"
  if answers; then
    say "classic dockerd answers on $SOCKET: nothing to do"
    return 0
  fi
  command -v dockerd >/dev/null || die "dockerd is not installed; run scripts/engine.sh engine first"
  local pid
  if pid=$(running_pid); then
    die "dockerd $pid (from $PIDFILE) is running but does not answer on $SOCKET; see $LOG, or run '$0 down'"
  fi
  rm -f "$PIDFILE" "$SOCKET"
  mkdir -p "$RUN_DIR" "$EXEC_ROOT" "$DATA_ROOT" "$(dirname "$LOG")"
  chmod 0711 "$RUN_DIR"
  write_config
  if ! ip netns list 2>/dev/null | grep -qx "$NETNS\( (id: [0-9]*)\)\?"; then
    say "creating network namespace $NETNS (loopback only)"
    ip netns add "$NETNS" || die "ip netns add $NETNS failed"
  fi
  ip netns exec "$NETNS" ip link set lo up || die "cannot bring up lo in network namespace $NETNS"
  say "starting dockerd with the classic image store on $SOCKET (data $DATA_ROOT, log $LOG)"
  local start
  start=$(now_ms)
  setsid nohup nsenter --net="/run/netns/$NETNS" dockerd \
    --config-file "$CONFIG_FILE" \
    --data-root "$DATA_ROOT" \
    --exec-root "$EXEC_ROOT" \
    --pidfile "$PIDFILE" \
    -H "unix://$SOCKET" \
    --containerd-namespace "$NAMESPACE" \
    --containerd-plugins-namespace "$NAMESPACE-plugins" \
    --bridge=none \
    --iptables=false \
    --ip6tables=false \
    >>"$LOG" 2>&1 </dev/null &
  wait_until 60 answers || die "the classic dockerd did not answer within 60 s; see $LOG"
  say "classic dockerd answers after $(($(now_ms) - start)) ms: $(docker -H "unix://$SOCKET" info --format '{{.ServerVersion}}, storage driver {{.Driver}}, driver-type {{json .DriverStatus}}')"
  if docker -H "unix://$SOCKET" info --format '{{json .DriverStatus}}' | grep -q io.containerd.snapshotter; then
    die "the second dockerd uses the containerd image store; check $CONFIG_FILE"
  fi
}

down() {
  local pid
  if ! pid=$(running_pid); then
    say "classic dockerd is not running"
    rm -f "$PIDFILE"
    return 0
  fi
  say "stopping classic dockerd $pid (SIGTERM; its containers and containerd stop with it)"
  kill -TERM "$pid"
  if ! wait_until 30 bash -c "! kill -0 $pid"; then
    say "still running after 30 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 bash -c "! kill -0 $pid" || die "dockerd $pid survived SIGKILL"
  fi
  # Its containerd exits with it; a SIGKILLed dockerd can leave it behind.
  local containerd_pid
  containerd_pid=$(cat "$EXEC_ROOT/containerd/containerd.pid" 2>/dev/null || true)
  if [ -n "$containerd_pid" ] && [ "$(cat "/proc/$containerd_pid/comm" 2>/dev/null)" = containerd ]; then
    kill -TERM "$containerd_pid" 2>/dev/null || true
    wait_until 10 bash -c "! kill -0 $containerd_pid" || kill -KILL "$containerd_pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  # The network namespace is kept: deleting it buys nothing and up recreates it when missing.
  say "classic dockerd stopped"
}

copy_image() {
  answers || die "the classic dockerd does not answer; run '$0 up' first"
  local ref
  for ref in "$@"; do
    if docker -H "unix://$SOCKET" image inspect "$ref" >/dev/null 2>&1; then
      say "$ref is present: nothing to do"
      continue
    fi
    docker image inspect "$ref" >/dev/null 2>&1 || die "$ref is not in the primary engine"
    say "copying $ref from the primary engine (docker save | docker load)"
    docker save "$ref" | docker -H "unix://$SOCKET" load -q >/dev/null || die "copying $ref failed"
  done
}

command=${1:-}
[ $# -eq 0 ] || shift
case "$command" in
  up) up ;;
  down) need_root "stopping the classic dockerd"; down ;;
  env) printf 'export DOCKER_HOST=unix://%s\n' "$SOCKET" ;;
  status) answers ;;
  copy-image) copy_image "$@" ;;
  runsc-cleanup)
    DOCKER_HOST="unix://$SOCKET" OCIAPP_DOCKER_EXEC_ROOT="$EXEC_ROOT" OCIAPP_CONTAINERD_NAMESPACE="$NAMESPACE" \
      exec bash "$(dirname "${BASH_SOURCE[0]}")/../engine.sh" runsc-cleanup
    ;;
  *) die "usage: $0 up|down|env|status|copy-image REF...|runsc-cleanup" ;;
esac
