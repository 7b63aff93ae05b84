//! Guest images and the guest kernel: building them once, finding them at boot.
//!
//! Two kinds of root filesystem: an initramfs (`minimal`, loaded into guest RAM, the fastest
//! start) and an ext4 disk image (`debian`), which every VM boots through a qcow2 overlay of
//! its own so that the shared base is never written (see [`disk`]).

pub mod debian;
pub mod disk;
pub mod initramfs;
pub mod kernel;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dirs::DataDir;
use crate::error::{Error, Result};

/// The busybox initramfs image: the fastest start.
pub const MINIMAL: &str = "minimal";
/// The benchmark-only image whose `/init` resets the machine at once (the boot floor).
pub const FLOOR: &str = "floor";
/// The Debian bookworm image with python3: the default.
pub const DEBIAN: &str = "debian";

/// File name of an initramfs image's root filesystem.
const INITRAMFS_FILE: &str = "initramfs.cpio";
/// File name of a disk image's root filesystem (raw ext4, read-only once built).
const EXT4_FILE: &str = "rootfs.ext4";
/// File name of an image's metadata.
const IMAGE_META_FILE: &str = "image.json";

/// A guest's root filesystem, as the VM boots it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum RootFs {
    /// A newc cpio archive the kernel unpacks into RAM (`-initrd`).
    Initramfs(PathBuf),
    /// A raw ext4 image. It is the read-only base of a per-VM qcow2 overlay and is never
    /// opened for writing.
    Disk(PathBuf),
}

impl RootFs {
    /// The file holding the root filesystem.
    pub fn path(&self) -> &Path {
        match self {
            RootFs::Initramfs(path) | RootFs::Disk(path) => path,
        }
    }
}

/// Kind recorded in `image.json` for an initramfs image.
pub const KIND_INITRAMFS: &str = "initramfs";
/// Kind recorded in `image.json` for an ext4 disk image.
pub const KIND_EXT4: &str = "ext4";

/// What was recorded about a built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// Image name.
    pub name: String,
    /// [`KIND_INITRAMFS`] or [`KIND_EXT4`].
    pub kind: String,
    /// Hash of every input; a different hash means the image must be rebuilt.
    pub inputs_hash: String,
    /// Size of the root filesystem file in bytes (for ext4: the disk size the guest sees).
    pub size_bytes: u64,
    /// What it was built from, e.g. `debian bookworm minbase` (absent for initramfs images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Debian packages installed on top of the base (python3 and the requested ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// When it was built, seconds since the Unix epoch.
    #[serde(default)]
    pub built_at_unix: u64,
    /// How long the build took, in milliseconds (the last full build, for a Debian image whose
    /// agent was replaced since).
    #[serde(default)]
    pub build_ms: u64,
    /// Hash of the inputs other than the agent (Debian images): while it matches, a new agent
    /// is swapped into the existing image instead of building it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_hash: Option<String>,
}

impl ImageMeta {
    /// The image's root filesystem inside `dir`, by kind.
    fn rootfs_in(&self, dir: &Path) -> RootFs {
        if self.kind == KIND_EXT4 {
            RootFs::Disk(dir.join(EXT4_FILE))
        } else {
            RootFs::Initramfs(dir.join(INITRAMFS_FILE))
        }
    }
}

/// The root filesystem of image `name`, with its kind, or an error that says how to get it
/// (an unknown name lists the images that exist).
pub fn resolve(data: &DataDir, name: &str) -> Result<RootFs> {
    // The name becomes a path: nothing but a valid image name may reach the filesystem.
    if crate::names::validate_vm_id(name).is_err() {
        return Err(unknown_image(data, name));
    }
    let dir = data.image_dir(name);
    if let Some(meta) = read_meta(&dir) {
        let rootfs = meta.rootfs_in(&dir);
        if rootfs.path().is_file() {
            return Ok(rootfs);
        }
    }
    // Images written before image.json recorded the kind.
    let path = dir.join(INITRAMFS_FILE);
    if path.is_file() {
        return Ok(RootFs::Initramfs(path));
    }
    if name == MINIMAL || name == FLOOR || name == DEBIAN {
        return Err(Error::MissingFile {
            what: "guest image",
            path: dir.join(if name == DEBIAN {
                EXT4_FILE
            } else {
                INITRAMFS_FILE
            }),
            hint: "run `smolvm setup` to build it".into(),
        });
    }
    Err(unknown_image(data, name))
}

/// The root filesystem file of image `name` (an initramfs or an ext4 image), or an error that
/// says how to get it. See [`resolve`] for its kind.
pub fn rootfs_of(data: &DataDir, name: &str) -> Result<PathBuf> {
    resolve(data, name).map(|r| r.path().to_path_buf())
}

/// The error for an image name that does not exist, listing those that do.
pub fn unknown_image(data: &DataDir, name: &str) -> Error {
    let available = list_images(data)
        .iter()
        .map(|m| m.name.clone())
        .collect::<Vec<_>>();
    Error::InvalidConfig {
        field: "image",
        reason: format!(
            "unknown image {name:?}; available: {}",
            if available.is_empty() {
                "none (run `smolvm setup`)".to_string()
            } else {
                available.join(", ")
            }
        ),
    }
}

/// Every built image (the benchmark floor image excluded).
pub fn list_images(data: &DataDir) -> Vec<ImageMeta> {
    let Ok(entries) = std::fs::read_dir(data.root().join("images")) else {
        return Vec::new();
    };
    let mut images: Vec<ImageMeta> = entries
        .flatten()
        .filter_map(|e| read_meta(&e.path()))
        .filter(|m| m.name != FLOOR)
        .collect();
    images.sort_by(|a, b| a.name.cmp(&b.name));
    images
}

fn read_meta(dir: &Path) -> Option<ImageMeta> {
    serde_json::from_slice(&std::fs::read(dir.join(IMAGE_META_FILE)).ok()?).ok()
}

/// The recorded metadata of image `name`, if it was built.
pub fn meta_of(data: &DataDir, name: &str) -> Option<ImageMeta> {
    read_meta(&data.image_dir(name))
}

/// Whether image `name` exists and was built from inputs hashing to `inputs_hash`.
pub fn is_current(data: &DataDir, name: &str, inputs_hash: &str) -> bool {
    let dir = data.image_dir(name);
    read_meta(&dir)
        .is_some_and(|m| m.inputs_hash == inputs_hash && m.rootfs_in(&dir).path().is_file())
}

/// Checks that `name` can name an image: the rules of sandbox names (it becomes a directory
/// name), and not the benchmark's own image.
pub fn validate_image_name(name: &str) -> Result<()> {
    crate::names::validate_vm_id(name).map_err(|_| Error::InvalidConfig {
        field: "image name",
        reason: format!(
            "{name:?} is not a valid image name: use 1-63 characters of lowercase letters, \
             digits and '-', starting with a letter or digit (e.g. \"debian-curl\")"
        ),
    })?;
    if name == FLOOR {
        return Err(Error::InvalidConfig {
            field: "image name",
            reason: format!("{FLOOR:?} is reserved for the benchmark's boot floor"),
        });
    }
    Ok(())
}

/// The metadata of built image `name`, or an error listing the images that exist.
pub fn find_image(data: &DataDir, name: &str) -> Result<ImageMeta> {
    let found = validate_image_name(name)
        .ok()
        .and_then(|()| read_meta(&data.image_dir(name)));
    found.ok_or_else(|| {
        let available: Vec<String> = list_images(data).into_iter().map(|m| m.name).collect();
        Error::NotFound {
            what: "image",
            name: name.to_string(),
            hint: format!(
                "available: {}",
                if available.is_empty() {
                    "none (run `smolvm setup`)".to_string()
                } else {
                    available.join(", ")
                }
            ),
        }
    })
}

/// The root filesystem file of a built image, from its metadata.
pub fn rootfs_path_of(data: &DataDir, meta: &ImageMeta) -> PathBuf {
    meta.rootfs_in(&data.image_dir(&meta.name))
        .path()
        .to_path_buf()
}

/// Deletes image `name` (its directory; its pre-booted templates are
/// [`crate::template::remove_for_image`]'s). VMs already running on
/// it are unaffected: a disk image's VMs hold a hard link to their base (see
/// [`disk::create_overlay`]), and snapshots hold links to what they were booted from.
pub fn remove_image(data: &DataDir, name: &str) -> Result<ImageMeta> {
    let meta = find_image(data, name)?;
    let dir = data.image_dir(name);
    std::fs::remove_dir_all(&dir)
        .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
    Ok(meta)
}

/// Hex SHA-256 of several inputs, each length-prefixed so that boundaries count.
pub fn hash_inputs(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reports build progress to whoever runs the build (the CLI draws it with `indicatif`).
pub trait Progress: Sync {
    /// A new step starts.
    fn step(&self, name: &str);
    /// Something happened within the step (a compiled file, a written entry).
    fn tick(&self, message: &str);
    /// The step ended.
    fn finish(&self, message: &str);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&self, _: &str) {}
    fn tick(&self, _: &str) {}
    fn finish(&self, _: &str) {}
}

/// Finds the guest agent binary: `$SMOLVM_AGENT`, else `smolvm-agent` beside the running
/// program or in the static build's target folder of a source checkout.
pub fn find_agent() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SMOLVM_AGENT").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("locating the running program", e))?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(4) {
        candidates.push(dir.join("x86_64-unknown-linux-gnu/release/smolvm-agent"));
        candidates.push(dir.join("smolvm-agent"));
    }
    // A plain `cargo build` also leaves a dynamically linked agent beside smolvm: skip it.
    let usable = |p: &PathBuf| std::fs::read(p).is_ok_and(|bytes| is_static_elf(&bytes));
    candidates
        .into_iter()
        .find(usable)
        .ok_or_else(|| Error::MissingFile {
            what: "guest agent (smolvm-agent)",
            path: exe.with_file_name("smolvm-agent"),
            hint: "build it with `scripts/build-agent.sh` or point SMOLVM_AGENT at it".into(),
        })
}

/// Whether an ELF file is statically linked (has no `PT_INTERP` program header). The agent
/// runs in guests without a dynamic loader, so a dynamic build would fail at boot.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
    })
}

/// Writes the image metadata next to its root filesystem.
pub(crate) fn write_meta(dir: &Path, meta: &ImageMeta) -> Result<()> {
    let json = serde_json::to_vec_pretty(meta).expect("metadata serialises");
    smolvm_sys::fs::write_atomic(&dir.join(IMAGE_META_FILE), &json).map_err(|e| {
        Error::io(
            format!("writing {}", dir.join(IMAGE_META_FILE).display()),
            e,
        )
    })
}

/// Where an initramfs image's root filesystem goes.
pub(crate) fn initramfs_path(data: &DataDir, name: &str) -> PathBuf {
    data.image_dir(name).join(INITRAMFS_FILE)
}

/// Where a disk image's root filesystem goes.
pub(crate) fn ext4_path(data: &DataDir, name: &str) -> PathBuf {
    data.image_dir(name).join(EXT4_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_elves_are_told_apart() {
        let shell = std::fs::read("/bin/sh").unwrap();
        assert!(
            !is_static_elf(&shell),
            "/bin/sh is dynamically linked on Debian"
        );
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn input_hash_depends_on_boundaries() {
        assert_ne!(hash_inputs(&[b"ab", b"c"]), hash_inputs(&[b"a", b"bc"]));
        assert_eq!(hash_inputs(&[b"x"]), hash_inputs(&[b"x"]));
    }

    #[test]
    fn image_names_never_leave_the_images_folder() {
        for name in ["../kernel", "", "a/b", "floor/.."] {
            let err = resolve(&DataDir::at("/nonexistent"), name).unwrap_err();
            assert!(err.to_string().contains("unknown image"), "{err}");
        }
    }

    #[test]
    fn unknown_image_lists_what_exists() {
        let err = rootfs_of(&DataDir::at("/nonexistent"), "nope")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown image \"nope\"") && err.contains("smolvm setup"),
            "{err}"
        );
    }
}
