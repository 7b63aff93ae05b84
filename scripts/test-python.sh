#!/usr/bin/env bash
# Tests of the Python package (python/): makes a venv (python/.venv), builds the wheel with
# maturin, installs it, and runs pytest against real VMs. Needs ./scripts/build.sh and
# `target/release/smolvm setup` to have run (the kernel and image). Exits non-zero on failure.
#   PYTHON=python3.12 ./scripts/test-python.sh      # another interpreter (>= 3.9)
#   ./scripts/test-python.sh -k env                 # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/python/.venv
wheels=$root/python/target/wheels
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "test-python: installing python3-venv" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$python" -m venv "$venv"
        else
            echo "test-python: '$python -m venv' failed; install python3-venv" >&2
            exit 1
        fi
    fi
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.9.4,<2" "pytest>=7" "mypy>=1.10"

rm -rf "$wheels"
"$venv/bin/maturin" build --release --manifest-path python/Cargo.toml \
    --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall \
    --no-deps "$wheels"/smolvm-*.whl

# Run from an empty directory so that python/smolvm (no extension) cannot shadow the wheel.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
"$venv/bin/python" -m pytest -q -c "$root/python/pyproject.toml" --rootdir "$root/python" \
    "$root/python/tests" "$@"
