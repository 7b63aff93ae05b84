//! File helpers: private modes, atomic and durable writes, locks, free space, atomic swaps
//! and unmounting.
//!
//! Everything SmolVM writes under its data directory is private to its user: folders 0700
//! ([`PRIVATE_DIR`]), files 0600 ([`PRIVATE_FILE`]), sockets 0600. The modes are given at
//! creation and then set explicitly, so they hold whatever the process umask is (a library must
//! not change the umask of the program that uses it). The exceptions are image files (kernel,
//! root filesystems), which stay world-readable ([`READABLE_FILE`]) for a QEMU confined to
//! another uid; the folders above them keep everyone else out.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Mode of every folder SmolVM creates.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of every file SmolVM creates, unless it is an image file.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of image files (kernel, initramfs) that a confined QEMU may need to read.
pub const READABLE_FILE: u32 = 0o644;

/// Creates `dir` and any missing parents with mode 0700. Existing folders are left as they are.
pub fn create_dir_private(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)?;
    // The umask may have removed bits from the mode; the folder itself gets exactly 0700.
    fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR))
}

/// Opens `path` for appending, creating it with mode 0600 (logs).
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE_FILE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(PRIVATE_FILE))?;
    Ok(file)
}

/// Creates (or truncates) `path` with mode `mode`, exactly.
pub fn create_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    Ok(file)
}

/// Listens on a Unix socket at `path` (replacing a stale one) and makes it 0600. The socket
/// exists with the umask's mode for an instant before the chmod; it is always created inside
/// a 0700 folder, so nobody else can reach it in that instant.
pub fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let _ = fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, Permissions::from_mode(PRIVATE_FILE))?;
    Ok(listener)
}

/// A file being written under a temporary name beside its destination; [`AtomicFile::commit`]
/// makes it durable and renames it into place, so that readers see the old content or the new,
/// never a mix. Dropped without a commit, the temporary file is removed.
pub struct AtomicFile {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    /// `None`: the umask's choice (files the user asked for outside the data directory).
    mode: Option<u32>,
    committed: bool,
}

impl AtomicFile {
    /// Starts writing `dest` (its folder is created 0700 if missing); the result gets `mode`.
    pub fn create(dest: &Path, mode: u32) -> io::Result<Self> {
        Self::open(dest, Some(mode))
    }

    /// As [`AtomicFile::create`], with the mode a plain `File::create` gives (0666 minus the
    /// umask): for files written where the user asked, outside the data directory. The
    /// destination's folder must exist.
    // For downloads (files.rs), which are being moved onto this helper.
    #[allow(dead_code)]
    pub fn create_with_umask(dest: &Path) -> io::Result<Self> {
        Self::open(dest, None)
    }

    fn open(dest: &Path, mode: Option<u32>) -> io::Result<Self> {
        let dir = parent_of(dest);
        if mode.is_some() {
            create_dir_private(dir)?;
        }
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = dir.join(format!(
            ".{name}.{}.{:x}.tmp",
            std::process::id(),
            crate::random::random_u64()
        ));
        // create_new: never write through a file (or symlink) someone else put there.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode.unwrap_or(0o666))
            .open(&tmp)?;
        let atomic = Self {
            file,
            tmp,
            dest: dest.to_path_buf(),
            mode,
            committed: false,
        };
        if let Some(mode) = mode {
            atomic.file.set_permissions(Permissions::from_mode(mode))?;
        }
        Ok(atomic)
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temporary file's path, for tools that write it themselves (`qemu-img create`).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs the temporary file, renames it over the destination and syncs the folder.
    pub fn commit(mut self) -> io::Result<()> {
        // By path: an outside tool may have replaced the inode behind our descriptor.
        let file = File::open(&self.tmp)?;
        if let Some(mode) = self.mode {
            file.set_permissions(Permissions::from_mode(mode))?;
        }
        file.sync_all()?;
        fs::rename(&self.tmp, &self.dest)?;
        self.committed = true;
        sync_dir(parent_of(&self.dest))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` atomically and durably with mode 0600 (see [`write_atomic_mode`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, PRIVATE_FILE)
}

/// Writes `bytes` to `path` atomically and durably: a temp file in the same directory, fsync,
/// rename, fsync of the directory. Readers see the old content or the new, never a mix. The
/// file ends up with exactly `mode`.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = AtomicFile::create(path, mode)?;
    file.file().write_all(bytes)?;
    file.commit()
}

/// Makes `dest` a hard link to `source` (free, and immune to `source` being replaced later),
/// or a copy when the two are on different filesystems.
pub fn link_or_copy(source: &Path, dest: &Path) -> io::Result<()> {
    match fs::hard_link(source, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => fs::copy(source, dest).map(|_| ()),
    }
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An exclusive `flock` held until dropped.
pub struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is open for the life of `self.0`.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Creates (0600) and exclusively locks `path`, waiting for any other holder.
pub fn lock(path: &Path) -> io::Result<Lock> {
    let file = create_with_mode(path, PRIVATE_FILE)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Lock(file))
}

/// Bytes available to unprivileged writers on the filesystem holding `path` (`statvfs`:
/// the blocks free for non-root users times the fragment size).
pub fn free_space(path: &Path) -> io::Result<u64> {
    let path = crate::c_string(path.as_os_str())?;
    // SAFETY: statvfs is plain old data, for which all zeroes is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is a writable statvfs; both outlive the call.
    crate::check(unsafe { libc::statvfs(path.as_ptr(), &mut stat) })?;
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Swaps `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`): both must exist, and each
/// ends up under the other's name. Fails (`EINVAL`) on filesystems that lack the operation.
pub fn rename_exchange(a: &Path, b: &Path) -> io::Result<()> {
    let (a, b) = (
        crate::c_string(a.as_os_str())?,
        crate::c_string(b.as_os_str())?,
    );
    // SAFETY: two NUL-terminated paths that outlive the call; AT_FDCWD resolves them as
    // given; the arguments are those renameat2 takes.
    crate::check(unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        ) as libc::c_int
    })
    .map(|_| ())
}

/// Detaches the mount at `path` (`umount2(MNT_DETACH)`): it disappears from the tree at
/// once and goes away for good when no longer busy. Needs the privilege to unmount.
pub fn unmount_detached(path: &Path) -> io::Result<()> {
    let path = crate::c_string(path.as_os_str())?;
    // SAFETY: a NUL-terminated path that outlives the call.
    crate::check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }).map(|_| ())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "smolvm-fsutil-{name}-{}-{:x}",
            std::process::id(),
            crate::random::random_u64()
        ));
        create_dir_private(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = scratch("replace");
        let path = dir.join("x.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(mode(&path), PRIVATE_FILE);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn modes_are_exact_and_a_dropped_write_leaves_nothing() {
        let dir = scratch("modes");
        let nested = dir.join("a/b");
        create_dir_private(&nested).unwrap();
        assert_eq!(mode(&dir.join("a")), PRIVATE_DIR);
        assert_eq!(mode(&nested), PRIVATE_DIR);
        write_atomic_mode(&dir.join("img"), b"x", READABLE_FILE).unwrap();
        assert_eq!(mode(&dir.join("img")), READABLE_FILE);
        assert_eq!(
            mode(
                &create_with_mode(&dir.join("f"), PRIVATE_FILE)
                    .map(|_| dir.join("f"))
                    .unwrap()
            ),
            PRIVATE_FILE
        );
        let _ = open_private_append(&dir.join("log")).unwrap();
        assert_eq!(mode(&dir.join("log")), PRIVATE_FILE);
        let _ = bind_private(&dir.join("s.sock")).unwrap();
        assert_eq!(mode(&dir.join("s.sock")), PRIVATE_FILE);
        {
            let mut pending = AtomicFile::create(&dir.join("never"), PRIVATE_FILE).unwrap();
            pending.file().write_all(b"half").unwrap();
        }
        assert!(!dir.join("never").exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 5);
        // Read from /proc: setting it to read it would race with the other tests.
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        let mut plain = AtomicFile::create_with_umask(&dir.join("plain")).unwrap();
        plain.file().write_all(b"x").unwrap();
        plain.commit().unwrap();
        assert_eq!(mode(&dir.join("plain")), 0o666 & !umask);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn free_space_is_reported_and_a_missing_path_is_an_error() {
        let dir = scratch("space");
        let free = free_space(&dir).unwrap();
        assert!(free > 0);
        // The same filesystem answers the same (give or take what others write meanwhile).
        let again = free_space(&dir).unwrap();
        assert!(free.abs_diff(again) < 1 << 30, "{free} then {again}");
        let err = free_space(&dir.join("absent")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            free_space(Path::new("nul\0")).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rename_exchange_swaps_two_entries() {
        let dir = scratch("exchange");
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs::write(&a, b"first").unwrap();
        fs::create_dir(&b).unwrap();
        fs::write(b.join("inner"), b"second").unwrap();
        match rename_exchange(&a, &b) {
            // A filesystem without RENAME_EXCHANGE (the caller falls back to two renames).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                eprintln!("skipped: {} lacks RENAME_EXCHANGE", dir.display());
            }
            result => {
                result.unwrap();
                assert_eq!(fs::read(b.as_path()).unwrap(), b"first");
                assert_eq!(fs::read(a.join("inner")).unwrap(), b"second");
            }
        }
        // Both must exist.
        assert_eq!(
            rename_exchange(&a, &dir.join("absent")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unmount_detached_takes_a_mount_away_and_refuses_a_plain_folder() {
        let dir = scratch("umount");
        // EINVAL (not a mount point) as root, EPERM otherwise: never success.
        let err = unmount_detached(&dir).unwrap_err();
        assert!(
            matches!(err.raw_os_error(), Some(libc::EINVAL | libc::EPERM)),
            "{err}"
        );
        let mounted = |dir: &Path| {
            fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(&*dir.to_string_lossy()))
        };
        let mount = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "smolvm-sys-test"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status();
        if mount.is_ok_and(|s| s.success()) {
            assert!(mounted(&dir));
            unmount_detached(&dir).unwrap();
            assert!(!mounted(&dir), "still mounted");
        } else {
            eprintln!("skipped the mount half: cannot mount a tmpfs here");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
