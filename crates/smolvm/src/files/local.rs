//! Building a downloaded tree on the host without following anything the guest made.
//!
//! Everything is created under a fresh staging directory beside the destination, through
//! descriptors ([`DirFd`]): directories with `mkdirat`, files with `openat(O_CREAT | O_EXCL |
//! O_NOFOLLOW)`, modes with `fchmod` on the descriptor that was created, symlinks with
//! `symlinkat` once nothing else is left to write. Only when the whole tree is complete is it
//! renamed into place. The system calls are `smolvm-sys`'s safe wrappers rather than
//! `rustix` or `cap-std`.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use smolvm_sys::dir::DirFd;

/// Free space kept on the destination's filesystem beyond what a download announces.
pub const SPACE_MARGIN: u64 = 16 << 20;

/// `fchmod` on a file we created: never acts on anything a path could redirect to.
pub fn fchmod(file: &File, mode: u32) -> io::Result<()> {
    file.set_permissions(fs::Permissions::from_mode(mode))
}

/// A tree being built under a fresh, hidden staging directory beside its destination.
pub struct Staging {
    /// The staging directory's path.
    pub path: PathBuf,
    root: DirFd,
    /// The last directory a file or link was made in: entries of one folder come together,
    /// so this saves walking from the root for each of them.
    cached: Option<(String, DirFd)>,
    done: bool,
}

impl Staging {
    /// Creates `.NAME.smolvm-partial-XXXXXXXX` beside `dest` (whose parent must exist).
    pub fn create(dest: &Path) -> io::Result<Self> {
        let parent = dest.parent().unwrap_or(Path::new("/"));
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let path = parent.join(format!(
            ".{name}.smolvm-partial-{:08x}",
            smolvm_sys::random::random_u64() as u32
        ));
        // 0700 while it is built: nobody else can look at or change a half-written tree.
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        let root = DirFd::open(&path)?;
        Ok(Self {
            path,
            root,
            cached: None,
            done: false,
        })
    }

    /// The directory holding `rel` (a checked relative path) and `rel`'s last name; every
    /// directory on the way is opened with `O_NOFOLLOW`.
    fn parent_of<'a>(&mut self, rel: &'a str) -> io::Result<(&DirFd, &'a str)> {
        let Some((parent, name)) = rel.rsplit_once('/') else {
            return Ok((&self.root, rel));
        };
        if self.cached.as_ref().is_none_or(|(p, _)| p != parent) {
            let mut fd = self.root.open_dir(parent.split('/').next().unwrap_or(""))?;
            for part in parent.split('/').skip(1) {
                fd = fd.open_dir(part)?;
            }
            self.cached = Some((parent.to_string(), fd));
        }
        let fd = &self.cached.as_ref().expect("just set").1;
        Ok((fd, name))
    }

    /// Creates the directory `rel`, private until [`Staging::set_dir_mode`].
    pub fn mkdir(&mut self, rel: &str) -> io::Result<()> {
        let (dir, name) = self.parent_of(rel)?;
        dir.mkdir(name, 0o700)
    }

    /// Creates the new file `rel` (never an existing one, never through a link).
    pub fn create_file(&mut self, rel: &str) -> io::Result<File> {
        let (dir, name) = self.parent_of(rel)?;
        dir.create_file(name, 0o600)
    }

    /// Creates the symlink `rel` pointing at `target`.
    pub fn symlink(&mut self, rel: &str, target: &str) -> io::Result<()> {
        let (dir, name) = self.parent_of(rel)?;
        dir.symlink(name, target)
    }

    /// Gives the directory `rel` (`""`: the root) its final mode, through a descriptor.
    pub fn set_dir_mode(&mut self, rel: &str, mode: u32) -> io::Result<()> {
        self.cached = None;
        if rel.is_empty() {
            return self.root.set_mode(mode);
        }
        let (dir, name) = self.parent_of(rel)?;
        dir.open_dir(name)?.set_mode(mode)
    }

    /// Flushes the tree's root directory.
    pub fn sync(&self) -> io::Result<()> {
        self.root.sync()
    }

    /// Marks the tree as moved into place, so that dropping it removes nothing.
    pub fn keep(mut self) {
        self.done = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            remove_tree(&self.path);
        }
    }
}

/// Removes a tree (never following symlinks); directories whose mode forbids it are first
/// made writable again, so that a guest's `0555` folder cannot keep a failed download around.
pub fn remove_tree(path: &Path) {
    if fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        if let Ok(fd) = DirFd::open(&dir) {
            let _ = fd.set_mode(0o700);
        }
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            pending.push(entry.path());
        }
    }
    if let Err(e) = fs::remove_dir_all(path) {
        tracing::warn!("could not remove {}: {e}", path.display());
    }
}

/// Bytes available to unprivileged writers on the filesystem holding `dir`.
pub fn available_bytes(dir: &Path) -> io::Result<u64> {
    smolvm_sys::fs::free_space(dir)
}

/// What is at a download's destination now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupied {
    /// Nothing, or an empty directory: a download may take its place.
    Free,
    /// A non-empty directory, a file or anything else.
    Taken,
}

/// Looks at `dest` without following a symlink there.
pub fn occupied(dest: &Path) -> io::Result<Occupied> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Occupied::Free),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => Ok(if fs::read_dir(dest)?.next().is_none() {
            Occupied::Free
        } else {
            Occupied::Taken
        }),
        Ok(_) => Ok(Occupied::Taken),
    }
}

/// Moves the finished `staging` tree to `dest`. Without `overwrite` a plain `rename`, which
/// the kernel refuses over a non-empty directory or a non-directory (an empty directory is
/// replaced). With `overwrite` whatever is at `dest` is swapped out atomically
/// (`RENAME_EXCHANGE`, or two renames where the filesystem lacks it) and then deleted: the
/// destination ends up holding exactly the downloaded tree.
pub fn install(staging: Staging, dest: &Path, overwrite: bool) -> io::Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("/"));
    match fs::rename(&staging.path, dest) {
        Ok(()) => staging.keep(),
        Err(e) if !overwrite => return Err(e),
        Err(_) => {
            // Swap: the old content ends up at the staging path, then is deleted.
            let old = if smolvm_sys::fs::rename_exchange(&staging.path, dest).is_ok() {
                staging.path.clone()
            } else {
                // A filesystem without RENAME_EXCHANGE: move the old content aside first
                // (put back if the new tree cannot take its place).
                let aside = PathBuf::from(format!("{}.old", staging.path.display()));
                fs::rename(dest, &aside)?;
                if let Err(e) = fs::rename(&staging.path, dest) {
                    let _ = fs::rename(&aside, dest);
                    return Err(e);
                }
                aside
            };
            staging.keep();
            if fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
                remove_tree(&old);
            } else {
                let _ = fs::remove_file(&old);
            }
        }
    }
    let _ = smolvm_sys::fs::sync_dir(parent);
    Ok(())
}

/// The permission bits of a local file or directory, without following a symlink.
pub fn mode_of(meta: &fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smolvm-local-{tag}-{}", std::process::id()));
        remove_tree(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn staging_never_follows_or_replaces_what_is_there() {
        let dir = scratch("nofollow");
        let outside = dir.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
        let mut staging = Staging::create(&dir.join("dest")).unwrap();
        assert!(staging
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".dest.smolvm-partial-"));
        // A symlink in the tree (as a hostile listing could make one before a later entry).
        symlink(&outside, staging.path.join("l")).unwrap();
        // chmod through it: refused (O_NOFOLLOW), the outside folder keeps its mode.
        assert!(staging.set_dir_mode("l", 0o777).is_err());
        assert_eq!(fs::metadata(&outside).unwrap().mode() & 0o7777, 0o755);
        // Files through it or at its place: refused.
        assert!(staging.create_file("l/x").is_err());
        assert!(staging.create_file("l").is_err());
        assert!(staging.mkdir("l/sub").is_err());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // A file is never created twice.
        staging.create_file("f").unwrap();
        assert!(staging.create_file("f").is_err());
        let path = staging.path.clone();
        drop(staging);
        assert!(!path.exists(), "a dropped staging folder is removed");
        remove_tree(&dir);
    }

    #[test]
    fn install_refuses_an_occupied_destination_unless_overwrite() {
        let dir = scratch("install");
        let dest = dir.join("home");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join(".bashrc"), b"mine").unwrap();
        assert_eq!(occupied(&dest).unwrap(), Occupied::Taken);
        let mut staging = Staging::create(&dest).unwrap();
        staging.create_file(".bashrc").unwrap();
        let path = staging.path.clone();
        assert!(install(staging, &dest, false).is_err());
        assert_eq!(fs::read(dest.join(".bashrc")).unwrap(), b"mine");
        assert!(!path.exists(), "the refused tree is removed");

        // overwrite replaces the folder's whole content (nothing merged, nothing left over).
        fs::write(dest.join("old-only"), b"x").unwrap();
        let mut staging = Staging::create(&dest).unwrap();
        staging.mkdir("ro").unwrap();
        staging.create_file("ro/new").unwrap();
        staging.set_dir_mode("ro", 0o555).unwrap();
        install(staging, &dest, true).unwrap();
        assert!(dest.join("ro/new").exists());
        assert!(!dest.join("old-only").exists() && !dest.join(".bashrc").exists());
        let names: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(
            names.len(),
            1,
            "nothing but the destination is left: {names:?}"
        );

        // An empty folder, or nothing, is free.
        let empty = dir.join("empty");
        fs::create_dir(&empty).unwrap();
        assert_eq!(occupied(&empty).unwrap(), Occupied::Free);
        assert_eq!(occupied(&dir.join("absent")).unwrap(), Occupied::Free);
        install(Staging::create(&empty).unwrap(), &empty, false).unwrap();
        // A symlink at the destination is taken, never followed.
        symlink(&empty, dir.join("link")).unwrap();
        assert_eq!(occupied(&dir.join("link")).unwrap(), Occupied::Taken);
        remove_tree(&dir);
    }

    #[test]
    fn read_only_trees_are_still_removed() {
        let dir = scratch("readonly");
        fs::create_dir_all(dir.join("a/b")).unwrap();
        fs::write(dir.join("a/b/f"), b"x").unwrap();
        fs::set_permissions(dir.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(dir.join("a"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&dir);
        assert!(!dir.exists());
        assert!(available_bytes(&std::env::temp_dir()).unwrap() > 0);
    }
}
