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
echo
echo '# The same guest started from its pre-booted template, then cold, timed:'
for mode in "" "--cold"; do
  start=$(date +%s%N)
  $smolvm run $mode -- 'echo "$(hostname) answered"'
  echo "  smolvm run ${mode:-(template)}: $(( ($(date +%s%N) - start) / 1000000 )) ms, including teardown"
done
echo
echo '# A sandbox with a running counter, snapshotted and restored as a second sandbox:'
name=demo-$$
$smolvm create --name "$name" --image minimal --env GREETING=hi >/dev/null
trap '$smolvm rm --force "$name" "$name-copy" >/dev/null 2>&1 || true' EXIT
$smolvm exec "$name" -- '(i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done) >/dev/null 2>&1 &'
sleep 1
snap=$($smolvm snapshot create "$name")
$smolvm snapshot restore "$snap" --name "$name-copy" >/dev/null
sleep 1
$smolvm exec "$name-copy" -- 'echo "$(hostname): GREETING=$GREETING, counter still counting: $(cat /tmp/n)"'
$smolvm snapshot rm "$snap" >/dev/null
