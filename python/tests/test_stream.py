"""Streaming commands: output as it arrives, stdin, signals, timeouts and Ctrl-C."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import pytest

from smolvm import CommandResult, CommandStream, SmolVM
from smolvm.exceptions import OperationTimeoutError, VMNotRunningError

from conftest import guest_processes, wait_until


def test_chunks_arrive_before_the_command_exits(vm):
    proc = vm.run_stream("echo a; sleep 2; echo b")
    assert isinstance(proc, CommandStream)
    assert proc.exit_code is None and not proc.finished
    seen = []
    for stream, data in proc:
        seen.append((time.monotonic(), stream, data))
    ended = time.monotonic()
    assert proc.exit_code == 0 and proc.finished
    assert b"".join(d for _, s, d in seen if s == "stdout") == b"a\nb\n"
    first_a = next(t for t, s, d in seen if b"a" in d)
    assert ended - first_a >= 1.0, "`a` was not delivered before the command slept"
    assert all(isinstance(d, bytes) for _, _, d in seen)
    # Exhausted: iterating again yields nothing.
    assert list(proc) == []


def test_stdout_stderr_and_exit_code(vm):
    proc = vm.run_stream("echo out; echo err >&2; exit 3")
    events = list(proc)
    assert b"".join(d for s, d in events if s == "stdout") == b"out\n"
    assert b"".join(d for s, d in events if s == "stderr") == b"err\n"
    assert {s for s, _ in events} <= {"stdout", "stderr"}
    assert proc.exit_code == 3
    assert "exit_code=3" in repr(proc)


def test_options_env_cwd_and_shell(vm):
    vm.set_env_vars({"MANAGED": "yes"})
    result = vm.run_stream("echo $MANAGED $EXTRA $(pwd)", env={"EXTRA": "x"}, cwd="/tmp").wait()
    assert isinstance(result, CommandResult)
    assert (result.exit_code, result.output) == (0, "yes x /tmp")
    raw = vm.run_stream("echo ${MANAGED:-unset}", shell="raw").wait()
    assert raw.output == "unset"


def test_stdin_piped_through_cat(vm):
    with vm.run_stream("cat", stdin=True) as proc:
        proc.write_stdin(b"hello\n")
        proc.write_stdin("wörld\n")
        proc.close_stdin()
        result = proc.wait()
    assert (result.exit_code, result.stdout, result.stderr) == (0, "hello\nwörld\n", "")
    with pytest.raises(BrokenPipeError):
        proc.write_stdin(b"too late")


def test_large_stdin_is_streamed(vm):
    data = os.urandom(3 << 20)
    proc = vm.run_stream("sha256sum", stdin=True, timeout=300)

    def feed() -> None:  # from another thread, while this one reads
        for i in range(0, len(data), 100_000):
            proc.write_stdin(data[i : i + 100_000])
        proc.close_stdin()

    feeder = threading.Thread(target=feed)
    feeder.start()
    result = proc.wait()
    feeder.join()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_stdin_needs_to_be_requested(vm):
    proc = vm.run_stream("cat")  # stdin is /dev/null: cat ends at once
    with pytest.raises(BrokenPipeError, match="stdin=True"):
        proc.write_stdin(b"x")
    proc.close_stdin()  # nothing to close: no error
    assert proc.wait().exit_code == 0


def test_a_signal_stops_a_running_command(vm):
    proc = vm.run_stream("echo started; sleep 60; echo never")
    stream, data = next(proc)
    assert (stream, data) == ("stdout", b"started\n")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = list(proc)
    assert time.monotonic() - started < 30
    assert b"never" not in b"".join(d for _, d in rest)
    assert proc.exit_code == 128 + signal.SIGTERM
    assert "sleep 60" not in guest_processes(vm)
    proc.send_signal(signal.SIGTERM)  # finished: does nothing


def test_sigint_can_be_handled_by_the_command(vm):
    proc = vm.run_stream("trap 'echo caught; exit 7' INT; echo ready; while :; do sleep 0.1; done")
    assert next(proc) == ("stdout", b"ready\n")
    proc.send_signal(signal.SIGINT)
    assert proc.wait().output == "caught"
    assert proc.exit_code == 7


def test_a_timeout_kills_the_command(vm):
    proc = vm.run_stream("echo begin; sleep 30", timeout=2)
    assert next(proc) == ("stdout", b"begin\n")
    started = time.monotonic()
    with pytest.raises(OperationTimeoutError) as info:
        list(proc)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 25
    assert info.value.timeout_seconds == 2.0
    assert proc.finished
    assert wait_until(lambda: "sleep 30" not in guest_processes(vm), timeout=10)
    assert vm.run("echo alive").output == "alive"


def test_leaving_the_with_block_kills_the_command(vm):
    marker = "sleep 41"
    with vm.run_stream(marker) as proc:
        assert wait_until(lambda: marker in guest_processes(vm), timeout=10)
    assert proc.finished
    assert proc.exit_code == 128 + signal.SIGKILL
    assert wait_until(lambda: marker not in guest_processes(vm), timeout=10)


def test_an_abandoned_stream_kills_the_command(vm):
    marker = "sleep 43"
    proc = vm.run_stream(marker)
    assert wait_until(lambda: marker in guest_processes(vm), timeout=10)
    del proc
    assert wait_until(lambda: marker not in guest_processes(vm), timeout=10)


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_ctrl_c_while_iterating_kills_the_command(vm):
    marker = "sleep 39"
    proc = vm.run_stream(f"echo go; {marker}")
    assert next(proc) == ("stdout", b"go\n")
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        for _ in proc:
            pass
    assert time.monotonic() - started < 10, "Ctrl-C was not acted on promptly"
    assert proc.finished
    assert wait_until(lambda: marker not in guest_processes(vm), timeout=10)
    assert vm.run("echo still here").output == "still here"


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_a_sigint_handler_can_forward_ctrl_c_to_the_command(vm):
    proc = vm.run_stream("trap 'echo caught; exit 7' INT; echo ready; while :; do sleep 0.1; done")
    assert next(proc) == ("stdout", b"ready\n")
    previous = signal.signal(signal.SIGINT, lambda signum, frame: proc.send_signal(signum))
    try:
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        result = proc.wait()  # the handler does not raise: the iteration goes on
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (result.output, result.exit_code) == ("caught", 7)


def test_other_threads_run_while_waiting(vm):
    ticks = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.05)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        vm.run_stream("sleep 1.5").wait()
    finally:
        stop.set()
        ticker.join()
    assert len(ticks) >= 10, "the GIL was held while waiting for output"


def test_bad_stream_arguments(vm):
    with pytest.raises(TypeError, match="command must be a str"):
        vm.run_stream(["echo"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shell must be"):
        vm.run_stream("true", shell="bash")
    with pytest.raises(TypeError, match="stdin must be a bool"):
        vm.run_stream("true", stdin=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive number"):
        vm.run_stream("true", timeout=0)
    proc = vm.run_stream("true")
    with pytest.raises(ValueError, match="signal number"):
        proc.send_signal(0)
    with pytest.raises(TypeError, match="signum must be an int"):
        proc.send_signal("TERM")  # type: ignore[arg-type]
    proc.wait()


def test_streaming_needs_a_running_vm():
    vm = SmolVM()
    try:
        with pytest.raises(VMNotRunningError, match="Cannot run command"):
            vm.run_stream("true")
    finally:
        vm.delete()
