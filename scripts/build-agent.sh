#!/usr/bin/env bash
# Builds the guest agent as a static x86_64 binary. It runs as PID 1 in guests that have no
# dynamic loader; glibc with crt-static is used because no musl target can be installed here.
# The explicit --target keeps the static flag away from host build scripts and proc macros.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release -p smolvm-agent --target x86_64-unknown-linux-gnu "$@"
echo "target/x86_64-unknown-linux-gnu/release/smolvm-agent"
