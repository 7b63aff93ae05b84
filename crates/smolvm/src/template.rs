//! Pre-booted templates: a snapshot of a freshly booted guest of an image, taken once, that
//! new VMs of the same shape start from instead of booting (the fast path of `SmolVM()`).
//!
//! A template is keyed by image, vCPUs and memory, and stamped with a fingerprint of
//! everything it was booted from: the kernel, the image's root filesystem and build hash (which
//! covers the agent inside it), QEMU and the accelerator. A template whose fingerprint no
//! longer matches is rebuilt before use. Only VMs booted the default way (the image's kernel,
//! root filesystem and boot arguments) can use one: anything else would not be the same guest.
//! What differs between VMs (name, hostname, machine id, random seed, clock, environment
//! variables) is applied after the restore, exactly as after a cold boot.

use std::path::{Path, PathBuf};

use crate::config::{ValidConfig, VmConfig, DEFAULT_BOOT_ARGS};
use crate::dirs::DataDir;
use crate::error::{Error, Result};
use crate::image::RootFs;
use crate::launch::Launcher;
use crate::paths::{SnapshotPaths, VmPaths};
use crate::snapshot::{file_identity, read_meta, Compat, SnapshotMeta};
use crate::vm::{SmolVm, SnapshotOptions};

/// The command run in a template's guest before it is saved, so that the shell, its
/// libraries and the login profile are already in the guest's page cache after a restore.
const WARM_UP: &str = "true";

/// The template that VMs configured like `config` would start from, if they can use one.
pub fn key(data: &DataDir, config: &ValidConfig) -> Option<String> {
    let image_rootfs = crate::image::resolve(data, &config.image).ok()?;
    // Configured paths are canonical (see `VmConfig::validate`).
    let default_kernel = data.kernel().canonicalize().ok()?;
    let default_boot = config.boot_args == DEFAULT_BOOT_ARGS
        && config.kernel_path == default_kernel
        && image_rootfs == config.rootfs;
    default_boot.then(|| {
        format!(
            "{}-{}cpu-{}m",
            config.image, config.vcpu_count, config.mem_size_mib
        )
    })
}

/// The directory of template `key`.
pub fn template_dir(data: &DataDir, key: &str) -> PathBuf {
    data.templates_dir().join(key)
}

/// The hash of everything a template of `config` is booted from.
pub fn fingerprint(data: &DataDir, config: &ValidConfig, compat: &Compat) -> String {
    let image_hash = crate::image::meta_of(data, &config.image)
        .map(|m| m.inputs_hash)
        .unwrap_or_default();
    crate::image::hash_inputs(&[
        env!("CARGO_PKG_VERSION").as_bytes(),
        file_identity(&config.kernel_path).as_bytes(),
        file_identity(config.rootfs.path()).as_bytes(),
        image_hash.as_bytes(),
        compat.accel.as_bytes(),
        compat.qemu.as_bytes(),
        &compat.protocol.to_le_bytes(),
        config.boot_args.as_bytes(),
    ])
}

/// The current template for `config`, if one exists and is up to date.
pub fn find_current(data: &DataDir, config: &ValidConfig) -> Option<PathBuf> {
    let key = key(data, config)?;
    let dir = template_dir(data, &key);
    let meta = read_meta(&dir)?;
    let compat = Compat::current().ok()?;
    let fresh = meta.template_fingerprint.as_deref() == Some(&fingerprint(data, config, &compat));
    fresh.then_some(dir)
}

/// The template for `config`, built (or rebuilt, when stale) first if needed. `None` when
/// `config` cannot use a template.
pub fn ensure(
    data: &DataDir,
    config: &ValidConfig,
    launcher: Option<&Launcher>,
) -> Result<Option<PathBuf>> {
    let Some(key) = key(data, config) else {
        return Ok(None);
    };
    if let Some(dir) = find_current(data, config) {
        if SnapshotPaths::new(&dir).memory_raw().is_file() {
            return Ok(Some(dir));
        }
    }
    let parent = data.templates_dir();
    smolvm_sys::fs::create_dir_private(&parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    // One builder per template; the others wait and then use its result.
    let lock_path = parent.join(format!(".{key}.lock"));
    let _lock = smolvm_sys::fs::lock(&lock_path)
        .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
    if let Some(dir) = find_current(data, config) {
        // Made before templates kept their memory uncompressed.
        if !SnapshotPaths::new(&dir).memory_raw().is_file() {
            unpack(&dir)?;
        }
        return Ok(Some(dir));
    }
    // A template that could not be built for these exact inputs is not tried again at every
    // start (each try costs a cold boot); `smolvm setup` or `image build` retries it.
    let marker = failure_marker(data, &key);
    let stamp = fingerprint(data, config, &Compat::current()?);
    if let Some(why) = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|text| text.strip_prefix(&format!("{stamp}\n")).map(str::to_string))
    {
        return Err(template_failed(&key, why));
    }
    if let Err(e) = build(data, config, &key, launcher) {
        let _ = smolvm_sys::fs::write_atomic(&marker, format!("{stamp}\n{e}").as_bytes());
        return Err(e);
    }
    let _ = std::fs::remove_file(&marker);
    Ok(find_current(data, config))
}

/// Where a failed build of template `key` is remembered.
fn failure_marker(data: &DataDir, key: &str) -> PathBuf {
    data.templates_dir().join(format!(".{key}.failed"))
}

fn template_failed(key: &str, why: String) -> Error {
    Error::StartFailed {
        vm_id: format!("template {key}"),
        reason: format!("{why} (remembered; `smolvm setup` tries again)"),
    }
}

/// Makes sure the template for VMs of image `image` in the default shape (as `SmolVM()` and
/// `smolvm run --image IMAGE` start them) exists and is current; `smolvm setup` and
/// `smolvm image build` call this so that the first sandbox already starts fast.
pub fn ensure_for_image(
    data: &DataDir,
    image: &str,
    launcher: Option<&Launcher>,
) -> Result<Option<PathBuf>> {
    let config = VmConfig {
        image: Some(image.to_string()),
        ..VmConfig::default()
    }
    .validate(data)?;
    if let Some(key) = key(data, &config) {
        // Asked for explicitly: try again even if it failed before.
        let _ = std::fs::remove_file(failure_marker(data, &key));
    }
    ensure(data, &config, launcher)
}

/// Boots a VM like `config` from scratch, warms it up and saves it as template `key`,
/// replacing a stale one.
fn build(
    data: &DataDir,
    config: &ValidConfig,
    key: &str,
    launcher: Option<&Launcher>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let compat = Compat::current()?;
    let mut vm = SmolVm::with_data_dir(
        VmConfig {
            vm_id: Some(format!("tpl-{}", smolvm_sys::random::random_hex(4))),
            vcpu_count: config.vcpu_count,
            mem_size_mib: config.mem_size_mib,
            image: Some(config.image.clone()),
            ..VmConfig::default()
        },
        data.clone(),
    )?;
    vm.set_cold(true);
    if let Some(launcher) = launcher {
        vm.set_launcher(launcher.clone());
    }
    vm.start()?;
    vm.run(WARM_UP)?;
    let dir = template_dir(data, key);
    if dir.exists() {
        let stale = data.templates_dir().join(format!(
            ".{key}.stale-{}",
            smolvm_sys::random::random_hex(4)
        ));
        std::fs::rename(&dir, &stale)
            .and_then(|()| std::fs::remove_dir_all(&stale))
            .map_err(|e| Error::io(format!("replacing the stale template {}", dir.display()), e))?;
    }
    let meta = vm.snapshot_into(
        &dir,
        key,
        &SnapshotOptions {
            keep_paused: true,
            ..SnapshotOptions::default()
        },
        Some(fingerprint(data, config, &compat)),
    )?;
    vm.delete()?;
    unpack(&dir)?;
    tracing::info!(
        template = key,
        ms = started.elapsed().as_millis() as u64,
        bytes = meta.stats.as_ref().map_or(0, |s| s.memory_bytes),
        "template built"
    );
    Ok(())
}

/// Templates are restored often: they keep their memory uncompressed as well, so that QEMU
/// reads it straight from the page cache (measured: ~30 ms less per start).
fn unpack(dir: &Path) -> Result<()> {
    crate::supervisor::restore::unpack_memory(dir)
        .map(drop)
        .map_err(|e| {
            Error::io(
                format!("unpacking the template memory in {}", dir.display()),
                e,
            )
        })
}

/// Every template, with its key as id.
pub fn list(data: &DataDir) -> Vec<SnapshotMeta> {
    let mut out = crate::snapshot::list_in(&data.templates_dir());
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Removes every template of image `image` (after the image is removed or rebuilt).
pub fn remove_for_image(data: &DataDir, image: &str) {
    for meta in list(data) {
        if meta.image == image {
            let _ = std::fs::remove_dir_all(template_dir(data, &meta.id));
        }
    }
}

/// Gives a new VM what it restores from `snapshot_dir`: its own copy of the disk overlay
/// (with a link to the overlay's base), and, for a user's snapshot, hard links to the kernel
/// and initramfs it was taken with (so that the sandbox keeps working if the snapshot is
/// removed or the image rebuilt), `config` pointed at them. A current template was booted from
/// the very files `config` names (its fingerprint says so), so `config` stays as the user
/// configured it.
pub(crate) fn prepare_vm_dir(
    paths: &VmPaths,
    snapshot_dir: &Path,
    config: &mut ValidConfig,
    from_template: bool,
) -> Result<()> {
    crate::snapshot::check_files(snapshot_dir)?;
    let snap = SnapshotPaths::new(snapshot_dir);
    let link = |from: &Path, to: &Path| {
        let _ = std::fs::remove_file(to);
        smolvm_sys::fs::link_or_copy(from, to).map_err(|e| {
            Error::io(
                format!("linking {} into {}", from.display(), to.display()),
                e,
            )
        })
    };
    if !from_template {
        link(&snap.kernel(), &paths.kernel_link())?;
        config.kernel_path = paths.kernel_link();
    }
    if snap.overlay().is_file() {
        smolvm_sys::fs::AtomicFile::create(&paths.overlay(), smolvm_sys::fs::PRIVATE_FILE)
            .and_then(|mut tmp| {
                std::io::copy(&mut std::fs::File::open(snap.overlay())?, tmp.file())?;
                tmp.commit()
            })
            .map_err(|e| {
                Error::io(
                    format!("copying the snapshot's disk into {}", paths.dir().display()),
                    e,
                )
            })?;
        // Otherwise the overlay names its base by absolute path.
        if snap.base().is_file() {
            link(&snap.base(), &paths.base_link())?;
            if !from_template {
                config.rootfs = RootFs::Disk(paths.base_link());
            }
        }
    } else if !from_template {
        link(&snap.initrd(), &paths.initrd_link())?;
        config.rootfs = RootFs::Initramfs(paths.initrd_link());
    }
    Ok(())
}
