#!/usr/bin/env bash
# Installs the Debian packages SmolVM needs on the host (QEMU, the kernel source and its
# build tools, busybox-static, debootstrap and e2fsprogs for the Debian image). Run as root;
# `smolvm setup` checks the same list.
set -euo pipefail
packages=(qemu-system-x86 qemu-utils busybox-static debootstrap e2fsprogs linux-source-6.1
  build-essential bc bison flex libelf-dev libssl-dev xz-utils python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "host packages: all installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]}; run: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
