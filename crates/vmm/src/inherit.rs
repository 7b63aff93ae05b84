//! Descriptors a child process inherits at fixed numbers.
//!
//! The VMM opens nothing of ours by name: the supervisor opens the files and creates the
//! sockets, and QEMU finds them at the numbers its command line names (`fd=4`,
//! `/dev/fdset/1`, `/proc/self/fd/7`). That keeps working inside a jail that shows none of the
//! data directory, and no socket file exists for another process to connect to.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The most descriptors one child may inherit this way.
const MAX: usize = 16;
/// Descriptors are first moved at or above this number, so that placing one never closes
/// another that still has to be placed.
const SCRATCH_BASE: RawFd = 64;

/// Descriptors to place in a child at fixed numbers.
#[derive(Debug, Default)]
pub struct Inherited {
    fds: Vec<(OwnedFd, RawFd)>,
}

impl Inherited {
    /// Nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `fd` appear as `target` in the child. Returns `target`, for command lines.
    ///
    /// # Panics
    /// When `target` is a standard stream or above the scratch range, or more than 16
    /// descriptors are added: both are programming errors.
    pub fn add(&mut self, fd: OwnedFd, target: RawFd) -> RawFd {
        assert!(
            (3..SCRATCH_BASE).contains(&target),
            "fd {target} out of range"
        );
        assert!(self.fds.len() < MAX, "too many inherited descriptors");
        assert!(
            self.fds.iter().all(|(_, t)| *t != target),
            "fd {target} used twice"
        );
        self.fds.push((fd, target));
        target
    }

    /// The (source, target) pairs, for [`place`]; valid while `self` lives.
    pub fn pairs(&self) -> Vec<(RawFd, RawFd)> {
        self.fds
            .iter()
            .map(|(fd, t)| (fd.as_raw_fd(), *t))
            .collect()
    }
}

/// In the child between `fork` and `exec`: puts each source descriptor at its target number,
/// without close-on-exec. Does not allocate.
///
/// # Safety
/// Only in a forked child; every source must be an open descriptor.
pub unsafe fn place(pairs: &[(RawFd, RawFd)]) -> io::Result<()> {
    let mut scratch = [-1; MAX];
    for (i, (source, _)) in pairs.iter().enumerate().take(MAX) {
        // SAFETY: fcntl on an open descriptor with an integer argument.
        let moved = unsafe { libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, SCRATCH_BASE) };
        if moved == -1 {
            return Err(io::Error::last_os_error());
        }
        scratch[i] = moved;
    }
    let mut highest = 2;
    for (i, (_, target)) in pairs.iter().enumerate().take(MAX) {
        // SAFETY: dup2 of an open descriptor; the new one has close-on-exec clear.
        if unsafe { libc::dup2(scratch[i], *target) } == -1 {
            return Err(io::Error::last_os_error());
        }
        highest = highest.max(*target);
    }
    // Nothing else crosses over: not even a descriptor our own caller leaked to us without
    // close-on-exec. They are marked close-on-exec rather than closed, so that they stay open
    // until the exec itself: one of them is the pipe on which `Command::spawn` learns that
    // the exec failed (closed here, a VMM that cannot be executed looked started).
    for fd in 3..highest {
        if !pairs.iter().any(|(_, t)| *t == fd) {
            // SAFETY: fcntl on a descriptor number in the child; EBADF is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    let (first, flags) = (highest + 1, libc::CLOSE_RANGE_CLOEXEC);
    // SAFETY: close_range with plain integers.
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, flags) } != 0 {
        // Before Linux 5.11 (no CLOSE_RANGE_CLOEXEC): close them, as before.
        // SAFETY: close_range with plain integers, no flags.
        unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    }
    Ok(())
}
