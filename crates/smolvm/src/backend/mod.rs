//! Virtual machine monitors. The supervisor starts a VM through a [`Backend`]; the guest
//! channel and the protocol are the same whatever the backend.

pub mod qemu;
pub mod qmp;

use std::process::Command;

use crate::config::ValidConfig;
use crate::paths::VmPaths;

/// A way to run a VM.
pub trait Backend {
    /// Short name for logs and `doctor` (`qemu`).
    fn name(&self) -> &'static str;
    /// The accelerator in use (`kvm`, `tcg`).
    fn accel(&self) -> &'static str;
    /// The command that runs `config` with its files at `paths`. The process it starts must
    /// connect the guest channel to `paths.channel_socket()` and exit when the guest resets.
    fn command(&self, config: &ValidConfig, paths: &VmPaths) -> Command;
}
