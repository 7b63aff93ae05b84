"""Entry point of a VM's supervisor process (started by the SDK, not by users).

Each running VM is owned by a small supervisor process that runs QEMU and serves the SDK on
a Unix socket. The Rust SDK normally starts a ``smolvm-supervisor`` binary; the Python
package instead runs this interpreter with :func:`launcher_command`, which imports this
module from the very package that started it and calls into the extension::

    python -I -S -c "<import this module and call main()>" --dir <vm directory>
"""

from __future__ import annotations

import os
import sys
from typing import List, NoReturn, Optional

from smolvm import _native

__all__ = ["launcher_command", "main"]


def launcher_command() -> List[str]:
    """The command line (before ``--dir <vm dir>``) that runs a supervisor.

    ``-I -S`` keep the current directory, ``PYTHON*`` variables and site-packages out of
    the child's import path, and the package's own parent directory is put first, so the
    supervisor always runs the same ``smolvm`` as the program that started the VM.
    """
    executable = sys.executable
    if not executable:
        from smolvm.exceptions import HostError

        raise HostError(
            "cannot start a VM supervisor: sys.executable is empty (embedded Python?); "
            "run SmolVM from a regular Python interpreter"
        )
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import sys; sys.path.insert(0, {!r}); "
        "from smolvm._supervisor import main; main()".format(package_parent)
    )
    return [executable, "-I", "-S", "-c", code]


def main(argv: Optional[List[str]] = None) -> NoReturn:
    """Runs the supervisor for ``--dir <vm directory>`` and exits with its status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "--dir":
        sys.stderr.write(
            "usage: python -m smolvm._supervisor --dir <vm directory>  "
            "(started by the SmolVM SDK)\n"
        )
        sys.exit(2)
    _native.supervisor_main(args[1])
    sys.exit(1)  # supervisor_main never returns


if __name__ == "__main__":
    main()
