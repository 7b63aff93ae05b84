#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install, build, set up (the kernel build
# takes ~7 minutes the first time, then is cached), then every test: the Rust workspace, then
# the Python package (built with maturin, tested with pytest). VM tests boot real VMs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
target/release/smolvm setup
cargo test --release --workspace
# The core command and environment tests once more on cold-booted VMs: the default run above
# starts VMs from pre-booted templates, and both must give the same results.
SMOLVM_COLD=1 cargo test --release -p smolvm --test run --test env
./scripts/test-python.sh
