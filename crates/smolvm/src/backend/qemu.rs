//! QEMU `-M microvm`: a minimal machine (no PCI, no ACPI, no firmware scan) that boots a Linux
//! kernel directly, with virtio devices on MMIO.

use std::path::{Path, PathBuf};
use std::process::Command;

use smolvm_protocol::AGENT_PORT_NAME;

use crate::backend::Backend;
use crate::config::ValidConfig;
use crate::error::{Error, Result};
use crate::host::{Accel, AccelChoice};
use crate::image::RootFs;
use crate::paths::VmPaths;

/// What a disk root adds to the kernel command line. `rw`: the VM writes to its own overlay,
/// never to the shared base.
const DISK_ROOT_ARGS: &str = "root=/dev/vda rw rootfstype=ext4";

/// How to install QEMU, for error messages.
pub const QEMU_INSTALL_HINT: &str =
    "install it with `apt-get install qemu-system-x86` (or run `smolvm setup` as root)";

/// The QEMU backend.
#[derive(Debug, Clone)]
pub struct QemuBackend {
    binary: PathBuf,
    accel: AccelChoice,
    tsc_khz: u64,
    volatile_disk: bool,
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
            volatile_disk: false,
        }
    }

    /// Whether the VM's disk may skip flushes (`cache=unsafe`): right for an ephemeral VM,
    /// whose overlay is deleted when it stops, so that a guest `fsync` does not wait for the
    /// host's disk (measured: ~5 ms each). A persistent sandbox's overlay keeps them, so that
    /// its files survive a host crash or QEMU being killed.
    pub fn with_volatile_disk(mut self, volatile: bool) -> Self {
        self.volatile_disk = volatile;
        self
    }

    /// The kernel command line: the user's part, then what this machine needs.
    pub fn kernel_cmdline(&self, config: &ValidConfig) -> String {
        let mut line = config.boot_args.clone();
        if let RootFs::Disk(_) = config.rootfs {
            line.push(' ');
            line.push_str(DISK_ROOT_ARGS);
        }
        if self.accel.accel == Accel::Tcg && self.tsc_khz > 0 {
            // TSC calibration against the PIT fails at random under TCG on microvm (no HPET,
            // no ACPI PM timer); stating the frequency removes those boot hangs.
            line.push_str(&format!(" tsc_early_khz={}", self.tsc_khz));
        }
        if self.accel.accel == Accel::Tcg {
            // Under emulation, code is translated per virtual address: with address-space
            // randomisation every exec of a dynamically linked program (all of Debian's)
            // translates ld.so and libc afresh. Measured in the Debian guest: `sh -c true`
            // 66 ms with it, 15 ms without. The VM, not ASLR, is the isolation boundary;
            // under KVM, where it costs nothing, it stays on.
            line.push_str(" norandmaps");
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
        match &config.rootfs {
            RootFs::Initramfs(path) => {
                cmd.arg("-initrd").arg(path);
            }
            RootFs::Disk(_) => {
                // The VM's own overlay (made by the SDK before launch); QEMU opens its base
                // read-only through it. discard=unmap lets the guest's frees shrink it.
                cmd.args([
                    "-drive",
                    &format!(
                        "file={},if=none,id=rootfs,format=qcow2,discard=unmap{}",
                        qemu_escape(&paths.overlay()),
                        if self.volatile_disk {
                            ",cache=unsafe"
                        } else {
                            ""
                        }
                    ),
                ]);
                cmd.args(["-device", "virtio-blk-device,drive=rootfs"]);
            }
        }
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
            rootfs: RootFs::Initramfs("/i".into()),
            boot_args: "console=ttyS0".into(),
            env_vars: BTreeMap::new(),
            image: "minimal".into(),
        }
    }

    fn args(backend: &QemuBackend) -> Vec<String> {
        args_for(backend, &config())
    }

    fn args_for(backend: &QemuBackend, config: &ValidConfig) -> Vec<String> {
        let cmd = backend.command(config, &VmPaths::new("/d,x"));
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
            "console=ttyS0 tsc_early_khz=2000000 norandmaps smolvm.hostname=t1"
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
        assert!(!joined.contains("tsc_early_khz") && !joined.contains("norandmaps"));
    }

    #[test]
    fn initramfs_and_disk_roots_boot_differently() {
        let backend = QemuBackend::new(
            "q".into(),
            AccelChoice {
                accel: Accel::Kvm,
                reason: String::new(),
            },
            0,
        );
        let joined = args(&backend).join(" ");
        assert!(joined.contains("-initrd /i"), "{joined}");
        assert!(!joined.contains("-drive") && !joined.contains("root=/dev/vda"));

        let mut disk = config();
        disk.rootfs = RootFs::Disk("/images/debian/rootfs.ext4".into());
        let args = args_for(&backend, &disk);
        let joined = args.join(" ");
        assert!(!joined.contains("-initrd"), "{joined}");
        // The VM boots its overlay, never the base itself.
        assert!(
            joined.contains("-drive file=/d,,x/overlay.qcow2,if=none,id=rootfs,format=qcow2"),
            "{joined}"
        );
        assert!(!joined.contains("rootfs.ext4"), "{joined}");
        assert!(joined.contains("-device virtio-blk-device,drive=rootfs"));
        assert!(!joined.contains("cache=unsafe"), "{joined}");
        let volatile = args_for(&backend.clone().with_volatile_disk(true), &disk).join(" ");
        assert!(
            volatile.contains("discard=unmap,cache=unsafe"),
            "{volatile}"
        );
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert_eq!(
            append,
            "console=ttyS0 root=/dev/vda rw rootfstype=ext4 smolvm.hostname=t1"
        );
    }
}
