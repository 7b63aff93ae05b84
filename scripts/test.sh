#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install, build, set up (the kernel build
# takes ~7 minutes the first time, then is cached), then the tiers, each with its wall time:
# the fast tier (no VM: unit tests, the supervisor's router against a fake hostile guest, the
# agent in host mode, and the SDK, supervisor, router and CLI on the fake backend of
# crates/testkit, whose "VM" is the agent as a host process), then the VM tier (the Rust
# integration tests boot real VMs; the core ones again cold), then the Python package (built
# with maturin, tested with pytest on real VMs).
set -euo pipefail
cd "$(dirname "$0")/.."
tier() {
  local name=$1
  shift
  local start=$SECONDS
  echo "== tier: $name"
  "$@"
  echo "== tier: $name passed in $((SECONDS - start)) s"
}
./scripts/install-deps.sh
./scripts/build.sh
tier "fast (no VM)" cargo test --release --workspace --lib --bins
tier "fast (fake backend, no VM)" cargo test --release -p smolvm-testkit -p smolvm-agent --test '*'
target/release/smolvm setup
# The packages of the fast tier's integration tests boot no VM: not run twice.
tier "VM (Rust integration tests)" cargo test --release --workspace --exclude smolvm-testkit \
  --exclude smolvm-agent --no-fail-fast --test '*'
# The core command and environment tests once more on cold-booted VMs: the default run above
# starts VMs from pre-booted templates, and both must give the same results.
tier "VM, cold boots" env SMOLVM_COLD=1 cargo test --release -p smolvm --test run --test env
tier "Python" ./scripts/test-python.sh
