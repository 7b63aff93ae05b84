"""Shared fixtures. These tests boot real VMs (QEMU, ~1.5 s each under emulation); the host
must have run `smolvm setup`. Run them against the installed wheel, from a directory where
the source tree's `smolvm/` does not shadow it (scripts/test-python.sh does both)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import smolvm
import smolvm.build
from smolvm import SmolVM

_PRIVATE_DATA_DIR: "list[str]" = []


def pytest_configure(config: pytest.Config) -> None:
    """Refuses a source tree that shadows the installed package, and gives the tests a data
    directory of their own (sharing the built kernel and images), so that VMs other programs
    run meanwhile never disturb the checks that nothing is left behind."""
    try:
        from smolvm import _native  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a setup error, not a test
        raise pytest.UsageError(
            f"smolvm was imported from {smolvm.__file__} without its extension; install the "
            "wheel and run pytest from outside python/ (see scripts/test-python.sh)"
        ) from exc
    real = smolvm.build.data_dir()
    private = tempfile.mkdtemp(prefix="smolvm-py-")
    for name in ("kernel", "images"):
        if (real / name).exists():
            os.symlink(real / name, os.path.join(private, name))
    if (real / "host.json").is_file():
        shutil.copy(real / "host.json", private)
    os.environ["SMOLVM_DATA_DIR"] = private
    _PRIVATE_DATA_DIR.append(private)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Removes the private data directory."""
    for path in _PRIVATE_DATA_DIR:
        shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.rsplit(")", 1)[1].strip().startswith("Z")


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Polls `check` until it holds or `timeout` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def assert_cleaned_up(vm_dir: Path, pids: "tuple[int, int]") -> None:
    """The VM's directory and host processes (supervisor, QEMU) are gone."""
    assert wait_until(lambda: not vm_dir.exists()), f"{vm_dir} still exists"
    for pid in pids:
        assert wait_until(lambda: not pid_alive(pid)), f"process {pid} still runs"


def guest_processes(vm: SmolVM) -> str:
    """The command lines of every process in the guest, one a line (no `ps` needed)."""
    listing = vm.run(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done",
        shell="raw",
    )
    assert listing.ok, listing.stderr
    return listing.stdout


def has_program(vm: SmolVM, name: str) -> bool:
    """Whether the guest has `name` on its PATH."""
    return vm.run(f"command -v {name}").ok


@pytest.fixture
def vm() -> Iterator[SmolVM]:
    """A started VM on the default image, deleted after the test."""
    with SmolVM() as machine:
        yield machine


@pytest.fixture(autouse=True)
def _no_leftover_vms() -> Iterator[None]:
    """Every test leaves the data directory's `vms/` as it found it."""
    vms = smolvm.build.data_dir() / "vms"
    before = set(os.listdir(vms)) if vms.is_dir() else set()
    yield
    def extra() -> "set[str]":
        now = set(os.listdir(vms)) if vms.is_dir() else set()
        return now - before
    assert wait_until(lambda: not extra(), timeout=15), f"VM directories left: {extra()}"
