//! Pipes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// A new pipe, `(read end, write end)`, both close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    crate::check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Asks for a pipe buffer of `bytes` (`F_SETPIPE_SZ`) on either end of a pipe; returns the
/// size the kernel granted (a power of two pages, at least `bytes`). An unprivileged process
/// cannot go beyond `/proc/sys/fs/pipe-max-size` (`EPERM`).
pub fn set_capacity(pipe: &impl AsFd, bytes: usize) -> io::Result<usize> {
    let bytes =
        libc::c_int::try_from(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: fcntl on an open descriptor with the integer argument F_SETPIPE_SZ takes.
    let granted =
        crate::check(unsafe { libc::fcntl(pipe.as_fd().as_raw_fd(), libc::F_SETPIPE_SZ, bytes) })?;
    Ok(granted as usize)
}

/// The buffer size of a pipe (`F_GETPIPE_SZ`).
pub fn capacity(pipe: &impl AsFd) -> io::Result<usize> {
    // SAFETY: fcntl on an open descriptor; F_GETPIPE_SZ takes no argument.
    let size = crate::check(unsafe { libc::fcntl(pipe.as_fd().as_raw_fd(), libc::F_GETPIPE_SZ) })?;
    Ok(size as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};

    #[test]
    fn carries_bytes_and_closes_on_exec() {
        let (read, write) = pipe().unwrap();
        for fd in [&read, &write] {
            // SAFETY: F_GETFD on an open descriptor.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        }
        let (mut read, mut write) = (File::from(read), File::from(write));
        write.write_all(b"through").unwrap();
        drop(write);
        let mut got = String::new();
        read.read_to_string(&mut got).unwrap();
        assert_eq!(got, "through");
    }

    #[test]
    fn capacity_can_be_raised() {
        let (read, write) = pipe().unwrap();
        let before = capacity(&write).unwrap();
        let granted = set_capacity(&write, 4 * before).unwrap();
        assert!(granted >= 4 * before, "{granted} < 4 x {before}");
        assert_eq!(capacity(&read).unwrap(), granted);
        // Not a pipe: refused.
        let file = File::open("/dev/null").unwrap();
        assert!(set_capacity(&file, 1 << 20).is_err());
        assert!(set_capacity(&write, usize::MAX).is_err());
    }
}
