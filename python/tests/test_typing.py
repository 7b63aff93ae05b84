"""The package's type information is right: `mypy --strict` passes on it and the extension's
stub (`_native.pyi`) matches the compiled module (`mypy.stubtest`). Skipped without mypy
(scripts/test-python.sh installs it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("mypy")


def mypy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )


def test_package_passes_mypy_strict():
    out = mypy("mypy", "--strict", "--cache-dir=/dev/null", "-p", "smolvm")
    assert out.returncode == 0, out.stdout + out.stderr


def test_stub_matches_the_extension():
    out = mypy("mypy.stubtest", "--mypy-config-file=/dev/null", "smolvm._native")
    assert out.returncode == 0, out.stdout + out.stderr
