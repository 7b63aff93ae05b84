//! Thin wrappers over the few raw system calls the agent needs.

use std::ffi::CString;
use std::io;

/// Turns a `-1` return into the current `errno`.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `mount(2)`, ignoring "already mounted".
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let _ = std::fs::create_dir_all(target);
    let c = |s: &str| CString::new(s).expect("no NUL in mount arguments");
    let (source, target, fstype, data) = (c(source), c(target), c(fstype), c(data));
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    match check(ret) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Flushes every filesystem and resets the machine. With `reboot=t` on the kernel command line
/// and QEMU's `-no-reboot`, the reset makes QEMU exit: the cleanest and fastest power-off on
/// an ACPI-less microvm.
pub fn reboot_now() -> ! {
    // SAFETY: sync and reboot take no pointers; reboot only returns on failure.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    std::process::exit(1)
}

/// Sends `signal` to every process of process group `pgid`.
pub fn kill_group(pgid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(-pgid, signal) }).map(|_| ())
}

/// Sets the wall clock (CLOCK_REALTIME) to `ns` since the Unix epoch.
pub fn set_clock(ns: u64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec for the duration of the call.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) }).map(|_| ())
}

/// Milliseconds since boot (CLOCK_BOOTTIME).
pub fn uptime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFL))?;
        check(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Mixes `seed` into the kernel's entropy pool, crediting it, then forces the kernel's random
/// generator to reseed from the pool at once (rather than at its next periodic reseed), so
/// that every number drawn afterwards depends on `seed`.
pub fn reseed_rng(seed: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let random = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + seed.len());
    info.extend_from_slice(&((seed.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(seed.len() as i32).to_ne_bytes());
    info.extend_from_slice(seed);
    // SAFETY: `info` is a valid rand_pool_info whose buf_size matches the bytes that follow;
    // the kernel only reads it.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY as _, info.as_ptr()) })?;
    // SAFETY: an ioctl without argument on a descriptor we own.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG as _) })?;
    Ok(())
}

/// Sets the hostname (UTS namespace of PID 1, which every process of the guest shares).
pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(|_| ())
}
