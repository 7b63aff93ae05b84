"""Boot arguments and the paths of the guest kernel and images that ``smolvm setup`` built.

The reference examples build a :class:`~smolvm.VMConfig` with explicit ``kernel_path``,
``rootfs_path`` and ``boot_args``; with SmolVM they are written as::

    from smolvm import SmolVM, VMConfig
    from smolvm.build import SSH_BOOT_ARGS, default_kernel_path, default_rootfs_path

    kernel = default_kernel_path()
    rootfs = default_rootfs_path()
    config = VMConfig(kernel_path=kernel, rootfs_path=rootfs, boot_args=SSH_BOOT_ARGS)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from smolvm import _native

__all__ = [
    "SSH_BOOT_ARGS",
    "DEFAULT_BOOT_ARGS",
    "DEFAULT_IMAGE",
    "default_kernel_path",
    "default_rootfs_path",
    "data_dir",
]

#: The kernel command line of the default image. It boots with ``init=/init`` (the SmolVM
#: guest agent), which is what the reference's ``SSH_BOOT_ARGS`` provides for boot-time
#: environment injection; the name is kept for compatibility (no SSH is involved).
DEFAULT_BOOT_ARGS: str = _native.DEFAULT_BOOT_ARGS

#: Alias of :data:`DEFAULT_BOOT_ARGS`, the name the reference examples import.
SSH_BOOT_ARGS: str = DEFAULT_BOOT_ARGS

#: The image used when none is named.
DEFAULT_IMAGE: str = _native.DEFAULT_IMAGE


def default_kernel_path() -> Path:
    """The guest kernel built by ``smolvm setup``.

    Raises:
        ImageError: it has not been built (run ``smolvm setup``).
    """
    return Path(_native.default_kernel_path())


def default_rootfs_path(image: Optional[str] = None) -> Path:
    """The root filesystem (an initramfs ``.cpio`` or an ext4 disk image) of the built image
    called ``image``, by default :data:`DEFAULT_IMAGE`.

    Raises:
        ImageError: the image has not been built (run ``smolvm setup``).
        ValidationError: there is no image called ``image``.
    """
    if image is not None and not isinstance(image, str):
        raise TypeError(f"image must be a str or None, not {type(image).__name__}")
    return Path(_native.default_rootfs_path(image))


def data_dir() -> Path:
    """Where SmolVM keeps its files: ``$SMOLVM_DATA_DIR``, else ``$XDG_STATE_HOME/smolvm``,
    else ``~/.local/state/smolvm``. Each running VM has a directory under ``vms/``."""
    return Path(_native.data_dir())
