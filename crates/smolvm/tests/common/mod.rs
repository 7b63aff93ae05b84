//! Helpers shared by the VM tests. Every test here boots real VMs (QEMU, TCG on CI) with the
//! kernel and image that `smolvm setup` built in the data directory.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use smolvm::{DataDir, SmolVm, VmConfig};

/// A running VM with the default configuration; fails loudly when setup was not run.
pub fn vm() -> SmolVm {
    vm_with(VmConfig::default())
}

/// A running VM with `config`.
pub fn vm_with(config: VmConfig) -> SmolVm {
    let data = DataDir::from_env();
    assert!(
        data.kernel().is_file(),
        "no kernel in {}: run `smolvm setup` before the VM tests",
        data.root().display()
    );
    let vm = SmolVm::with_data_dir(config, data).expect("valid config");
    vm.start().expect("VM boots");
    vm
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    smolvm_sys::process::pid_alive(pid)
}

/// Polls `cond` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Whether anything of VM `dir` is left on the host.
pub fn dir_gone(dir: &Path) -> bool {
    !dir.exists()
}

/// Lists processes whose command line mentions `needle` (used to find leaked QEMUs).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    smolvm_sys::process::pids_with_cmdline(needle)
}
