"""Bounds against a hostile or runaway guest: output caps of `run()` and environment
variables too large to exec."""

from __future__ import annotations

import pytest

from smolvm import SmolVM, VMConfig
from smolvm.exceptions import ValidationError
from smolvm.types import DEFAULT_MAX_OUTPUT

# Linux's MAX_ARG_STRLEN: one KEY=value string with its NUL.
MAX_ENTRY = 128 * 1024


def test_run_caps_each_stream_and_flags_it(vm: SmolVM) -> None:
    small = vm.run("echo out; echo err >&2")
    assert (small.stdout, small.stderr) == ("out\n", "err\n")
    assert not small.stdout_truncated and not small.stderr_truncated

    capped = vm.run("head -c 5000 /dev/zero | tr '\\0' a; echo done >&2", max_output=1000)
    assert capped.stdout == "a" * 1000
    assert capped.stdout_truncated
    assert capped.stderr == "done\n" and not capped.stderr_truncated
    assert capped.exit_code == 0

    everything = vm.run("head -c 200000 /dev/zero | tr '\\0' b", max_output=None)
    assert len(everything.stdout) == 200000 and not everything.stdout_truncated
    assert DEFAULT_MAX_OUTPUT == 64 * 1024 * 1024

    with pytest.raises(ValueError):
        vm.run("true", max_output=-1)
    with pytest.raises(TypeError):
        vm.run("true", max_output="big")  # type: ignore[arg-type]


def test_env_value_too_large_to_exec_raises_value_error(vm: SmolVM) -> None:
    vm.set_env_vars({"KEEP": "me"})
    before = vm.list_env_vars()
    with pytest.raises(ValueError, match="Argument list too long") as info:
        vm.set_env_vars({"BIG": "x" * (MAX_ENTRY - len("BIG="))})
    assert isinstance(info.value, ValidationError)
    assert vm.list_env_vars() == before
    assert vm.run("echo ok").output == "ok"

    fits = "y" * (MAX_ENTRY - len("BIG=") - 1)
    vm.set_env_vars({"BIG": fits})
    assert vm.run('printf %s "$BIG" | wc -c').output == str(len(fits))

    # The whole set after the merge must fit the 1 MiB budget.
    with pytest.raises(ValueError):
        vm.set_env_vars({f"V{i}": "v" * (120 * 1024) for i in range(8)})
    assert vm.list_env_vars() == {"KEEP": "me", "BIG": fits}


def test_boot_time_env_vars_are_held_to_the_same_limits() -> None:
    with pytest.raises(ValueError):
        VMConfig(env_vars={"BIG": "x" * MAX_ENTRY})
