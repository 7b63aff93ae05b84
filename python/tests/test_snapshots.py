"""Pause and resume, snapshots, restoring them with `SmolVM.from_snapshot`, and cold boots.

Real VMs of the small "minimal" image. Every snapshot a test takes is deleted in a `finally`,
and the data directory is the tests' own (see conftest.py), so ids cannot clash with other
programs' snapshots."""

from __future__ import annotations

import gc
import time
from datetime import datetime, timezone
from typing import Iterator

import pytest

import smolvm
from conftest import assert_cleaned_up
from smolvm import (
    Snapshot,
    SmolVM,
    SnapshotNotFoundError,
    ValidationError,
    VMConfig,
    VMNotFoundError,
    VMNotRunningError,
    VMState,
    delete_snapshot,
    list_snapshots,
)

IMAGE = "minimal"


def snapshot_ids() -> "list[str]":
    return [s.id for s in list_snapshots()]


def discard(snapshot_id: str) -> None:
    """Deletes a snapshot a test may have taken (cleanup: a missing one is fine)."""
    try:
        delete_snapshot(snapshot_id)
    except SnapshotNotFoundError:
        pass


@pytest.fixture
def source() -> Iterator[SmolVM]:
    """A started VM of the minimal image holding a file and a managed variable."""
    with SmolVM(VMConfig(image=IMAGE)) as vm:
        vm.write_file("/root/state.txt", "before the snapshot\n")
        vm.set_env_vars({"SNAP_VAR": "kept across restore"})
        yield vm


def test_snapshot_restore_and_delete(source: SmolVM) -> None:
    snap_id = "py-snap-main"
    taken_after = int(time.time())
    try:
        snap = source.snapshot(name=snap_id)
        assert isinstance(snap, Snapshot)
        assert (snap.id, snap.source_vm, snap.image) == (snap_id, source.vm_id, IMAGE)
        assert snap.created_at.tzinfo is not None
        assert taken_after - 1 <= snap.created_at.timestamp() <= time.time() + 1
        assert snap.memory_bytes > 0 and snap.disk_bytes >= 0 and snap.save_ms > 0
        with pytest.raises(AttributeError):
            snap.id = "other"  # type: ignore[misc]  # frozen

        # The source resumes on its own and is unchanged.
        assert source.status == "running"
        assert source.run("cat /root/state.txt").output == "before the snapshot"
        assert source.run("hostname").output == source.vm_id

        listed = {s.id: s for s in list_snapshots()}
        assert listed[snap_id] == snap

        # A name already taken is refused.
        with pytest.raises(ValidationError, match="already exists"):
            source.snapshot(name=snap_id)

        # Restored by id, with a name; the source changes afterwards do not reach the copy.
        source.write_file("/root/state.txt", "after the snapshot\n")
        with SmolVM.from_snapshot(snap_id, name="py-restored") as copy:
            assert copy.vm_id == "py-restored" and copy.status == "running"
            assert copy.config.image == IMAGE
            assert copy.read_file("/root/state.txt") == b"before the snapshot\n"
            assert copy.run("echo $SNAP_VAR").output == "kept across restore"
            assert copy.list_env_vars() == {"SNAP_VAR": "kept across restore"}
            assert copy.run("hostname").output == copy.vm_id
            # The copy is a machine of its own: its changes stay in it.
            copy.write_file("/root/copy-only.txt", "copy")
            assert not source.run("test -e /root/copy-only.txt").ok
            vm_dir, pids = copy.vm_dir, copy.host_pids()
        assert copy.status == VMState.DELETED
        assert_cleaned_up(vm_dir, pids)
        assert source.run("cat /root/state.txt").output == "after the snapshot"

        delete_snapshot(snap)  # a Snapshot object is accepted too
        assert snap_id not in snapshot_ids()
        with pytest.raises(SnapshotNotFoundError):
            delete_snapshot(snap_id)
    finally:
        discard(snap_id)


def test_a_restored_vm_is_deleted_when_collected(source: SmolVM) -> None:
    snap = source.snapshot()
    try:
        assert snap.id.startswith("snap-") and snap.id in snapshot_ids()
        copy = SmolVM.from_snapshot(snap)
        assert copy.vm_id.startswith("vm-") and copy.vm_id != source.vm_id
        assert copy.run("cat /root/state.txt").output == "before the snapshot"
        vm_dir, pids = copy.vm_dir, copy.host_pids()
        del copy
        gc.collect()
        assert_cleaned_up(vm_dir, pids)
    finally:
        discard(snap.id)
    # VMs restored from a snapshot do not need it afterwards; the source goes on.
    assert source.run("true").ok


def test_pause_and_resume(source: SmolVM) -> None:
    source.pause()
    assert source.status is VMState.PAUSED and source.status == "paused"
    assert repr(source) == f"SmolVM(vm_id={source.vm_id!r}, status='paused')"
    source.pause()  # pausing a paused VM does nothing
    with pytest.raises(VMNotRunningError, match="paused") as info:
        source.run("true")
    assert info.value.state == "paused" and info.value.vm_id == source.vm_id
    with pytest.raises(VMNotRunningError, match="paused"):
        source.read_file("/root/state.txt")
    source.resume()
    assert source.status == "running"
    source.resume()  # resuming a running VM does nothing
    assert source.run("cat /root/state.txt").output == "before the snapshot"

    # A snapshot can leave the VM paused.
    snap = None
    try:
        snap = source.snapshot(keep_paused=True)
        assert source.status == "paused"
        with pytest.raises(VMNotRunningError, match="paused"):
            source.run("true")
        source.resume()
        assert source.run("echo $SNAP_VAR").output == "kept across restore"
    finally:
        if snap is not None:
            discard(snap.id)

    # A paused VM stops and is deleted like a running one (by the fixture, after this).
    source.pause()


def test_pause_needs_a_started_vm() -> None:
    vm = SmolVM(VMConfig(image=IMAGE))
    for call in (vm.pause, vm.resume, vm.snapshot):
        with pytest.raises(VMNotRunningError) as info:
            call()
        assert info.value.state == "created"


def test_unknown_snapshots_are_refused() -> None:
    with pytest.raises(SnapshotNotFoundError) as info:
        SmolVM.from_snapshot("no-such-snapshot")
    assert info.value.snapshot_id == "no-such-snapshot"
    assert isinstance(info.value, VMNotFoundError)
    assert "no-such-snapshot" in str(info.value)
    with pytest.raises(SnapshotNotFoundError):
        delete_snapshot("no-such-snapshot")
    with pytest.raises(SnapshotNotFoundError):
        delete_snapshot("../escape")
    with pytest.raises(TypeError):
        SmolVM.from_snapshot(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        delete_snapshot(None)  # type: ignore[arg-type]
    assert all(isinstance(s, Snapshot) for s in list_snapshots())


def test_snapshot_arguments_are_checked(source: SmolVM) -> None:
    with pytest.raises(ValidationError) as info:
        source.snapshot(name="Not A Valid Id")
    assert info.value.field == "snapshot_id"
    with pytest.raises(TypeError):
        source.snapshot(name=7)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        source.snapshot(keep_paused="yes")  # type: ignore[arg-type]
    assert source.status == "running"


def supervisor_log(vm: SmolVM) -> str:
    return (vm.vm_dir / "supervisor.log").read_text(errors="replace")


def test_cold_boot_skips_the_template() -> None:
    with pytest.raises(TypeError):
        SmolVM(VMConfig(image=IMAGE), cold=1)  # type: ignore[arg-type]
    # By default a VM starts from the image's template (a snapshot the supervisor loads)...
    with SmolVM(VMConfig(image=IMAGE)) as warm:
        assert "snapshot" in supervisor_log(warm)
    # ...and with cold=True it boots the kernel instead.
    with SmolVM(VMConfig(image=IMAGE), cold=True) as vm:
        assert vm.status == "running"
        assert vm.run("hostname").output == vm.vm_id
        assert vm.run("echo cold").output == "cold"
        assert "snapshot" not in supervisor_log(vm)


def test_snapshot_api_is_exported() -> None:
    for name in ("Snapshot", "SnapshotNotFoundError", "list_snapshots", "delete_snapshot"):
        assert name in smolvm.__all__ and hasattr(smolvm, name)
    assert VMState("paused") is VMState.PAUSED
    snap = Snapshot(
        id="s",
        source_vm="vm-1",
        image=IMAGE,
        created_at=datetime.now(timezone.utc),
        memory_bytes=1,
        disk_bytes=0,
        save_ms=1,
    )
    assert snap.id == "s"
