"""Data types of the SmolVM API: :class:`VMConfig`, :class:`CommandResult`, :class:`VMState`,
:class:`Snapshot`."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from smolvm import _native

__all__ = ["VMConfig", "CommandResult", "VMState", "Snapshot"]

#: What a path argument accepts.
PathLike = Union[str, "Path"]


class VMState(str, enum.Enum):
    """Where a VM is in its life. Compares equal to its lowercase name (``"running"``)."""

    CREATED = "created"
    """Configured, not started."""
    RUNNING = "running"
    """Booted and answering."""
    PAUSED = "paused"
    """Booted, its vCPUs stopped by :meth:`SmolVM.pause`; commands and file transfers wait
    for :meth:`SmolVM.resume`."""
    STOPPED = "stopped"
    """Stopped; its files remain until it is deleted."""
    DELETED = "deleted"
    """Deleted; nothing of it remains on the host."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CommandResult:
    """What a finished command produced. A non-zero exit code is a result, not an error.

    Attributes:
        exit_code: The command's exit code (``128 + N`` when killed by signal ``N``).
        stdout: What it wrote to stdout, decoded as UTF-8 (invalid bytes replaced): all of
            it, or its first ``max_output`` bytes when ``stdout_truncated``.
        stderr: What it wrote to stderr, decoded and capped likewise.
        stdout_truncated: stdout went past ``max_output`` bytes; the rest was dropped.
        stderr_truncated: stderr went past ``max_output`` bytes; the rest was dropped.
    """

    exit_code: int
    stdout: str
    stderr: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def output(self) -> str:
        """stdout with surrounding whitespace removed."""
        return self.stdout.strip()

    @property
    def ok(self) -> bool:
        """Whether the command exited with code 0."""
        return self.exit_code == 0


@dataclass(frozen=True)
class Snapshot:
    """A saved VM (memory, device state and disk), from which :meth:`SmolVM.from_snapshot`
    makes new VMs. Returned by :meth:`SmolVM.snapshot` and :func:`smolvm.list_snapshots`.

    Attributes:
        id: The snapshot's id (``snap-xxxxxxxx`` unless named).
        source_vm: The id of the VM it was taken from.
        image: The image that VM ran.
        created_at: When it was taken (timezone-aware, UTC, whole seconds).
        memory_bytes: Size of the saved (compressed) memory on the host.
        disk_bytes: Size of the saved disk (0 for an image without a disk).
        save_ms: How long taking it took, in milliseconds.

    The sizes and ``save_ms`` are 0 for a snapshot that did not record them.
    """

    id: str
    source_vm: str
    image: str
    created_at: datetime
    memory_bytes: int
    disk_bytes: int
    save_ms: int


def snapshot_of(raw: Tuple[str, str, str, int, int, int, int]) -> Snapshot:
    """A :class:`Snapshot` from the extension's ``(id, source_vm, image, created_at,
    memory_bytes, disk_bytes, save_ms)`` tuple (``created_at`` in seconds since the epoch)."""
    snapshot_id, source_vm, image, created_at, memory_bytes, disk_bytes, save_ms = raw
    return Snapshot(
        id=snapshot_id,
        source_vm=source_vm,
        image=image,
        created_at=datetime.fromtimestamp(created_at, tz=timezone.utc),
        memory_bytes=memory_bytes,
        disk_bytes=disk_bytes,
        save_ms=save_ms,
    )


def _invalid(field_name: str, reason: str) -> Exception:
    return _native.invalid(field_name, reason)


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def _check_optional_str(name: str, value: Any) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
    return value


def _check_optional_path(name: str, value: Any) -> Optional[Path]:
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        if str(value) == "":
            raise _invalid(name, "the path is empty; pass a file path or None")
        return Path(value)
    raise TypeError(f"{name} must be a str, a pathlib.Path or None, not {type(value).__name__}")


def check_env_vars(name: str, value: Any) -> Dict[str, str]:
    """Checks a mapping of environment variables and returns it as a new ``dict``.

    Raises:
        TypeError: ``value`` is not a mapping of ``str`` to ``str``.
        ValidationError: a key is not a shell identifier or a value contains NUL.
    """
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be a dict of str to str (e.g. {{'API_KEY': 'value'}}), "
            f"not {type(value).__name__}"
        )
    checked: Dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str):
            raise TypeError(
                f"{name}: environment variable keys must be str, not {type(key).__name__} ({key!r})"
            )
        if not isinstance(val, str):
            raise TypeError(
                f"{name}: the value of {key!r} must be a str, not {type(val).__name__}"
            )
        _native.validate_env_key(key)
        _native.validate_env_value(key, val)
        checked[key] = val
    return checked


@dataclass
class VMConfig:
    """How to build a VM. Every field is checked when the config is made; errors name it.

    Args:
        vm_id: The VM's id: 1-63 characters of ``[a-z0-9-]``, starting with a letter or
            digit. A random ``vm-xxxxxxxx`` when ``None``.
        vcpu_count: Number of virtual CPUs, 1 to 64.
        mem_size_mib: Guest memory in MiB, at least 64 (and at most the host's memory, which
            is checked when the VM is made).
        kernel_path: A guest kernel to boot instead of the default one
            (see :func:`smolvm.build.default_kernel_path`).
        rootfs_path: A root filesystem (an initramfs ``.cpio`` or an ext4 image) to boot
            instead of the image's
            (see :func:`smolvm.build.default_rootfs_path`).
        boot_args: The kernel command line; :data:`smolvm.build.SSH_BOOT_ARGS` when ``None``.
            It must keep ``init=/init`` for the guest agent to start.
        env_vars: Environment variables in place before :meth:`SmolVM.start` returns.
        image: Name of a built image (default :data:`smolvm.build.DEFAULT_IMAGE`); only a
            label when ``rootfs_path`` is given.

    Raises:
        TypeError: a field has the wrong type.
        ValidationError: a field has a refused value (also a ``ValueError``).
    """

    vm_id: Optional[str] = None
    vcpu_count: int = 1
    mem_size_mib: int = 512
    kernel_path: Optional[PathLike] = None
    rootfs_path: Optional[PathLike] = None
    boot_args: Optional[str] = None
    env_vars: Dict[str, str] = field(default_factory=dict)
    image: Optional[str] = None

    def __post_init__(self) -> None:
        self.vm_id = _check_optional_str("vm_id", self.vm_id)
        if self.vm_id is not None:
            _native.validate_vm_id(self.vm_id)
        self.vcpu_count = _check_int("vcpu_count", self.vcpu_count)
        if not 1 <= self.vcpu_count <= _native.MAX_VCPUS:
            raise _invalid(
                "vcpu_count",
                f"{self.vcpu_count} vCPUs requested; use 1 to {_native.MAX_VCPUS}",
            )
        self.mem_size_mib = _check_int("mem_size_mib", self.mem_size_mib)
        if self.mem_size_mib < _native.MIN_MEMORY_MIB or self.mem_size_mib > 2**32 - 1:
            raise _invalid(
                "mem_size_mib",
                f"{self.mem_size_mib} MiB requested; use at least {_native.MIN_MEMORY_MIB} MiB "
                "and at most the host's memory",
            )
        self.kernel_path = _check_optional_path("kernel_path", self.kernel_path)
        self.rootfs_path = _check_optional_path("rootfs_path", self.rootfs_path)
        self.boot_args = _check_optional_str("boot_args", self.boot_args)
        if self.boot_args is not None and ("\n" in self.boot_args or "\0" in self.boot_args):
            raise _invalid("boot_args", "must be a single line")
        self.env_vars = check_env_vars("env_vars", self.env_vars)
        self.image = _check_optional_str("image", self.image)
        if self.image is not None and not self.image:
            raise _invalid("image", "the image name is empty; pass a name or None")


#: Bytes of each stream (stdout, stderr) that :meth:`SmolVM.run` keeps by default: 64 MiB.
DEFAULT_MAX_OUTPUT: int = _native.DEFAULT_MAX_OUTPUT


def check_max_output(max_output: Any) -> Optional[int]:
    """Checks a per-stream output cap in bytes (``None`` for no cap)."""
    if max_output is None:
        return None
    if isinstance(max_output, bool) or not isinstance(max_output, int):
        raise TypeError(
            f"max_output must be a number of bytes or None, not {type(max_output).__name__}"
        )
    if max_output < 0:
        raise _invalid("max_output", f"{max_output!r} is negative; use a number of bytes, or None")
    return max_output


def check_timeout(timeout: Any) -> Optional[float]:
    """Checks a command timeout in seconds (``None`` for no limit) and returns it as a float."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number of seconds or None, not {type(timeout).__name__}"
        )
    seconds = float(timeout)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise _invalid(
            "timeout", f"{timeout!r} is not a positive number of seconds; use e.g. 30, or None"
        )
    return seconds
