"""Files in and out of a VM: single files, bytes, whole trees, and their errors."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from smolvm import SmolVM, SmolVMFileNotFoundError
from smolvm.exceptions import SmolVMError, ValidationError, VMNotRunningError


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def guest_sha256(vm: SmolVM, path: str) -> str:
    result = vm.run(f"sha256sum {path}", timeout=120)
    assert result.ok, result.stderr
    return result.stdout.split()[0]


def guest_mode(vm: SmolVM, path: str) -> int:
    result = vm.run(f"stat -c %a {path}")
    assert result.ok, result.stderr
    return int(result.output, 8)


def random_file(path: Path, size: int, mode: int = 0o644) -> Path:
    path.write_bytes(os.urandom(size))
    path.chmod(mode)
    return path


@pytest.mark.parametrize("size", [4096, 10 << 20], ids=["4KiB", "10MiB"])
def test_upload_and_download_round_trip(vm, tmp_path, size):
    local = random_file(tmp_path / "data.bin", size)
    assert vm.upload_file(local, "/root/data.bin") == "/root/data.bin"
    assert guest_sha256(vm, "/root/data.bin") == sha256(local)
    back = vm.download_file("/root/data.bin", str(tmp_path / "back.bin"))
    assert back == str(tmp_path / "back.bin")
    assert isinstance(back, str)
    assert sha256(Path(back)) == sha256(local)
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.bin", "data.bin"]


def test_modes_are_kept_both_ways(vm, tmp_path):
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho tool ran\n")
    script.chmod(0o751)
    assert vm.upload_file(script, "/opt/bin/tool.sh") == "/opt/bin/tool.sh"  # parents made
    assert guest_mode(vm, "/opt/bin/tool.sh") == 0o751
    assert vm.run("/opt/bin/tool.sh").output == "tool ran"
    assert vm.run("chmod 600 /opt/bin/tool.sh").ok
    back = Path(vm.download_file("/opt/bin/tool.sh", tmp_path / "out" / "tool.sh"))
    assert stat.S_IMODE(back.stat().st_mode) == 0o600
    assert back.read_text() == "#!/bin/sh\necho tool ran\n"


def test_a_directory_target_appends_the_file_name(vm, tmp_path):
    local = random_file(tmp_path / "notes.txt", 100)
    assert vm.run("mkdir -p /srv/existing").ok
    assert vm.upload_file(local, "/srv/existing") == "/srv/existing/notes.txt"
    assert vm.upload_file(str(local), "/srv/fresh/") == "/srv/fresh/notes.txt"
    assert guest_sha256(vm, "/srv/fresh/notes.txt") == sha256(local)
    target = tmp_path / "downloads"
    target.mkdir()
    got = vm.download_file("/srv/existing/notes.txt", target)
    assert got == str(target / "notes.txt") and sha256(Path(got)) == sha256(local)
    got = vm.download_file("/srv/fresh/notes.txt", f"{tmp_path}/new-dir/")
    assert got == str(tmp_path / "new-dir" / "notes.txt")
    assert sha256(Path(got)) == sha256(local)


def test_write_and_read_bytes(vm):
    data = bytes(range(256)) * 64 + b"\0tail"
    vm.write_file("/tmp/deep/er/blob", data)
    assert vm.read_file("/tmp/deep/er/blob") == data
    assert guest_mode(vm, "/tmp/deep/er/blob") == 0o644
    vm.write_file("/tmp/run.sh", "#!/bin/sh\necho hi\n", mode=0o700)
    assert guest_mode(vm, "/tmp/run.sh") == 0o700
    assert vm.run("/tmp/run.sh").output == "hi"
    vm.write_file("/tmp/empty", b"")
    assert vm.read_file("/tmp/empty") == b""
    vm.write_file("/tmp/deep/er/blob", bytearray(b"replaced"))
    assert vm.read_file("/tmp/deep/er/blob") == b"replaced"


def make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "top.txt").write_text("top\n")
    (root / "sub" / "run.sh").write_text("#!/bin/sh\necho from tree\n")
    (root / "sub" / "run.sh").chmod(0o755)
    (root / "sub" / "deeper" / "data.bin").write_bytes(os.urandom(300_000))
    (root / "sub" / "secret").write_text("s")
    (root / "sub" / "secret").chmod(0o600)
    (root / "sub" / "link").symlink_to("run.sh")


def describe_tree(root: Path) -> dict:
    """Relative path -> (kind, mode, content hash or link target)."""
    out: dict = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", stat.S_IMODE(path.stat().st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(path.stat().st_mode), sha256(path))
    return out


def test_tree_upload_and_download(vm, tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    vm.upload_dir(src, "/srv/tree")
    listing = vm.run("cd /srv/tree && find . | sort").stdout.split()
    assert listing == [
        ".",
        "./sub",
        "./sub/deeper",
        "./sub/deeper/data.bin",
        "./sub/link",
        "./sub/run.sh",
        "./sub/secret",
        "./top.txt",
    ]
    assert vm.run("/srv/tree/sub/link").output == "from tree"
    assert guest_mode(vm, "/srv/tree/sub/secret") == 0o600
    assert guest_sha256(vm, "/srv/tree/sub/deeper/data.bin") == sha256(
        src / "sub" / "deeper" / "data.bin"
    )
    dest = tmp_path / "dest"
    vm.download_dir("/srv/tree", str(dest))
    assert describe_tree(dest) == describe_tree(src)


def test_download_dir_never_merges_and_drops_setuid(vm, tmp_path):
    vm.run("rm -rf /srv/s && mkdir -p /srv/s && cp /bin/true /srv/s/tool && chmod 6755 /srv/s/tool")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("mine")
    with pytest.raises(ValidationError) as info:
        vm.download_dir("/srv/s", home)
    assert info.value.details["rule"] == "destination_not_empty"
    assert (home / ".bashrc").read_text() == "mine"
    assert vm.download_dir("/srv/s", home, overwrite=True) == str(home.resolve())
    assert not (home / ".bashrc").exists()
    assert stat.S_IMODE((home / "tool").stat().st_mode) == 0o755
    kept = vm.download_file("/srv/s/tool", tmp_path / "kept", keep_special_bits=True)
    assert stat.S_IMODE(Path(kept).stat().st_mode) == 0o6755
    vm.run("ln -s ../../etc /srv/s/escape")
    with pytest.raises(ValidationError) as info:
        vm.download_dir("/srv/s", tmp_path / "fresh")
    assert info.value.details["rule"] == "unsafe_tree"
    assert not (tmp_path / "fresh").exists()


def test_missing_local_file(vm, tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError) as info:
        vm.upload_file(missing, "/root/nope.txt")
    err = info.value
    assert isinstance(err, SmolVMFileNotFoundError) and isinstance(err, SmolVMError)
    assert (err.location, err.path, err.filename) == ("host", str(missing), str(missing))
    assert str(missing) in str(err)
    with pytest.raises(SmolVMFileNotFoundError) as info:
        vm.upload_dir(tmp_path / "no-dir", "/root/x")
    assert info.value.location == "host"


def test_missing_guest_file(vm, tmp_path):
    with pytest.raises(SmolVMFileNotFoundError) as info:
        vm.download_file("/root/absent.txt", tmp_path / "x")
    err = info.value
    assert isinstance(err, FileNotFoundError)
    assert (err.location, err.path, err.vm_id) == ("guest", "/root/absent.txt", vm.vm_id)
    assert "/root/absent.txt" in str(err)
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        vm.read_file("/root/absent.txt")
    with pytest.raises(FileNotFoundError):
        vm.download_dir("/root/absent-dir", tmp_path / "d")


@pytest.mark.parametrize(
    "call",
    [
        lambda vm, tmp: vm.upload_file(tmp / "f", "root/f"),
        lambda vm, tmp: vm.download_file("relative/f", tmp / "f"),
        lambda vm, tmp: vm.write_file("f", b"x"),
        lambda vm, tmp: vm.read_file("./f"),
        lambda vm, tmp: vm.upload_dir(tmp, "srv"),
        lambda vm, tmp: vm.download_dir("", tmp / "d"),
    ],
    ids=["upload_file", "download_file", "write_file", "read_file", "upload_dir", "download_dir"],
)
def test_relative_guest_paths_are_refused(vm, tmp_path, call):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError) as info:
        call(vm, tmp_path)
    assert isinstance(info.value, ValidationError)
    assert "not an absolute guest path" in str(info.value)


def test_bad_file_arguments(vm, tmp_path):
    with pytest.raises(TypeError, match="local_path must be a str or an os.PathLike"):
        vm.upload_file(3, "/root/x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="guest_path must be a str"):
        vm.download_file(Path("/root/x"), tmp_path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be bytes or str"):
        vm.write_file("/root/x", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode must be permission bits"):
        vm.write_file("/root/x", b"", mode=0o10000)
    with pytest.raises(ValidationError, match="not a regular file"):
        vm.upload_file(tmp_path, "/root/x")
    with pytest.raises(ValidationError, match="local_path"):
        vm.upload_file("", "/root/x")


def test_files_need_a_running_vm(tmp_path):
    local = random_file(tmp_path / "f", 10)
    vm = SmolVM()
    try:
        with pytest.raises(VMNotRunningError, match="Cannot transfer files"):
            vm.upload_file(local, "/root/f")
        with pytest.raises(VMNotRunningError):
            vm.read_file("/root/f")
    finally:
        vm.delete()
