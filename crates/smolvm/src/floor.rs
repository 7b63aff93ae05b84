//! Measurement floors for `smolvm bench`: what the VMM alone costs, without the SDK,
//! supervisor or agent in the way.

use std::time::{Duration, Instant};

use smolvm_vmm::jail::Confinement;
use smolvm_vmm::qemu::{find_qemu, QemuBackend};
use smolvm_vmm::{Backend, LaunchOptions};

use crate::config::{VmConfig, DEFAULT_BOOT_ARGS};
use crate::dirs::DataDir;
use crate::error::{Error, Result};
use crate::image;
use crate::paths::VmPaths;

/// The accelerator new VMs get on this host (`kvm` or `tcg`).
pub fn accelerator() -> &'static str {
    smolvm_vmm::accel::choose_accel().accel.as_str()
}

/// Boots the boot-floor image once on bare, unconfined QEMU (the kernel resets as soon as
/// userspace runs) and returns the time from QEMU's start to its exit.
pub fn boot_once(data: &DataDir) -> Result<Duration> {
    let config = VmConfig {
        rootfs_path: Some(image::rootfs_of(data, image::FLOOR)?),
        boot_args: Some(format!("{DEFAULT_BOOT_ARGS} smolvm.floor")),
        vm_id: Some("bench-floor".into()),
        ..VmConfig::default()
    }
    .validate(data)?;
    let accel = smolvm_vmm::accel::choose_accel();
    let backend = QemuBackend::new(
        find_qemu()?,
        accel,
        smolvm_vmm::accel::tsc_khz(&data.host_facts()),
    );
    let machine = config.machine_spec(&VmPaths::new(data.vm_dir("bench-floor")), true);
    // The floor is bare QEMU: no confinement (its cost is measured separately).
    let options = LaunchOptions {
        incoming: None,
        confinement: Confinement::Off,
    };
    let prepared = backend.prepare(&machine, options)?;
    let start = Instant::now();
    let mut spawned = smolvm_vmm::spawn(prepared, &Confinement::Off)?;
    let status = spawned
        .child
        .wait()
        .map_err(|e| Error::io("waiting for the boot-floor VM", e))?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(Error::Build(format!(
            "the boot-floor VM exited with {status}"
        )));
    }
    Ok(elapsed)
}
