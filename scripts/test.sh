#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite: formatting, lints, and every
# unit, integration and end-to-end test (real kubectl against real servers).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
need kubectl || missing+=(kubectl)
need python3 || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root apt-get install -y -qq "${missing[@]}"
fi
# The real clients the end-to-end tests drive (Python client, helm).
eval "$(scripts/install-test-tools.sh)"

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

# The test nodes share this host's disk with the build (a clean debug build of the
# workspace is ~15 GB): with the kubelet's default thresholds (nodefs 10 %, imagefs 15 %
# free) a fuller disk would evict the tests' pods. Nodes started without --eviction-hard
# take these instead; the eviction tests give their own.
export BERTH_EVICTION_HARD="${BERTH_EVICTION_HARD:-memory.available<100Mi,nodefs.available<1%,imagefs.available<1%,nodefs.inodesFree<1%}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo nextest run --workspace --no-fail-fast
cargo test --workspace --doc

# The cargo-fuzz targets (fuzz/): request bodies, selectors and patches, a short run each
# from the committed seeds. cargo-fuzz needs nightly -Z flags; RUSTC_BOOTSTRAP lets the
# stable toolchain (which ships the sanitizer runtimes) accept them. New inputs go to a
# scratch corpus under target/, so the checkout stays clean; a crash fails the script
# and leaves its input in fuzz/artifacts/<target>/.
if ! cargo fuzz --version 2>/dev/null | grep -q "0.13.2"; then
  cargo install --locked cargo-fuzz --version 0.13.2
fi
fuzz_secs="${BERTH_FUZZ_SECONDS:-20}"
for t in decode_body selectors patches; do
  mkdir -p "target/fuzz-corpus/$t"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --target-dir target/fuzz "$t" \
    "target/fuzz-corpus/$t" "fuzz/corpus/$t" -- -max_total_time="$fuzz_secs"
done
