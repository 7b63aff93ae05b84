"""Exceptions raised by SmolVM.

Every error the SDK raises is a :class:`SmolVMError`. Its ``message`` is the full
explanation (what happened, to which VM, and what to do about it) and ``details`` holds the
facts it is made of (``vm_id``, ``state``, ``field``...), which the subclasses also expose
as attributes.

Validation failures are :class:`ValidationError`, which is also a :class:`ValueError`, so
``except ValueError`` works as in the reference examples. Command timeouts are
:class:`OperationTimeoutError`, which is also a :class:`TimeoutError`. A file transfer
whose source is missing (on the host or in the guest) raises :class:`SmolVMFileNotFoundError`,
which is also a :class:`FileNotFoundError`.
"""

from __future__ import annotations

import errno
from typing import Any, Dict, Optional

__all__ = [
    "SmolVMError",
    "ValidationError",
    "SmolVMValidationError",
    "VMNotRunningError",
    "VMNotFoundError",
    "SnapshotNotFoundError",
    "VMAlreadyExistsError",
    "OperationTimeoutError",
    "CommandCancelledError",
    "HostError",
    "ImageError",
    "VMStartError",
    "VMConnectionError",
    "GuestError",
    "SmolVMFileNotFoundError",
]


class SmolVMError(Exception):
    """Base class of every SmolVM error.

    Args:
        message: The full, human-readable explanation (also ``str(error)``).
        details: Machine-readable facts about the failure (e.g. ``{"vm_id": ...}``).
    """

    message: str
    details: Dict[str, Any]

    def __init__(self, message: str, details: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.details))

    def _detail(self, key: str) -> Optional[str]:
        value = self.details.get(key)
        return None if value is None else str(value)


class ValidationError(SmolVMError, ValueError):
    """An argument or configuration value was refused; nothing was changed.

    ``field`` names the offending field (``vm_id``, ``mem_size_mib``, ``env_vars``...);
    ``key`` is the environment variable concerned, when there is one.
    """

    @property
    def field(self) -> Optional[str]:
        """The field or argument that was refused."""
        return self._detail("field")

    @property
    def key(self) -> Optional[str]:
        """The environment variable key concerned, if any."""
        return self._detail("key")


#: Alias of :class:`ValidationError`.
SmolVMValidationError = ValidationError


class VMNotRunningError(SmolVMError):
    """The operation needs a running VM, and this one is not running.

    The message reads like ``Cannot manage environment variables: VM is stopped (VM vm-1a2b)``.
    """

    @property
    def vm_id(self) -> Optional[str]:
        """The VM's id."""
        return self._detail("vm_id")

    @property
    def state(self) -> Optional[str]:
        """The VM's state: ``created``, ``paused``, ``stopped`` or ``deleted``."""
        return self._detail("state")

    @property
    def action(self) -> Optional[str]:
        """What was attempted, e.g. ``Cannot run command``."""
        return self._detail("action")


class VMNotFoundError(SmolVMError):
    """No VM with the given id exists."""

    @property
    def vm_id(self) -> Optional[str]:
        """The id that was looked for."""
        return self._detail("vm_id")


class SnapshotNotFoundError(VMNotFoundError):
    """No snapshot with the given id exists; the message lists those that do.

    A subclass of :class:`VMNotFoundError`, so that ``except VMNotFoundError`` catches
    every unknown name; ``vm_id`` is then ``None`` and ``snapshot_id`` is the id looked for.
    """

    @property
    def snapshot_id(self) -> Optional[str]:
        """The snapshot id that was looked for."""
        return self._detail("snapshot_id")


class VMAlreadyExistsError(SmolVMError):
    """A VM with the requested id already exists on this host."""

    @property
    def field(self) -> Optional[str]:
        """Always ``vm_id``."""
        return self._detail("field")


class OperationTimeoutError(SmolVMError, TimeoutError):
    """A command ran past its timeout; its whole process group was killed. The VM goes on."""

    def __init__(self, message: str, details: Optional[Dict[str, Any]] = None) -> None:
        SmolVMError.__init__(self, message, details)

    @property
    def command(self) -> Optional[str]:
        """The command line that timed out."""
        return self._detail("command")

    @property
    def timeout_seconds(self) -> Optional[float]:
        """The limit that passed, in seconds."""
        value = self.details.get("timeout_seconds")
        return None if value is None else float(value)

    @property
    def vm_id(self) -> Optional[str]:
        """The VM's id."""
        return self._detail("vm_id")


class CommandCancelledError(SmolVMError):
    """A command was cancelled and killed."""


class HostError(SmolVMError):
    """The host lacks something SmolVM needs (QEMU, a program or file)."""


class ImageError(SmolVMError):
    """The guest kernel or image is missing; run ``smolvm setup`` to build them."""

    @property
    def path(self) -> Optional[str]:
        """Where the file was expected."""
        return self._detail("path")


class VMStartError(SmolVMError):
    """The VM failed to boot; the message ends with what QEMU or the console reported."""


class VMConnectionError(SmolVMError):
    """The connection to the VM broke (it stopped or crashed)."""


class GuestError(SmolVMError):
    """The guest agent refused or failed a request; ``kind`` says how."""

    @property
    def kind(self) -> Optional[str]:
        """Class of failure (``not_found``, ``spawn``, ``io``, ``internal``...)."""
        return self._detail("kind")


class SmolVMFileNotFoundError(SmolVMError, FileNotFoundError):
    """A file or directory to transfer does not exist, on the host or in the guest.

    Also a :class:`FileNotFoundError` (``errno`` is ``ENOENT``, ``filename`` the path), so
    ``except FileNotFoundError`` and ``except OSError`` catch it. ``location`` says on which
    side the path was looked for.
    """

    def __init__(self, message: str, details: Optional[Dict[str, Any]] = None) -> None:
        SmolVMError.__init__(self, message, details)
        self.errno = errno.ENOENT
        self.strerror = message
        self.filename = self.path

    @property
    def path(self) -> Optional[str]:
        """The path that was not found."""
        return self._detail("path")

    @property
    def location(self) -> Optional[str]:
        """``"host"`` or ``"guest"``: where the path was looked for."""
        return self._detail("location")

    @property
    def vm_id(self) -> Optional[str]:
        """The VM's id, for a path in the guest."""
        return self._detail("vm_id")
