//! Where SmolVM keeps its files.
//!
//! Everything lives under one data directory: `$SMOLVM_DATA_DIR`, else `$XDG_STATE_HOME/smolvm`,
//! else `~/.local/state/smolvm`.
//!
//! ```text
//! <data>/kernel/          vmlinux built by `smolvm setup` (+ kernel.json: its cache key)
//! <data>/images/<name>/   root filesystems + image.json (`minimal`: initramfs.cpio;
//!                         `debian` and other Debian images: rootfs.ext4, read-only)
//! <data>/build/           kernel source tree, image build trees and their locks
//! <data>/cache/           packages downloaded by debootstrap, reused by later builds
//! <data>/vms/<id>/        one directory per VM: vm.json, sockets, logs, pid files, and
//!                         for a disk image its overlay.qcow2 over base.ext4 (a hard link)
//! <data>/snapshots/<id>/  one directory per snapshot: snapshot.json, memory.zst, and hard
//!                         links to what the guest booted from (plus its overlay's copy)
//! <data>/templates/<key>/ pre-booted snapshots that new VMs start from (same layout)
//! ```
//!
//! The data directory is private: 0700, owned by the user running SmolVM (it holds `vm.json`
//! files with the sandboxes' environment values, and their API sockets).
//! [`DataDir::ensure_private`] creates it so, tightens one an older version left readable,
//! and refuses one that someone else owns or can write.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use smolvm_sys::fs::PRIVATE_DIR;

/// Top-level folders an older SmolVM created 0755; tightened together with the root.
const SUBDIRS: [&str; 7] = [
    "kernel",
    "images",
    "build",
    "cache",
    "vms",
    "snapshots",
    "templates",
];

/// Resolved locations of SmolVM's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory chosen from the environment.
    pub fn from_env() -> Self {
        if let Some(dir) = std::env::var_os("SMOLVM_DATA_DIR").filter(|d| !d.is_empty()) {
            return Self::at(dir);
        }
        if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
            return Self::at(Path::new(&state).join("smolvm"));
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        Self::at(Path::new(&home).join(".local/state/smolvm"))
    }

    /// A data directory at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the data directory (mode 0700) if missing, or checks the existing one: it must
    /// be a folder owned by the calling user that no one else can write. One that others may
    /// only read (0755, as older versions made it) is tightened to 0700, with a log line.
    pub fn ensure_private(&self) -> Result<()> {
        let root = &self.root;
        let meta = match std::fs::metadata(root) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return smolvm_sys::fs::create_dir_private(root)
                    .map_err(|e| Error::io(format!("creating {}", root.display()), e));
            }
            Err(e) => return Err(Error::io(format!("checking {}", root.display()), e)),
        };
        let unsafe_dir = |problem: String, fix: String| Error::UnsafeDataDir {
            path: root.clone(),
            problem,
            fix,
        };
        if !meta.is_dir() {
            return Err(unsafe_dir(
                "it is not a folder".into(),
                "remove it or set SMOLVM_DATA_DIR to another path".into(),
            ));
        }
        let me = smolvm_sys::process::euid();
        if meta.uid() != me {
            return Err(unsafe_dir(
                format!("it is owned by uid {}, not by you (uid {me})", meta.uid()),
                format!(
                    "set SMOLVM_DATA_DIR to a folder of your own, or take it over with `chown -R {me} {}`",
                    root.display()
                ),
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            // Anyone could have planted files in it: do not quietly adopt its content.
            return Err(unsafe_dir(
                format!("its mode is {mode:04o}: group or others can write to it"),
                format!("check what it holds, then `chmod 700 {}`", root.display()),
            ));
        }
        if mode & 0o077 != 0 {
            tighten(root, mode)?;
            for sub in SUBDIRS {
                let dir = root.join(sub);
                if let Ok(meta) = std::fs::symlink_metadata(&dir) {
                    let mode = meta.mode() & 0o7777;
                    if meta.is_dir() && meta.uid() == me && mode & 0o077 != 0 {
                        tighten(&dir, mode)?;
                    }
                }
            }
            self.tighten_secrets(me);
        }
        Ok(())
    }

    /// Sets the files an older version left 0644 that hold secrets (the registry, each VM's
    /// `vm.json` with its boot-time environment values and `env.json`) to 0600. The 0700
    /// root already keeps others out; this keeps them out should it be loosened again.
    fn tighten_secrets(&self, me: u32) {
        let mut files = vec![self.root.join("smolvm.db"), self.host_facts()];
        for vm in std::fs::read_dir(self.vms_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            files.push(vm.path().join("vm.json"));
            files.push(vm.path().join("env.json"));
        }
        for file in files {
            let Ok(meta) = std::fs::symlink_metadata(&file) else {
                continue;
            };
            if meta.is_file() && meta.uid() == me && meta.mode() & 0o077 != 0 {
                let _ = std::fs::set_permissions(
                    &file,
                    std::fs::Permissions::from_mode(smolvm_sys::fs::PRIVATE_FILE),
                );
            }
        }
    }

    /// The root of the data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory holding the built kernel.
    pub fn kernel_dir(&self) -> PathBuf {
        self.root.join("kernel")
    }

    /// The default guest kernel (an uncompressed ELF vmlinux, booted through PVH).
    pub fn kernel(&self) -> PathBuf {
        self.kernel_dir().join("vmlinux")
    }

    /// Directory of the image called `name`.
    pub fn image_dir(&self, name: &str) -> PathBuf {
        self.root.join("images").join(name)
    }

    /// Scratch space for builds.
    pub fn build_dir(&self) -> PathBuf {
        self.root.join("build")
    }

    /// Parent of all VM directories.
    pub fn vms_dir(&self) -> PathBuf {
        self.root.join("vms")
    }

    /// The directory of VM `id`.
    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.vms_dir().join(id)
    }

    /// Parent of all snapshot directories.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Parent of the pre-booted templates.
    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }

    /// Cached facts about the host (TSC frequency).
    pub fn host_facts(&self) -> PathBuf {
        self.root.join("host.json")
    }
}

/// Sets `dir` (ours, made by an older version) to 0700 and says so.
fn tighten(dir: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR))
        .map_err(|e| Error::io(format!("making {} private (chmod 700)", dir.display()), e))?;
    tracing::warn!(
        "{} was readable by other users (mode {mode:04o}); changed it to 0700",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "smolvm-dirs-{name}-{}-{:x}",
            std::process::id(),
            smolvm_sys::random::random_u64()
        ))
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn creates_a_missing_data_dir_private() {
        let root = scratch("new");
        DataDir::at(root.join("nested")).ensure_private().unwrap();
        assert_eq!(mode(&root.join("nested")), 0o700);
        assert_eq!(mode(&root), 0o700);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn tightens_an_old_readable_data_dir() {
        let root = scratch("old");
        std::fs::create_dir_all(root.join("vms")).unwrap();
        std::fs::set_permissions(&root, Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("vms"), Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(root.join("vms/old")).unwrap();
        let spec = root.join("vms/old/vm.json");
        std::fs::write(&spec, "{}").unwrap();
        std::fs::set_permissions(&spec, Permissions::from_mode(0o644)).unwrap();
        DataDir::at(&root).ensure_private().unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("vms")), 0o700);
        assert_eq!(mode(&spec), 0o600);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn refuses_a_data_dir_others_can_write() {
        let root = scratch("open");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, Permissions::from_mode(0o777)).unwrap();
        let err = DataDir::at(&root).ensure_private().unwrap_err().to_string();
        assert!(err.contains(&root.display().to_string()), "{err}");
        assert!(err.contains("0777"), "{err}");
        assert!(
            err.contains(&format!("chmod 700 {}", root.display())),
            "{err}"
        );
        assert_eq!(mode(&root), 0o777, "left as it was");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn refuses_a_data_dir_owned_by_someone_else() {
        if smolvm_sys::process::euid() != 0 {
            eprintln!("skipped: needs root to give a folder away");
            return;
        }
        let root = scratch("foreign");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
        let err = DataDir::at(&root).ensure_private().unwrap_err().to_string();
        assert!(err.contains(&root.display().to_string()), "{err}");
        assert!(err.contains("owned by uid 65534"), "{err}");
        assert!(err.contains("chown -R 0"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
