"""Argument checking, exceptions and their messages, return types, and the public surface."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import pytest

import smolvm
import smolvm.build
import smolvm.exceptions
import smolvm.stream
import smolvm.types
from smolvm import CommandResult, SmolVM, VMConfig, VMState
from smolvm.exceptions import (
    HostError,
    ImageError,
    OperationTimeoutError,
    SmolVMError,
    SmolVMValidationError,
    ValidationError,
    VMNotFoundError,
    VMNotRunningError,
)

# -- VMConfig ---------------------------------------------------------------------------------


def test_config_defaults():
    config = VMConfig()
    assert (config.vm_id, config.vcpu_count, config.mem_size_mib) == (None, 1, 512)
    assert (config.kernel_path, config.rootfs_path, config.boot_args) == (None, None, None)
    assert config.env_vars == {} and config.image is None
    assert VMConfig(kernel_path="/k").kernel_path == Path("/k")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"vm_id": "Bad_Id"}, "vm_id"),
        ({"vm_id": ""}, "vm_id"),
        ({"vm_id": "x" * 64}, "vm_id"),
        ({"vcpu_count": 0}, "vcpu_count"),
        ({"vcpu_count": 65}, "vcpu_count"),
        ({"mem_size_mib": 32}, "mem_size_mib"),
        ({"mem_size_mib": -1}, "mem_size_mib"),
        ({"boot_args": "a\nb"}, "boot_args"),
        ({"env_vars": {"has-dash": "x"}}, "env_vars"),
        ({"env_vars": {"NUL": "a\0b"}}, "env_vars"),
        ({"kernel_path": ""}, "kernel_path"),
        ({"image": ""}, "image"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValidationError) as info:
        VMConfig(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SmolVMError)
    assert info.value.field == field
    assert field in str(info.value) or "environment variable" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"vcpu_count": "2"}, "vcpu_count must be an int, not str"),
        ({"vcpu_count": True}, "vcpu_count must be an int, not bool"),
        ({"mem_size_mib": 512.0}, "mem_size_mib must be an int, not float"),
        ({"vm_id": 7}, "vm_id must be a str or None, not int"),
        ({"kernel_path": 3}, "kernel_path must be a str, a pathlib.Path or None, not int"),
        ({"env_vars": ["A"]}, "env_vars must be a dict of str to str"),
        ({"env_vars": {"A": 1}}, "the value of 'A' must be a str, not int"),
        ({"env_vars": {1: "a"}}, "keys must be str, not int"),
    ],
)
def test_config_type_errors(kwargs, needle):
    with pytest.raises(TypeError, match=needle):
        VMConfig(**kwargs)


def test_missing_files_and_host_limits_are_refused_when_the_vm_is_made(tmp_path):
    with pytest.raises(ValidationError, match="kernel_path not found at") as info:
        SmolVM(VMConfig(kernel_path=tmp_path / "nope"))
    assert info.value.field == "kernel_path"
    with pytest.raises(ValidationError, match="rootfs_path not found at") as info:
        SmolVM(VMConfig(rootfs_path=tmp_path / "nope.cpio"))
    assert info.value.field == "rootfs_path"
    with pytest.raises(ValidationError, match="mem_size_mib") as info:
        SmolVM(VMConfig(mem_size_mib=2**31))
    assert "host's" in str(info.value) and info.value.field == "mem_size_mib"
    with pytest.raises(ValidationError, match='unknown image "nope"'):
        SmolVM(VMConfig(image="nope"))


def test_a_config_changed_after_it_was_made_is_checked_again():
    config = VMConfig()
    config.vcpu_count = 0
    with pytest.raises(ValidationError, match="vcpu_count"):
        SmolVM(config)
    config.vcpu_count = "1"  # type: ignore[assignment]
    with pytest.raises(TypeError, match="vcpu_count must be an int"):
        SmolVM(config)


def test_smolvm_refuses_other_arguments():
    with pytest.raises(TypeError, match="SmolVM\\(\\) takes a VMConfig or nothing, not dict"):
        SmolVM({"vcpu_count": 1})


def test_from_id_of_an_unknown_sandbox():
    with pytest.raises(VMNotFoundError, match='^no sandbox named "my-sandbox"') as info:
        SmolVM.from_id("my-sandbox")
    assert info.value.vm_id == "my-sandbox"
    with pytest.raises(TypeError, match="vm_id must be a str"):
        SmolVM.from_id(3)  # type: ignore[arg-type]


# -- arguments of a VM's methods (checked before the VM is asked anything) ------------------


@pytest.fixture(scope="module")
def idle():
    """A VM that is never started: argument errors come before the state check."""
    vm = SmolVM()
    yield vm
    vm.delete()


@pytest.mark.parametrize(
    "call, exc, needle",
    [
        (lambda vm: vm.set_env_vars(["A"]), TypeError, "env_vars must be a dict of str to str"),
        (lambda vm: vm.set_env_vars({"A": 1}), TypeError, "the value of 'A' must be a str, not int"),
        (lambda vm: vm.set_env_vars({"A": None}), TypeError, "must be a str, not NoneType"),
        (lambda vm: vm.set_env_vars({b"A": "x"}), TypeError, "keys must be str, not bytes"),
        (lambda vm: vm.set_env_vars({"A": "1"}, merge="yes"), TypeError, "merge must be a bool"),
        (lambda vm: vm.set_env_vars({"1A": "x"}), ValueError, "Invalid environment variable key"),
        (lambda vm: vm.set_env_vars({"A": "x\0"}), ValueError, "cannot contain NUL"),
        (lambda vm: vm.unset_env_vars("DEBUG"), TypeError, "expects a list of variable names"),
        (lambda vm: vm.unset_env_vars([1]), TypeError, "variable names must be str, not int"),
        (lambda vm: vm.unset_env_vars(["bad-key"]), ValueError, "Invalid environment variable key"),
        (lambda vm: vm.run(["echo", "hi"]), TypeError, "command must be a str, not list"),
        (lambda vm: vm.run("true", shell="bash"), ValueError, "shell must be \"login\" or \"raw\", not 'bash'"),
        (lambda vm: vm.run("true", shell=None), ValueError, "shell must be"),
        (lambda vm: vm.run("true", timeout=0), ValueError, "not a positive number of seconds"),
        (lambda vm: vm.run("true", timeout=-1), ValueError, "not a positive number of seconds"),
        (lambda vm: vm.run("true", timeout=float("inf")), ValueError, "positive number"),
        (lambda vm: vm.run("true", timeout="30"), TypeError, "timeout must be a number of seconds"),
        (lambda vm: vm.run("true", env={"bad-key": "x"}), ValueError, "Invalid environment"),
        (lambda vm: vm.run("true", cwd=1), TypeError, "cwd must be a str or None"),
    ],
)
def test_bad_arguments(idle, call, exc, needle):
    with pytest.raises(exc) as info:
        call(idle)
    assert needle in str(info.value)
    assert idle.status == "created"


def test_validation_error_details():
    with pytest.raises(ValidationError) as info:
        VMConfig(env_vars={"has-dash": "v"})
    err = info.value
    assert (err.field, err.key) == ("env_vars", "has-dash")
    assert err.message == str(err) and err.details["key"] == "has-dash"
    assert SmolVMValidationError is ValidationError


def test_exceptions_pickle_with_details():
    err = OperationTimeoutError("command timed out", {"command": "x", "timeout_seconds": 1.0})
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is OperationTimeoutError
    assert (str(copy), copy.command, copy.timeout_seconds) == ("command timed out", "x", 1.0)


def test_exception_hierarchy():
    for name in smolvm.exceptions.__all__:
        cls = getattr(smolvm.exceptions, name)
        assert issubclass(cls, SmolVMError), name
    assert issubclass(ValidationError, ValueError)
    assert issubclass(OperationTimeoutError, TimeoutError)
    assert not issubclass(VMNotRunningError, ValueError)
    assert issubclass(smolvm.SmolVMFileNotFoundError, FileNotFoundError)


def test_file_not_found_error_is_an_os_error():
    err = smolvm.SmolVMFileNotFoundError(
        "no such file on the host: /x", {"path": "/x", "location": "host"}
    )
    assert (err.errno, err.filename, err.path, err.location) == (2, "/x", "/x", "host")
    assert str(err) == "no such file on the host: /x"
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is smolvm.SmolVMFileNotFoundError and copy.filename == "/x"


# -- smolvm.build -----------------------------------------------------------------------------


def test_default_paths_exist():
    kernel, rootfs = smolvm.build.default_kernel_path(), smolvm.build.default_rootfs_path()
    assert isinstance(kernel, Path) and kernel.is_file()
    assert isinstance(rootfs, Path) and rootfs.is_file()
    assert smolvm.build.default_rootfs_path(smolvm.build.DEFAULT_IMAGE) == rootfs
    assert smolvm.build.default_rootfs_path(None) == rootfs
    assert isinstance(smolvm.build.SSH_BOOT_ARGS, str)
    assert "init=/init" in smolvm.build.SSH_BOOT_ARGS.split()
    with pytest.raises(ValidationError, match="unknown image"):
        smolvm.build.default_rootfs_path("does-not-exist")


def test_missing_setup_is_an_image_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SMOLVM_DATA_DIR", str(tmp_path))
    assert smolvm.build.data_dir() == tmp_path
    with pytest.raises(ImageError, match="smolvm setup") as info:
        smolvm.build.default_kernel_path()
    assert info.value.path == str(tmp_path / "kernel" / "vmlinux")
    with pytest.raises(ImageError, match="smolvm setup"):
        smolvm.build.default_rootfs_path()
    with pytest.raises(ImageError, match="guest kernel not found"):
        SmolVM()


def test_missing_qemu_is_a_host_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SMOLVM_QEMU", str(tmp_path / "no-qemu"))
    with pytest.raises(HostError, match="qemu-system-x86_64 is not installed"):
        SmolVM()


# -- results and return types -----------------------------------------------------------------


def test_command_result():
    r = CommandResult(exit_code=0, stdout="  hi\n\n", stderr="")
    assert (r.output, r.ok) == ("hi", True)
    assert not CommandResult(exit_code=1, stdout="", stderr="").ok
    with pytest.raises(AttributeError):
        r.exit_code = 3  # type: ignore[misc]


def test_return_types(vm):
    assert type(vm.set_env_vars({"B": "2", "A": "1"})) is list
    assert vm.set_env_vars({}) == ["A", "B"]  # the names present, unlike the reference
    env = vm.list_env_vars()
    assert type(env) is dict and all(type(k) is str and type(v) is str for k, v in env.items())
    removed = vm.unset_env_vars(["A", "NOPE"])
    assert type(removed) is dict and removed == {"A": "1"}
    assert vm.unset_env_vars(()) == {}

    r = vm.run("echo out; echo err >&2; exit 3")
    assert type(r) is CommandResult
    assert (type(r.exit_code), type(r.stdout), type(r.stderr)) == (int, str, str)
    assert (r.exit_code, r.stdout, r.stderr, r.output, r.ok) == (3, "out\n", "err\n", "out", False)
    assert type(r.output) is str and type(r.ok) is bool
    assert vm.run("true").ok is True
    assert isinstance(vm.status, VMState) and type(vm.vm_id) is str
    assert vm.run("kill -9 $$").exit_code == 137
    # Output that is not UTF-8 is decoded with replacement characters.
    assert vm.run(r"printf '\377ok'").stdout == "\ufffdok"
    assert vm.run("printf 'h\\303\\251'").stdout == "hé"


def test_run_options(vm):
    assert vm.run("pwd").output == "/root"
    assert vm.run("pwd", cwd="/tmp").output == "/tmp"
    assert vm.run("echo $ONE_OFF", env={"ONE_OFF": "x y"}).output == "x y"
    assert vm.run("echo ${ONE_OFF:-unset}").output == "unset"
    assert vm.run("echo raw", 10, "raw").output == "raw"  # positional timeout and shell
    assert vm.run("true", 2.5).ok
    with pytest.raises(ValidationError, match="command is empty") as info:
        vm.run("   ")
    assert info.value.field == "command"


# -- documentation and typing -----------------------------------------------------------------


def public_objects():
    modules = [smolvm, smolvm.build, smolvm.exceptions, smolvm.stream, smolvm.types]
    for module in modules:
        assert module.__doc__, module.__name__
        for name in getattr(module, "__all__", []):
            yield f"{module.__name__}.{name}", getattr(module, name)


def test_every_public_name_is_documented():
    missing = []
    for qualname, obj in public_objects():
        if isinstance(obj, (str, bool, int)):
            continue  # constants are documented with #: comments in the source
        if not inspect.getdoc(obj):
            missing.append(qualname)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (callable(member) or isinstance(member, property)):
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{qualname}.{attr}")
    assert not missing


def test_package_ships_type_information():
    package = Path(smolvm.__file__).parent
    assert (package / "py.typed").is_file()
    stub = (package / "_native.pyi").read_text()
    for name in ("class Vm", "class Process", "def supervisor_main", "def default_kernel_path",
                 "DEFAULT_BOOT_ARGS"):
        assert name in stub
    native = smolvm._native
    for name in ("Vm", "Process", "supervisor_main", "default_kernel_path", "default_rootfs_path",
                 "validate_env_key", "validate_vm_id", "data_dir", "invalid"):
        assert f"def {name}" in stub or f"class {name}" in stub
        assert hasattr(native, name)
