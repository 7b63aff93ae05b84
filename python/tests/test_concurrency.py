"""The GIL is released during blocking calls; Ctrl-C interrupts a running command cleanly."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from conftest import assert_cleaned_up, guest_processes, wait_until
from smolvm import CommandResult, SmolVM
from smolvm.exceptions import OperationTimeoutError, SmolVMError


def test_threads_run_commands_in_one_vm_at_once(vm):
    results = {}

    def work(i: int) -> None:
        results[i] = vm.run(f"sleep 1; echo {i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert {i: r.output for i, r in results.items()} == {i: str(i) for i in range(6)}
    assert elapsed < 4.5, f"6 one-second commands took {elapsed:.1f} s: not concurrent"


def test_python_keeps_running_while_a_command_blocks(vm):
    ticks = 0
    done = threading.Event()

    def runner() -> None:
        vm.run("sleep 1")
        done.set()

    t = threading.Thread(target=runner)
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.01)
    t.join()
    assert ticks > 30  # the main thread ran while the command held no GIL


def test_threads_drive_several_vms():
    outputs = {}
    errors = []

    def work(name: str) -> None:
        try:
            with SmolVM() as machine:
                machine.set_env_vars({"NAME": name})
                outputs[name] = [machine.run("echo $NAME").output for _ in range(3)]
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert outputs == {"one": ["one"] * 3, "two": ["two"] * 3}


def test_concurrent_merges_keep_every_key(vm):
    def work(i: int) -> None:
        for j in range(5):
            vm.set_env_vars({f"T{i}_{j}": str(j)})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert vm.list_env_vars() == {f"T{i}_{j}": str(j) for i in range(4) for j in range(5)}


def test_timeout_kills_the_command_and_the_vm_goes_on(vm):
    started = time.monotonic()
    with pytest.raises(OperationTimeoutError) as info:
        vm.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 10
    err = info.value
    assert isinstance(err, TimeoutError) and isinstance(err, SmolVMError)
    assert "sleep 30" in str(err) and "1s" in str(err) and vm.vm_id in str(err)
    assert (err.command, err.timeout_seconds, err.vm_id) == ("sleep 30", 1.0, vm.vm_id)
    assert wait_until(lambda: "sleep 30" not in guest_processes(vm), timeout=5)
    assert vm.run("echo alive").output == "alive"
    assert vm.run("sleep 0.2; echo ok", timeout=0.5 + 4.5).ok
    assert vm.run("echo none", timeout=None).output == "none"


def interrupt_main_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_ctrl_c_interrupts_a_running_command(vm):
    marker = "sleep 37"
    interrupt_main_after(0.5)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        vm.run(marker)
    assert time.monotonic() - started < 3, "Ctrl-C was not acted on promptly"
    # The command was killed in the guest (the kill is sent as the call returns); the VM
    # goes on.
    assert wait_until(lambda: marker not in guest_processes(vm), timeout=5)
    result = vm.run("echo still here")
    assert isinstance(result, CommandResult) and result.output == "still here"


def test_ctrl_c_during_boot_deletes_the_vm():
    # A cold boot (over a second) so that the interrupt lands mid-boot; a start from the
    # template can be over before it.
    vm = SmolVM(cold=True)
    interrupt_main_after(0.3)
    with pytest.raises(KeyboardInterrupt):
        vm.start()
    assert vm.status == "deleted"
    assert not vm.vm_dir.exists()


def test_ctrl_c_in_a_with_block_cleans_up():
    with pytest.raises(KeyboardInterrupt):
        with SmolVM() as vm:
            vm_dir, pids = vm.vm_dir, vm.host_pids()
            interrupt_main_after(0.3)
            vm.run("sleep 30")
    assert vm.status == "deleted"
    assert_cleaned_up(vm_dir, pids)
