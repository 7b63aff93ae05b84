//! QEMU `-M microvm`: a minimal machine (no PCI, no ACPI, no firmware scan) that boots a Linux
//! kernel directly, with virtio devices on MMIO.

use std::path::{Path, PathBuf};
use std::process::Command;

use smolvm_protocol::AGENT_PORT_NAME;

use crate::backend::Backend;
use crate::config::ValidConfig;
use crate::error::{Error, Result};
use crate::host::{Accel, AccelChoice};
use crate::paths::VmPaths;

/// How to install QEMU, for error messages.
pub const QEMU_INSTALL_HINT: &str =
    "install it with `apt-get install qemu-system-x86` (or run `smolvm setup` as root)";

/// The QEMU backend.
#[derive(Debug, Clone)]
pub struct QemuBackend {
    binary: PathBuf,
    accel: AccelChoice,
    tsc_khz: u64,
}

/// Finds `qemu-system-x86_64`: `$SMOLVM_QEMU`, else the `PATH`.
pub fn find_qemu() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SMOLVM_QEMU").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !is_executable(&path) {
            return Err(Error::MissingProgram {
                program: "qemu-system-x86_64",
                hint: format!(
                    "SMOLVM_QEMU points at {}, which is not an executable; {QEMU_INSTALL_HINT}",
                    path.display()
                ),
            });
        }
        return Ok(path);
    }
    find_in_path("qemu-system-x86_64").ok_or_else(|| Error::MissingProgram {
        program: "qemu-system-x86_64",
        hint: QEMU_INSTALL_HINT.into(),
    })
}

/// The first executable called `name` on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl QemuBackend {
    /// A backend running `binary` with `accel`; `tsc_khz` is the host TSC frequency (TCG only).
    pub fn new(binary: PathBuf, accel: AccelChoice, tsc_khz: u64) -> Self {
        Self {
            binary,
            accel,
            tsc_khz,
        }
    }

    /// The kernel command line: the user's part, then what this machine needs.
    pub fn kernel_cmdline(&self, config: &ValidConfig) -> String {
        let mut line = config.boot_args.clone();
        if self.accel.accel == Accel::Tcg && self.tsc_khz > 0 {
            // TSC calibration against the PIT fails at random under TCG on microvm (no HPET,
            // no ACPI PM timer); stating the frequency removes those boot hangs.
            line.push_str(&format!(" tsc_early_khz={}", self.tsc_khz));
        }
        line.push_str(&format!(" smolvm.hostname={}", config.vm_id));
        line
    }
}

/// QEMU option values are comma-separated; a literal comma is written twice.
fn qemu_escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

impl Backend for QemuBackend {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn accel(&self) -> &'static str {
        self.accel.accel.as_str()
    }

    fn command(&self, config: &ValidConfig, paths: &VmPaths) -> Command {
        let mut cmd = Command::new(&self.binary);
        // acpi=off: our kernel has no ACPI, and only then does QEMU put the virtio-mmio devices
        // on the kernel command line. The RTC stays: without it the kernel's clock read at
        // boot waits a full second for an update flag that never clears.
        cmd.args(["-M", "microvm,acpi=off,x-option-roms=off"]);
        match self.accel.accel {
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => cmd.args(["-accel", "tcg", "-cpu", "max"]),
        };
        cmd.args(["-m", &format!("{}M", config.mem_size_mib)]);
        cmd.args(["-smp", &config.vcpu_count.to_string()]);
        cmd.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        cmd.arg("-kernel").arg(&config.kernel_path);
        cmd.arg("-initrd").arg(&config.initrd_path);
        cmd.arg("-append").arg(self.kernel_cmdline(config));
        cmd.args([
            "-serial",
            &format!("file:{}", qemu_escape(&paths.console_log())),
        ]);
        // The guest channel: QEMU is the client of the supervisor's socket, so the host end is
        // connected before the guest even starts (no disconnected window, no reconnect race).
        cmd.args([
            "-chardev",
            &format!(
                "socket,id=agent,path={}",
                qemu_escape(&paths.channel_socket())
            ),
        ]);
        cmd.args(["-device", "virtio-serial-device,max_ports=2"]);
        cmd.args([
            "-device",
            &format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME}"),
        ]);
        cmd.args(["-device", "virtio-rng-device"]);
        // Kept on every VM so that snapshots (migration) can be driven later.
        cmd.args([
            "-qmp",
            &format!(
                "unix:{},server=on,wait=off",
                qemu_escape(&paths.qmp_socket())
            ),
        ]);
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> ValidConfig {
        ValidConfig {
            vm_id: "t1".into(),
            vcpu_count: 2,
            mem_size_mib: 256,
            kernel_path: "/k".into(),
            initrd_path: "/i".into(),
            boot_args: "console=ttyS0".into(),
            env_vars: BTreeMap::new(),
            image: "minimal".into(),
        }
    }

    fn args(backend: &QemuBackend) -> Vec<String> {
        let cmd = backend.command(&config(), &VmPaths::new("/d,x"));
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn tcg_command_line_has_the_measured_essentials() {
        let backend = QemuBackend::new(
            "q".into(),
            AccelChoice {
                accel: Accel::Tcg,
                reason: String::new(),
            },
            2_000_000,
        );
        let args = args(&backend);
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg -cpu max"));
        assert!(joined.contains("-m 256M -smp 2"));
        assert!(joined.contains("-no-reboot"));
        assert!(joined.contains("path=/d,,x/chan.sock"), "{joined}");
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert_eq!(
            append,
            "console=ttyS0 tsc_early_khz=2000000 smolvm.hostname=t1"
        );
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_no_tsc_hint() {
        let backend = QemuBackend::new(
            "q".into(),
            AccelChoice {
                accel: Accel::Kvm,
                reason: String::new(),
            },
            2_000_000,
        );
        let joined = args(&backend).join(" ");
        assert!(joined.contains("-accel kvm -cpu host"));
        assert!(!joined.contains("tsc_early_khz"));
    }
}
