#!/usr/bin/env bash
# The first command for a fresh Debian 12 machine: install, build, set up, and run a first
# sandbox that shows environment variables at work.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
smolvm=target/release/smolvm
$smolvm setup
$smolvm doctor
echo
echo '$ smolvm run --env API_KEY=secret-123 --env DEBUG=true -- ...'
$smolvm run --env API_KEY=secret-123 --env DEBUG=true -- \
  'echo "hello from $(hostname), kernel $(uname -r)"; echo "API_KEY=$API_KEY DEBUG=$DEBUG";' \
  'echo "--- /etc/profile.d/smolvm_env.sh:"; cat /etc/profile.d/smolvm_env.sh'
