"""The :class:`SmolVM` sandbox handle."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union

from smolvm import _native
from smolvm._supervisor import launcher_command
from smolvm.stream import CommandStream
from smolvm.types import (
    DEFAULT_MAX_OUTPUT,
    CommandResult,
    Snapshot,
    VMConfig,
    VMState,
    check_env_vars,
    check_max_output,
    check_timeout,
    snapshot_of,
)

__all__ = ["SmolVM", "LocalPath", "list_snapshots", "delete_snapshot"]

#: A path on the host: a ``str`` or an ``os.PathLike`` such as :class:`pathlib.Path`.
LocalPath = Union[str, "os.PathLike[str]"]

logger = logging.getLogger("smolvm")

_SHELLS = ("login", "raw")


class SmolVM:
    """A disposable microVM sandbox.

    ``SmolVM()`` uses the default image built by ``smolvm setup``; ``SmolVM(config)`` uses a
    :class:`VMConfig`. Making the object validates the configuration but starts nothing;
    :meth:`start` boots the VM (about 1.5 s under software emulation). As a context manager
    it starts on entry and stops and deletes the VM on exit, also when the body raises
    (except for a sandbox reached with :meth:`from_id`, which is left as it is)::

        with SmolVM() as vm:
            vm.set_env_vars({"API_KEY": "secret-123"})
            print(vm.run("echo $API_KEY").output)  # secret-123

    A VM of an image's default kernel and root filesystem starts from that image's
    pre-booted template (made on first use, then reused), which gives the same guest
    sooner; ``SmolVM(config, cold=True)`` boots it from scratch instead.

    Blocking calls release the GIL, so threads may drive several VMs, or run several
    commands in one VM, at once. A VM still running when its object is garbage-collected
    (or when the program exits) is stopped and deleted.

    Args:
        config: How to build the VM; the default image's defaults when ``None``.
        cold: Boot from scratch even when a pre-booted template of the image exists.

    Raises:
        TypeError: ``config`` is not a :class:`VMConfig`, or ``cold`` not a bool.
        ValidationError: the configuration is refused (e.g. memory above the host's).
        ImageError: the default kernel or image has not been built (run ``smolvm setup``).
        HostError: QEMU is not installed.
    """

    def __init__(self, config: Optional[VMConfig] = None, *, cold: bool = False) -> None:
        if config is None:
            config = VMConfig()
        elif not isinstance(config, VMConfig):
            raise TypeError(
                f"SmolVM() takes a VMConfig or nothing, not {type(config).__name__}"
            )
        if not isinstance(cold, bool):
            raise TypeError(f"cold must be a bool, not {type(cold).__name__}")
        self._config = config
        self._owned = True
        # Fields may have been changed since the config was made: check a copy again.
        checked = dataclasses.replace(config)
        self._native = _native.Vm(
            vm_id=checked.vm_id,
            vcpu_count=checked.vcpu_count,
            mem_size_mib=checked.mem_size_mib,
            kernel_path=None if checked.kernel_path is None else str(checked.kernel_path),
            rootfs_path=None if checked.rootfs_path is None else str(checked.rootfs_path),
            boot_args=checked.boot_args,
            env_vars=dict(checked.env_vars),
            image=checked.image,
            launcher=launcher_command(),
            cold=cold,
        )

    @classmethod
    def from_id(cls, vm_id: str) -> "SmolVM":
        """Connects to an existing sandbox by name or id, e.g. one another process (or the
        ``smolvm`` CLI) started.

        The returned object does not own the sandbox: leaving a ``with`` block or garbage
        collection leaves it as it is; call :meth:`stop` or :meth:`delete` explicitly to end
        it. ``status`` is ``running`` (or ``paused``) when it runs and ``stopped`` otherwise.

        Raises:
            VMNotFoundError: no sandbox has that name or id.
        """
        if not isinstance(vm_id, str):
            raise TypeError(f"vm_id must be a str, not {type(vm_id).__name__}")
        return cls._wrap(_native.Vm.attach(vm_id, launcher_command()), owned=False)

    @classmethod
    def from_snapshot(
        cls, snapshot_id: Union[str, Snapshot], name: Optional[str] = None
    ) -> "SmolVM":
        """Makes a new VM from a snapshot and starts it, carrying on where the snapshot left
        its source: running processes, files and environment variables are there. It is a
        distinct machine, with its own id, hostname, machine id, random seed and disk, its
        clock set to now; the source may keep running meanwhile.

        The returned VM is running and owned by the object, like one made with
        ``SmolVM()``: leaving a ``with`` block or garbage collection deletes it::

            snap = vm.snapshot()
            with SmolVM.from_snapshot(snap) as copy:
                print(copy.run("cat /root/state").output)

        Args:
            snapshot_id: The snapshot's id, or a :class:`Snapshot`.
            name: The new VM's id; a random ``vm-xxxxxxxx`` when ``None``.

        A Ctrl-C while it starts deletes the new VM and raises ``KeyboardInterrupt``.

        Raises:
            SnapshotNotFoundError: no snapshot has that id.
            ValidationError: ``name`` is not a valid VM id, or the snapshot was taken on a
                host that cannot load it (another QEMU build or accelerator).
            VMAlreadyExistsError: a VM named ``name`` already exists.
            VMStartError: the VM failed to start.
        """
        snapshot = _snapshot_id("snapshot_id", snapshot_id)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        handle = _native.Vm.restore(snapshot, name, launcher_command())
        return cls._wrap(handle, owned=True)

    @classmethod
    def _wrap(cls, handle: _native.Vm, owned: bool) -> "SmolVM":
        """A :class:`SmolVM` around an extension handle, its config read back from it."""
        (name, vcpus, memory, kernel, rootfs, boot_args, env_vars, image) = handle.config
        vm = cls.__new__(cls)
        vm._native = handle
        vm._owned = owned
        vm._config = VMConfig(
            vm_id=name,
            vcpu_count=vcpus,
            mem_size_mib=memory,
            kernel_path=Path(kernel),
            rootfs_path=Path(rootfs),
            boot_args=boot_args,
            env_vars=dict(env_vars),
            image=image,
        )
        return vm

    # -- identity and state -------------------------------------------------------------

    @property
    def vm_id(self) -> str:
        """The VM's id (``vm-xxxxxxxx`` unless the config named it)."""
        return self._native.vm_id

    @property
    def status(self) -> VMState:
        """The VM's state; compares equal to ``"created"``, ``"running"``, ``"paused"``,
        ``"stopped"`` or ``"deleted"``."""
        return VMState(self._native.status)

    @property
    def config(self) -> VMConfig:
        """The configuration the VM was made from."""
        return self._config

    @property
    def vm_dir(self) -> Path:
        """The VM's directory on the host (present while it runs, removed when it stops)."""
        return Path(self._native.vm_dir)

    def __repr__(self) -> str:
        return f"SmolVM(vm_id={self.vm_id!r}, status={self.status.value!r})"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> "SmolVM":
        """Boots the VM and returns once the guest answers and ``config.env_vars`` are in
        place. Starting a running VM does nothing. Returns the VM itself.

        A Ctrl-C during boot deletes the VM and raises ``KeyboardInterrupt``.

        Raises:
            VMStartError: the VM failed to boot.
            VMAlreadyExistsError: another VM with the same id is running on this host.
            VMNotRunningError: the VM was deleted.
        """
        self._native.start()
        return self

    def stop(self) -> None:
        """Stops the VM: a clean guest shutdown, forced after 5 s. Does nothing unless it
        runs. The managed environment variables are gone with the VM."""
        self._native.stop()

    def delete(self) -> None:
        """Stops the VM if needed and removes everything it left on the host."""
        self._native.delete()

    def pause(self) -> None:
        """Stops the guest's vCPUs; its memory, processes and files stay as they are, and
        ``status`` becomes ``paused``. Commands and file transfers raise
        :class:`~smolvm.exceptions.VMNotRunningError` until :meth:`resume`. Pausing a paused
        VM does nothing.

        Raises:
            VMNotRunningError: the VM is not running (not started, stopped or deleted).
        """
        self._native.pause()

    def resume(self) -> None:
        """Restarts a paused guest, its clock stepped to the host's time; ``status`` becomes
        ``running``. Resuming a running VM does nothing.

        Raises:
            VMNotRunningError: the VM is not running nor paused.
        """
        self._native.resume()

    def snapshot(self, name: Optional[str] = None, keep_paused: bool = False) -> Snapshot:
        """Saves the VM's memory, device state and disk as a snapshot, from which
        :meth:`from_snapshot` makes any number of new VMs. The guest is stopped while it is
        taken, then carries on (running processes and all) unless ``keep_paused``.

        The snapshot stays on the host, independent of this VM, until
        :func:`smolvm.delete_snapshot`.

        Args:
            name: The snapshot's id: 1-63 characters of ``[a-z0-9-]``, starting with a letter
                or digit; a new ``snap-xxxxxxxx`` when ``None``.
            keep_paused: Leave the VM paused afterwards (see :meth:`resume`).

        Returns:
            The new :class:`Snapshot`.

        Raises:
            ValidationError: ``name`` is not a valid id, or a snapshot with that id exists.
            VMNotRunningError: the VM is not running nor paused.
            SmolVMError: the snapshot could not be taken.
        """
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        if not isinstance(keep_paused, bool):
            raise TypeError(f"keep_paused must be a bool, not {type(keep_paused).__name__}")
        return snapshot_of(self._native.snapshot(name, keep_paused))

    def __enter__(self) -> "SmolVM":
        try:
            self.start()
        except BaseException:
            self._cleanup(quiet=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        # An error from the body wins over one from cleanup.
        self._cleanup(quiet=exc_type is not None)

    def _cleanup(self, quiet: bool) -> None:
        if not self._owned:
            return  # a sandbox reached with from_id() is left as it is
        try:
            self.delete()
        except Exception:
            if not quiet:
                raise
            logger.warning("cleaning up VM %s failed", self.vm_id, exc_info=True)

    # -- commands --------------------------------------------------------------------------

    def run(
        self,
        command: str,
        timeout: Optional[Union[int, float]] = 30,
        shell: str = "login",
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        max_output: Optional[int] = DEFAULT_MAX_OUTPUT,
    ) -> CommandResult:
        """Runs a shell command line in the guest and waits for it.

        Args:
            command: The command line; the guest's ``/bin/sh`` parses it.
            timeout: Seconds before the command's whole process group is killed (the VM
                goes on); ``None`` waits forever.
            shell: ``"login"`` runs ``/bin/sh -lc`` (reads ``/etc/profile`` and
                ``/etc/profile.d/*.sh``, so managed environment variables are set);
                ``"raw"`` runs ``/bin/sh -c`` without them.
            env: Extra variables for this command only.
            cwd: Working directory in the guest (default ``/root``).
            max_output: Bytes of each stream (stdout, stderr) to keep, 64 MiB by default;
                ``None`` keeps everything. Output past it is read and dropped (the command
                runs to its end) and ``stdout_truncated`` / ``stderr_truncated`` is set. For
                more, iterate :meth:`run_stream` instead.

        Returns:
            The exit code and output. A non-zero exit code is a result, not an error.

        A Ctrl-C kills the command in the guest and raises ``KeyboardInterrupt``.

        Raises:
            OperationTimeoutError: the command ran past ``timeout``.
            VMNotRunningError: the VM is not running.
            TypeError / ValueError: bad arguments (unknown ``shell``, empty command...).
        """
        if not isinstance(command, str):
            raise TypeError(f"command must be a str, not {type(command).__name__}")
        seconds = check_timeout(timeout)
        if not isinstance(shell, str) or shell not in _SHELLS:
            raise ValueError(f'shell must be "login" or "raw", not {shell!r}')
        extra = None if env is None else check_env_vars("env", env)
        if cwd is not None and not isinstance(cwd, str):
            raise TypeError(f"cwd must be a str or None, not {type(cwd).__name__}")
        cap = check_max_output(max_output)
        exit_code, stdout, stderr, out_cut, err_cut = self._native.run(
            command, seconds, shell, extra, cwd, cap
        )
        return CommandResult(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
        )

    def run_stream(
        self,
        command: str,
        timeout: Optional[Union[int, float]] = None,
        shell: str = "login",
        stdin: bool = False,
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> CommandStream:
        """Starts a shell command line in the guest and returns at once, with its output to
        read as it arrives.

        Args:
            command: The command line; the guest's ``/bin/sh`` parses it.
            timeout: Seconds before the command's whole process group is killed (iteration
                then raises :class:`~smolvm.exceptions.OperationTimeoutError`); ``None``
                (the default) lets it run as long as it takes.
            shell: ``"login"`` or ``"raw"``, as for :meth:`run`.
            stdin: Keep the command's stdin open for
                :meth:`CommandStream.write_stdin` (until
                :meth:`CommandStream.close_stdin`); otherwise it reads ``/dev/null``.
            env: Extra variables for this command only.
            cwd: Working directory in the guest (default ``/root``).

        Returns:
            A :class:`~smolvm.stream.CommandStream`: iterate over it for
            ``("stdout" | "stderr", bytes)`` chunks; ``exit_code`` is set once the iteration
            ends. Used as a context manager, it kills the command if it still runs on exit::

                with vm.run_stream("cat", stdin=True) as proc:
                    proc.write_stdin(b"hello")
                    proc.close_stdin()
                    for stream, data in proc:
                        print(stream, data)       # stdout b'hello'
                print(proc.exit_code)             # 0

        A Ctrl-C while waiting for output kills the command in the guest and raises
        ``KeyboardInterrupt``. To pass the interrupt on to the command instead, install a
        ``SIGINT`` handler that calls ``proc.send_signal(signal.SIGINT)`` without raising.

        Raises:
            VMNotRunningError: the VM is not running.
            TypeError / ValueError: bad arguments (unknown ``shell``, empty command...).
        """
        if not isinstance(command, str):
            raise TypeError(f"command must be a str, not {type(command).__name__}")
        seconds = check_timeout(timeout)
        if not isinstance(shell, str) or shell not in _SHELLS:
            raise ValueError(f'shell must be "login" or "raw", not {shell!r}')
        if not isinstance(stdin, bool):
            raise TypeError(f"stdin must be a bool, not {type(stdin).__name__}")
        extra = None if env is None else check_env_vars("env", env)
        if cwd is not None and not isinstance(cwd, str):
            raise TypeError(f"cwd must be a str or None, not {type(cwd).__name__}")
        return CommandStream(self._native.spawn(command, seconds, shell, stdin, extra, cwd))

    # -- files -----------------------------------------------------------------------------

    def upload_file(self, local_path: LocalPath, guest_path: str) -> str:
        """Copies a file from the host into the guest.

        Args:
            local_path: The host file (``str`` or ``os.PathLike``).
            guest_path: Where to put it: an absolute guest path. A trailing ``/``, or an
                existing guest directory, appends the local file's name.

        Returns:
            The guest path written.

        Missing parent directories are created and the file's permission bits are kept.
        The write is atomic: the file appears complete or not at all. Streamed in bounded
        memory, so large files are fine.

        Raises:
            SmolVMFileNotFoundError: ``local_path`` does not exist (also a
                ``FileNotFoundError``).
            ValidationError: ``guest_path`` is not absolute, or ``local_path`` is a
                directory (use :meth:`upload_dir`); also a ``ValueError``.
            VMNotRunningError: the VM is not running.
            GuestError: the guest could not write the file.
        """
        local = _local_path("local_path", local_path)
        guest = _guest_path("guest_path", guest_path)
        return str(self._native.upload_file(local, guest))

    def download_file(
        self,
        guest_path: str,
        local_path: LocalPath,
        *,
        keep_special_bits: bool = False,
        max_bytes: Optional[int] = None,
        idle_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> str:
        """Copies a file from the guest to the host.

        Args:
            guest_path: The absolute guest path of the file.
            local_path: Where to put it (``str`` or ``os.PathLike``). A trailing ``/``, or
                an existing local directory, appends the guest file's name.
            keep_special_bits: Keep the setuid, setgid and sticky bits the guest gave
                (dropped by default).
            max_bytes: Refuse files larger than this. Files that do not fit in the
                destination's free space (less 16 MiB) are always refused.
            idle_timeout: Give up when the guest sends nothing for this many seconds
                (default 60).
            timeout: Give up when the whole download takes longer (default: no limit).

        Returns:
            The local path written.

        Missing parent directories are created and the file's permission bits are kept
        (less setuid/setgid/sticky). The write is atomic (a temporary file in the same
        directory, renamed into place; an existing file is replaced). The guest's announced
        size is checked before anything is written and every byte is counted, so a huge or
        lying guest file is refused with nothing left behind.

        Raises:
            SmolVMFileNotFoundError: ``guest_path`` does not exist in the guest (also a
                ``FileNotFoundError``).
            ValidationError: ``guest_path`` is not absolute (also a ``ValueError``).
            VMNotRunningError: the VM is not running.
            GuestError: the guest could not read the file (e.g. it is a directory).
            OperationTimeoutError: the guest stalled past ``idle_timeout`` or ``timeout``.
            SmolVMError: the file is over ``max_bytes`` or the free space
                (``details["rule"]`` is ``"too_large"`` or ``"no_space"``).
        """
        guest = _guest_path("guest_path", guest_path)
        local = _local_path("local_path", local_path)
        return str(
            self._native.download_file(
                guest,
                local,
                keep_special_bits=keep_special_bits,
                max_bytes=max_bytes,
                idle_timeout=idle_timeout,
                timeout=timeout,
            )
        )

    def write_file(
        self,
        guest_path: str,
        data: Union[bytes, bytearray, memoryview, str],
        mode: int = 0o644,
    ) -> None:
        """Writes ``data`` to a guest file, replacing it atomically.

        Args:
            guest_path: The absolute guest path; missing parent directories are created.
            data: The content; a ``str`` is encoded as UTF-8.
            mode: The file's permission bits (default ``0o644``).

        Raises:
            ValidationError: ``guest_path`` is not absolute (also a ``ValueError``).
            VMNotRunningError: the VM is not running.
            GuestError: the guest could not write the file.
        """
        guest = _guest_path("guest_path", guest_path)
        if isinstance(data, str):
            payload = data.encode()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
        else:
            raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
        if isinstance(mode, bool) or not isinstance(mode, int):
            raise TypeError(f"mode must be an int such as 0o644, not {type(mode).__name__}")
        if not 0 <= mode <= 0o7777:
            raise ValueError(f"mode must be permission bits from 0 to 0o7777, not {oct(mode)}")
        self._native.write_file(guest, payload, mode)

    def read_file(self, guest_path: str) -> bytes:
        """The whole content of a guest file.

        Raises:
            SmolVMFileNotFoundError: the file does not exist (also a ``FileNotFoundError``).
            ValidationError: ``guest_path`` is not absolute (also a ``ValueError``).
            VMNotRunningError: the VM is not running.
        """
        return bytes(self._native.read_file(_guest_path("guest_path", guest_path)))

    def upload_dir(self, local_path: LocalPath, guest_path: str) -> None:
        """Copies a host directory tree into the guest directory ``guest_path`` (created;
        the tree's content goes inside it), keeping permission bits and symlinks.

        Symlinks are copied only when they stay inside ``local_path`` (resolved against
        it, following its own links); an absolute link or one that leads out of the folder
        is refused, naming it, before anything is sent (``ValidationError``,
        ``details["rule"] == "unsafe_upload"``).

        Raises:
            SmolVMFileNotFoundError: ``local_path`` does not exist.
            ValidationError: ``guest_path`` is not absolute, or ``local_path`` is not a
                directory.
            VMNotRunningError: the VM is not running.
        """
        local = _local_path("local_path", local_path)
        self._native.upload_dir(local, _guest_path("guest_path", guest_path))

    def download_dir(
        self,
        guest_path: str,
        local_path: LocalPath,
        *,
        overwrite: bool = False,
        keep_special_bits: bool = False,
        max_bytes: Optional[int] = None,
        max_entries: Optional[int] = None,
        idle_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> str:
        """Copies the guest directory tree ``guest_path`` to the host directory
        ``local_path``, which ends up holding exactly that tree (folders, files, symlinks,
        permission bits less setuid/setgid/sticky unless ``keep_special_bits``).

        Nothing outside ``local_path`` is ever created, followed or changed: the guest's
        whole listing is checked first (symlinks that leave the tree at any step, duplicate
        or non-relative paths are refused, naming the entry), the tree is built in a hidden
        folder beside ``local_path`` without following any link and renamed into place.

        Args:
            overwrite: When ``local_path`` exists and is not empty, replace it (its old
                content is deleted, nothing is merged). Without it such a download is
                refused before anything is fetched.
            keep_special_bits: Keep setuid, setgid and sticky bits.
            max_bytes: Refuse trees whose files add up to more; trees that do not fit in
                the free space (less 16 MiB) are always refused.
            max_entries: Refuse trees with more entries (default 1,000,000).
            idle_timeout: Give up when the guest sends nothing for this many seconds
                (default 60).
            timeout: Give up when the whole download takes longer (default: no limit).

        Returns:
            The local path written (absolute).

        Raises:
            SmolVMFileNotFoundError: ``guest_path`` does not exist in the guest.
            ValidationError: ``guest_path`` is not absolute, the guest tree holds an entry
                that would escape ``local_path`` (``details["rule"] == "unsafe_tree"``), or
                ``local_path`` is not empty (``"destination_not_empty"``).
            VMNotRunningError: the VM is not running.
            OperationTimeoutError: the guest stalled past ``idle_timeout`` or ``timeout``.
            SmolVMError: the tree is over a cap (``"too_large"``, ``"no_space"``).
        """
        guest = _guest_path("guest_path", guest_path)
        return str(
            self._native.download_dir(
                guest,
                _local_path("local_path", local_path),
                overwrite=overwrite,
                keep_special_bits=keep_special_bits,
                max_bytes=max_bytes,
                max_entries=max_entries,
                idle_timeout=idle_timeout,
                timeout=timeout,
            )
        )

    # -- environment variables -------------------------------------------------------------

    def set_env_vars(self, env_vars: Mapping[str, str], merge: bool = True) -> List[str]:
        """Sets environment variables for login shells, in
        ``/etc/profile.d/smolvm_env.sh``. The next command sees them; no restart needed.

        Args:
            env_vars: Names and values. Keys must match ``^[A-Za-z_][A-Za-z0-9_]*$``;
                values may hold anything but NUL (quotes, ``$``, newlines...).
            merge: Merge into the current variables (default) or replace them all.

        Returns:
            The sorted names of all managed variables after the update.

        The whole batch is checked first: an invalid key or value changes nothing.

        Raises:
            TypeError: ``env_vars`` is not a dict of str to str.
            ValidationError: an invalid key or value (also a ``ValueError``).
            VMNotRunningError: the VM is not running.
        """
        checked = check_env_vars("env_vars", env_vars)
        if not isinstance(merge, bool):
            raise TypeError(f"merge must be a bool, not {type(merge).__name__}")
        return list(self._native.set_env_vars(checked, merge))

    def list_env_vars(self) -> Dict[str, str]:
        """The managed environment variables (never system ones such as ``PATH``); an
        empty dict when none are set.

        Raises:
            VMNotRunningError: the VM is not running.
        """
        return dict(self._native.list_env_vars())

    def unset_env_vars(self, keys: Iterable[str]) -> Dict[str, str]:
        """Removes variables.

        Args:
            keys: The names to remove (a list, tuple or set of str; names that are not set
                are ignored).

        Returns:
            The removed variables that existed, with their values.

        Raises:
            TypeError: ``keys`` is a single string or holds something else than str.
            ValidationError: a name is not a valid key.
            VMNotRunningError: the VM is not running.
        """
        names = _check_keys(keys)
        return dict(self._native.unset_env_vars(names))

    # -- diagnostics -----------------------------------------------------------------------

    def host_pids(self) -> Tuple[int, int]:
        """The host pids of the VM's supervisor and QEMU processes."""
        supervisor, qemu = self._native.host_pids()
        return int(supervisor), int(qemu)


def list_snapshots() -> List[Snapshot]:
    """Every snapshot in the data directory, oldest first (pre-booted templates are not
    listed)."""
    return [snapshot_of(raw) for raw in _native.list_snapshots()]


def delete_snapshot(snapshot_id: Union[str, Snapshot]) -> None:
    """Removes a snapshot from the host. VMs restored from it are unaffected.

    Args:
        snapshot_id: The snapshot's id, or a :class:`Snapshot`.

    Raises:
        SnapshotNotFoundError: no snapshot has that id (the message lists those that do).
    """
    _native.delete_snapshot(_snapshot_id("snapshot_id", snapshot_id))


def _snapshot_id(name: str, value: Any) -> str:
    """A snapshot argument (an id or a :class:`Snapshot`) as its id."""
    if isinstance(value, Snapshot):
        return value.id
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or a Snapshot, not {type(value).__name__}")
    return value


def _check_keys(keys: Any) -> List[str]:
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable) or isinstance(
        keys, Mapping
    ):
        raise TypeError(
            "unset_env_vars() expects a list of variable names (e.g. ['DEBUG']), "
            f"not {type(keys).__name__}"
        )
    names: List[str] = []
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(
                f"unset_env_vars(): variable names must be str, not {type(key).__name__}"
            )
        _native.validate_env_key(key)
        names.append(key)
    return names


def _local_path(name: str, value: Any) -> str:
    """A host path argument as ``str`` (``str`` or ``os.PathLike[str]``)."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str):
            if not path:
                raise _native.invalid(name, "the path is empty")
            return path
    raise TypeError(f"{name} must be a str or an os.PathLike, not {type(value).__name__}")


def _guest_path(name: str, value: Any) -> str:
    """A guest path argument (checked for being absolute by the SDK)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value
