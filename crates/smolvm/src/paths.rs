//! The files of one VM, all inside its directory `<data>/vms/<id>/`.

use std::path::{Path, PathBuf};

/// Paths of one VM's files. Socket paths must stay under the 108-byte `sun_path` limit, which
/// [`VmPaths::check_socket_len`] verifies before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    dir: PathBuf,
}

impl VmPaths {
    /// The files of the VM whose directory is `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The VM's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The validated configuration the supervisor boots (JSON).
    pub fn spec(&self) -> PathBuf {
        self.dir.join("vm.json")
    }
    /// Clients (SDK, CLI) talk to the supervisor here.
    pub fn api_socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }
    /// QEMU connects the guest channel's host end here.
    pub fn channel_socket(&self) -> PathBuf {
        self.dir.join("chan.sock")
    }
    /// QEMU's QMP monitor.
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    /// The guest's serial console.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// The console log's previous part: [`VmPaths::console_log`] is moved here when it
    /// reaches its cap, replacing the part before (so at most twice the cap is kept).
    pub fn console_log_rotated(&self) -> PathBuf {
        self.dir.join("console.log.1")
    }
    /// QEMU's own stderr and the supervisor's log.
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    /// Why and when the VM ended (JSON), written by the supervisor.
    pub fn exit_record(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    /// QEMU's pid, written by the supervisor.
    pub fn qemu_pid(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// Managed environment variables saved at stop, restored at the next start.
    pub fn saved_env(&self) -> PathBuf {
        self.dir.join("env.json")
    }
    /// The supervisor's pid.
    pub fn supervisor_pid(&self) -> PathBuf {
        self.dir.join("supervisor.pid")
    }
    /// The VM's writable disk: a qcow2 overlay over its image's read-only ext4 base. Removed
    /// with the VM's directory; a persistent sandbox keeps it across stop/start.
    pub fn overlay(&self) -> PathBuf {
        self.dir.join("overlay.qcow2")
    }
    /// A hard link to the image's base that the overlay points at, so that rebuilding or
    /// removing the image never changes the disk under a sandbox that still uses it.
    pub fn base_link(&self) -> PathBuf {
        self.dir.join("base.ext4")
    }

    /// Present while the guest is paused by the user (its content is irrelevant), so that
    /// listings can say so without asking the supervisor.
    pub fn paused_marker(&self) -> PathBuf {
        self.dir.join("paused")
    }
    /// QEMU sends its migration stream here while a snapshot is taken.
    pub fn migration_socket(&self) -> PathBuf {
        self.dir.join("mig.sock")
    }

    /// The (empty) directory a jailed VMM's root is mounted on, in its own mount namespace.
    pub fn jail_root(&self) -> PathBuf {
        self.dir.join("jail")
    }
    /// A hard link to the kernel a restored VM booted from (its snapshot may be removed).
    pub fn kernel_link(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
    /// A hard link to the initramfs a restored VM booted from.
    pub fn initrd_link(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }

    /// Fails when a socket path would not fit in `sun_path`.
    pub fn check_socket_len(&self) -> std::io::Result<()> {
        let longest = self.channel_socket();
        if longest.as_os_str().len() >= 100 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "socket path {} is too long for a Unix socket; set SMOLVM_DATA_DIR to a shorter directory",
                    longest.display()
                ),
            ));
        }
        Ok(())
    }
}

/// The files of one snapshot, all inside its directory. A snapshot carries (hard links to)
/// everything its guest booted from, so that rebuilding or removing an image never changes
/// what it restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPaths {
    dir: PathBuf,
}

impl SnapshotPaths {
    /// The files of the snapshot whose directory is `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// The snapshot's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// What the snapshot is (JSON), written last: a directory without it is not a snapshot.
    pub fn meta(&self) -> PathBuf {
        self.dir.join("snapshot.json")
    }
    /// QEMU's migration stream (memory and device state), zstd-compressed with a checksum.
    pub fn memory(&self) -> PathBuf {
        self.dir.join("memory.zst")
    }
    /// The memory file uncompressed (templates only), which QEMU reads directly.
    pub fn memory_raw(&self) -> PathBuf {
        self.dir.join("memory.raw")
    }
    /// Size and CRC-32 of [`SnapshotPaths::memory_raw`] (JSON).
    pub fn memory_raw_check(&self) -> PathBuf {
        self.dir.join("memory.raw.json")
    }
    /// The kernel the guest booted.
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
    /// The initramfs the guest booted (initramfs roots).
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }
    /// The disk overlay as it was at the snapshot (disk roots).
    pub fn overlay(&self) -> PathBuf {
        self.dir.join("overlay.qcow2")
    }
    /// The overlay's read-only base (disk roots), by the relative name the overlay uses.
    pub fn base(&self) -> PathBuf {
        self.dir.join("base.ext4")
    }
}
