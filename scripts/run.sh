#!/usr/bin/env bash
# Builds berth and starts a single-node cluster on the embedded store.
# Usage: scripts/run.sh [extra `berth server` flags]
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
  echo "berth needs a Rust toolchain (cargo); install it with rustup first" >&2
  exit 1
fi
if ! need kubectl && [ "$(id -u)" = 0 ] && need apt-get; then
  apt-get install -y kubectl >/dev/null 2>&1 || echo "note: kubectl is not installed; any kubectl 1.27+ works with berth" >&2
fi

# The etcd client's build script compiles etcd's protobuf definitions with protoc.
if ! need protoc; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    apt-get update -qq && apt-get install -y -qq protobuf-compiler
  else
    echo "building berth needs protoc: install Debian's protobuf-compiler package" >&2
    exit 1
  fi
fi

# The server runs a node: containers under containerd and runc, CNI bridge networking,
# and the pause/busybox images it builds from busybox-static and catatonit.
missing=()
for pair in containerd:/usr/bin/containerd runc:/usr/sbin/runc containernetworking-plugins:/usr/lib/cni/bridge \
            busybox-static:/bin/busybox catatonit:/usr/bin/catatonit; do
  [ -e "${pair#*:}" ] || missing+=("${pair%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "the node needs: apt-get install ${missing[*]} (or pass --disable-agent for a control plane only)" >&2
  fi
fi

cargo build --release -p berth
data_dir="${BERTH_DATA_DIR:-$([ "$(id -u)" = 0 ] && echo /var/lib/berth/server || echo "$HOME/.local/share/berth/server")}"
echo
echo "berth: starting a single-node cluster (data in $data_dir)"
echo "berth: in another shell:  export KUBECONFIG=$data_dir/kubeconfig.yaml && kubectl get namespaces"
echo
exec target/release/berth server --data-dir "$data_dir" "$@"
