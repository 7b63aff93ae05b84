"""The :class:`CommandStream` that :meth:`SmolVM.run_stream <smolvm.SmolVM.run_stream>` returns."""

from __future__ import annotations

from types import TracebackType
from typing import Iterator, Literal, Optional, Tuple, Type, Union

from smolvm import _native
from smolvm.types import DEFAULT_MAX_OUTPUT, CommandResult, check_max_output

__all__ = ["CommandStream"]

#: The name of an output stream: ``"stdout"`` or ``"stderr"``.
StreamName = Literal["stdout", "stderr"]


class CommandStream(Iterator[Tuple[StreamName, bytes]]):
    """A command running in a VM, whose output is read as it arrives.

    Iterating yields ``(stream, data)`` pairs, ``stream`` being ``"stdout"`` or ``"stderr"``
    and ``data`` the bytes the command wrote, in the order they came. The iteration ends
    when the command exits; :attr:`exit_code` then holds its exit code::

        proc = vm.run_stream("echo a; sleep 2; echo b")
        for stream, data in proc:
            print(stream, data)          # stdout b'a\\n' ... two seconds ... stdout b'b\\n'
        print(proc.exit_code)            # 0

    Waiting for the next chunk releases the GIL, so other threads run meanwhile (and may
    call :meth:`write_stdin` or :meth:`send_signal`). A Ctrl-C while waiting kills the
    command in the guest (its whole process group) and raises ``KeyboardInterrupt``; the
    stream is then finished. Leaving a ``with`` block, :meth:`close`, or garbage collection
    of an unfinished stream also kill the command.

    Raises (from iteration):
        OperationTimeoutError: the command ran past its ``timeout`` and was killed.
        VMConnectionError: the VM stopped or crashed while the command ran.
    """

    __slots__ = ("_process",)

    def __init__(self, process: _native.Process) -> None:
        self._process = process

    @property
    def command(self) -> str:
        """The command line."""
        return self._process.command

    @property
    def exit_code(self) -> Optional[int]:
        """The command's exit code (``128 + N`` when killed by signal ``N``) once the
        iteration has ended, ``None`` before (and after :meth:`close` or a Ctrl-C when the
        command did not report its end in time)."""
        return self._process.exit_code

    @property
    def finished(self) -> bool:
        """Whether the command's end has been read: no more output will come."""
        return self._process.finished

    def __iter__(self) -> "CommandStream":
        return self

    def __next__(self) -> Tuple[StreamName, bytes]:
        event = self._process.next_event()
        if event is None:
            raise StopIteration
        return event

    def write_stdin(self, data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Writes to the command's stdin (``str`` is encoded as UTF-8).

        Raises:
            BrokenPipeError: the stream was started without ``stdin=True``, stdin was
                closed, or the command's end has been read. Data written after the command
                exited but before its end was read is silently dropped.
            TypeError: ``data`` is not bytes-like or str.
        """
        if isinstance(data, str):
            payload = data.encode()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
        else:
            raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
        self._process.write_stdin(payload)

    def close_stdin(self) -> None:
        """Closes the command's stdin, so that it reads end-of-file (e.g. ``cat`` ends).
        Does nothing when stdin is already closed or was never opened."""
        self._process.close_stdin()

    def send_signal(self, signum: int) -> None:
        """Sends signal ``signum`` (e.g. ``signal.SIGINT``, ``signal.SIGTERM``) to the
        command's whole process group in the guest. Does nothing once its end was read.

        The iteration then goes on until the command exits; its exit code is
        ``128 + signum`` when the signal killed it.
        """
        if isinstance(signum, bool) or not isinstance(signum, int):
            raise TypeError(f"signum must be an int, not {type(signum).__name__}")
        if not 1 <= signum <= 64:
            raise ValueError(f"signum must be a signal number from 1 to 64, not {signum}")
        self._process.send_signal(int(signum))

    def kill(self) -> None:
        """Sends ``SIGKILL`` to the command's process group (see :meth:`send_signal`)."""
        self.send_signal(9)

    def wait(self, max_output: Optional[int] = DEFAULT_MAX_OUTPUT) -> CommandResult:
        """Reads the rest of the output and waits for the command to exit.

        Args:
            max_output: Bytes of each stream to keep, as :meth:`SmolVM.run`'s (64 MiB by
                default; ``None`` keeps everything). The rest is read and dropped.

        Returns:
            The exit code and the output not read by iteration yet (decoded as UTF-8,
            invalid bytes replaced), with ``stdout_truncated`` / ``stderr_truncated`` set
            when a stream went past ``max_output``.
        """
        cap = check_max_output(max_output)
        kept = {"stdout": bytearray(), "stderr": bytearray()}
        cut = {"stdout": False, "stderr": False}
        for stream, data in self:
            buf = kept[stream]
            room = len(data) if cap is None else max(0, cap - len(buf))
            if len(data) > room:
                cut[stream] = True
            buf += data[:room]
        code = self.exit_code
        return CommandResult(
            exit_code=-1 if code is None else code,
            stdout=kept["stdout"].decode(errors="replace"),
            stderr=kept["stderr"].decode(errors="replace"),
            stdout_truncated=cut["stdout"],
            stderr_truncated=cut["stderr"],
        )

    def close(self) -> None:
        """Kills the command if it still runs and waits (up to 5 s) for its end; output not
        read yet is dropped. Does nothing once the command's end was read."""
        self._process.close()

    def __enter__(self) -> "CommandStream":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if not self.finished else f"exit_code={self.exit_code}"
        return f"CommandStream({self.command!r}, {state})"
