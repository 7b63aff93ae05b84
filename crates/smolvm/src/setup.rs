//! `smolvm setup` and `smolvm doctor`: host prerequisites, the kernel and the images.

use std::path::PathBuf;
use std::process::Command;

use serde::Serialize;

use crate::dirs::DataDir;
use crate::error::{Error, Result};
use crate::image::{self, kernel, Progress};
use smolvm_vmm::accel::{self, Accel, AccelChoice};

/// Debian packages the host needs: QEMU to run guests; the kernel source and its build
/// tools; busybox-static for the minimal image; debootstrap and e2fsprogs (mkfs.ext4 -d,
/// debugfs) for the Debian image.
pub const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-utils",
    "busybox-static",
    "debootstrap",
    "e2fsprogs",
    "linux-source-6.1",
    "build-essential",
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "xz-utils",
];

/// The packages of [`HOST_PACKAGES`] that are not installed.
pub fn missing_packages() -> Vec<&'static str> {
    HOST_PACKAGES
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect()
}

fn package_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", name])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The command that installs `packages`.
pub fn install_command(packages: &[&str]) -> String {
    format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    )
}

fn is_root() -> bool {
    smolvm_sys::process::euid() == 0
}

/// What `setup` did, step by step.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    /// Packages installed by this run.
    pub installed_packages: Vec<String>,
    /// Whether the kernel was (re)built.
    pub kernel_built: bool,
    /// Whether the images were (re)built.
    pub images_built: bool,
    /// The data directory used.
    pub data_dir: PathBuf,
}

impl SetupReport {
    /// Whether this run changed nothing (everything was already in place).
    pub fn was_noop(&self) -> bool {
        self.installed_packages.is_empty() && !self.kernel_built && !self.images_built
    }
}

/// Installs missing host packages (as root; otherwise fails with the exact command), builds
/// the kernel and the images when their inputs changed. Re-running is a no-op.
pub fn setup(
    data: &DataDir,
    agent: Option<PathBuf>,
    progress: &dyn Progress,
) -> Result<SetupReport> {
    let missing = missing_packages();
    if !missing.is_empty() {
        if !is_root() {
            return Err(Error::MissingProgram {
                program: "host packages",
                hint: format!(
                    "missing {}; run as root: {}",
                    missing.join(", "),
                    install_command(&missing)
                ),
            });
        }
        progress.step(&format!("installing {}", missing.join(" ")));
        apt_get(&["update", "-q"], progress)?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(missing.iter().copied());
        apt_get(&args, progress)?;
        progress.finish("packages installed");
    }
    if is_root() {
        ensure_qemu_user(progress)?;
    }
    data.ensure_private()?;
    let kernel_built = kernel::build(data, progress)?;
    let agent = match agent {
        Some(path) => path,
        None => image::find_agent()?,
    };
    let minimal_built = image::initramfs::build(data, &agent, progress)?;
    let debian_built = image::debian::build(
        data,
        &image::debian::DebianSpec::default_image(),
        &agent,
        progress,
    )?;
    let images_built = minimal_built || debian_built;
    // Measure and cache the TSC frequency now rather than at the first boot.
    let _ = accel::tsc_khz(&data.host_facts());
    Ok(SetupReport {
        installed_packages: missing.iter().map(|s| s.to_string()).collect(),
        kernel_built,
        images_built,
        data_dir: data.root().to_path_buf(),
    })
}

/// Creates the unprivileged system user that confined QEMUs run as (see
/// [`smolvm_vmm::jail`]), if it does not exist yet.
fn ensure_qemu_user(progress: &dyn Progress) -> Result<()> {
    use smolvm_vmm::jail::{lookup_user, QEMU_USER};
    if lookup_user(QEMU_USER).is_some() {
        return Ok(());
    }
    progress.tick(&format!("creating the system user {QEMU_USER}"));
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            QEMU_USER,
        ])
        .output()
        .map_err(|e| Error::io("running useradd", e))?;
    if !out.status.success() && lookup_user(QEMU_USER).is_none() {
        return Err(Error::io(
            format!("creating the user {QEMU_USER}"),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    Ok(())
}

fn apt_get(args: &[&str], progress: &dyn Progress) -> Result<()> {
    progress.tick(&format!("apt-get {}", args.join(" ")));
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| Error::io("running apt-get", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Build(format!(
            "apt-get {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// One prerequisite as `doctor` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it is in order.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to fix it, when not ok.
    pub fix: Option<String>,
}

fn check(name: &str, result: std::result::Result<String, (String, String)>) -> Check {
    match result {
        Ok(detail) => Check {
            name: name.into(),
            ok: true,
            detail,
            fix: None,
        },
        Err((detail, fix)) => Check {
            name: name.into(),
            ok: false,
            detail,
            fix: Some(fix),
        },
    }
}

/// How VMs started now would have their QEMU confined (see [`smolvm_vmm::jail`]).
fn confinement_check(data: &DataDir, accel: &AccelChoice) -> Check {
    use smolvm_vmm::jail::{self, Confinement, QEMU_USER};
    let qemu = smolvm_vmm::qemu::find_qemu().unwrap_or_default();
    let confinement = jail::choose(&data.root().join("vms"), &qemu, accel.accel == Accel::Kvm);
    let mut detail = confinement.describe();
    if accel.accel == Accel::Tcg {
        // QEMU's own security policy: only virtualisation (KVM) is a security boundary.
        detail.push_str("; note: under software emulation (TCG) QEMU does not treat the guest as a security boundary");
    }
    let problem = match &confinement {
        Confinement::Off => Some("unset SMOLVM_UNCONFINED".to_string()),
        Confinement::Jailed(j) if j.user_name != QEMU_USER => Some(format!(
            "run `smolvm setup` as root to create the user {QEMU_USER}"
        )),
        _ => None,
    };
    Check {
        name: "confinement".into(),
        ok: problem.is_none(),
        detail,
        fix: problem,
    }
}

/// Checks every prerequisite of running a VM.
pub fn doctor(data: &DataDir) -> Vec<Check> {
    let mut checks = Vec::new();
    let qemu = smolvm_vmm::qemu::find_qemu();
    checks.push(check(
        "qemu",
        match &qemu {
            Ok(path) => match Command::new(path).arg("--version").output() {
                Ok(out) => Ok(format!(
                    "{} ({})",
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .next()
                        .unwrap_or("unknown version"),
                    path.display()
                )),
                Err(e) => Err((
                    format!("{} cannot run: {e}", path.display()),
                    "apt-get install qemu-system-x86".into(),
                )),
            },
            Err(e) => Err((
                e.to_string(),
                "apt-get install qemu-system-x86 (or run `smolvm setup` as root)".into(),
            )),
        },
    ));
    checks.push(check(
        "qemu-img",
        smolvm_vmm::qemu::find_in_path("qemu-img")
            .map(|p| p.display().to_string())
            .ok_or_else(|| {
                (
                    "qemu-img not found".to_string(),
                    "apt-get install qemu-utils".to_string(),
                )
            }),
    ));
    let accel = accel::choose_accel();
    checks.push(Check {
        name: "accel".into(),
        ok: true,
        detail: format!("{}: {}", accel.accel.as_str(), accel.reason),
        fix: None,
    });
    checks.push(confinement_check(data, &accel));
    let missing = missing_packages();
    checks.push(check(
        "host packages",
        if missing.is_empty() {
            Ok(format!("{} packages installed", HOST_PACKAGES.len()))
        } else {
            Err((
                format!("missing: {}", missing.join(", ")),
                format!("smolvm setup (as root), or {}", install_command(&missing)),
            ))
        },
    ));
    checks.push(check(
        "kernel",
        if data.kernel().is_file() {
            Ok(data.kernel().display().to_string())
        } else {
            Err((
                format!("{} missing", data.kernel().display()),
                "smolvm setup".into(),
            ))
        },
    ));
    for name in [image::DEBIAN, image::MINIMAL] {
        checks.push(check(
            &format!("image {name}"),
            image::rootfs_of(data, name)
                .map(|p| p.display().to_string())
                .map_err(|e| (e.to_string(), "smolvm setup".into())),
        ));
    }
    checks.push(check(
        "data dir",
        data.ensure_private()
            .map(|()| data.root().display().to_string())
            .map_err(|e| match e {
                Error::UnsafeDataDir { problem, fix, .. } => {
                    (format!("{}: {problem}", data.root().display()), fix)
                }
                e => (
                    format!("{}: {e}", data.root().display()),
                    "set SMOLVM_DATA_DIR to a writable directory".into(),
                ),
            }),
    ));
    checks
}
