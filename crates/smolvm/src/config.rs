//! VM configuration: plain data that the user fills in, and the validated form the VM runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use smolvm_protocol::{validate_env_key, validate_env_set, validate_env_value};
use smolvm_vmm::{MachineSpec, RootDevice};

use crate::dirs::DataDir;
use crate::error::{Error, Result};
pub use crate::names::validate_vm_id;
use crate::paths::VmPaths;

/// The kernel command line the default image boots with. Always extended by the backend with
/// what the machine needs (see `backend::qemu::kernel_cmdline`).
/// - `console=ttyS0`: the console log (`smolvm logs`).
/// - `reboot=t`: reset through a triple fault, so the agent's reboot makes QEMU (`-no-reboot`)
///   exit; microvm has no ACPI to power off with.
/// - `panic=-1`: a kernel panic resets at once, ending the VM instead of hanging it.
/// - `init=/init rdinit=/init`: our agent is PID 1 on a disk root and in an initramfs alike.
/// - `quiet`: console output is slow under emulation (each byte is a trapped port write).
pub const DEFAULT_BOOT_ARGS: &str = "console=ttyS0 reboot=t panic=-1 init=/init rdinit=/init quiet";

/// Name of the image used when none is given: Debian with python3. `minimal` (busybox in an
/// initramfs) starts fastest.
pub const DEFAULT_IMAGE: &str = crate::image::DEBIAN;

/// The image name recorded for a VM booted from `rootfs_path` without an image name.
pub const CUSTOM_IMAGE: &str = "custom";

pub use crate::image::RootFs;

/// Smallest memory a guest boots with reliably.
pub const MIN_MEMORY_MIB: u32 = 64;

/// Most vCPUs a guest may have.
pub const MAX_VCPUS: u32 = 64;

/// What the user asks for. Field names follow the reference API (`VMConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// The VM's id; a random `vm-xxxxxxxx` when absent.
    pub vm_id: Option<String>,
    /// Number of vCPUs (default 1).
    pub vcpu_count: u32,
    /// Guest memory in MiB (default 512).
    pub mem_size_mib: u32,
    /// A kernel to boot instead of the one `smolvm setup` built.
    pub kernel_path: Option<PathBuf>,
    /// A root filesystem to boot instead of the image's: an initramfs (newc `.cpio`, optionally
    /// gzip/lz4) or an ext4 image, with the static agent as `/init`. An ext4 image is never
    /// written: the VM writes to a qcow2 overlay of its own.
    pub rootfs_path: Option<PathBuf>,
    /// Kernel command line; [`DEFAULT_BOOT_ARGS`] when absent.
    pub boot_args: Option<String>,
    /// Environment variables in place before `start()` returns.
    pub env_vars: BTreeMap<String, String>,
    /// Image name (default [`DEFAULT_IMAGE`]); when `rootfs_path` is set it is only a label
    /// (default [`CUSTOM_IMAGE`]).
    pub image: Option<String>,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            vm_id: None,
            vcpu_count: 1,
            mem_size_mib: 512,
            kernel_path: None,
            rootfs_path: None,
            boot_args: None,
            env_vars: BTreeMap::new(),
            image: None,
        }
    }
}

/// A configuration that passed validation, with every path resolved. Only this type can start
/// a VM, so an invalid configuration never reaches QEMU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidConfig {
    /// The VM's id.
    pub vm_id: String,
    /// Number of vCPUs.
    pub vcpu_count: u32,
    /// Guest memory in MiB.
    pub mem_size_mib: u32,
    /// Kernel image.
    pub kernel_path: PathBuf,
    /// Root filesystem: an initramfs, or an ext4 base under a per-VM overlay.
    #[serde(alias = "initrd_path", deserialize_with = "rootfs_or_legacy_initrd")]
    pub rootfs: RootFs,
    /// Kernel command line chosen by the user (machine essentials are added at launch).
    pub boot_args: String,
    /// Environment variables to inject at boot.
    pub env_vars: BTreeMap<String, String>,
    /// Image name, for display.
    pub image: String,
}

/// A fresh random VM id (`vm-` and 8 hex digits).
pub fn random_vm_id() -> String {
    format!("vm-{:08x}", smolvm_sys::random::random_u64() as u32)
}

/// vCPUs and memory within what this host can run.
fn check_sizing(vcpu_count: u32, mem_size_mib: u32) -> Result<()> {
    if vcpu_count == 0 || vcpu_count > MAX_VCPUS {
        return Err(Error::InvalidConfig {
            field: "vcpu_count",
            reason: format!("{vcpu_count} vCPUs requested; use 1 to {MAX_VCPUS}"),
        });
    }
    let host_mib = smolvm_sys::process::total_memory_mib();
    if mem_size_mib < MIN_MEMORY_MIB || u64::from(mem_size_mib) > host_mib {
        return Err(Error::InvalidConfig {
            field: "mem_size_mib",
            reason: format!(
                "{mem_size_mib} MiB requested; use {MIN_MEMORY_MIB} MiB up to the host's {host_mib} MiB"
            ),
        });
    }
    Ok(())
}

/// The kernel command line is one line of text.
fn check_boot_args(boot_args: &str) -> Result<()> {
    if boot_args.contains(['\n', '\0']) {
        return Err(Error::InvalidConfig {
            field: "boot_args",
            reason: "must be a single line".into(),
        });
    }
    Ok(())
}

impl ValidConfig {
    /// Checks again what [`VmConfig::validate`] checked of a configuration read back from
    /// disk (a snapshot's `snapshot.json` is a file another process could have edited): name,
    /// sizing, environment variables and boot arguments.
    pub fn recheck(&self) -> Result<()> {
        validate_vm_id(&self.vm_id)?;
        check_sizing(self.vcpu_count, self.mem_size_mib)?;
        for (key, value) in &self.env_vars {
            validate_env_key(key)?;
            validate_env_value(key, value)?;
        }
        check_boot_args(&self.boot_args)
    }
}

impl VmConfig {
    /// Validates every field and resolves paths against `data`. Errors name the field.
    pub fn validate(&self, data: &DataDir) -> Result<ValidConfig> {
        let vm_id = match &self.vm_id {
            Some(id) => {
                validate_vm_id(id)?;
                id.clone()
            }
            None => random_vm_id(),
        };
        check_sizing(self.vcpu_count, self.mem_size_mib)?;
        for (key, value) in &self.env_vars {
            validate_env_key(key)?;
            validate_env_value(key, value)?;
        }
        validate_env_set(&self.env_vars)?;
        let image = match (&self.image, &self.rootfs_path) {
            (Some(image), _) => image.clone(),
            (None, Some(_)) => CUSTOM_IMAGE.to_string(),
            (None, None) => DEFAULT_IMAGE.to_string(),
        };
        let kernel_path = match &self.kernel_path {
            Some(path) => existing(path, "kernel_path", "pass the path of a bzImage or vmlinux")?,
            None => existing(
                &data.kernel(),
                "guest kernel",
                "run `smolvm setup` to build it",
            )?,
        };
        let rootfs = match &self.rootfs_path {
            Some(path) => crate::image::disk::inspect_custom_rootfs(&existing(
                path,
                "rootfs_path",
                "pass the path of an initramfs .cpio or an ext4 image",
            )?)?,
            None => crate::image::resolve(data, &image)?,
        };
        let boot_args = self
            .boot_args
            .clone()
            .unwrap_or_else(|| DEFAULT_BOOT_ARGS.to_string());
        check_boot_args(&boot_args)?;
        Ok(ValidConfig {
            vm_id,
            vcpu_count: self.vcpu_count,
            mem_size_mib: self.mem_size_mib,
            kernel_path,
            rootfs,
            boot_args,
            env_vars: self.env_vars.clone(),
            image,
        })
    }
}

/// Reads `rootfs`, or the `initrd_path` of a sandbox created before disk images existed, so
/// that such a sandbox can still be attached to and started.
fn rootfs_or_legacy_initrd<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<RootFs, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Current(RootFs),
        Legacy(PathBuf),
    }
    Ok(match Repr::deserialize(deserializer)? {
        Repr::Current(rootfs) => rootfs,
        Repr::Legacy(path) => RootFs::Initramfs(path),
    })
}

fn existing(path: &std::path::Path, what: &'static str, hint: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()))
    } else {
        Err(Error::MissingFile {
            what,
            path: path.to_path_buf(),
            hint: hint.to_string(),
        })
    }
}

impl ValidConfig {
    /// The backend-neutral machine this configuration describes, for a VM whose files are in
    /// `paths` (a disk root boots the VM's own overlay over its base — the link to it a
    /// restored VM keeps, when present). `volatile_disk`: the overlay dies with the VM.
    pub fn machine_spec(&self, paths: &VmPaths, volatile_disk: bool) -> MachineSpec {
        let root = match &self.rootfs {
            RootFs::Initramfs(path) => RootDevice::Initramfs(path.clone()),
            RootFs::Disk(base) => RootDevice::Disk {
                overlay: paths.overlay(),
                base: if paths.base_link().is_file() {
                    paths.base_link()
                } else {
                    base.clone()
                },
            },
        };
        MachineSpec {
            name: self.vm_id.clone(),
            memory_mib: self.mem_size_mib,
            vcpus: self.vcpu_count,
            kernel: self.kernel_path.clone(),
            root,
            boot_args: self.boot_args.clone(),
            volatile_disk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_ids_are_hostname_safe() {
        for good in ["api-server", "a", "vm-0123abcd", "1x"] {
            assert!(validate_vm_id(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "A", "a_b", "a/b", "..", "a b", &"x".repeat(64)] {
            let err = validate_vm_id(bad).unwrap_err().to_string();
            assert!(err.contains("vm_id"), "{err}");
        }
        assert!(validate_vm_id(&random_vm_id()).is_ok());
    }

    #[test]
    fn bad_sizes_name_the_field_and_the_range() {
        let data = DataDir::at("/nonexistent");
        let err = VmConfig {
            mem_size_mib: 32,
            ..Default::default()
        }
        .validate(&data)
        .unwrap_err();
        assert!(
            err.to_string().contains("mem_size_mib") && err.to_string().contains("64 MiB"),
            "{err}"
        );
        let err = VmConfig {
            mem_size_mib: u32::MAX,
            ..Default::default()
        }
        .validate(&data)
        .unwrap_err();
        assert!(err.to_string().contains("host's"), "{err}");
        let err = VmConfig {
            vcpu_count: 0,
            ..Default::default()
        }
        .validate(&data)
        .unwrap_err();
        assert!(err.to_string().contains("vcpu_count"), "{err}");
    }

    #[test]
    fn invalid_env_keys_are_refused_before_anything_else() {
        let mut config = VmConfig::default();
        config.env_vars.insert("has-dash".into(), "x".into());
        let err = config.validate(&DataDir::at("/nonexistent")).unwrap_err();
        assert!(
            err.to_string().contains("Invalid environment variable key"),
            "{err}"
        );
    }

    #[test]
    fn env_values_too_large_to_exec_are_refused() {
        let data = DataDir::at("/nonexistent");
        let mut config = VmConfig::default();
        config.env_vars.insert(
            "BIG".into(),
            "x".repeat(smolvm_protocol::MAX_ENV_ENTRY_BYTES),
        );
        let err = config.validate(&data).unwrap_err().to_string();
        assert!(err.contains("too long") && err.contains("BIG"), "{err}");

        let mut config = VmConfig::default();
        for i in 0..9 {
            config
                .env_vars
                .insert(format!("V{i}"), "x".repeat(120 * 1024));
        }
        let err = config.validate(&data).unwrap_err().to_string();
        assert!(err.contains("budget"), "{err}");
    }

    #[test]
    fn rootfs_round_trips_and_old_specs_still_load() {
        let config = ValidConfig {
            vm_id: "a".into(),
            vcpu_count: 1,
            mem_size_mib: 256,
            kernel_path: "/k".into(),
            rootfs: RootFs::Disk("/images/debian/rootfs.ext4".into()),
            boot_args: String::new(),
            env_vars: BTreeMap::new(),
            image: "debian".into(),
        };
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json["rootfs"],
            serde_json::json!({"kind": "disk", "path": "/images/debian/rootfs.ext4"})
        );
        assert_eq!(serde_json::from_value::<ValidConfig>(json).unwrap(), config);
        let old = serde_json::json!({
            "vm_id": "a", "vcpu_count": 1, "mem_size_mib": 256, "kernel_path": "/k",
            "initrd_path": "/images/minimal/initramfs.cpio", "boot_args": "",
            "env_vars": {}, "image": "minimal"
        });
        let loaded: ValidConfig = serde_json::from_value(old).unwrap();
        assert_eq!(
            loaded.rootfs,
            RootFs::Initramfs("/images/minimal/initramfs.cpio".into())
        );
    }

    #[test]
    fn missing_kernel_says_run_setup() {
        let err = VmConfig::default()
            .validate(&DataDir::at("/nonexistent"))
            .unwrap_err();
        assert!(err.to_string().contains("smolvm setup"), "{err}");
    }
}
