//! PID 1 duties at boot: the filesystems every program expects, and the hostname.

use crate::sys;

/// Mounts proc, sys, dev, devpts, shm, /tmp and /run and sets the hostname given on the kernel
/// command line (`smolvm.hostname=`). An initramfs gets none of these from the kernel
/// (`CONFIG_DEVTMPFS_MOUNT` only applies to a disk root), so PID 1 must do it.
pub fn prepare_guest() {
    let nodev = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let mounts: [(&str, &str, &str, libc::c_ulong, &str); 7] = [
        ("proc", "/proc", "proc", nodev, ""),
        ("sysfs", "/sys", "sysfs", nodev, ""),
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "gid=5,mode=0620,ptmxmode=0666",
        ),
        (
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=0755",
        ),
    ];
    for (source, target, fstype, flags, data) in mounts {
        if let Err(e) = sys::mount(source, target, fstype, flags, data) {
            eprintln!("smolvm-agent: mount {target}: {e}");
        }
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    if let Some(name) = cmdline_value("smolvm.hostname") {
        // SAFETY: the pointer and length describe `name`'s bytes.
        unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    }
}

fn cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

/// The value of `key=value` on the kernel command line.
pub fn cmdline_value(key: &str) -> Option<String> {
    cmdline()
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

/// Whether `key` (or `key=1`) is on the kernel command line.
pub fn cmdline_flag(key: &str) -> bool {
    cmdline()
        .split_whitespace()
        .any(|arg| arg == key || arg == format!("{key}=1"))
}
