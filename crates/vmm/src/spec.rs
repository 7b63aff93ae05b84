//! What a machine is made of, in terms any VMM understands.

use std::path::PathBuf;

/// A machine to boot: the supervisor derives it from the sandbox's validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// The sandbox's name (the VMM's process name, the guest's hostname).
    pub name: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// What the guest's root filesystem is.
    pub root: RootDevice,
    /// The user's part of the kernel command line; the backend appends what it needs.
    pub boot_args: String,
    /// The disk's writes may skip flushes: the overlay dies with the machine (an ephemeral
    /// sandbox). A persistent sandbox's overlay keeps them, so that its files survive a host
    /// crash or the VMM being killed.
    pub volatile_disk: bool,
}

/// A guest's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootDevice {
    /// An initramfs, unpacked into RAM at boot.
    Initramfs(PathBuf),
    /// A writable overlay (made before launch) over a read-only base image.
    Disk {
        /// The machine's own overlay.
        overlay: PathBuf,
        /// The base it must name as its backing file, opened read-only.
        base: PathBuf,
    },
}
