#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, built from upstream sources (issue 18,
# step 1): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet, with a
# containerd of its own (separate from Docker's), Debian's CNI plugins and a locally built pause
# image. Everything listens on 127.0.0.1. Idempotent: starts only what is not running, and does
# nothing at all when a cluster already answers at $KUBECONFIG.
#
#   scripts/k8s.sh [up]   build what is missing (cached), start what is not running, wait for Ready
#   scripts/k8s.sh down   stop every daemon this script started (by pid file); keeps state and cache
#   scripts/k8s.sh status what runs, and what the API server says
#   scripts/k8s.sh env    prints `export KUBECONFIG=...` (and PATH for the matching kubectl)
#   scripts/k8s.sh build  only the builds (binaries, pause image)
#   scripts/k8s.sh agent-image   builds the agent's image from this workspace (pnpm build, pnpm deploy,
#                         buildx) and imports it into the node's containerd as $AGENT_IMAGE
#
# How it is built, what runs where, and measured times: docs/kubernetes-cluster.md.
set -euo pipefail

K8S_VERSION=${OCIAPP_K8S_VERSION:-v1.37.2}
ETCD_VERSION=${OCIAPP_ETCD_VERSION:-v3.7.3}
CACHE_DIR=${OCIAPP_K8S_CACHE:-/var/cache/ociapp-k8s}
STATE_DIR=${OCIAPP_K8S_STATE:-/var/lib/ociapp-k8s}
RUN_DIR=${OCIAPP_K8S_RUN:-/run/ociapp-k8s}
LOG_DIR=${OCIAPP_K8S_LOGS:-/var/log/ociapp-k8s}
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 20)
NODE_IMAGE=${OCIAPP_BASE_IMAGE:-node:${NODE_MAJOR}-bookworm-slim}

API_PORT=6443
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
POD_CIDR=10.244.0.0/24
BRIDGE=ociappk8s0
PAUSE_IMAGE=ociapp.local/pause:3.10
# The registry the node pulls artifacts from (issue 18, step 2): Debian's docker-registry on
# loopback, started by scripts/registry.sh with this port and state (its own, apart from the one
# the remote-execution tests start and remove). containerd's CRI pulls plain HTTP from a loopback
# host by itself (it treats localhost and 127.0.0.0/8 as plain-HTTP registries), so no containerd
# config is needed; pods pull with an imagePullSecret.
REGISTRY_PORT=${OCIAPP_K8S_REGISTRY_PORT:-5124}
# The agent's image (deploy/kubernetes/daemonset.yaml runs it with imagePullPolicy: Never).
AGENT_IMAGE=ociapp.local/ociapp-agent:dev
REGISTRY_STATE=${OCIAPP_K8S_REGISTRY_STATE:-/run/ociapp-k8s-registry}

K8S_BIN=$CACHE_DIR/kubernetes-$K8S_VERSION/bin
ETCD_BIN=$CACHE_DIR/etcd-$ETCD_VERSION/bin
PAUSE_DIR=$CACHE_DIR/pause
PKI=$STATE_DIR/pki
KCFG=$STATE_DIR/kubeconfig
PIDS=$RUN_DIR/pids
CTR_SOCK=$RUN_DIR/containerd/containerd.sock
ADMIN_KUBECONFIG=$KCFG/admin.kubeconfig
export KUBECONFIG=${KUBECONFIG:-$ADMIN_KUBECONFIG}

# Long builds share two cores with other people's timing-sensitive tests.
GO_ENV=(env GOMAXPROCS=2 GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
  GOCACHE="$CACHE_DIR/go-build" GOMODCACHE="$CACHE_DIR/go-mod")
LOW=(nice -n 19 ionice -c3)

say() { printf '[k8s] %s\n' "$*" >&2; }
die() {
  printf '[k8s] error: %s\n' "$*" >&2
  exit 1
}
elapsed() { printf '%ss' "$((SECONDS - ${1:-0}))"; }

# ---------------------------------------------------------------------------------------------
# Builds (cached under $CACHE_DIR, keyed by version)
# ---------------------------------------------------------------------------------------------

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

build_kubernetes() {
  local c missing=0
  for c in "${K8S_CMDS[@]}"; do [ -x "$K8S_BIN/$c" ] || missing=1; done
  if [ "$missing" = 0 ] && [ -f "$K8S_BIN/.complete" ]; then
    say "kubernetes $K8S_VERSION binaries cached in $K8S_BIN"
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH"
  local src=$CACHE_DIR/kubernetes-$K8S_VERSION/src log=$CACHE_DIR/kubernetes-$K8S_VERSION/build.log
  local start=$SECONDS minor staging
  minor=${K8S_VERSION#v1.}
  staging="v0.$minor"
  mkdir -p "$src" "$K8S_BIN"
  say "building kubernetes $K8S_VERSION (${K8S_CMDS[*]}) from the Go module proxy (log: $log)"
  : >"$log"
  # The upstream go.mod points every k8s.io staging module at ./staging/src with a replace line;
  # replaces of a dependency do not apply, so this wrapper pins each one to its published v0.x.
  local kgomod
  kgomod=$("${GO_ENV[@]}" go mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>>"$log" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
  [ -f "$kgomod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION; see $log"
  {
    printf 'module ociapp.local/kubernetes-build\n\n'
    grep -E '^go |^godebug ' "$kgomod"
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    sed -n 's#^\s*\(k8s\.io/[A-Za-z0-9._/-]*\) => \./staging/src/.*$#\t\1 => \1 '"$staging"'#p' "$kgomod"
    printf ')\n'
  } >"$src/go.mod"
  {
    printf '//go:build tools\n\n// Package tools only names the commands that scripts/k8s.sh builds.\npackage tools\n\nimport (\n'
    for c in "${K8S_CMDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } >"$src/tools.go"
  local dl=$SECONDS
  (cd "$src" && "${LOW[@]}" "${GO_ENV[@]}" go mod tidy >>"$log" 2>&1) || die "go mod tidy failed; see $log"
  say "modules resolved and downloaded in $(elapsed "$dl")"
  local ld="-s -w" pkg="k8s.io/component-base/version" cgo="k8s.io/client-go/pkg/version" v
  for v in "$pkg" "$cgo"; do
    ld+=" -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=${minor%%.*}"
    ld+=" -X $v.gitTreeState=clean -X $v.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  local pkgs=()
  for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  local bt=$SECONDS
  (cd "$src" && "${LOW[@]}" "${GO_ENV[@]}" go build -p 2 -trimpath -ldflags "$ld" -o "$K8S_BIN/" "${pkgs[@]}" >>"$log" 2>&1) ||
    die "go build failed; see $log"
  touch "$K8S_BIN/.complete"
  BUILT=1
  say "built kubernetes $K8S_VERSION: compile $(elapsed "$bt"), total $(elapsed "$start")"
}

build_etcd() {
  if [ -x "$ETCD_BIN/etcd" ]; then
    say "etcd $ETCD_VERSION cached in $ETCD_BIN"
    return 0
  fi
  local src=$CACHE_DIR/etcd-$ETCD_VERSION/src log=$CACHE_DIR/etcd-$ETCD_VERSION/build.log start=$SECONDS
  mkdir -p "$src" "$ETCD_BIN"
  say "building etcd $ETCD_VERSION from the Go module proxy (log: $log)"
  cat >"$src/go.mod" <<EOF
module ociapp.local/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  cat >"$src/main.go" <<'EOF'
// Command etcd is upstream's etcd server: the same entry point as go.etcd.io/etcd/v3's main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$src" && "${LOW[@]}" "${GO_ENV[@]}" go mod tidy >"$log" 2>&1) || die "go mod tidy failed for etcd; see $log"
  (cd "$src" && "${LOW[@]}" "${GO_ENV[@]}" go build -p 2 -trimpath -ldflags "-s -w" -o "$ETCD_BIN/etcd" . >>"$log" 2>&1) ||
    die "go build failed for etcd; see $log"
  BUILT=1
  say "built etcd $ETCD_VERSION in $(elapsed "$start")"
}

# The pause image: upstream's pause.c in spirit (sleep until SIGINT/SIGTERM, reap zombies), built
# static and packed by hand as an OCI image archive that `ctr images import` reads.
build_pause() {
  local tar=$PAUSE_DIR/pause.tar
  if [ -s "$tar" ]; then
    say "pause image cached in $tar"
    return 0
  fi
  command -v gcc >/dev/null || die "gcc is needed to build the pause binary"
  say "building the pause image ($PAUSE_IMAGE)"
  local w=$PAUSE_DIR/work
  rm -rf "$w"
  mkdir -p "$w/rootfs" "$w/oci/blobs/sha256"
  cat >"$w/pause.c" <<'C'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigdown(int signo) { (void)signo; _exit(0); }
static void sigreap(int signo) { (void)signo; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
  struct sigaction down = {.sa_handler = sigdown}, reap = {.sa_handler = sigreap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &down, NULL) < 0 || sigaction(SIGTERM, &down, NULL) < 0 ||
      sigaction(SIGCHLD, &reap, NULL) < 0)
    return 1;
  for (;;) pause();
}
C
  gcc -static -Os -s -o "$w/rootfs/pause" "$w/pause.c" || die "compiling pause.c failed"
  local blobs=$w/oci/blobs/sha256 layer layer_sha layer_size config config_sha manifest manifest_sha
  layer=$w/layer.tar
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$w/rootfs" -cf "$layer" pause
  layer_sha=$(sha256sum "$layer" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$layer")
  cp "$layer" "$blobs/$layer_sha"
  config=$(printf '{"architecture":"amd64","os":"linux","config":{"User":"65535:65535","Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/k8s.sh build_pause"}]}' "$layer_sha")
  config_sha=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
  printf '%s' "$config" >"$blobs/$config_sha"
  manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_sha" "${#config}" "$layer_sha" "$layer_size")
  manifest_sha=$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
  printf '%s' "$manifest" >"$blobs/$manifest_sha"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_sha" "${#manifest}" "$PAUSE_IMAGE" "${PAUSE_IMAGE##*:}" >"$w/oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$w/oci/oci-layout"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$w/oci" -cf "$tar.tmp" oci-layout index.json blobs
  mv "$tar.tmp" "$tar"
  rm -rf "$w"
}

# Once the binaries are cached, the Go build cache (4 GiB) and module cache (1 GiB) only take disk.
BUILT=0
build_all() {
  build_etcd
  build_kubernetes
  build_pause
  if [ "$BUILT" = 1 ] && [ "${OCIAPP_K8S_KEEP_GO_CACHES:-0}" != 1 ]; then
    say "removing the Go build and module caches (set OCIAPP_K8S_KEEP_GO_CACHES=1 to keep them)"
    "${GO_ENV[@]}" go clean -cache -modcache >/dev/null 2>&1 || true
    rm -rf "$CACHE_DIR/go-build" "$CACHE_DIR/go-mod"
  fi
}

# ---------------------------------------------------------------------------------------------
# Host packages
# ---------------------------------------------------------------------------------------------

ensure_packages() {
  local need=()
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/loopback ] && [ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
  command -v runc >/dev/null || need+=(runc)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  if ! command -v containerd >/dev/null || ! command -v ctr >/dev/null; then
    die "containerd is not installed: run scripts/engine.sh first (it installs containerd 1.7 from Debian trixie)"
  fi
  [[ "$(containerd --version)" =~ \ (1\.[7-9]|[2-9]\.) ]] ||
    die "the node needs containerd >= 1.7 (found: $(containerd --version)); run scripts/engine.sh first"
  [ "${#need[@]}" = 0 ] && return 0
  say "installing Debian packages: ${need[*]}"
  apt-get -qq update >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    die "apt-get install ${need[*]} failed"
}

# ---------------------------------------------------------------------------------------------
# Certificates and kubeconfigs
# ---------------------------------------------------------------------------------------------

NODE_NAME=$(hostname | tr '[:upper:]' '[:lower:]')

# mkcert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
mkcert() {
  local name=$1 subj=$2 eku=$3 san=${4:-}
  [ -s "$PKI/$name.crt" ] && [ -s "$PKI/$name.key" ] && return 0
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
    printf 'extendedKeyUsage=%s\n' "$eku"
    [ -n "$san" ] && printf 'subjectAltName=%s\n' "$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# kubeconfig NAME CERT_NAME
kubeconfig() {
  local file=$KCFG/$1.kubeconfig cert=$2
  [ -s "$file" ] && return 0
  umask 077
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ociapp-k8s
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$cert.crt")
    client-key-data: $(base64 -w0 <"$PKI/$cert.key")
contexts:
- name: ociapp-k8s
  context:
    cluster: ociapp-k8s
    user: $1
current-context: ociapp-k8s
KC
  umask 022
}

ensure_pki() {
  if [ -s "$ADMIN_KUBECONFIG" ] && [ -s "$KCFG/kubelet.kubeconfig" ] && [ -s "$PKI/sa.pub" ]; then
    say "certificates and kubeconfigs present in $STATE_DIR"
    return 0
  fi
  say "making certificates (CA, API server, kubelet, clients, service-account keys) in $PKI"
  mkdir -p "$PKI" "$KCFG"
  chmod 700 "$PKI" "$KCFG"
  if [ ! -s "$PKI/ca.crt" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=ociapp-k8s-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  mkcert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  mkcert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  mkcert admin "/O=system:masters/CN=ociapp-admin" clientAuth
  mkcert controller-manager "/CN=system:kube-controller-manager" clientAuth
  mkcert scheduler "/CN=system:kube-scheduler" clientAuth
  mkcert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  mkcert kubelet-server "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1"
  if [ ! -s "$PKI/sa.pub" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kubelet kubelet-client
}

# ---------------------------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------------------------

write_configs() {
  mkdir -p "$STATE_DIR/cni/net.d" "$STATE_DIR/cni/ipam" "$STATE_DIR/kubelet" "$STATE_DIR/containerd" "$LOG_DIR/pods"
  cat >"$STATE_DIR/containerd.toml" <<TOML
# containerd for the ociapp Kubernetes node: its own root, state and socket, apart from Docker's.
version = 2
root = "$STATE_DIR/containerd"
state = "$RUN_DIR/containerd"

[grpc]
  address = "$CTR_SOCK"

[ttrpc]
  address = "$CTR_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE_DIR/containerd-opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # The sandbox this machine runs in has no CAP_SYS_RESOURCE: the oom_score_adj below 0 that CRI
  # gives sandboxes (-998) and Guaranteed pods (-997) makes runc fail ("can't get final child's
  # PID from pipe"). This clamps them to containerd's own score (0), as for rootless containerd.
  restrict_oom_score_adj = true
  # Pod network namespaces under this containerd's own state folder, not /run/netns: there, an
  # "ip netns add" by anyone else bind-mounts /run/netns over itself, hides the mounts made
  # before, and the sandboxes can then never be removed ("unlinkat ...: device or resource busy").
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's state apart from /run/containerd/runc, which Docker's containerd uses.
        Root = "$RUN_DIR/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE_DIR/cni/net.d"
TOML
  # A bridge on a private subnet with no gateway address on the host and no routes in the pod:
  # pods reach each other on the bridge and nothing else (no default route, no masquerade).
  cat >"$STATE_DIR/cni/net.d/10-ociapp-k8s.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "ociapp-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_CIDR" }]],
        "dataDir": "$STATE_DIR/cni/ipam"
      }
    }
  ]
}
JSON
  kubelet_config >"$STATE_DIR/kubelet-config.yaml"
}

# The kubelet's config file, as this script writes it.
kubelet_config() {
  cat <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
containerRuntimeEndpoint: unix://$CTR_SOCK
imageServiceEndpoint: unix://$CTR_SOCK
# This kernel has cgroup v1 only; kubelet 1.35+ refuses it unless told not to.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $LOG_DIR/pods
# No image can ever be pulled here: never collect the locally imported ones.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  imagefs.available: 2%
serializeImagePulls: false
# A pod has no per-pod pids limit of its own: this node-wide one is the pids limit of every app pod
# (the runtime's container.pidsLimit default), and of the agent's (Node uses about 15).
podPidsLimit: 256
YAML
}

# ---------------------------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------------------------

DAEMONS=(etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet)

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # The pid must still be that daemon's (a pid file can outlive a reboot or a kill -9).
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"$1"* ]]
}

# start NAME COMMAND...: in its own session, in the background, logging to $LOG_DIR/NAME.log.
start() {
  local name=$1
  shift
  if running "$name"; then
    say "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  say "starting $name (log: $LOG_DIR/$name.log)"
  mkdir -p "$PIDS" "$LOG_DIR"
  printf '\n---- %s %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOG_DIR/$name.log"
  # The subshell execs setsid, which execs nohup, which execs the daemon: $! is the daemon's pid.
  (cd / && exec setsid nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null) &
  echo $! >"$PIDS/$name.pid"
}

# wait_for WHAT SECONDS COMMAND...: bounded wait; fails with the daemon's last log lines.
wait_for() {
  local what=$1 limit=$2 t0=$SECONDS
  shift 2
  while ! "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - t0)) -ge "$limit" ]; then
      local name=${what%% *}
      [ -f "$LOG_DIR/$name.log" ] && tail -n 20 "$LOG_DIR/$name.log" >&2
      die "$what did not come up within ${limit}s (log: $LOG_DIR/$name.log)"
    fi
    if [ -n "${WAIT_PID_NAME:-}" ] && ! running "$WAIT_PID_NAME"; then
      tail -n 20 "$LOG_DIR/$WAIT_PID_NAME.log" >&2
      die "$WAIT_PID_NAME exited (log: $LOG_DIR/$WAIT_PID_NAME.log)"
    fi
    sleep 0.5
  done
  say "$what ready after $(elapsed "$t0")"
}

kubectl_() { "$K8S_BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=10s "$@"; }
ctr_() { ctr -a "$CTR_SOCK" -n k8s.io "$@"; }
# (No `cmd | grep -q` anywhere: grep's early exit can fail the pipeline under pipefail.)
# shellcheck disable=SC2317 # called through wait_for
https_ok() { [ "$(curl -fsk --max-time 3 "$1")" = ok ]; }
# shellcheck disable=SC2317 # called through wait_for
http_ok() { [ "$(curl -fs --max-time 3 "$1")" = ok ]; }
# shellcheck disable=SC2317 # called through wait_for
etcd_ok() { [[ "$(curl -fs --max-time 3 "http://127.0.0.1:$ETCD_CLIENT_PORT/health")" == *'"health":"true"'* ]]; }
has_image() {
  local all
  all=$(ctr_ images ls -q) || return 1
  grep -qxF -- "$1" <<<"$all"
}

start_etcd() {
  mkdir -p "$STATE_DIR/etcd"
  chmod 700 "$STATE_DIR/etcd"
  WAIT_PID_NAME=etcd
  start etcd "$ETCD_BIN/etcd" --name ociapp-k8s --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "ociapp-k8s=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
    --log-level warn
  wait_for "etcd on 127.0.0.1:$ETCD_CLIENT_PORT" 30 etcd_ok
}

start_containerd() {
  WAIT_PID_NAME=containerd
  start containerd containerd --config "$STATE_DIR/containerd.toml"
  wait_for "containerd on $CTR_SOCK" 30 ctr -a "$CTR_SOCK" version
}

import_images() {
  if ! has_image "$PAUSE_IMAGE"; then
    say "importing $PAUSE_IMAGE into the node's containerd"
    ctr_ images import "$PAUSE_DIR/pause.tar" >/dev/null || die "importing the pause image failed"
  fi
  local ref id have
  ref=$NODE_IMAGE
  case "$ref" in */*) ;; *) ref=docker.io/library/$ref ;; esac
  id=$(timeout 10 docker image inspect -f '{{.Id}}' "$NODE_IMAGE" 2>/dev/null || true)
  have=$(cat "$STATE_DIR/node-image.id" 2>/dev/null || true)
  if [ -z "$id" ]; then
    if has_image "$ref"; then
      say "$NODE_IMAGE is in the node's containerd (Docker does not have it to compare)"
    else
      say "warning: Docker has no $NODE_IMAGE (run scripts/engine.sh); pods of it cannot start"
    fi
    return 0
  fi
  if [ "$id" = "$have" ] && has_image "$ref"; then
    say "$NODE_IMAGE already imported ($id)"
    return 0
  fi
  local t0=$SECONDS
  say "importing $NODE_IMAGE from Docker into the node's containerd"
  timeout 300 docker save "$NODE_IMAGE" | ctr_ images import - >/dev/null || die "importing $NODE_IMAGE failed"
  has_image "$ref" || die "after the import, $ref is not in the node's containerd"
  printf '%s\n' "$id" >"$STATE_DIR/node-image.id"
  say "imported $NODE_IMAGE in $(elapsed "$t0")"
}

start_apiserver() {
  WAIT_PID_NAME=kube-apiserver
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address=127.0.0.1 \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=Hostname \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --endpoint-reconciler-type=none \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true \
    --profiling=false --v=1
  wait_for "kube-apiserver on 127.0.0.1:$API_PORT" 120 kubectl_ get --raw /readyz
}

start_controllers() {
  WAIT_PID_NAME=kube-controller-manager
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$KCFG/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$KCFG/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$KCFG/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" \
    --profiling=false --v=1
  WAIT_PID_NAME=kube-scheduler
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$KCFG/scheduler.kubeconfig" \
    --authentication-kubeconfig="$KCFG/scheduler.kubeconfig" \
    --authorization-kubeconfig="$KCFG/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false --v=1
  WAIT_PID_NAME=kube-controller-manager
  wait_for "kube-controller-manager on 127.0.0.1:10257" 60 https_ok https://127.0.0.1:10257/healthz
  WAIT_PID_NAME=kube-scheduler
  wait_for "kube-scheduler on 127.0.0.1:10259" 60 https_ok https://127.0.0.1:10259/healthz
}

# node_ready [SINCE]: the node's Ready condition is True (and was reported at or after SINCE, an
# RFC 3339 UTC time, so that a status left from an earlier kubelet does not count).
node_ready() {
  local got
  got=$(kubectl_ get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null) ||
    return 1
  [ "${got%% *}" = True ] || return 1
  [ -z "${1:-}" ] || [[ ! "${got#* }" < "$1" ]]
}

start_kubelet() {
  local since=
  running kubelet || since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  WAIT_PID_NAME=kubelet
  start kubelet "$K8S_BIN/kubelet" --config="$STATE_DIR/kubelet-config.yaml" \
    --kubeconfig="$KCFG/kubelet.kubeconfig" --root-dir="$STATE_DIR/kubelet" \
    --hostname-override="$NODE_NAME" --v=1
  wait_for "kubelet on 127.0.0.1:10248" 60 http_ok http://127.0.0.1:10248/healthz
  wait_for "kubelet (node $NODE_NAME Ready)" 120 node_ready "$since"
  WAIT_PID_NAME=
  wait_for "kube-controller-manager (service account default/default)" 60 kubectl_ -n default get serviceaccount default
}

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do running "$d" || return 1; done
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

preflight() {
  [ "$(id -u)" = 0 ] || die "run as root: the kubelet and containerd manage cgroups, mounts and network namespaces"
  [ -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || die "no cgroup hierarchy found under /sys/fs/cgroup"
  [[ "$(getent hosts "$NODE_NAME" || true)" =~ ^(127\.|::1) ]] ||
    die "the host name $NODE_NAME must resolve to a loopback address (/etc/hosts): the API server reaches the kubelet on 127.0.0.1 by it"
}

# The kubelet reads its config file only when it starts: a running kubelet whose file differs from
# what this script writes (a newer version of it) is restarted. Its pods keep running meanwhile.
kubelet_config_current() {
  [ -f "$STATE_DIR/kubelet-config.yaml" ] && [ "$(kubelet_config)" = "$(cat "$STATE_DIR/kubelet-config.yaml")" ]
}

refresh_kubelet() {
  if running kubelet && ! kubelet_config_current; then
    say "the kubelet config changed: restarting the kubelet"
    stop_daemons kubelet
  fi
}

registry_env() {
  env OCIAPP_REGISTRY_PORT="$REGISTRY_PORT" OCIAPP_REGISTRY_STATE="$REGISTRY_STATE" "$@"
}

start_registry() {
  registry_env bash "$(dirname "${BASH_SOURCE[0]}")/registry.sh" up
}

# Stops the registry's process and keeps its storage (registry.sh down would remove it).
stop_registry() {
  local pid
  pid=$(cat "$REGISTRY_STATE/pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q docker-registry "/proc/$pid/cmdline" 2>/dev/null; then
    say "stopping the registry (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
  fi
}

registry_answers() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$REGISTRY_PORT/v2/")" = 401 ]
}

cmd_up() {
  local t0=$SECONDS
  if [ "$KUBECONFIG" != "$ADMIN_KUBECONFIG" ]; then
    local kc=kubectl
    [ -x "$K8S_BIN/kubectl" ] && kc=$K8S_BIN/kubectl
    if timeout 10 "$kc" get --raw /readyz >/dev/null 2>&1; then
      say "a cluster already answers at KUBECONFIG=$KUBECONFIG: nothing to do"
      return 0
    fi
  elif all_running && kubectl_ get --raw /readyz >/dev/null 2>&1 && node_ready "" &&
    registry_answers && kubelet_config_current; then
    say "the cluster already runs and answers at KUBECONFIG=$KUBECONFIG: nothing to do"
    return 0
  fi
  preflight
  ensure_packages
  mkdir -p "$CACHE_DIR" "$STATE_DIR" "$RUN_DIR" "$PIDS" "$LOG_DIR"
  build_all
  ensure_pki
  refresh_kubelet
  write_configs
  start_etcd
  start_containerd
  import_images
  start_apiserver
  start_controllers
  start_kubelet
  start_registry
  say "cluster up in $(elapsed "$t0"): node $NODE_NAME Ready; $(cmd_env | head -n1)"
}

# stop_daemons NAME...: SIGTERM to each that runs, then up to 20 s for all of them, then SIGKILL.
stop_daemons() {
  local name pid pids=()
  for name in "$@"; do
    if running "$name"; then
      pid=$(pid_of "$name")
      say "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for _ in $(seq 1 100); do
    local alive=0
    for pid in ${pids[@]+"${pids[@]}"}; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for pid in ${pids[@]+"${pids[@]}"}; do
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid did not stop within 20 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for name in "$@"; do rm -f "$PIDS/$name.pid"; done
}

# The pods' containers live in containerd shims, which outlive containerd itself: stop them first.
stop_containers() {
  running containerd || return 0
  local tasks
  tasks=$(ctr_ tasks ls -q 2>/dev/null || true)
  [ -n "$tasks" ] || return 0
  say "stopping $(printf '%s\n' "$tasks" | wc -l) container task(s) in the node's containerd"
  # shellcheck disable=SC2086 # one container id per word
  ctr_ tasks delete --force $tasks >/dev/null 2>&1 || true
  tasks=$(ctr_ tasks ls -q 2>/dev/null || true)
  [ -z "$tasks" ] || say "warning: tasks still in the node's containerd: $tasks"
}

# What the node leaves mounted once its daemons are gone: the kubelet's root folder (bind-mounted
# onto itself) with pods' tmpfs volumes below it, and the killed sandboxes' network namespaces and
# /dev/shm under containerd's state. Deepest first. The next kubelet and containerd set up again
# whatever their pods still need, and release the sandboxes' addresses.
unmount_leftovers() {
  local mounts m
  mounts=$(awk -v a="$STATE_DIR" -v b="$RUN_DIR" \
    '$5 == a || index($5, a "/") == 1 || $5 == b || index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  [ -n "$mounts" ] || return 0
  say "unmounting $(printf '%s\n' "$mounts" | wc -l) mount(s) left under $STATE_DIR and $RUN_DIR"
  while IFS= read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done <<<"$mounts"
}

cmd_down() {
  stop_daemons kubelet kube-scheduler kube-controller-manager
  stop_daemons kube-apiserver
  stop_containers
  stop_daemons containerd
  stop_daemons etcd
  stop_registry
  unmount_leftovers
  say "stopped; state in $STATE_DIR and builds in $CACHE_DIR are kept"
}

cmd_status() {
  local d rc=0
  for d in "${DAEMONS[@]}"; do
    if running "$d"; then
      printf '%-24s running (pid %s)\n' "$d" "$(pid_of "$d")"
    else
      printf '%-24s stopped\n' "$d"
      rc=1
    fi
  done
  if [ -x "$K8S_BIN/kubectl" ] && kubectl_ get --raw /readyz >/dev/null 2>&1; then
    kubectl_ get nodes -o wide
    kubectl_ get pods -A -o wide
  else
    printf 'API server: not answering at https://127.0.0.1:%s\n' "$API_PORT"
    rc=1
  fi
  return "$rc"
}

# The agent's image: `ociapp-runtime serve` from this workspace, packed (pnpm pack: what would be
# published) and installed with npm into the build context with its production dependencies (from
# the npm registry, or npm's cache), built with buildx FROM the node image Docker already has, and
# imported into the node's containerd when its ID changed. (pnpm deploy would do the install too, but
# it rewrites the workspace's own node_modules.)
cmd_agent_image() {
  local repo ctx id have p t0=$SECONDS
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  ctx=$(mktemp -d /tmp/ociapp-agent-image.XXXXXX)
  # shellcheck disable=SC2064 # expand $ctx now
  trap "rm -rf '$ctx'" RETURN
  say "building and packing the workspace packages the agent needs (ociapp, ociapp-runtime)"
  (cd "$repo" && pnpm --silent --filter ociapp --filter ociapp-runtime run build >/dev/null) || die "pnpm build failed"
  for p in ociapp ociapp-runtime; do
    (cd "$repo/packages/$p" && pnpm --silent pack --pack-destination "$ctx/packs" >/dev/null) || die "pnpm pack of $p failed"
  done
  mkdir -p "$ctx/app"
  printf '{"name":"ociapp-agent-image","private":true}\n' >"$ctx/app/package.json"
  (cd "$ctx/app" && timeout 600 npm install --silent --no-audit --no-fund --omit=dev --omit=optional \
    --ignore-scripts "$ctx"/packs/ociapp-*.tgz) || die "npm install of the packed packages failed"
  rm -rf "$ctx/packs"
  cp "$repo/deploy/kubernetes/agent-image/Containerfile" "$ctx/Containerfile"
  say "building $AGENT_IMAGE with buildx (FROM $NODE_IMAGE)"
  timeout 600 docker buildx build --quiet --load --build-arg "BASE_IMAGE=$NODE_IMAGE" -t "$AGENT_IMAGE" \
    -f "$ctx/Containerfile" "$ctx" >/dev/null || die "docker buildx build of $AGENT_IMAGE failed"
  id=$(docker image inspect -f '{{.Id}}' "$AGENT_IMAGE")
  have=$(cat "$STATE_DIR/agent-image.id" 2>/dev/null || true)
  if [ "$id" = "$have" ] && has_image "$AGENT_IMAGE"; then
    say "$AGENT_IMAGE unchanged ($id), already in the node's containerd"
  else
    say "importing $AGENT_IMAGE into the node's containerd"
    timeout 300 docker save "$AGENT_IMAGE" | ctr_ images import - >/dev/null || die "importing $AGENT_IMAGE failed"
    has_image "$AGENT_IMAGE" || die "after the import, $AGENT_IMAGE is not in the node's containerd"
    printf '%s\n' "$id" >"$STATE_DIR/agent-image.id"
  fi
  say "agent image $AGENT_IMAGE ready in $(elapsed "$t0")"
}

cmd_env() {
  printf 'export KUBECONFIG=%s\n' "$ADMIN_KUBECONFIG"
  printf 'export OCIAPP_K8S_REGISTRY_URL=http://127.0.0.1:%s\n' "$REGISTRY_PORT"
  printf 'export OCIAPP_K8S_REGISTRY_USERNAME=ociapp\n'
  printf 'export OCIAPP_K8S_REGISTRY_PASSWORD_FILE=%s\n' "$REGISTRY_STATE/password"
  printf 'export OCIAPP_K8S_CONTAINERD_SOCKET=%s\n' "$CTR_SOCK"
  printf 'export OCIAPP_K8S_NODE=%s\n' "$NODE_NAME"
  # shellcheck disable=SC2016 # $PATH is for the shell that evaluates this line
  printf 'export PATH=%s:$PATH\n' "$K8S_BIN"
}

main() {
  case "${1:-up}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  build) build_all ;;
  agent-image) cmd_agent_image ;;
  *) die "unknown command: $1 (up, down, status, env, build, agent-image)" ;;
  esac
}

# On one line, so that bash has read all it runs before it starts: editing or checking out this
# file while it runs (a build takes minutes) cannot make it execute a half-read line.
main "$@"; exit $?
