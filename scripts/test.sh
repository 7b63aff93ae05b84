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
./scripts/test-python.sh
