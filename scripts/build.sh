#!/usr/bin/env bash
# Builds everything: the static guest agent, then the workspace (smolvm, smolvm-supervisor).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-agent.sh >/dev/null
cargo build --release --workspace
