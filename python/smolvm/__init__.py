"""SmolVM: disposable, hardware-isolated microVM sandboxes for AI agents.

Code an agent generates runs inside a QEMU microVM, never on the host::

    from smolvm import SmolVM

    with SmolVM() as vm:
        vm.set_env_vars({"API_KEY": "secret-123"})
        result = vm.run("echo $API_KEY")
        print(result.output)  # secret-123

The host must have run ``smolvm setup`` once (it builds the guest kernel and image).
Bindings over the SmolVM Rust SDK; see :class:`SmolVM`, :class:`VMConfig`,
:class:`CommandStream`, :class:`Snapshot`, :mod:`smolvm.build` and :mod:`smolvm.exceptions`.
"""

from smolvm import _native
from smolvm.exceptions import (
    CommandCancelledError,
    GuestError,
    HostError,
    ImageError,
    OperationTimeoutError,
    SmolVMError,
    SmolVMFileNotFoundError,
    SmolVMValidationError,
    SnapshotNotFoundError,
    ValidationError,
    VMAlreadyExistsError,
    VMConnectionError,
    VMNotFoundError,
    VMNotRunningError,
    VMStartError,
)
from smolvm.facade import SmolVM, delete_snapshot, list_snapshots
from smolvm.stream import CommandStream
from smolvm.types import CommandResult, Snapshot, VMConfig, VMState

#: The package version.
__version__: str = _native.__version__

__all__ = [
    "SmolVM",
    "VMConfig",
    "CommandResult",
    "CommandStream",
    "VMState",
    "Snapshot",
    "list_snapshots",
    "delete_snapshot",
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
