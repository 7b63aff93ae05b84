"""Type stubs of the ``smolvm._native`` extension (PyO3 bindings over the Rust SDK).

Internal: use :class:`smolvm.SmolVM` and friends instead.
"""

from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple, final

from typing_extensions import Self

from smolvm.exceptions import ValidationError

__all__ = [
    "DEFAULT_BOOT_ARGS",
    "DEFAULT_IMAGE",
    "DEFAULT_MAX_OUTPUT",
    "MAX_ENV_ENTRY_BYTES",
    "MAX_ENV_TOTAL_BYTES",
    "MAX_VCPUS",
    "MIN_MEMORY_MIB",
    "__version__",
    "Process",
    "Vm",
    "data_dir",
    "default_kernel_path",
    "default_rootfs_path",
    "delete_snapshot",
    "invalid",
    "list_snapshots",
    "supervisor_main",
    "validate_env_key",
    "validate_env_value",
    "validate_vm_id",
]

__version__: str
DEFAULT_BOOT_ARGS: str
DEFAULT_IMAGE: str
DEFAULT_MAX_OUTPUT: int
MAX_ENV_ENTRY_BYTES: int
MAX_ENV_TOTAL_BYTES: int
MAX_VCPUS: int
MIN_MEMORY_MIB: int

#: ``(id, source_vm, image, created_at, memory_bytes, disk_bytes, save_ms)``, ``created_at``
#: in seconds since the Unix epoch.
_SnapshotTuple = Tuple[str, str, str, int, int, int, int]

@final
class Vm:
    """The SDK's VM handle; every blocking call releases the GIL."""

    def __new__(
        cls,
        *,
        vm_id: Optional[str],
        vcpu_count: int,
        mem_size_mib: int,
        kernel_path: Optional[str],
        rootfs_path: Optional[str],
        boot_args: Optional[str],
        env_vars: Dict[str, str],
        image: Optional[str],
        launcher: Sequence[str],
        cold: bool = False,
    ) -> Self: ...
    @staticmethod
    def restore(snapshot_id: str, name: Optional[str], launcher: Sequence[str]) -> Vm: ...
    @staticmethod
    def attach(name: str, launcher: Sequence[str]) -> Vm: ...
    @property
    def config(
        self,
    ) -> Tuple[str, int, int, Path, Path, str, Dict[str, str], str]: ...
    @property
    def persistent(self) -> bool: ...
    @property
    def vm_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def vm_dir(self) -> Path: ...
    def host_pids(self) -> Tuple[int, int]: ...
    def start(self) -> None: ...
    def run(
        self,
        command: str,
        timeout: Optional[float],
        shell: str,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        max_output: Optional[int] = ...,
    ) -> Tuple[int, str, str, bool, bool]: ...
    def spawn(
        self,
        command: str,
        timeout: Optional[float],
        shell: str,
        stdin: bool,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> Process: ...
    def upload_file(self, local: str, guest_path: str) -> str: ...
    def download_file(
        self,
        guest_path: str,
        local: str,
        keep_special_bits: bool = ...,
        max_bytes: Optional[int] = ...,
        idle_timeout: Optional[float] = ...,
        timeout: Optional[float] = ...,
    ) -> str: ...
    def write_file(self, guest_path: str, data: bytes, mode: int) -> None: ...
    def read_file(self, guest_path: str) -> bytes: ...
    def upload_dir(self, local: str, guest_dir: str) -> None: ...
    def download_dir(
        self,
        guest_dir: str,
        local: str,
        overwrite: bool = ...,
        keep_special_bits: bool = ...,
        max_bytes: Optional[int] = ...,
        max_entries: Optional[int] = ...,
        idle_timeout: Optional[float] = ...,
        timeout: Optional[float] = ...,
    ) -> str: ...
    def set_env_vars(self, vars: Dict[str, str], merge: bool) -> List[str]: ...
    def list_env_vars(self) -> Dict[str, str]: ...
    def unset_env_vars(self, keys: List[str]) -> Dict[str, str]: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def snapshot(self, id: Optional[str], keep_paused: bool) -> _SnapshotTuple: ...
    def stop(self) -> None: ...
    def delete(self) -> None: ...

@final
class Process:
    """A command started by :meth:`Vm.spawn`; killed when dropped unfinished."""

    @property
    def command(self) -> str: ...
    @property
    def exit_code(self) -> Optional[int]: ...
    @property
    def finished(self) -> bool: ...
    def next_event(self) -> Optional[Tuple[Literal["stdout", "stderr"], bytes]]: ...
    def write_stdin(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def send_signal(self, signum: int) -> None: ...
    def close(self) -> None: ...

def list_snapshots() -> List[_SnapshotTuple]: ...
def delete_snapshot(snapshot_id: str) -> _SnapshotTuple: ...
def supervisor_main(dir: str) -> None: ...
def data_dir() -> Path: ...
def default_kernel_path() -> Path: ...
def default_rootfs_path(image: Optional[str] = None) -> Path: ...
def validate_env_key(key: str) -> None: ...
def validate_env_value(key: str, value: str) -> None: ...
def validate_vm_id(vm_id: str) -> None: ...
def invalid(field: str, reason: str) -> ValidationError: ...
