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

use std::path::{Path, PathBuf};

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
