//! QEMU `-M microvm`: a minimal machine (no PCI, no ACPI, no firmware scan) that boots a Linux
//! kernel directly, with virtio devices on MMIO.

use std::fs::{File, OpenOptions};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use smolvm_protocol::AGENT_PORT_NAME;

use crate::accel::{Accel, AccelChoice};
use crate::error::{Error, Result};
use crate::inherit::Inherited;
use crate::jail::Confinement;
use crate::machine::Machine;
use crate::spec::{MachineSpec, RootDevice};
use crate::{Backend, LaunchOptions, PreparedVm};

mod machine;
pub mod qcow2;
pub mod qmp;

pub use machine::QemuMachine;

/// QEMU's seccomp policy: its own filter, with every optional group denied.
pub const SECCOMP_ARGS: &str =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

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

    /// The QEMU program.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The kernel command line: the user's part, then what this machine needs.
    pub fn kernel_cmdline(&self, spec: &MachineSpec) -> String {
        let mut line = spec.boot_args.clone();
        if let RootDevice::Disk { .. } = spec.root {
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
        line.push_str(&format!(" smolvm.hostname={}", spec.name));
        line
    }
}

/// Where QEMU finds each inherited descriptor.
pub mod fd {
    /// The migration stream of a restore (`-incoming fd:3`).
    pub const INCOMING: i32 = 3;
    /// The guest channel (virtio-serial port's chardev).
    pub const CHANNEL: i32 = 4;
    /// QEMU's monitor (QMP).
    pub const QMP: i32 = 5;
    /// The serial console.
    pub const CONSOLE: i32 = 6;
    /// The kernel, read through `/proc/self/fd`.
    pub const KERNEL: i32 = 7;
    /// The initramfs, read through `/proc/self/fd`.
    pub const INITRD: i32 = 8;
    /// The VM's overlay, read-write, in fd set 1.
    pub const OVERLAY_RW: i32 = 9;
    /// The VM's overlay, read-only, in fd set 1 (QEMU may reopen it either way).
    pub const OVERLAY_RO: i32 = 10;
    /// The overlay's base, read-only, in fd set 2.
    pub const BASE: i32 = 11;
}

/// Opens `path` read-only without following a symlink at its last component.
fn open_ro(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A file QEMU reads through `/proc/self/fd/N`: that path reopens the file and checks its
/// mode, so a jailed QEMU (another uid) gets a private in-memory copy of one only its owner
/// may read.
fn boot_file(path: &Path, jailed: bool) -> std::io::Result<OwnedFd> {
    let mut file = open_ro(path)?;
    if !jailed || crate::jail::world_readable(path) {
        return Ok(file.into());
    }
    let name = c"smolvm-boot-file";
    // SAFETY: memfd_create with a valid NUL-terminated name and flags; the result is checked.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if raw == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that we now own.
    let mut copy = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    std::io::copy(&mut file, &mut copy)?;
    Ok(copy.into())
}

fn socket_pair() -> std::io::Result<(UnixStream, OwnedFd)> {
    let (ours, theirs) = UnixStream::pair()?;
    Ok((ours, theirs.into()))
}

impl Backend for QemuBackend {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn accel(&self) -> &'static str {
        self.accel.accel.as_str()
    }

    fn confinement(&self, jail_root: &Path) -> Confinement {
        crate::jail::choose(jail_root, &self.binary, self.accel.accel == Accel::Kvm)
    }

    fn machine(&self, monitor: UnixStream, _pid: u32) -> Box<dyn Machine> {
        Box::new(QemuMachine::new(monitor))
    }

    fn prepare(&self, spec: &MachineSpec, options: LaunchOptions) -> Result<PreparedVm> {
        let open_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| Error::Open { path, source }
        };
        let pair_error = |e| Error::io("cannot create a socket pair", e);
        let jailed = matches!(options.confinement, Confinement::Jailed(_));
        let mut inherited = Inherited::new();
        let mut cmd = Command::new(&self.binary);
        // A name that says which VM this is in `ps` (the command line names no files).
        cmd.args(["-name", &format!("smolvm-{}", spec.name)]);
        // acpi=off: our kernel has no ACPI, and only then does QEMU put the virtio-mmio devices
        // on the kernel command line. The RTC stays: without it the kernel's clock read at
        // boot waits a full second for an update flag that never clears.
        cmd.args(["-M", "microvm,acpi=off,x-option-roms=off"]);
        match self.accel.accel {
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => cmd.args(["-accel", "tcg", "-cpu", "max"]),
        };
        if options.confinement.seccomp() {
            cmd.args(["-sandbox", SECCOMP_ARGS]);
        }
        cmd.args(["-m", &format!("{}M", spec.memory_mib)]);
        cmd.args(["-smp", &spec.vcpus.to_string()]);
        cmd.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        let kernel = boot_file(&spec.kernel, jailed).map_err(open_error(&spec.kernel))?;
        let kernel = inherited.add(kernel, fd::KERNEL);
        cmd.args(["-kernel", &format!("/proc/self/fd/{kernel}")]);
        match &spec.root {
            RootDevice::Initramfs(path) => {
                let initrd = boot_file(path, jailed).map_err(open_error(path))?;
                let initrd = inherited.add(initrd, fd::INITRD);
                cmd.args(["-initrd", &format!("/proc/self/fd/{initrd}")]);
            }
            RootDevice::Disk { overlay, base } => {
                // The machine's own overlay (made before launch) over its base, both handed
                // over as descriptors; the base only ever read-only. The overlay's header must
                // name that very base (a tampered snapshot could name any file).
                qcow2::check_overlay(overlay, base).map_err(Error::RefusedDisk)?;
                let rw = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(overlay)
                    .map_err(open_error(overlay))?;
                let ro = open_ro(overlay).map_err(open_error(overlay))?;
                let base_file = open_ro(base).map_err(open_error(base))?;
                for (file, target, set) in [
                    (OwnedFd::from(rw), fd::OVERLAY_RW, 1),
                    (OwnedFd::from(ro), fd::OVERLAY_RO, 1),
                    (OwnedFd::from(base_file), fd::BASE, 2),
                ] {
                    let n = inherited.add(file, target);
                    cmd.args(["-add-fd", &format!("fd={n},set={set}")]);
                }
                // discard=unmap lets the guest's frees shrink the overlay.
                let no_flush = if spec.volatile_disk {
                    ",cache.no-flush=on"
                } else {
                    ""
                };
                cmd.args([
                    "-blockdev",
                    "driver=file,node-name=base-file,filename=/dev/fdset/2,read-only=on",
                    "-blockdev",
                    "driver=raw,node-name=base,file=base-file,read-only=on",
                    "-blockdev",
                    &format!(
                        "driver=file,node-name=disk-file,filename=/dev/fdset/1,discard=unmap{no_flush}"
                    ),
                    "-blockdev",
                    &format!(
                        "driver=qcow2,node-name=rootfs,file=disk-file,backing=base,discard=unmap{no_flush}"
                    ),
                ]);
                cmd.args(["-device", "virtio-blk-device,drive=rootfs"]);
            }
        }
        cmd.arg("-append").arg(self.kernel_cmdline(spec));
        let (console, qemu_console) = socket_pair().map_err(pair_error)?;
        let n = inherited.add(qemu_console, fd::CONSOLE);
        cmd.args(["-chardev", &format!("socket,id=console,fd={n}")]);
        cmd.args(["-serial", "chardev:console"]);
        // The guest channel: connected before the guest even starts (no disconnected window,
        // no reconnect race), and no socket file for anyone else to reach.
        let (channel, qemu_channel) = socket_pair().map_err(pair_error)?;
        let n = inherited.add(qemu_channel, fd::CHANNEL);
        cmd.args(["-chardev", &format!("socket,id=agent,fd={n}")]);
        cmd.args(["-device", "virtio-serial-device,max_ports=2"]);
        cmd.args([
            "-device",
            &format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME}"),
        ]);
        cmd.args(["-device", "virtio-rng-device"]);
        // The monitor drives pause, resume and snapshots; only the supervisor holds its
        // other end (anyone reaching a QMP socket could make QEMU do anything it may).
        let (monitor, qemu_qmp) = socket_pair().map_err(pair_error)?;
        let n = inherited.add(qemu_qmp, fd::QMP);
        cmd.args(["-chardev", &format!("socket,id=qmp,fd={n}")]);
        cmd.args(["-mon", "chardev=qmp,mode=control"]);
        if let Some(incoming) = options.incoming {
            let n = inherited.add(incoming, fd::INCOMING);
            cmd.args(["-incoming", &format!("fd:{n}")]);
        }
        Ok(PreparedVm {
            command: cmd,
            inherited,
            channel,
            monitor,
            console,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch VM directory with a kernel, an initramfs, a base and an overlay naming it.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("smolvm-qemu-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("k"), b"kernel").unwrap();
            std::fs::write(dir.join("i"), b"initrd").unwrap();
            std::fs::write(dir.join("base.ext4"), b"base").unwrap();
            let scratch = Self(dir);
            scratch.overlay_over("base.ext4");
            scratch
        }

        /// (Re)creates `overlay.qcow2` naming `backing` as its base.
        fn overlay_over(&self, backing: &str) {
            let out = Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing])
                .args(["overlay.qcow2", "1M"])
                .current_dir(&self.0)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }

        fn config(&self) -> MachineSpec {
            MachineSpec {
                name: "t1".into(),
                vcpus: 2,
                memory_mib: 256,
                kernel: self.0.join("k"),
                root: RootDevice::Initramfs(self.0.join("i")),
                boot_args: "console=ttyS0".into(),
                volatile_disk: false,
            }
        }

        fn disk(&self) -> MachineSpec {
            MachineSpec {
                root: RootDevice::Disk {
                    overlay: self.0.join("overlay.qcow2"),
                    base: self.0.join("base.ext4"),
                },
                ..self.config()
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn backend(accel: Accel) -> QemuBackend {
        QemuBackend::new(
            "q".into(),
            AccelChoice {
                accel,
                reason: String::new(),
            },
            2_000_000,
        )
    }

    fn args_for(
        backend: &QemuBackend,
        spec: &MachineSpec,
        confinement: Confinement,
    ) -> Result<Vec<String>> {
        let prepared = backend.prepare(
            spec,
            LaunchOptions {
                incoming: None,
                confinement,
            },
        )?;
        Ok(prepared
            .command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect())
    }

    #[test]
    fn tcg_command_line_has_the_measured_essentials_and_names_no_files() {
        let scratch = Scratch::new("tcg");
        let args = args_for(
            &backend(Accel::Tcg),
            &scratch.config(),
            Confinement::Seccomp,
        )
        .unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg -cpu max"));
        assert!(joined.contains("-m 256M -smp 2"));
        assert!(joined.contains("-no-reboot"));
        assert!(joined.contains(
            "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
        ));
        assert!(
            joined.contains("-kernel /proc/self/fd/7 -initrd /proc/self/fd/8"),
            "{joined}"
        );
        assert!(joined.contains("-chardev socket,id=agent,fd=4"), "{joined}");
        assert!(joined.contains("-chardev socket,id=qmp,fd=5 -mon chardev=qmp,mode=control"));
        assert!(
            !joined.contains(&scratch.0.display().to_string()),
            "names a file: {joined}"
        );
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert_eq!(
            append,
            "console=ttyS0 tsc_early_khz=2000000 norandmaps smolvm.hostname=t1"
        );
        let off = args_for(&backend(Accel::Tcg), &scratch.config(), Confinement::Off)
            .unwrap()
            .join(" ");
        assert!(!off.contains("-sandbox"), "{off}");
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_no_tsc_hint() {
        let scratch = Scratch::new("kvm");
        let joined = args_for(
            &backend(Accel::Kvm),
            &scratch.config(),
            Confinement::Seccomp,
        )
        .unwrap()
        .join(" ");
        assert!(joined.contains("-accel kvm -cpu host"));
        assert!(!joined.contains("tsc_early_khz") && !joined.contains("norandmaps"));
    }

    #[test]
    fn disk_roots_boot_their_overlay_over_their_base_by_descriptor() {
        let scratch = Scratch::new("disk");
        let backend = backend(Accel::Kvm);
        let disk = scratch.disk();
        let args = args_for(&backend, &disk, Confinement::Seccomp).unwrap();
        let joined = args.join(" ");
        assert!(!joined.contains("-initrd"), "{joined}");
        assert!(
            joined.contains("-add-fd fd=9,set=1 -add-fd fd=10,set=1 -add-fd fd=11,set=2"),
            "{joined}"
        );
        assert!(
            joined.contains("driver=qcow2,node-name=rootfs,file=disk-file,backing=base"),
            "{joined}"
        );
        assert!(
            joined.contains("driver=file,node-name=base-file,filename=/dev/fdset/2,read-only=on")
        );
        assert!(joined.contains("-device virtio-blk-device,drive=rootfs"));
        assert!(!joined.contains("no-flush"), "{joined}");
        let volatile_disk = MachineSpec {
            volatile_disk: true,
            ..disk
        };
        let volatile = args_for(&backend, &volatile_disk, Confinement::Seccomp)
            .unwrap()
            .join(" ");
        assert!(
            volatile.contains("discard=unmap,cache.no-flush=on"),
            "{volatile}"
        );
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert_eq!(
            append,
            "console=ttyS0 root=/dev/vda rw rootfstype=ext4 smolvm.hostname=t1"
        );
    }

    #[test]
    fn an_overlay_naming_another_base_is_refused() {
        let scratch = Scratch::new("tampered");
        scratch.overlay_over("/etc/passwd");
        let err = args_for(&backend(Accel::Kvm), &scratch.disk(), Confinement::Seccomp)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/passwd") && err.contains("refusing"),
            "{err}"
        );
    }
}
