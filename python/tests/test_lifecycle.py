"""Starting, stopping and deleting VMs, and that nothing is left on the host afterwards."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import smolvm.build
from conftest import assert_cleaned_up, pid_alive
from smolvm import SmolVM, VMConfig, VMState
from smolvm.exceptions import (
    SmolVMError,
    VMAlreadyExistsError,
    VMNotFoundError,
    VMNotRunningError,
)


class Boom(Exception):
    pass


def test_context_manager_cleans_up_when_the_body_raises():
    with pytest.raises(Boom):
        with SmolVM() as vm:
            vm_dir = vm.vm_dir
            pids = vm.host_pids()
            assert vm_dir.is_dir() and vm_dir.parent == smolvm.build.data_dir() / "vms"
            assert all(pid_alive(pid) for pid in pids)
            raise Boom("body failed")
    assert vm.status == VMState.DELETED
    assert_cleaned_up(vm_dir, pids)


def test_context_manager_cleans_up_on_normal_exit():
    with SmolVM() as vm:
        assert vm.status == "running"
        vm_dir, pids = vm.vm_dir, vm.host_pids()
    assert vm.status == "deleted"
    assert_cleaned_up(vm_dir, pids)


def test_life_cycle_states_and_return_values():
    vm = SmolVM()
    assert vm.status is VMState.CREATED and vm.status == "created"
    assert isinstance(vm.status, VMState) and isinstance(vm.status, str)
    assert vm.vm_id.startswith("vm-") and isinstance(vm.vm_id, str)
    assert not vm.vm_dir.exists()  # making the object creates nothing
    assert vm.start() is vm
    assert vm.start() is vm  # starting a running VM does nothing
    assert vm.status == "running"
    assert repr(vm) == f"SmolVM(vm_id={vm.vm_id!r}, status='running')"
    vm_dir, pids = vm.vm_dir, vm.host_pids()
    assert vm.stop() is None
    assert vm.status == "stopped"
    assert vm.stop() is None  # idempotent
    assert vm.delete() is None
    assert vm.status == "deleted"
    assert vm.delete() is None  # idempotent
    assert_cleaned_up(vm_dir, pids)
    with pytest.raises(VMNotRunningError, match=r"^Cannot start: VM is deleted"):
        vm.start()


def test_not_running_errors_name_the_state():
    vm = SmolVM()
    with pytest.raises(VMNotRunningError) as info:
        vm.run("true")
    assert str(info.value) == f"Cannot run command: VM is created (VM {vm.vm_id})"
    assert (info.value.state, info.value.vm_id) == ("created", vm.vm_id)
    assert info.value.action == "Cannot run command"
    for call in (
        lambda: vm.set_env_vars({"KEY": "value"}),
        lambda: vm.list_env_vars(),
        lambda: vm.unset_env_vars(["KEY"]),
    ):
        with pytest.raises(SmolVMError, match=r"^Cannot manage environment variables: VM is created"):
            call()
    vm.delete()
    with pytest.raises(VMNotRunningError, match="VM is deleted"):
        vm.list_env_vars()


def test_restart_after_stop_boots_a_fresh_guest():
    with SmolVM() as vm:
        vm.set_env_vars({"GONE": "after restart"})
        vm.stop()
        assert vm.start() is vm and vm.status == "running"
        assert vm.list_env_vars() == {}
        assert vm.run("echo hi").output == "hi"


def test_config_env_vars_and_named_ids():
    config = VMConfig(vm_id="py-named", env_vars={"GREETING": "hello world"})
    with SmolVM(config) as vm:
        assert vm.vm_id == "py-named"
        assert vm.config is config
        assert vm.run('echo "$GREETING"').output == "hello world"
        with pytest.raises(VMAlreadyExistsError, match="already exists") as info:
            SmolVM(VMConfig(vm_id="py-named")).start()
        assert isinstance(info.value, SmolVMError)
    # The id is free again once the first VM is gone.
    with SmolVM(VMConfig(vm_id="py-named")) as again:
        assert again.run("cat /proc/sys/kernel/hostname").output == "py-named"


def test_garbage_collected_vm_is_stopped_and_deleted():
    vm = SmolVM().start()
    vm_dir, pids = vm.vm_dir, vm.host_pids()
    del vm
    gc.collect()
    assert_cleaned_up(vm_dir, pids)


def test_vm_of_a_process_that_dies_is_cleaned_up():
    """The owner pipe: a program killed without cleanup takes its VMs with it."""
    script = textwrap.dedent(
        """
        import os, sys
        from smolvm import SmolVM
        vm = SmolVM().start()
        print(vm.vm_dir, *vm.host_pids(), flush=True)
        os._exit(0)  # no cleanup at all
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    vm_dir, supervisor, qemu = out.stdout.split()
    assert_cleaned_up(Path(vm_dir), (int(supervisor), int(qemu)))


def test_supervisor_runs_on_this_interpreter_and_package():
    with SmolVM() as vm:
        supervisor, _ = vm.host_pids()
        argv = Path(f"/proc/{supervisor}/cmdline").read_bytes().split(b"\0")
        assert argv[0].decode() == sys.executable
        assert argv[1:3] == [b"-I", b"-S"]
        assert str(Path(smolvm.__file__).parent.parent).encode() in argv[4]
        assert argv[-3:-1] == [b"--dir", str(vm.vm_dir).encode()]


def test_no_supervisor_binary_is_needed(monkeypatch):
    # The SDK would only look for `smolvm-supervisor` when no launcher is set; the package
    # always sets its own, so a wrong SMOLVM_SUPERVISOR changes nothing.
    monkeypatch.setenv("SMOLVM_SUPERVISOR", "/nonexistent/smolvm-supervisor")
    with SmolVM() as vm:
        assert vm.run("echo booted").output == "booted"


CLI = Path(__file__).resolve().parents[2] / "target" / "release" / "smolvm"


@pytest.mark.skipif(not CLI.is_file(), reason="needs target/release/smolvm (./scripts/build.sh)")
def test_from_id_starts_a_stopped_sandbox_with_this_interpreter(monkeypatch):
    name = "py-restart"
    subprocess.run([str(CLI), "create", "--name", name], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    try:
        subprocess.run([str(CLI), "stop", name], check=True, timeout=120,
                       stdout=subprocess.DEVNULL)
        monkeypatch.setenv("SMOLVM_SUPERVISOR", "/nonexistent/smolvm-supervisor")
        vm = SmolVM.from_id(name)
        assert vm.status == "stopped"
        assert vm.start() is vm and vm.status == "running"
        supervisor, _ = vm.host_pids()
        argv = Path(f"/proc/{supervisor}/cmdline").read_bytes().split(b"\0")
        assert argv[0].decode() == sys.executable
        assert vm.run("hostname").output == name
        vm.stop()
        assert vm.status == "stopped"
    finally:
        subprocess.run([str(CLI), "rm", "--force", name], timeout=120,
                       stdout=subprocess.DEVNULL)


def test_from_id_attaches_without_owning():
    config = VMConfig(vm_id="py-attach", env_vars={"A": "1"})
    with SmolVM(config) as owner:
        other = SmolVM.from_id("py-attach")
        assert other is not owner and other.vm_id == "py-attach"
        assert other.status == "running"
        assert (other.config.vm_id, other.config.env_vars) == ("py-attach", {"A": "1"})
        assert other.config.kernel_path == smolvm.build.default_kernel_path().resolve()
        assert other.run("echo $A").output == "1"
        assert other.set_env_vars({"B": "2"}) == ["A", "B"]
        assert owner.list_env_vars() == {"A": "1", "B": "2"}
        # Neither a with block nor garbage collection ends a sandbox the handle does not own.
        with other as same:
            assert same is other
        del other, same
        gc.collect()
        assert owner.run("echo alive").output == "alive"
        vm_dir, pids = owner.vm_dir, owner.host_pids()
    assert_cleaned_up(vm_dir, pids)
    with pytest.raises(VMNotFoundError):
        SmolVM.from_id("py-attach")


def test_from_id_reaches_a_vm_of_another_process():
    script = textwrap.dedent(
        """
        import sys
        from smolvm import SmolVM, VMConfig
        with SmolVM(VMConfig(vm_id="py-elsewhere")) as vm:
            vm.set_env_vars({"WHO": "the other process"})
            print(vm.vm_dir, *vm.host_pids(), flush=True)
            sys.stdin.read()  # until the test closes it
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        line = child.stdout.readline().split()
        assert line, "the child did not start its VM"
        vm_dir, pids = Path(line[0]), (int(line[1]), int(line[2]))
        vm = SmolVM.from_id("py-elsewhere")
        assert vm.run('echo "$WHO"').output == "the other process"
        assert vm.list_env_vars() == {"WHO": "the other process"}
        vm.stop()  # an explicit stop does end it
        assert vm.status == "stopped"
        assert_cleaned_up(vm_dir, pids)
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0
