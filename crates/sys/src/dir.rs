//! A directory held by descriptor, to build a tree inside it without following any symlink
//! that someone else may have put there (the `*at()` system calls).
//!
//! Every operation takes one plain name (no `/`, not `.` or `..`) relative to the directory
//! and never follows a symlink at that name: [`DirFd::open_dir`] and [`DirFd::create_file`]
//! use `O_NOFOLLOW`, [`DirFd::create_file`] also `O_EXCL`, so an existing entry (a symlink
//! included) is never opened for writing. Walking a path one [`DirFd::open_dir`] at a time
//! therefore never leaves the tree, and modes are set on descriptors ([`DirFd::set_mode`],
//! `File::set_permissions`), never through a path a link could redirect.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::{c_string, check};

/// Flags of every directory opened here.
const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// An open directory (closed when dropped).
#[derive(Debug)]
pub struct DirFd(OwnedFd);

/// `name` as a C string if it is one plain name: not empty, `.` or `..`, without `/` or NUL.
fn plain_name(name: &OsStr) -> io::Result<std::ffi::CString> {
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name);
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a plain name: {:?}", name),
        ));
    }
    c_string(name)
}

/// Takes ownership of a descriptor a system call just returned.
fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: the caller passes a descriptor that was just opened (a successful return of
    // open/openat) and that nothing else owns or will close.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl DirFd {
    /// Opens the directory at `path`. The path is the caller's own, so links on the way are
    /// followed, but the last component must not be a symlink (refused, `ENOTDIR`).
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = c_string(path.as_os_str())?;
        // SAFETY: `path` is NUL-terminated and outlives the call.
        let fd = check(unsafe { libc::open(path.as_ptr(), DIR_FLAGS) })?;
        Ok(Self(owned(fd)))
    }

    /// Opens the directory `name` inside this one; a symlink there is refused (`ENOTDIR`).
    pub fn open_dir(&self, name: impl AsRef<OsStr>) -> io::Result<Self> {
        let name = plain_name(name.as_ref())?;
        // SAFETY: an open descriptor and a NUL-terminated name that outlives the call.
        let fd = check(unsafe { libc::openat(self.0.as_raw_fd(), name.as_ptr(), DIR_FLAGS) })?;
        Ok(Self(owned(fd)))
    }

    /// Creates the directory `name` inside this one with `mode` (less the umask).
    pub fn mkdir(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<()> {
        let name = plain_name(name.as_ref())?;
        // SAFETY: an open descriptor and a NUL-terminated name that outlives the call.
        check(unsafe { libc::mkdirat(self.0.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })
            .map(|_| ())
    }

    /// Creates the new file `name` inside this one, for writing, with `mode` (less the umask).
    /// Fails (`EEXIST`) if anything is there already, a symlink included: nothing existing is
    /// ever opened.
    pub fn create_file(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<File> {
        let name = plain_name(name.as_ref())?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: an open descriptor and a NUL-terminated name that outlives the call; the
        // mode is passed as the variadic argument O_CREAT expects.
        let fd = check(unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                flags,
                mode as libc::c_uint,
            )
        })?;
        Ok(File::from(owned(fd)))
    }

    /// Creates the symlink `name` inside this one, pointing at `target` (which is stored as
    /// given, never resolved).
    pub fn symlink(&self, name: impl AsRef<OsStr>, target: impl AsRef<OsStr>) -> io::Result<()> {
        let target = c_string(target.as_ref())?;
        let name = plain_name(name.as_ref())?;
        // SAFETY: an open descriptor and two NUL-terminated strings that outlive the call.
        check(unsafe { libc::symlinkat(target.as_ptr(), self.0.as_raw_fd(), name.as_ptr()) })
            .map(|_| ())
    }

    /// Sets this directory's permission bits (`fchmod` on the descriptor).
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        // SAFETY: fchmod on an open descriptor; no memory is passed.
        check(unsafe { libc::fchmod(self.0.as_raw_fd(), mode as libc::mode_t) }).map(|_| ())
    }

    /// Flushes this directory's entries to disk (`fsync`).
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: fsync on an open descriptor; no memory is passed.
        check(unsafe { libc::fsync(self.0.as_raw_fd()) }).map(|_| ())
    }
}

impl AsFd for DirFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for DirFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl From<DirFd> for OwnedFd {
    fn from(dir: DirFd) -> OwnedFd {
        dir.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smolvm-sys-dir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn builds_a_tree_through_descriptors() {
        let root = scratch("build");
        let dir = DirFd::open(&root).unwrap();
        dir.mkdir("sub", 0o700).unwrap();
        let sub = dir.open_dir("sub").unwrap();
        let mut file = sub.create_file("f", 0o600).unwrap();
        file.write_all(b"hello").unwrap();
        drop(file);
        sub.symlink("link", "../anywhere").unwrap();
        sub.set_mode(0o750).unwrap();
        dir.sync().unwrap();
        assert_eq!(fs::read(root.join("sub/f")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(root.join("sub/link")).unwrap(),
            Path::new("../anywhere")
        );
        assert_eq!(
            fs::metadata(root.join("sub")).unwrap().mode() & 0o7777,
            0o750
        );
        assert_eq!(fs::metadata(root.join("sub/f")).unwrap().mode() & 0o077, 0);
        // Nothing is created twice.
        assert_eq!(
            dir.mkdir("sub", 0o700).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert_eq!(
            sub.create_file("f", 0o600).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn never_follows_a_symlink_or_leaves_the_directory() {
        let root = scratch("nofollow");
        let outside = root.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
        let tree = root.join("tree");
        fs::create_dir(&tree).unwrap();
        symlink(&outside, tree.join("l")).unwrap();
        symlink(outside.join("target"), tree.join("dangling")).unwrap();
        let dir = DirFd::open(&tree).unwrap();
        assert!(matches!(
            dir.open_dir("l").unwrap_err().raw_os_error(),
            Some(libc::ENOTDIR | libc::ELOOP)
        ));
        assert!(DirFd::open(&tree.join("l")).is_err());
        // A dangling link is not created through either.
        assert!(dir.create_file("dangling", 0o600).is_err());
        assert!(!outside.join("target").exists());
        for bad in ["", ".", "..", "l/x", "a/b"] {
            assert_eq!(
                dir.open_dir(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
            assert!(dir.mkdir(bad, 0o700).is_err(), "{bad:?}");
            assert!(dir.create_file(bad, 0o600).is_err(), "{bad:?}");
            assert!(dir.symlink(bad, "t").is_err(), "{bad:?}");
        }
        assert!(dir.create_file("nul\0", 0o600).is_err());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(fs::metadata(&outside).unwrap().mode() & 0o7777, 0o755);
        fs::remove_dir_all(&root).unwrap();
    }
}
