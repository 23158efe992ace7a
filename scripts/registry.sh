#!/usr/bin/env bash
# A throwaway OCI registry on loopback for tests: Debian's docker-registry (the CNCF distribution
# server), with htpasswd (bcrypt) credentials and filesystem storage in a folder of its own.
# Idempotent; prints what it does; every wait is bounded.
#
#   scripts/registry.sh up      install docker-registry if missing, start it (no-op when it answers)
#   scripts/registry.sh down    stop it and remove its storage and credentials
#   scripts/registry.sh status  exit 0 when it answers
#   scripts/registry.sh env     print OCIAPP_REGISTRY_URL, _USERNAME and _PASSWORD_FILE lines
#
# Environment: OCIAPP_REGISTRY_PORT (default 5123), OCIAPP_REGISTRY_STATE (default
# /run/ociapp-registry: its config, credentials, pid file, log and storage).
set -euo pipefail

LOG_TAG=registry
# shellcheck source=scripts/engines/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/engines/common.sh"

PORT=${OCIAPP_REGISTRY_PORT:-5123}
STATE=${OCIAPP_REGISTRY_STATE:-/run/ociapp-registry}
URL="http://127.0.0.1:$PORT"
USERNAME=ociapp

# 401 without credentials: the registry answers, and it checks credentials.
answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/v2/")" = 401 ]; }

install_registry() {
  command -v docker-registry >/dev/null && return 0
  need_root "installing docker-registry"
  say "installing Debian's docker-registry"
  timeout 300 apt-get -q update >/dev/null 2>&1 || true
  # The package tries to start its service; there is no init system here, and we start our own.
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q docker-registry >"$STATE.install.log" 2>&1 ||
    die "apt-get install docker-registry failed; see $STATE.install.log"
}

bcrypt() {
  python3 -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)).replace("$2b$", "$2y$", 1))' "$1" 2>/dev/null
}

up() {
  if answers; then say "already answers on $URL"; return 0; fi
  install_registry
  mkdir -p "$STATE/storage"
  chmod 700 "$STATE"
  if [ ! -s "$STATE/password" ]; then
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$STATE/password"
    chmod 600 "$STATE/password"
  fi
  printf '%s:%s\n' "$USERNAME" "$(bcrypt "$(cat "$STATE/password")")" >"$STATE/htpasswd"
  cat >"$STATE/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
auth:
  htpasswd:
    realm: ociapp-test
    path: $STATE/htpasswd
YAML
  say "starting docker-registry on $URL (state: $STATE)"
  setsid nohup docker-registry serve "$STATE/config.yml" >>"$STATE/registry.log" 2>&1 </dev/null &
  echo $! >"$STATE/pid"
  wait_until 30 answers || die "docker-registry did not answer within 30 s; see $STATE/registry.log"
  say "answers on $URL"
}

down() {
  if [ -f "$STATE/pid" ]; then
    local pid
    pid=$(cat "$STATE/pid")
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping docker-registry (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      wait_until 10 sh -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  if [ -d "$STATE" ]; then
    say "removing $STATE"
    rm -rf "$STATE"
  fi
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status) answers ;;
  env)
    printf 'OCIAPP_REGISTRY_URL=%s\nOCIAPP_REGISTRY_USERNAME=%s\nOCIAPP_REGISTRY_PASSWORD_FILE=%s\n' "$URL" "$USERNAME" "$STATE/password"
    ;;
  *) die "usage: $0 up|down|status|env" ;;
esac
